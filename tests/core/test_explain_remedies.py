"""explain says what would make a node receive metadata, and doing what it says works; it
names what a node is in words ("aten.relu.default is not one of the ops the pass writes", not
"this node is call_function"), and an activation's quantize is not explained with weights."""

from __future__ import annotations

import portmeta
from portmeta.testing import GraphBuilder, dynamic, static


def _remedy(graph, node: str) -> str:
    lines = [ln for ln in portmeta.explain(graph, node).splitlines() if "to receive" in ln]
    assert len(lines) == 1, portmeta.explain(graph, node)
    return lines[0].split("to receive metadata: ", 1)[1]


def _written(graph, node: str) -> dict:
    return portmeta.plan(graph).final_state().get(node, {})


def _activation(relu_output: bool = False, relu_input: bool = False):
    """x -> q -> dq -> relu -> out_q -> out_dq -> output."""
    b = GraphBuilder()
    x = b.placeholder("x", tag="X")
    _q, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu", tag="R")
    b.qdq(relu, names=("out_q", "out_dq"))
    if relu_output or relu_input:
        b.annotate(
            relu,
            inputs={x: static()} if relu_input else None,
            output=static() if relu_output else None,
        )
    b.output("out_dq")
    return b.build()


def _weight(annotated: bool = False):
    """w -> permute -> w_q -> w_dq -> linear(x, w_dq)."""
    b = GraphBuilder()
    x = b.placeholder("x")
    w = b.get_attr("w", tag="W")
    p = b.view(w, name="permute")
    _wq, wdq = b.qdq(p, names=("w_q", "w_dq"))
    lin = b.call("aten.linear.default", x, wdq, name="linear", tag="L")
    if annotated:
        b.annotate(lin, inputs={p: static()})
    b.output(lin)
    return b.build()


def _dynamic(annotated: bool = False):
    b = GraphBuilder()
    x = b.placeholder("x")
    chain = b.dynamic_qdq(x)
    lin = b.call("aten.linear.default", chain.dq, name="linear", tag="L")
    if annotated:
        b.annotate(lin, inputs={x: dynamic()})
    b.output(lin)
    return b.build()


def test_an_activation_quantize_is_told_to_annotate_its_producer():
    g = _activation(relu_input=True)
    text = portmeta.explain(g, "out_q")
    assert "weight" not in text and "get_attr" not in text
    assert _remedy(g, "out_q") == (
        "annotate 'relu', the node it quantizes, with an output spec; as the last user of "
        "'relu' that is not a sym-size node it then receives its metadata"
    )
    assert _written(g, "out_q") == {}
    assert _written(_activation(relu_input=True, relu_output=True), "out_q") == {
        "quantization_tag": "R"
    }


def _two_users(quantize_last: bool, annotated: bool = False):
    """x -> h, h read by q (-> dq -> sig) and by neg; ``quantize_last`` puts q after neg."""
    b = GraphBuilder()
    x = b.placeholder("x")
    h = b.call("aten.relu.default", x, name="h", tag="H")
    if quantize_last:
        b.call("aten.neg.default", h, name="neg")
    _q, dq = b.qdq(h)
    if not quantize_last:
        b.call("aten.neg.default", h, name="neg")
    b.call("aten.sigmoid.default", dq, name="sig")
    if annotated:
        b.annotate(h, output=static())
    b.output("sig", "neg")
    return b.build()


def test_a_quantize_that_is_not_its_producers_last_user_is_told_nothing_can():
    g = _two_users(quantize_last=False)
    assert _remedy(g, "q") == (
        "nothing can while 'neg' is the last user of 'h' that is not a sym-size node: "
        "an output spec on 'h' writes nothing, as it is not a quantize"
    )
    assert _written(_two_users(quantize_last=False, annotated=True), "q") == {}  # it is so
    # with the quantize last, the advice to annotate 'h' is given, and following it works
    g = _two_users(quantize_last=True)
    assert _remedy(g, "q").startswith("annotate 'h', the node it quantizes, with an output spec")
    assert _written(_two_users(quantize_last=True, annotated=True), "q") == {
        "quantization_tag": "H"
    }


def test_a_quantize_behind_another_quantize_of_the_same_producer_is_told_which_one_wins():
    b = GraphBuilder()
    x = b.placeholder("x")
    h = b.call("aten.relu.default", x, name="h", tag="H")
    b.qdq(h, names=("q_a", "dq_a"))
    b.qdq(h, names=("q_b", "dq_b"))
    b.output("dq_a", "dq_b")
    assert _remedy(b.build(), "q_a") == (
        "nothing can while 'q_b' is the last user of 'h' that is not a sym-size node: "
        "an output spec on 'h' writes that quantize instead"
    )
    b.annotate(h, output=static())
    assert _written(b.build(), "q_a") == {}
    assert _written(b.build(), "q_b") == {"quantization_tag": "H"}


