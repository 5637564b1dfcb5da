"""Static input rule: dq <- consumer, with upstream's quirks."""

from __future__ import annotations

import pytest

import portmeta
from portmeta import LEGACY_TORCH_AO, TORCHAO, QInput, Rule, Target, plan
from portmeta.errors import MissingArgumentError, NonNodeQuantArgError
from portmeta.rules import static_input, walk_to_producer
from portmeta.testing import GraphBuilder, derived, fixed, shared, static

from .helpers import CQ, CQ_SYM, DQ, QARGS, Q, foreign, state, writes

STATIC = static()


def _basic(spec=STATIC, **consumer_meta):
    b = GraphBuilder()
    x = b.placeholder("x", tag="X")
    _q, dq = b.qdq(x)
    r = b.call("aten.relu.default", dq, name="relu", **consumer_meta)
    b.annotate(r, inputs={x: spec})
    b.output(r)
    return b


def test_dq_receives_both_keys_of_the_consumer_in_profile_order():
    p = plan(_basic(tag="P0", stack_trace="m.py:3").build())
    assert writes(p) == [
        ("dq", "stack_trace", "m.py:3", "relu"),
        ("dq", "quantization_tag", "P0", "relu"),
    ]
    d = p.deltas[0]
    assert (d.rule, d.anchor, d.origin, d.path) == (
        Rule.STATIC_INPUT,
        "relu",
        "relu",
        ("x", "q", "dq", "relu"),
    )


@pytest.mark.parametrize("spec", [shared(), derived(), fixed()], ids=["shared", "derived", "fixed"])
def test_specs_without_is_dynamic_are_static(spec):
    assert state(_basic(spec, tag="P0")) == {"dq": {"quantization_tag": "P0"}}


def test_input_spec_none_writes_nothing():
    assert state(_basic(None, tag="P0")) == {}


def test_presence_not_truthiness():
    assert state(_basic(tag=None)) == {"dq": {"quantization_tag": None}}
    assert state(_basic(tag="")) == {"dq": {"quantization_tag": ""}}
    assert state(_basic(tag=0, stack_trace="")) == {
        "dq": {"stack_trace": "", "quantization_tag": 0}
    }
    assert state(_basic()) == {}


def test_dequantize_passed_as_keyword_is_ignored():
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    r = b.call("aten.add.Tensor", 1.0, kwargs={"other": dq}, name="add", tag="P0")
    b.annotate(r, inputs={x: static()})
    b.output(r)
    assert state(b) == {}


def test_dequantize_inside_a_list_argument_is_ignored():
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    _q1, dq1 = b.qdq(x)
    cat = b.call("aten.cat.default", [dq, dq1], 0, name="cat", tag="P0")
    b.annotate(cat, inputs={x: static()})
    b.output(cat)
    assert state(b) == {}


def test_first_connected_dequantize_wins():
    b = GraphBuilder()
    x = b.placeholder("x")
    y = b.placeholder("y")
    _, dq_y = b.qdq(y, names=("qy", "dqy"))
    _, dq_a = b.qdq(x, names=("qa", "dqa"))
    _, dq_b = b.qdq(x, names=("qb", "dqb"))
    add = b.call("aten.add.Tensor", dq_y, dq_a, dq_b, name="add", tag="P0")
    b.annotate(add, inputs={x: static()})
    b.output(add)
    assert state(b) == {"dqa": {"quantization_tag": "P0"}}


def test_missing_quantize_above_the_dequantize_writes_nothing_not_even_the_dq():
    b = GraphBuilder()
    x = b.placeholder("x")
    dq = b.call(DQ, x, *QARGS, name="dq")  # connected (walk ends at x) but no q above
    r = b.call("aten.relu.default", dq, name="relu", tag="P0")
    b.annotate(r, inputs={x: static()})
    b.output(r)
    assert state(b) == {}


def test_quantize_that_is_not_call_function_writes_nothing():
    b = GraphBuilder()
    x = b.placeholder("x")
    qm = b.add("call_method", Q, (portmeta.NodeRef(x), *QARGS), name="qm")
    dq = b.call(DQ, qm, *QARGS, name="dq")
    r = b.call("aten.relu.default", dq, name="relu", tag="P0")
    b.annotate(r, inputs={x: static()})
    b.output(r)
    # the walk checks the target alone (connected through qm), but q must be call_function
    assert state(b) == {}


def test_connectivity_walk_checks_the_target_alone():
    b = GraphBuilder()
    x = b.placeholder("x")
    qm = b.add("call_method", Q, (portmeta.NodeRef(x), *QARGS), name="qm")
    _q, dq = b.qdq(qm)
    r = b.call("aten.relu.default", dq, name="relu", tag="P0")
    b.annotate(r, inputs={x: static()})
    b.output(r)
    g = b.build()
    assert walk_to_producer(g, TORCHAO, "relu", dq) == ("dq", "q", "qm", "x")
    assert state(b) == {"dq": {"quantization_tag": "P0"}}


@pytest.mark.parametrize(("cq_op", "connected"), [(CQ, True), (CQ_SYM, False)])
def test_only_choose_qparams_tensor_is_walked_through(cq_op, connected):
    b = GraphBuilder()
    x = b.placeholder("x")
    cq = b.call(cq_op, x, name="cq")
    _q, dq = b.qdq(cq)
    r = b.call("aten.relu.default", dq, name="relu", tag="P0")
    b.annotate(r, inputs={x: static()}, check_inputs=connected)  # the builder's walk agrees
    b.output(r)
    assert state(b) == ({"dq": {"quantization_tag": "P0"}} if connected else {})


