"""Get_attr view chain: a weight's q (and the view ops between) inherit the weight's meta."""

from __future__ import annotations

import pytest

from portmeta import LEGACY_TORCH_AO, TORCHAO, Rule, Target, plan
from portmeta.errors import MissingArgumentError
from portmeta.rules import view_chain
from portmeta.testing import GraphBuilder, static

from .helpers import state, writes


def _weight_through(op, profile=TORCHAO, view_op="call_function"):
    b = GraphBuilder(profile)
    x = b.placeholder("x")
    _xq, xdq = b.qdq(x, names=("xq", "xdq"))
    w = b.get_attr("w", tag="W", stack_trace="w.py:1")
    if view_op == "call_function":
        v = b.call(op, w, name="v")
    else:
        v = b.add(view_op, op, (b._ref(w),), name="v")
    _q, dq = b.qdq(v)
    conv = b.call("aten.linear.default", xdq, dq, name="lin", tag="L")
    b.annotate(conv, inputs={x: static(), v: static()})
    b.output(conv)
    return b


def _op_id(t):
    return f"{t.name}:{t.kind.value}"


@pytest.mark.parametrize("op", sorted(TORCHAO.view_ops, key=_op_id), ids=_op_id)
def test_every_torchao_view_op_is_walked(op):
    p = plan(_weight_through(op).build())
    assert writes(p) == [
        ("xdq", "quantization_tag", "L", "lin"),
        ("q", "stack_trace", "w.py:1", "w"),
        ("q", "quantization_tag", "W", "w"),
        ("v", "stack_trace", "w.py:1", "w"),
        ("v", "quantization_tag", "W", "w"),
        ("dq", "quantization_tag", "L", "lin"),
    ]
    assert p.deltas[1].rule is Rule.GET_ATTR_CHAIN
    assert p.deltas[1].path == ("w", "v", "q")
    assert p.deltas[1].anchor == "lin"


@pytest.mark.parametrize("op", sorted(LEGACY_TORCH_AO.view_ops, key=_op_id), ids=_op_id)
def test_every_legacy_view_op_is_walked(op):
    final = state(_weight_through(op, LEGACY_TORCH_AO), LEGACY_TORCH_AO)
    assert final["q"] == {"stack_trace": "w.py:1", "quantization_tag": "W"}
    assert final["v"] == {"stack_trace": "w.py:1", "quantization_tag": "W"}


def test_transpose_dimname_is_a_view_op_only_in_legacy():
    dimname = Target.overload("aten.transpose.Dimname")
    assert state(_weight_through(dimname)) == {
        "xdq": {"quantization_tag": "L"},
        "dq": {"quantization_tag": "L"},
    }
    assert state(_weight_through(dimname, LEGACY_TORCH_AO), LEGACY_TORCH_AO)["v"] == {
        "stack_trace": "w.py:1",
        "quantization_tag": "W",
    }


@pytest.mark.parametrize(
    "op", ["aten.t.default", "aten.unsqueeze.default", Target.named("aten.view.default")]
)
def test_chain_stops_at_a_non_view_op(op):
    assert set(state(_weight_through(op))) == {"xdq", "dq"}


def test_view_target_on_a_non_call_function_node_stops_the_chain():
    assert set(state(_weight_through("aten.view.default", view_op="call_method"))) == {"xdq", "dq"}


def test_long_chain_writes_q_first_then_each_view_walking_up():
    b = GraphBuilder()
    w = b.get_attr("w", tag="W")
    p1 = b.view(w, "aten.permute.default", name="p1")
    p2 = b.view(p1, "aten.view.default", [4], name="p2")
    p3 = b.view(p2, Target.packet("aten.transpose_"), 0, 1, name="p3")
    _q, dq = b.qdq(p3)
    r = b.call("aten.relu.default", dq, name="relu", tag="R")
    b.annotate(r, inputs={p3: static()})
    b.output(r)
    p = plan(b.build())
    assert [(d.target, d.value) for d in p.deltas] == [
        ("q", "W"),
        ("p3", "W"),
        ("p2", "W"),
        ("p1", "W"),
        ("dq", "R"),
    ]
    assert {d.path for d in p.deltas[:4]} == {("w", "p1", "p2", "p3", "q")}


def test_chain_ending_at_a_placeholder_writes_only_the_dq():
    b = GraphBuilder()
    x = b.placeholder("x", tag="X")
    v = b.view(x, name="v")
    _q, dq = b.qdq(v)
    r = b.call("aten.relu.default", dq, name="relu", tag="R")
    b.annotate(r, inputs={v: static()})
    b.output(r)
    assert state(b) == {"dq": {"quantization_tag": "R"}}


def test_weight_without_the_key_copies_nothing_and_none_is_copied():
    b = GraphBuilder()
    w = b.get_attr("w")  # no tag at all
    _q, dq = b.qdq(w)
    u = b.get_attr("u", tag=None)
    _uq, udq = b.qdq(u)
    r = b.call("aten.add.Tensor", dq, udq, name="add", tag="R")
    b.annotate(r, inputs={w: static(), u: static()})
    b.output(r)
    assert state(b) == {
        "dq": {"quantization_tag": "R"},
        "q_1": {"quantization_tag": None},
        "dq_1": {"quantization_tag": "R"},
    }


def test_view_op_without_args_is_missing_argument_error():
    b = GraphBuilder()
    v = b.call("aten.permute.default", name="v")
    _q, dq = b.qdq(v)
    r = b.call("aten.relu.default", dq, name="relu")
    b.annotate(r, inputs={v: static()})
    b.output(r)
    with pytest.raises(MissingArgumentError) as info:
        plan(b.build())
    assert isinstance(info.value, IndexError)
    assert (info.value.node, info.value.subject) == ("relu", "v")
    assert "'v'" in str(info.value) and "'relu'" in str(info.value)


def test_extended_profile_walks_its_extra_view_op():
    unsqueeze = Target.overload("aten.unsqueeze.default")
    mine = TORCHAO.extend(view_ops=[unsqueeze])
    final = state(_weight_through(unsqueeze), mine)
    assert final["v"] == {"stack_trace": "w.py:1", "quantization_tag": "W"}


def test_view_chain_rule_function_directly():
    b = GraphBuilder()
    w = b.get_attr("w")
    t = b.view(w, name="t")
    q, dq = b.qdq(t)
    b.output(dq)
    g = b.build()
    result = view_chain(g, TORCHAO, "?", q)
    assert [(c.target, c.source, c.rule) for c in result.copies] == [
        ("q", "w", Rule.GET_ATTR_CHAIN),
        ("t", "w", Rule.GET_ATTR_CHAIN),
    ]
    assert view_chain(g, TORCHAO, "?", dq).copies == ()  # dq.args[0] is q: not a view, not w
