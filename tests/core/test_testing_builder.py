"""GraphBuilder.annotate refuses an input that is not one of the node's inputs (the rules would
skip it silently), names the node's real inputs, and builds such an annotation when told to."""

from __future__ import annotations

import pytest

import portmeta
from portmeta import GraphBuildError, QInput
from portmeta.testing import GraphBuilder, dynamic, static


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
    b.annotate(n["linear"], inputs={"ghost": static()}, check_inputs=False)  # an erased input
    # entries that are not nodes at all are built as given
    b.annotate(n["linear"], inputs=[QInput("'x'", static(), is_node=False)])


def test_inputs_of_follows_workflow_ops_and_dynamic_chains():
    b = GraphBuilder()
    x = b.placeholder("x")
    y = b.placeholder("y")
    chain = b.dynamic_qdq(x)
    _q, dq = b.qdq(y)
    _q2, dq2 = b.qdq(dq)  # two pairs in a row: the walk goes through both
    add = b.call("aten.add.Tensor", chain.dq, dq2, y, name="add")
    assert b.inputs_of(add) == {"x": ("q", "dq"), "y": ("q_1", "dq_1", "q_2", "dq_2")}
    # every node on those walks may be named (a dynamic input may name a dequantize)
    b.annotate(add, inputs={x: dynamic(), dq: dynamic(), y: static()})
    with pytest.raises(GraphBuildError, match="'choose_qparams' is not an input of 'add'"):
        b.annotate(add, inputs={chain.choose_qparams: dynamic()})


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
