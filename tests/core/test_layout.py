"""The snapshot's data layout: directly assembled adjacency, the record index, the lazy
fingerprint and its canonical lines, fingerprint_after, plan_writes, Target interning."""

from __future__ import annotations

import copy
import json
import pickle
from fractions import Fraction

import networkx as nx
import pytest
from hypothesis import given, settings

import portmeta
from portmeta import NodeRecord, NodeRef, Opaque, Target, build_graph
from portmeta.graph import canonical_line, canonical_lines, digest, graph_from_dict, graph_to_dict
from portmeta.plan import fingerprint_after, plan_writes
from portmeta.testing import GraphBuilder, static
from portmeta.testing.strategies import graphs


def _reference_graph(g: portmeta.graph.Snapshot) -> nx.DiGraph:
    """The same graph through networkx's public API, for comparison."""
    ref: nx.DiGraph = nx.DiGraph()
    for rec in portmeta.records(g):
        ref.add_node(rec.name, record=rec)
    for rec in portmeta.records(g):
        ref.add_edges_from((rec.name, user) for user in rec.users)
    return ref


@settings(max_examples=30)
@given(graphs(max_blocks=6))
def test_assembled_adjacency_equals_networkx_built_one(g):
    ref = _reference_graph(g)
    assert list(g.nodes) == list(ref.nodes)
    assert list(g.edges) == list(ref.edges)
    for name in g:
        assert list(g.succ[name]) == list(ref.succ[name])  # users order
        assert list(g.pred[name]) == list(ref.pred[name])
        assert g.nodes[name]["record"] is portmeta.record(g, name)
        assert portmeta.users(g, name) == tuple(g.succ[name])
    assert nx.is_frozen(g)
    again = nx.DiGraph(g)  # networkx's own copy of the assembled graph
    assert again.adj == ref.adj and dict(again.nodes(data=True)) == dict(ref.nodes(data=True))
    assert again.graph == g.graph


def test_snapshot_supports_networkx_algorithms_and_copies():
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    b.output(b.call("aten.relu.default", dq, name="relu"))
    g = b.build()
    assert list(nx.topological_sort(g)) == ["x", "q", "dq", "relu", "output"]
    assert nx.descendants(g, "q") == {"dq", "relu", "output"}
    assert g.edges["x", "q"] == {}
    for other in (g.copy(), copy.deepcopy(g), g.reverse(), nx.DiGraph(g)):
        assert sorted(other.edges) == sorted(g.edges) or other.is_directed()
    with pytest.raises(nx.NetworkXError, match="Frozen"):
        g.add_edge("x", "relu")


def test_record_index_is_in_graph_order_and_survives_pickling():
    b = GraphBuilder()
    b.output(b.placeholder("x"))
    g = b.build()
    assert list(g.graph["records"]) == ["x", "output"]
    again = pickle.loads(pickle.dumps(g))
    assert portmeta.fingerprint(again) == portmeta.fingerprint(g)
    assert portmeta.record(again, "x") == portmeta.record(g, "x")
    assert portmeta.users(g, "nowhere") == ()
    with pytest.raises(KeyError):
        portmeta.record(g, "nowhere")


def test_unchecked_build_gives_the_same_snapshot_for_valid_records():
    b = GraphBuilder()
    x = b.placeholder("x", tag="T")
    _q, dq = b.qdq(x)
    y = b.call("aten.relu.default", dq, name="relu", tag="P")
    b.annotate(y, inputs={x: static()})
    b.output(y)
    recs = b.records()
    checked = build_graph(recs, meta_keys=("quantization_tag",))
    unchecked = build_graph(recs, meta_keys=("quantization_tag",), check=False)
    assert list(unchecked.edges) == list(checked.edges)
    assert portmeta.fingerprint(unchecked) == portmeta.fingerprint(checked)
    assert portmeta.annotated_nodes(unchecked) == ("relu",)
    # check=False trusts its producer: inconsistent records are not caught
    bad = NodeRecord("x", "placeholder", Target.named("x"), users=())
    out = NodeRecord("out", "output", Target.named("output"), args=((NodeRef("x"),),))
    assert list(build_graph([bad, out], check=False).edges) == []
    with pytest.raises(portmeta.GraphBuildError):
        build_graph([bad, out])


def test_fingerprint_is_computed_once_and_kept():
    b = GraphBuilder()
    b.output(b.placeholder("x"))
    g = b.build()
    assert "fingerprint" not in g.graph
    value = portmeta.fingerprint(g)
    assert g.graph["fingerprint"] == value == digest(canonical_lines(g), None)
    assert len(value) == 64 and int(value, 16) >= 0


