"""The pass as a drop-in: raises where upstream raises, writes nothing then; patching; PassResult;
reads what earlier writes left, as upstream's in-place walk does."""

from __future__ import annotations

import operator
from collections.abc import Callable

import pytest
import torch
from parity import (
    ATEN,
    KEYS,
    QD,
    Hand,
    annotate,
    assert_same_meta,
    dynamic_spec,
    port_keys_state,
    run_both_passes,
    static_model,
    static_spec,
)
from torch._export.error import InternalError
from torch.fx.passes.infra.pass_base import PassBase, PassResult
from torchao.quantization.pt2e import quantize_pt2e
from torchao.quantization.pt2e.quantizer.port_metadata_pass import (
    PortNodeMetaForQDQ as Upstream,
)

import portmeta
from portmeta_fx import PortmetaInternalError, PortNodeMetaForQDQ, patch_convert_pt2e

# --------------------------------------------------------------------------- failing graphs
# Each builder first has an annotated node that ports fine ("ok"), then the failing one, so
# upstream has already written something when it raises; portmeta must not have.


def _ok_prefix(h: Hand) -> torch.fx.Node:
    x = h.placeholder("x", stack_trace="x.py:1")
    _q, dq = h.qdq(x)
    ok = h.call(ATEN.relu.default, dq, name="ok", tag="OK", stack_trace="ok.py:1")
    annotate(ok, {x: static_spec()}, static_spec())
    _oq, odq = h.qdq(ok)
    return odq


def no_choose_qparams() -> torch.fx.GraphModule:
    h = Hand()
    a = _ok_prefix(h)
    lin = h.call(ATEN.relu.default, a, name="lin", tag="T")
    annotate(lin, {a: dynamic_spec()})
    return h.output(lin)


def cq_three_users() -> torch.fx.GraphModule:
    h = Hand()
    a = _ok_prefix(h)
    d = h.dynamic_qdq(a)
    extra = h.call(operator.getitem, d["cq"], 2, name="extra")
    lin = h.call(ATEN.relu.default, d["dq"], name="lin", tag="T")
    annotate(lin, {a: dynamic_spec()})
    return h.output(lin, extra)


def dyn_q_two_users() -> torch.fx.GraphModule:
    h = Hand()
    a = _ok_prefix(h)
    d = h.dynamic_qdq(a)
    other = h.call(ATEN.relu.default, d["q"], name="other")
    lin = h.call(ATEN.relu.default, d["dq"], name="lin", tag="T")
    annotate(lin, {a: dynamic_spec()})
    return h.output(lin, other)


def dyn_q_no_users() -> torch.fx.GraphModule:
    # scale (the last choose_qparams user) feeds a quantize that has no users
    h = Hand()
    a = _ok_prefix(h)
    cq = h.call(QD.choose_qparams.tensor, a, -128, 127, 1e-5, torch.int8, name="cq")
    s0 = h.call(operator.getitem, cq, 0, name="s0")
    s1 = h.call(operator.getitem, cq, 1, name="s1")
    h.call(QD.quantize_per_tensor.tensor, a, s0, s1, -128, 127, torch.int8, name="dead_q")
    lin = h.call(ATEN.relu.default, a, name="lin", tag="T")
    annotate(lin, {a: dynamic_spec()})
    return h.output(lin)


def scale_without_users() -> torch.fx.GraphModule:
    h = Hand()
    a = _ok_prefix(h)
    cq = h.call(QD.choose_qparams.tensor, a, -128, 127, 1e-5, torch.int8, name="cq")
    s0 = h.call(operator.getitem, cq, 0, name="s0")
    h.call(operator.getitem, cq, 1, name="s1")
    lin = h.call(ATEN.relu.default, a, s0, name="lin", tag="T")
    annotate(lin, {a: dynamic_spec()})
    return h.output(lin)


def dq_constant_arg() -> torch.fx.GraphModule:
    h = Hand()
    a = _ok_prefix(h)
    dq = h.call(QD.dequantize_per_tensor.default, 1.0, 0.1, 0, -128, 127, torch.int8, name="dqc")
    lin = h.call(ATEN.add.Tensor, dq, a, name="lin", tag="T")
    annotate(lin, {a: static_spec()})
    return h.output(lin)