def test_a_dequantize_is_told_which_annotation_to_give_which_spec():
    g = _activation()
    assert _remedy(g, "dq") == (
        "give 'x', the node it dequantizes, a static spec in the annotation of 'relu', "
        "whose metadata it then receives"
    )
    assert _written(g, "dq") == {}
    assert _written(_activation(relu_input=True), "dq") == {"quantization_tag": "R"}


def test_a_weights_quantize_and_view_ops_are_told_the_spec_their_reader_needs():
    g = _weight()
    reason = "it quantizes weight 'w', and no annotated node that reads its dequantize gives"
    assert reason in portmeta.explain(g, "w_q")
    assert _remedy(g, "w_q") == (
        "give 'permute', the node it quantizes, a static spec in the annotation of a node that "
        "reads 'w_dq'; it then receives the metadata of weight 'w'"
    )
    assert _remedy(g, "permute") == (
        "give 'permute' a static spec in the annotation of a node that reads the dequantize of "
        "'w_q'; it then receives the metadata of weight 'w'"
    )
    done = _weight(annotated=True)
    assert _written(done, "w_q") == _written(done, "permute") == {"quantization_tag": "W"}


def test_a_choose_qparams_is_told_to_give_its_input_a_dynamic_spec():
    g = _dynamic()
    assert _remedy(g, "choose_qparams").startswith("give 'x' a dynamic spec in the annotation")
    assert "choose_qparams search reaches its chain" in portmeta.explain(g, "q")
    assert _written(_dynamic(annotated=True), "choose_qparams") == {"quantization_tag": "L"}


def test_nodes_the_pass_never_writes_say_so_in_words():
    g = _activation(relu_input=True)
    relu = portmeta.explain(g, "relu")
    assert "this node is" not in relu
    assert relu.splitlines()[0] == "node 'relu': call_function aten.relu.default (annotated op)"
    assert "aten.relu.default is not one of the ops the pass writes: quantize, dequantize" in relu
    assert _remedy(g, "relu") == (
        "nothing can; as an annotated node it gives its own metadata to q/dq nodes"
    )
    x = portmeta.explain(g, "x")
    assert x.splitlines()[0] == "node 'x': placeholder x (graph input)"
    assert "the pass never writes a graph input (placeholder)" in x
    assert _remedy(g, "x") == "nothing can"
    assert _remedy(_weight(), "w").startswith("nothing can; a weight gives its own metadata")
    assert _remedy(_activation(), "relu").startswith("nothing can; annotated, it would give")


def test_a_node_that_receives_metadata_has_no_remedy_line():
    g = _activation(relu_input=True)
    assert "to receive metadata" not in portmeta.explain(g, "dq")


TRACE = (
    'File "/tmp/run/adapter.py", line 3, in call\n    g()\n'
    'File "/tmp/run/demo.py", line 70, in forward\n    x = x.view(x.size(0), -1)'
)


def _scaled(q_trace: bool = True):
    """x -> q -> dq -> relu, the q/dq reading scale and zero point get_attrs; traces on relu/q."""
    b = GraphBuilder()
    x = b.placeholder("x")
    scale, zp = b.get_attr("_scale_0"), b.get_attr("_zero_point_0")
    q = b.call("quantized_decomposed.quantize_per_tensor.tensor", x, scale, zp, -128, 127, name="q")
    b.call("quantized_decomposed.dequantize_per_tensor.tensor", q, scale, zp, -128, 127, name="dq")
    relu = b.call("aten.relu.default", "dq", name="relu", tag="R", stack_trace=TRACE)
    b.annotate(relu, inputs={x: static()})
    if q_trace:
        b.set_meta(q, stack_trace=TRACE)
    b.output(relu)
    return b.build()


def test_values_explain_shows_are_stack_traces_in_their_short_form_as_plan_shows_them():
    g = _scaled()
    assert "  stack_trace: demo.py:70 in forward" in portmeta.explain(g, "dq").splitlines()
    assert "keeps its own demo.py:70 in forward)" in portmeta.explain(g, "q")
    for node in ("dq", "q"):
        assert "File " not in portmeta.explain(g, node)


def test_a_get_attr_is_named_by_what_it_is():
    g = _scaled()
    text = portmeta.explain(g, "_scale_0")
    assert text.splitlines()[0] == (
        "node '_scale_0': get_attr _scale_0 (quantization parameter (get_attr))"
    )
    assert "weight" not in text.replace("between a weight and its quantize", "")
    assert _remedy(g, "_scale_0").startswith("nothing can: the pass writes only quantize")
    assert "(weight (get_attr))" in portmeta.explain(_weight(), "w").splitlines()[0]
    b = GraphBuilder()
    b.output(b.get_attr("table"))
    assert "(attribute (get_attr))" in portmeta.explain(b.build(), "table").splitlines()[0]
