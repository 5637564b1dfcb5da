"""Static output rule: q <- producer; warnings; zero users; sym-size filtering."""

from __future__ import annotations

import pytest

from portmeta import LEGACY_TORCH_AO, TORCHAO, Rule, Severity, Target, plan
from portmeta.errors import NoUserError
from portmeta.testing import GraphBuilder, static

from .helpers import state


def _producer(profile=TORCHAO):
    b = GraphBuilder(profile)
    x = b.placeholder("x")
    r = b.call("aten.relu.default", x, name="relu", tag="R", stack_trace="m.py:2")
    b.annotate(r, output=static())
    return b, r


def test_single_quantize_user_receives_the_producer_meta():
    b, r = _producer()
    _q, dq = b.qdq(r)
    b.output(dq)
    p = plan(b.build())
    assert p.final_state() == {"q": {"stack_trace": "m.py:2", "quantization_tag": "R"}}
    assert {(d.rule, d.path) for d in p.deltas} == {(Rule.STATIC_OUTPUT, ("relu", "q"))}
    assert p.diagnostics == ()


def test_output_spec_none_writes_nothing():
    b, r = _producer()
    _q, dq = b.qdq(r)
    b.output(dq)
    b.annotate(r, output=None, inputs={"x": None})
    assert state(b) == {}


def test_two_users_last_is_quantize_warns_and_writes():
    b, r = _producer()
    neg = b.call("aten.neg.default", r, name="neg")
    _q, dq = b.qdq(r)
    b.output(dq, neg)
    p = plan(b.build())
    assert p.final_state() == {"q": {"stack_trace": "m.py:2", "quantization_tag": "R"}}
    (d,) = p.diagnostics
    assert (d.kind, d.severity, d.node, d.rule, d.related) == (
        "user_count",
        Severity.WARNING,
        "relu",
        Rule.STATIC_OUTPUT,
        ("neg", "q"),
    )


def test_two_users_last_not_quantize_warns_twice_and_writes_nothing():
    b, r = _producer()
    q, dq = b.qdq(r)
    neg = b.call("aten.neg.default", r, name="neg")
    b.output(dq, neg)
    p = plan(b.build())
    assert p.deltas == ()
    assert [(d.kind, d.related) for d in p.diagnostics] == [
        ("user_count", ("q", "neg")),
        ("not_quantize", ("neg",)),
    ]
    assert "aten.neg.default" in p.diagnostics[1].message
    b.reorder_users(r, [neg, q])
    assert state(b) == {"q": {"stack_trace": "m.py:2", "quantization_tag": "R"}}


def test_single_user_that_is_not_a_quantize():
    b, r = _producer()
    b.output(r)
    p = plan(b.build())
    assert p.deltas == ()
    assert [(d.kind, d.node) for d in p.diagnostics] == [("not_quantize", "relu")]


@pytest.mark.parametrize(
    ("op", "node_op", "filtered"),
    [
        ("aten.sym_size.default", "call_function", True),
        ("aten.sym_size.default", "call_method", False),
        ("aten.sym_numel.default", "call_function", True),
        ("aten.sym_numel.default", "call_module", True),
        (Target.packet("aten.sym_numel"), "call_method", True),
        (Target.packet("aten.sym_size"), "call_function", True),
        ("aten.sym_size.int", "call_function", False),
    ],
)
def test_sym_size_filtering_of_output_users(op, node_op, filtered):
    b, r = _producer()
    _q, dq = b.qdq(r)
    s = b.add(node_op, op, (b._ref(r), 0), name="size")
    b.output(dq, s)
    p = plan(b.build())
    if filtered:
        assert p.final_state() == {"q": {"stack_trace": "m.py:2", "quantization_tag": "R"}}
        assert p.diagnostics == ()
    else:
        assert p.deltas == ()
        assert [d.kind for d in p.diagnostics] == ["user_count", "not_quantize"]


def test_zero_users_torchao_skips_legacy_raises():
    b, _r = _producer()
    b.output()
    assert plan(b.build()).deltas == ()
    assert plan(b.build()).diagnostics == ()
    lb, _lr = _producer(LEGACY_TORCH_AO)
    lb.output()
    with pytest.raises(NoUserError) as info:
        plan(lb.build(), LEGACY_TORCH_AO)
    assert isinstance(info.value, IndexError)
    assert (info.value.node, info.value.subject) == ("relu", "relu")
    assert "'relu'" in str(info.value)
    p = plan(lb.build(), LEGACY_TORCH_AO, errors="collect")
    assert [(d.kind, d.error_class, d.node) for d in p.diagnostics] == [
        ("error", "NoUserError", "relu")
    ]


def test_only_sym_size_users_is_no_user_error_in_both_profiles():
    for profile in (TORCHAO, LEGACY_TORCH_AO):
        b, r = _producer(profile)
        s = b.sym_size(r, op="aten.sym_size.default", name="size")
        b.output(s)
        with pytest.raises(NoUserError, match="output rule of annotated node 'relu'"):
            plan(b.build(), profile)


def test_affine_quantize_packet_only_in_torchao():
    for profile, expected in ((TORCHAO, True), (LEGACY_TORCH_AO, False)):
        b, r = _producer(profile)
        q = b.call(Target.packet("torchao.quantize_affine"), r, name="q")
        b.output(q)
        p = plan(b.build(), profile)
        assert bool(p.deltas) is expected
        assert [d.kind for d in p.diagnostics] == ([] if expected else ["not_quantize"])