def quantize_without_args() -> torch.fx.GraphModule:
    h = Hand()
    a = _ok_prefix(h)
    q = h.call(QD.quantize_per_tensor.default, name="bare_q")
    dq = h.call(QD.dequantize_per_tensor.default, q, 0.1, 0, -128, 127, torch.int8, name="dqb")
    lin = h.call(ATEN.add.Tensor, dq, a, name="lin", tag="T")
    annotate(lin, {a: static_spec()})
    return h.output(lin)


def output_only_sym_users() -> torch.fx.GraphModule:
    h = Hand()
    a = _ok_prefix(h)
    lin = h.call(ATEN.relu.default, a, name="lin", tag="T")
    annotate(lin, {}, static_spec())
    n = h.call(ATEN.sym_numel.default, lin, name="numel")
    return h.output(n)


FAILING: dict[str, tuple[Callable[[], torch.fx.GraphModule], type[BaseException]]] = {
    "no_choose_qparams": (no_choose_qparams, ValueError),
    "cq_three_users": (cq_three_users, InternalError),
    "dyn_q_two_users": (dyn_q_two_users, InternalError),
    "dyn_q_no_users": (dyn_q_no_users, IndexError),
    "scale_without_users": (scale_without_users, StopIteration),
    "dq_constant_arg": (dq_constant_arg, ValueError),
    "quantize_without_args": (quantize_without_args, IndexError),
    "output_only_sym_users": (output_only_sym_users, IndexError),
}


@pytest.mark.parametrize("case", list(FAILING))
def test_raises_like_upstream_and_writes_nothing(case: str) -> None:
    build, expected = FAILING[case]
    ours_gm, theirs_gm, ours, theirs = run_both_passes(build)
    assert isinstance(theirs, expected), f"upstream raised {theirs!r}"
    assert isinstance(ours, type(theirs)), f"ours {type(ours)!r}, upstream {type(theirs)!r}"
    assert isinstance(ours, portmeta.PlanError)
    if expected is InternalError:
        assert isinstance(ours, PortmetaInternalError)
        assert isinstance(ours, portmeta.UpstreamInternalError)
        assert isinstance(ours.__cause__, portmeta.UpstreamInternalError)
        assert str(ours) == str(ours.__cause__)
    # ours wrote nothing; upstream had already ported the first annotated node
    assert port_keys_state(ours_gm, KEYS) == port_keys_state(build(), KEYS)
    assert port_keys_state(theirs_gm, KEYS) != port_keys_state(build(), KEYS)


@pytest.mark.parametrize("case", list(FAILING))
def test_collect_mode_skips_the_failing_node(case: str) -> None:
    build, _expected = FAILING[case]
    gm = build()
    p = PortNodeMetaForQDQ(errors="collect")
    p(gm)
    assert p.last_plan is not None
    assert [d.node for d in p.last_plan.errors] == ["lin"]
    # the node before it is ported like upstream would
    ref = build()
    nodes = {n.name: n for n in gm.graph.nodes}
    assert nodes["dequantize_per_tensor_default"].meta["quantization_tag"] == "OK"
    assert port_keys_state(ref, KEYS) != port_keys_state(gm, KEYS)


def test_pass_result_shape() -> None:
    gm = static_model()
    p = PortNodeMetaForQDQ()
    assert isinstance(p, PassBase)
    result = p(gm)
    assert isinstance(result, PassResult)
    assert result.graph_module is gm
    assert result.modified is True
    assert p.last_plan is not None and p.last_plan.deltas
    # like upstream: modified is True even when nothing was written
    empty = torch.fx.symbolic_trace(torch.nn.ReLU())
    assert PortNodeMetaForQDQ()(empty).modified is True
    assert Upstream()(torch.fx.symbolic_trace(torch.nn.ReLU())).modified is True