def test_chain_of_two_qdq_pairs_connects_and_writes_the_last_dq():
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    _q2, dq2 = b.qdq(dq)
    r = b.call("aten.relu.default", dq2, name="relu", tag="P0")
    b.annotate(r, inputs={x: static()})
    b.output(r)
    p = plan(b.build())
    assert p.final_state() == {"dq_1": {"quantization_tag": "P0"}}
    assert p.deltas[0].path == ("x", "q", "dq", "q_1", "dq_1", "relu")


def test_non_node_arg_of_a_workflow_op_raises_even_when_not_connected():
    b = GraphBuilder()
    x = b.placeholder("x")
    bad_q = b.call(Q, 1.0, *QARGS, name="bad_q")  # args[0] is a constant
    bad_dq = b.call(DQ, bad_q, *QARGS, name="bad_dq")
    _q, dq = b.qdq(x)
    r = b.call("aten.add.Tensor", bad_dq, dq, name="add", tag="P0")
    b.annotate(r, inputs={x: static()})
    b.output(r)
    with pytest.raises(NonNodeQuantArgError) as info:
        plan(b.build())
    assert isinstance(info.value, ValueError)
    assert (info.value.node, info.value.subject) == ("add", "bad_q")
    assert "'bad_q'" in str(info.value) and "'add'" in str(info.value)
    assert "found 1.0" in str(info.value)


def test_workflow_op_without_args_is_missing_argument_error():
    b = GraphBuilder()
    x = b.placeholder("x")
    empty_dq = b.call(DQ, name="empty_dq")
    r = b.call("aten.add.Tensor", empty_dq, x, name="add")
    b.annotate(r, inputs={x: static()})
    b.output(r)
    with pytest.raises(MissingArgumentError) as info:
        plan(b.build())
    assert isinstance(info.value, IndexError)
    assert (info.value.node, info.value.subject) == ("add", "empty_dq")


def test_stale_inputs_never_connect():
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    r = b.call("aten.relu.default", dq, name="relu", tag="P0")
    b.annotate(r, inputs=[QInput(x, static(), is_node=False)])
    b.output(r)
    assert state(b) == {}
    ghost = foreign(b)  # an erased node the annotation still names
    b.annotate(r, inputs={ghost: static()}, check_inputs=False)
    assert state(b) == {}
    g = b.build()
    assert static_input(g, TORCHAO, "relu", x, is_node=False).copies == ()
    assert [c.target for c in static_input(g, TORCHAO, "relu", x).copies] == ["dq"]


def _affine(q_target, dq_target, profile=TORCHAO):
    b = GraphBuilder(profile)
    x = b.placeholder("x")
    q = b.call(q_target, x, name="q")
    dq = b.call(dq_target, q, name="dq")
    r = b.call("aten.relu.default", dq, name="relu", tag="P0")
    b.annotate(r, inputs={x: static()}, check_inputs=False)  # unrecognised ops cut x off
    b.output(r)
    return b


def test_affine_packets_are_recognised_by_torchao_only():
    packets = (Target.packet("torchao.quantize_affine"), Target.packet("torchao.dequantize_affine"))
    assert state(_affine(*packets)) == {"dq": {"quantization_tag": "P0"}}
    assert state(_affine(*packets, LEGACY_TORCH_AO), LEGACY_TORCH_AO) == {}


def test_affine_overloads_are_not_the_packets():
    overloads = (
        Target.overload("torchao.quantize_affine.default"),
        Target.overload("torchao.dequantize_affine.default"),
    )
    assert state(_affine(*overloads)) == {}


def test_nodes_named_like_operators_never_match():
    b = GraphBuilder()
    # a placeholder whose target string is a quantize op: the walk must stop at it
    x = b.placeholder(Q)
    q, dq = b.qdq(x)
    fake_dq = b.call(Target.named(DQ), q, name="fake_dq")  # a string target, not the operator
    r = b.call("aten.add.Tensor", fake_dq, dq, name="add", tag="P0")
    b.annotate(r, inputs={x: static()})
    b.output(r)
    g = b.build()
    assert portmeta.record(g, x).target == Target.named(Q)
    assert plan(g).final_state() == {"dq": {"quantization_tag": "P0"}}
    w = GraphBuilder()
    attr = w.get_attr("w", attr=Q)
    _wq, wdq = w.qdq(attr)
    c = w.call("aten.relu.default", wdq, name="c", tag="C")
    w.annotate(c, inputs={attr: static()})
    w.output(c)
    assert portmeta.record(w.build(), "w").target == Target.named(Q)
    assert state(w) == {"dq": {"quantization_tag": "C"}}


def test_dequantize_args_after_the_connected_one_are_not_walked():
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    bad_q = b.call(Q, 1.0, *QARGS, name="bad_q")
    bad_dq = b.call(DQ, bad_q, *QARGS, name="bad_dq")
    r = b.call("aten.add.Tensor", dq, bad_dq, name="add", tag="P0")
    b.annotate(r, inputs={x: static()})
    b.output(r)
    assert state(b) == {"dq": {"quantization_tag": "P0"}}
