"""GraphBuilder.annotate refuses an input that is not one of the node's inputs (the rules would
skip it silently), names the node's real inputs, and builds such an annotation when told to."""

from __future__ import annotations

import pytest

import portmeta
from portmeta import GraphBuildError, QInput
from portmeta.testing import GraphBuilder, dynamic, static

from .helpers import foreign


def _weight_behind_a_permute() -> tuple[GraphBuilder, dict[str, str]]:
    """x -> q -> dq -> linear <- dq_1 <- q_1 <- permute <- w (the issue's example)."""
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    w = b.get_attr("w", tag="W")
    p = b.view(w, name="permute")
    _wq, wdq = b.qdq(p, per_channel=True)
    lin = b.call("aten.linear.default", dq, wdq, name="linear", tag="L")
    b.output(lin)
    return b, {"x": x, "w": w, "permute": p, "linear": lin}


def test_an_input_above_a_view_op_is_refused_naming_the_real_inputs():
    b, n = _weight_behind_a_permute()
    with pytest.raises(GraphBuildError) as info:
        b.annotate(n["linear"], inputs={n["x"]: static(), n["w"]: static()})
    assert str(info.value) == (
        "annotate('linear'): 'w' is not an input of 'linear'; its inputs are "
        "'x' (read through q -> dq), 'permute' (read through q_1 -> dq_1); "
        "pass check_inputs=False to build such an annotation on purpose"
    )
    assert portmeta.record(b.build(), "linear").annotation is None  # nothing was set


def test_the_real_inputs_are_accepted_and_plan_the_weight():
    b, n = _weight_behind_a_permute()
    b.annotate(n["linear"], inputs={n["x"]: static(), n["permute"]: static()})
    state = portmeta.plan(b.build()).final_state()
    assert state["q_1"] == {"quantization_tag": "W"}  # the weight's chain is ported
    assert state["permute"] == {"quantization_tag": "W"}


def test_check_inputs_false_builds_the_mistake_on_purpose():
    b, n = _weight_behind_a_permute()
    b.annotate(n["linear"], inputs={n["w"]: static()}, check_inputs=False)
    g = b.build()
    assert [i.node for i in portmeta.record(g, "linear").annotation.inputs] == ["w"]
    assert portmeta.plan(g).deltas == ()  # the silent no-op the check is there to catch


def test_a_name_not_in_the_graph_is_refused_unless_told():
    b, n = _weight_behind_a_permute()
    with pytest.raises(GraphBuildError, match=r"'ghost' is not a node of this graph; its inputs"):
        b.annotate(n["linear"], inputs={"ghost": static()})
    b.annotate(n["linear"], inputs={"ghost": static()}, check_inputs=False)
    # told, annotate takes it; build refuses a name that is no node of the snapshot
    with pytest.raises(
        GraphBuildError,
        match="node 'linear': annotation input 'ghost' is not a node of the graph; name one of "
        "its nodes",
    ):
        b.build()
    # an erased input is a foreign node, as the FX reader records it
    ghost = foreign(b)
    b.annotate(n["linear"], inputs={ghost: static()}, check_inputs=False)
    assert [i.node for i in portmeta.record(b.build(), "linear").annotation.inputs] == [ghost]
    # entries that are not nodes at all are built as given
    b.annotate(n["linear"], inputs=[QInput("'x'", static(), is_node=False)])
    assert portmeta.record(b.build(), "linear").annotation.inputs[0].is_node is False


def test_inputs_of_follows_workflow_ops_and_dynamic_chains():
    b = GraphBuilder()
    x = b.placeholder("x")
    y = b.placeholder("y")
    chain = b.dynamic_qdq(x)
    _q, dq = b.qdq(y)
    _q2, dq2 = b.qdq(dq)  # two pairs in a row: the walk goes through both
    add = b.call("aten.add.Tensor", chain.dq, dq2, y, name="add")
    assert b.inputs_of(add) == {"x": ("q", "dq"), "y": ("q_1", "dq_1", "q_2", "dq_2")}
    b.annotate(add, inputs={x: dynamic(), y: static()})  # the walk ends are the inputs
    with pytest.raises(GraphBuildError, match="'choose_qparams' is not an input of 'add'"):
        b.annotate(add, inputs={chain.choose_qparams: dynamic()})
    # a node on a walk is refused too, static or dynamic, with the name to use instead
    with pytest.raises(GraphBuildError, match="name 'y', the node before q_1 -> dq_1 -> q_2"):
        b.annotate(add, inputs={dq: static()})
    with pytest.raises(GraphBuildError, match="name 'x', the node before q -> dq,"):
        b.annotate(add, inputs={chain.dq: dynamic()})


def _relu_after_a_pair() -> tuple[GraphBuilder, str, str, str, str]:
    """x -> q -> dq -> relu, relu tagged."""
    b = GraphBuilder()
    x = b.placeholder("x")
    q, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu", tag="R")
    b.output(relu)
    return b, x, q, dq, relu


@pytest.mark.parametrize("spec", [static(), dynamic()], ids=["static", "dynamic"])
@pytest.mark.parametrize("via", ["q", "dq"])
def test_a_quantize_or_dequantize_on_the_way_is_refused_with_the_input_to_name(spec, via):
    b, x, _q, _dq, relu = _relu_after_a_pair()
    with pytest.raises(GraphBuildError) as info:
        b.annotate(relu, inputs={via: spec})
    assert str(info.value) == (
        f"annotate('relu'): {via!r} is not an input of 'relu' but a node on the way to one; "
        "name 'x', the node before q -> dq, as the quantizer saw it before q/dq nodes were "
        "put in between; pass check_inputs=False to build such an annotation on purpose"
    )
    assert portmeta.record(b.build(), relu).annotation is None  # nothing was set
    # built on purpose, the annotation plans nothing for either rule: that is why it is refused
    b.annotate(relu, inputs={via: static()}, check_inputs=False)
    assert portmeta.plan(b.build()).deltas == ()
    b.annotate(relu, inputs={x: static()})  # the name the hint gives does plan the dq
    assert portmeta.plan(b.build()).final_state() == {"dq": {"quantization_tag": "R"}}


def test_the_check_uses_the_builders_profile():
    from portmeta import LEGACY_TORCH_AO, Target

    for profile, accepted in ((portmeta.TORCHAO, True), (LEGACY_TORCH_AO, False)):
        b = GraphBuilder(profile)
        x = b.placeholder("x")
        q = b.call(Target.packet("torchao.quantize_affine"), x, name="q")
        dq = b.call(Target.packet("torchao.dequantize_affine"), q, name="dq")
        relu = b.call("aten.relu.default", dq, name="relu")
        if accepted:
            b.annotate(relu, inputs={x: static()})
        else:  # the legacy pass does not know the affine ops: x is not reached
            with pytest.raises(GraphBuildError, match="its inputs are 'dq'"):
                b.annotate(relu, inputs={x: static()})