def test_pass_matches_upstream_on_static_model() -> None:
    ours_gm, theirs_gm, ours, theirs = run_both_passes(static_model)
    assert isinstance(ours, PassResult) and isinstance(theirs, PassResult)
    assert_same_meta(ours_gm, theirs_gm)


def test_pass_with_extra_keys() -> None:
    gm = static_model()
    relu = next(n for n in gm.graph.nodes if n.name == "relu")
    relu.meta["custom"] = {"k": 1}
    p = PortNodeMetaForQDQ(keys=[*KEYS, "custom"])
    p(gm)
    dq = next(n for n in gm.graph.nodes if n.name == "dequantize_per_tensor_default_2")
    assert dq.meta["custom"] is relu.meta["custom"]


def test_bad_errors_option() -> None:
    with pytest.raises(ValueError):
        PortNodeMetaForQDQ(errors="ignore")  # type: ignore[arg-type]


def test_patch_convert_pt2e_restores_original() -> None:
    original = quantize_pt2e.PortNodeMetaForQDQ
    assert original is Upstream
    with patch_convert_pt2e() as passes:
        assert quantize_pt2e.PortNodeMetaForQDQ is not original
        instance = quantize_pt2e.PortNodeMetaForQDQ()
        assert isinstance(instance, PortNodeMetaForQDQ)
        assert passes == [instance]
    assert quantize_pt2e.PortNodeMetaForQDQ is original
    with pytest.raises(KeyError), patch_convert_pt2e(keys=["quantization_tag"]) as passes:
        assert quantize_pt2e.PortNodeMetaForQDQ().profile.keys == ("quantization_tag",)
        raise KeyError("boom")
    assert quantize_pt2e.PortNodeMetaForQDQ is original


def test_patched_factory_takes_no_arguments() -> None:
    with patch_convert_pt2e(), pytest.raises(TypeError):
        quantize_pt2e.PortNodeMetaForQDQ(portmeta.TORCHAO)


def test_last_plan_is_built_on_first_access_and_equals_plan() -> None:
    gm = static_model()
    p = PortNodeMetaForQDQ()
    p(gm)
    assert p._last_plan is None  # the pass itself never needed the fingerprint
    snapshot = p.last_snapshot
    assert snapshot is not None and "fingerprint" not in snapshot.graph
    assert p.last_plan == portmeta.plan(snapshot)
    assert p.last_plan is p.last_plan


@pytest.mark.parametrize("case", ["no_choose_qparams", "cq_three_users"])
def test_failed_planning_keeps_the_snapshot_not_a_plan(case: str) -> None:
    gm = FAILING[case][0]()
    p = PortNodeMetaForQDQ()
    with pytest.raises(portmeta.PlanError):
        p(gm)
    assert p.last_snapshot is not None and "lin" in p.last_snapshot
    assert p.last_plan is None


def test_last_plan_fingerprint_describes_the_graph_the_pass_read() -> None:
    # a mutable metadata value changed after the pass must not change the plan's fingerprint
    gm = static_model()
    stack = {"L__self__": ("", "M")}
    for node in gm.graph.nodes:
        node.meta["nn_module_stack"] = stack
    p = PortNodeMetaForQDQ(keys=[*KEYS, "nn_module_stack"])
    p(gm)
    as_read = portmeta.fingerprint(p.last_snapshot)
    stack["later"] = ("x", "X")
    assert p.last_plan is not None and p.last_plan.fingerprint == as_read


# --------------------------------------------------------------------------- read after write


def _fresh(*parts: str) -> str:
    """A new ``str`` object each call (not an interned constant shared by both copies)."""
    return "".join(parts)