def test_canonical_line_keeps_types_apart():
    def line(*args):
        return canonical_line(NodeRecord("n", "call_function", Target.overload("a.b.c"), args))

    variants = [
        line(NodeRef("x")),
        line("x"),
        line(Opaque("builtins.str", "'x'")),
        line([1]),
        line((1,)),
        line(1),
        line(1.0),
        line(True),
        line({"k": 1}),
        line({1: 1}),
    ]
    assert len(set(variants)) == len(variants)


def test_constants_the_codec_cannot_keep_fingerprint_as_loaded():
    b = GraphBuilder()
    x = b.placeholder("x")
    b.output(b.call("aten.add.Tensor", x, Fraction(1, 3), name="add", meta={"tag": {1, 2}}))
    g = b.build()
    loaded = graph_from_dict(json.loads(json.dumps(graph_to_dict(g))))
    assert portmeta.record(loaded, "add").args[1] == Opaque("fractions.Fraction", "Fraction(1, 3)")
    assert portmeta.fingerprint(loaded) == portmeta.fingerprint(g)


@settings(max_examples=40)
@given(graphs(max_blocks=6))
def test_fingerprint_after_is_the_fingerprint_of_the_written_graph(g):
    deltas, _ = plan_writes(g)
    after = portmeta.final_meta(g, portmeta.Plan(deltas, (), "", portmeta.TORCHAO))
    keys = portmeta.graph.meta_keys(g)
    rebuilt = build_graph(
        [
            NodeRecord(
                rec.name,
                rec.op,
                rec.target,
                rec.args,
                rec.kwargs,
                rec.users,
                tuple(after[rec.name].items()),
                rec.annotation,
                rec.foreign,
                rec.meta_owner,
            )
            for rec in portmeta.records(g)
        ],
        meta_keys=keys,
        check=False,
    )
    assert fingerprint_after(g, deltas) == portmeta.fingerprint(rebuilt)
    assert fingerprint_after(g, deltas, canonical_lines(g)) == portmeta.fingerprint(rebuilt)
    if not deltas:
        assert fingerprint_after(g, deltas) == portmeta.fingerprint(g)


@settings(max_examples=40)
@given(graphs(max_blocks=6, failing=True))
def test_plan_is_plan_writes_plus_the_fingerprint(g):
    try:
        deltas, diagnostics = plan_writes(g)
    except portmeta.PlanError as exc:
        with pytest.raises(type(exc)):
            portmeta.plan(g)
        return
    p = portmeta.plan(g)
    assert (p.deltas, p.diagnostics) == (deltas, diagnostics)
    assert p.fingerprint == portmeta.fingerprint(g)


def test_operator_targets_are_interned_names_and_callables_are_not():
    assert Target.overload("aten.relu.default") is Target.of("aten.relu.default", "overload")
    assert Target.packet("torchao.quantize_affine") is Target.packet("torchao.quantize_affine")
    assert Target.function("operator.getitem") == Target.function("operator.getitem")
    assert Target.named("x") == Target.named("x")
    assert Target.named("x") is not Target.named("x")
    assert Target.packet("aten.relu") != Target.overload("aten.relu")
    assert hash(Target.named("x")) == hash(Target.named("x"))


def test_records_still_reject_wrong_field_types_with_the_node_named():
    with pytest.raises(TypeError, match="node 'x': target must be a Target"):
        NodeRecord("x", "placeholder", "x")
    with pytest.raises(ValueError, match="node 'x': op must not be empty"):
        NodeRecord("x", "", Target.named("x"))
    with pytest.raises(TypeError, match="annotation must be an Annotation"):
        NodeRecord("x", "placeholder", Target.named("x"), annotation={"x": None})
    with pytest.raises(TypeError, match="QSpec is_dynamic"):
        portmeta.QSpec("QuantizationSpec", is_dynamic=1)
    with pytest.raises(TypeError, match="qspec must be a QSpec"):
        portmeta.QInput("x", "static")
    with pytest.raises(TypeError, match="Annotation output"):
        portmeta.Annotation({}, output="static")


def test_builder_names_like_fx_and_counts_nodes():
    b = GraphBuilder()
    x = b.placeholder("x")
    names = [b.qdq(x)[0] for _ in range(3)]
    assert names == ["q", "q_1", "q_2"]
    assert b.call("aten.relu.default", x, name="q_4") == "q_4"
    assert [b.qdq(x)[0] for _ in range(2)] == ["q_3", "q_5"]
    assert len(b) == 1 + 2 * 5 + 1
