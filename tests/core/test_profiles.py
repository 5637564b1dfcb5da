"""Profiles: the op sets of each upstream version, sym-size predicates, deriving, plain data."""

from __future__ import annotations

import pytest

from portmeta import (
    LEGACY_TORCH_AO,
    PROFILES,
    TORCHAO,
    NodeRecord,
    Profile,
    ProfileError,
    Target,
    get_profile,
)

OV, P = Target.overload, Target.packet


def _rec(target, op="call_function"):
    return NodeRecord("n", op, target)


def test_builtin_profiles_by_name():
    assert PROFILES == {"torchao": TORCHAO, "legacy": LEGACY_TORCH_AO}
    assert get_profile("legacy") is LEGACY_TORCH_AO
    with pytest.raises(ProfileError, match=r"unknown profile 'ao' \(known: legacy, torchao\)"):
        get_profile("ao")


def test_keys_and_output_guard():
    assert TORCHAO.keys == LEGACY_TORCH_AO.keys == ("stack_trace", "quantization_tag")
    assert TORCHAO.skip_output_without_users is True
    assert LEGACY_TORCH_AO.skip_output_without_users is False


def test_where_the_profiles_differ():
    assert TORCHAO.quantize - LEGACY_TORCH_AO.quantize == {P("torchao.quantize_affine")}
    assert TORCHAO.dequantize - LEGACY_TORCH_AO.dequantize == {P("torchao.dequantize_affine")}
    assert TORCHAO.choose_qparams - LEGACY_TORCH_AO.choose_qparams == {
        P("torchao.choose_qparams_affine")
    }
    assert LEGACY_TORCH_AO.view_ops - TORCHAO.view_ops == {OV("aten.transpose.Dimname")}
    assert TORCHAO.view_ops < LEGACY_TORCH_AO.view_ops
    assert len(TORCHAO.view_ops) == 11


def test_affine_overloads_are_not_in_any_profile():
    for profile in (TORCHAO, LEGACY_TORCH_AO):
        assert OV("torchao.quantize_affine.default") not in profile.quantize
        assert OV("torchao.dequantize_affine.default") not in profile.dequantize
        assert not profile.is_quantize(_rec(OV("torchao.quantize_affine.default")))


def test_workflow_ops_hold_only_the_plain_choose_qparams():
    cq = OV("quantized_decomposed.choose_qparams.tensor")
    sym = OV("quantized_decomposed.choose_qparams_symmetric.tensor")
    assert cq in TORCHAO.workflow_ops and sym not in TORCHAO.workflow_ops
    assert TORCHAO.workflow_ops == TORCHAO.quantize | TORCHAO.dequantize | {cq}
    assert LEGACY_TORCH_AO.workflow_ops == LEGACY_TORCH_AO.quantize | LEGACY_TORCH_AO.dequantize | {
        cq
    }
    # the walk looks at the target alone; every other predicate wants call_function
    q = OV("quantized_decomposed.quantize_per_tensor.default")
    assert TORCHAO.is_workflow_op(_rec(q, "call_method"))
    assert not TORCHAO.is_quantize(_rec(q, "call_method"))
    assert not TORCHAO.is_workflow_op(_rec(Target.named(q.name), "placeholder"))


@pytest.mark.parametrize(
    ("target", "op", "expected"),
    [
        (OV("aten.sym_size.default"), "call_function", True),
        (OV("aten.sym_size.default"), "call_method", False),
        (OV("aten.sym_size.default"), "placeholder", False),
        (OV("aten.sym_numel.default"), "call_method", True),
        (P("aten.sym_numel"), "call_module", True),
        (P("aten.sym_size"), "call_function", True),
        (P("aten.sym_size"), "get_attr", True),
        (OV("aten.sym_size.int"), "call_function", False),
        (Target.named("aten.sym_size.default"), "call_function", False),
        (OV("aten.sym_stride.int"), "call_function", False),
    ],
)
def test_sym_size_predicate(target, op, expected):
    for profile in (TORCHAO, LEGACY_TORCH_AO):
        assert profile.is_sym_size(_rec(target, op)) is expected


def test_extend_appends_keys_and_view_ops():
    mine = TORCHAO.extend(
        name="mine",
        keys=("nn_module_stack", "quantization_tag", "custom"),
        view_ops=[OV("aten.unsqueeze.default")],
    )
    assert mine.name == "mine"
    assert mine.keys == ("stack_trace", "quantization_tag", "nn_module_stack", "custom")
    assert mine.view_ops == TORCHAO.view_ops | {OV("aten.unsqueeze.default")}
    assert mine.quantize == TORCHAO.quantize
    assert TORCHAO.extend().name == "torchao"
    assert TORCHAO.keys == ("stack_trace", "quantization_tag")  # unchanged


@pytest.mark.parametrize("keys", [("a", "a"), ("a", ""), ("a", 3)])
def test_bad_keys_are_profile_errors(keys):
    with pytest.raises(ProfileError, match="profile keys must be"):
        Profile(
            name="bad",
            keys=keys,
            quantize=(),
            dequantize=(),
            choose_qparams=(),
            workflow_ops=(),
            view_ops=(),
            sym_size_call_function=(),
            sym_size_any_op=(),
        )


@pytest.mark.parametrize("profile", [TORCHAO, LEGACY_TORCH_AO], ids=lambda p: p.name)
def test_dict_round_trip(profile):
    data = profile.to_dict()
    assert Profile.from_dict(data) == profile
    assert data["keys"] == ["stack_trace", "quantization_tag"]
    names = [t["name"] for t in data["view_ops"]]
    assert names == sorted(names)


@pytest.mark.parametrize(
    "data",
    [None, [], {"name": "x"}, {**TORCHAO.to_dict(), "quantize": [{"name": "q", "kind": "bogus"}]}],
    ids=["none", "list", "missing-fields", "bad-kind"],
)
def test_malformed_profile_data(data):
    with pytest.raises(ProfileError, match="malformed profile data"):
        Profile.from_dict(data)


def test_predicates_by_name_agree_with_the_target_sets():
    # the predicates look targets up by name (then kind); set membership is the definition
    from portmeta import LEGACY_TORCH_AO, TORCHAO, NodeRecord, Target
    from portmeta.records import TargetKind

    for profile in (TORCHAO, LEGACY_TORCH_AO, TORCHAO.extend(view_ops=[Target.named("x")])):
        sets = [getattr(profile, f) for f in ("quantize", "dequantize", "choose_qparams")]
        names = {t.name for s in (*sets, profile.view_ops, profile.workflow_ops) for t in s}
        names |= {t.name for t in profile.sym_size_any_op | profile.sym_size_call_function}
        for name in (*sorted(names), "aten.relu.default"):
            for kind in TargetKind:
                for op in ("call_function", "call_method", "get_attr"):
                    rec = NodeRecord("n", op, Target(name, kind))
                    t, cf = rec.target, op == "call_function"
                    assert profile.is_quantize(rec) == (cf and t in profile.quantize)
                    assert profile.is_dequantize(rec) == (cf and t in profile.dequantize)
                    assert profile.is_choose_qparams(rec) == (cf and t in profile.choose_qparams)
                    assert profile.is_view(rec) == (cf and t in profile.view_ops)
                    assert profile.is_workflow_op(rec) == (t in profile.workflow_ops)
                    assert profile.is_sym_size(rec) == (
                        t in profile.sym_size_any_op or (cf and t in profile.sym_size_call_function)
                    )