def overwritten_origin(relu_input: str) -> torch.fx.GraphModule:
    """x -> q1 -> dq1 (output spec) -> q2 (output spec) -> q3, and relu(dq1) with a static
    input spec on ``relu_input`` (``"x"``: the value dq1 dequantizes; ``"dq1"``: dq1 itself).

    In graph order: dq1's output rule writes dq1's values onto q2 (its last user); relu's input
    rule (keyed on x) then overwrites dq1 itself with relu's; q2's output rule passes on what q2
    holds, so q3 gets dq1's values as they were, not what dq1 holds by then.
    """
    h = Hand()
    x = h.placeholder("x")
    qargs = (0.1, 0, -128, 127, torch.int8)
    q1 = h.call(QD.quantize_per_tensor.default, x, *qargs, name="q1")
    dq1 = h.call(
        QD.dequantize_per_tensor.default,
        q1,
        *qargs,
        name="dq1",
        tag=_fresh("T_", "dq1"),
        stack_trace=_fresh("m.py:", "1"),
    )
    relu = h.call(
        ATEN.relu.default,
        dq1,
        name="relu",
        tag=_fresh("T_", "relu"),
        stack_trace=_fresh("m.py:", "2"),
    )
    q2 = h.call(
        QD.quantize_per_tensor.default,
        dq1,
        *qargs,
        name="q2",
        tag=_fresh("T_", "q2"),
        stack_trace=_fresh("m.py:", "3"),
    )
    q3 = h.call(QD.quantize_per_tensor.default, q2, *qargs, name="q3")
    annotate(dq1, {}, static_spec())
    annotate(relu, {x if relu_input == "x" else dq1: static_spec()})
    annotate(q2, {}, static_spec())
    return h.output(relu, q3)


@pytest.mark.parametrize("relu_input", ["x", "dq1"])
def test_read_after_write_through_an_overwritten_origin_like_upstream(relu_input: str) -> None:
    ours_gm, theirs_gm = overwritten_origin(relu_input), overwritten_origin(relu_input)
    assert list(next(n for n in ours_gm.graph.nodes if n.name == "dq1").users) == [
        next(n for n in ours_gm.graph.nodes if n.name == name) for name in ("relu", "q2")
    ]
    before = {
        id(gm): {n.name: {k: n.meta[k] for k in KEYS if k in n.meta} for n in gm.graph.nodes}
        for gm in (ours_gm, theirs_gm)
    }
    p = PortNodeMetaForQDQ()
    assert isinstance(p(ours_gm), PassResult)
    assert isinstance(Upstream()(theirs_gm), PassResult)
    # every node's stack_trace / quantization_tag: same presence, values and object sharing
    assert_same_meta(ours_gm, theirs_gm)
    for gm in (ours_gm, theirs_gm):
        was = before[id(gm)]
        nodes = {n.name: n for n in gm.graph.nodes}
        for key in KEYS:
            # q3 keeps what dq1 held before relu's rule overwrote it: the very objects
            assert nodes["q3"].meta[key] is was["dq1"][key], key
            assert nodes["q2"].meta[key] is was["dq1"][key], key
            # dq1 itself ends with relu's values when relu's input spec is keyed on x
            expected_dq1 = was["relu"][key] if relu_input == "x" else was["dq1"][key]
            assert nodes["dq1"].meta[key] is expected_dq1, key
            assert nodes["relu"].meta[key] is was["relu"][key], key
        assert nodes["q3"].meta["quantization_tag"] == "T_dq1"
        assert nodes["q3"].meta["stack_trace"] == "m.py:1"
    assert port_keys_state(ours_gm, KEYS) == {
        "x": {},
        "q1": {},
        "dq1": (
            {"stack_trace": "m.py:2", "quantization_tag": "T_relu"}
            if relu_input == "x"
            else {"stack_trace": "m.py:1", "quantization_tag": "T_dq1"}
        ),
        "relu": {"stack_trace": "m.py:2", "quantization_tag": "T_relu"},
        "q2": {"stack_trace": "m.py:1", "quantization_tag": "T_dq1"},
        "q3": {"stack_trace": "m.py:1", "quantization_tag": "T_dq1"},
        "output": {},
    }
    # the plan says where q3's tag came from: copied from q2, first held by dq1
    assert p.last_plan is not None
    (last,) = [d for d in p.last_plan.writes_to("q3") if d.key == "quantization_tag"]
    assert (last.source, last.origin, last.value) == ("q2", "dq1", "T_dq1")
