"""The snapshot's data layout: directly assembled adjacency read through networkx's own dicts,
the lazy fingerprint and its canonical lines, fingerprint_after, plan_writes, Target interning."""

from __future__ import annotations

import copy
import functools
import json
import pickle
from fractions import Fraction

import networkx as nx
import pytest
from hypothesis import given, settings

import portmeta
from portmeta import NodeRecord, NodeRef, Opaque, Target, build_graph
from portmeta.graph import (
    canonical_form,
    canonical_line,
    canonical_lines,
    digest,
    fingerprint_v1,
    graph_from_dict,
    graph_to_dict,
)
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
    for other in (g.copy(), copy.deepcopy(g), nx.DiGraph(g)):
        assert list(other.edges) == list(g.edges)
        assert [r.name for r in portmeta.records(other)] == list(g)
    assert sorted(g.reverse().edges) == sorted((v, u) for u, v in g.edges)
    assert {frozenset(e) for e in g.to_undirected().edges} == {frozenset(e) for e in g.edges}
    with pytest.raises(nx.NetworkXError, match="Frozen"):
        g.add_edge("x", "relu")


def _small() -> portmeta.graph.Snapshot:
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    b.output(b.call("aten.relu.default", dq, name="relu"))
    return b.build()


def test_snapshots_survive_pickling():
    g = _small()
    again = pickle.loads(pickle.dumps(g))
    assert portmeta.fingerprint(again) == portmeta.fingerprint(g)
    assert list(portmeta.records(again)) == list(portmeta.records(g))
    assert portmeta.users(g, "nowhere") == ()
    with pytest.raises(KeyError):
        portmeta.record(g, "nowhere")


def test_each_edge_has_its_own_attribute_dict():
    g, other = _small(), _small()
    nx.set_edge_attributes(g, {("x", "q"): "red"}, "color")  # attribute dicts stay writable
    assert [e for e, c in nx.get_edge_attributes(g, "color").items()] == [("x", "q")]
    assert nx.get_edge_attributes(other, "color") == {}
    assert nx.get_edge_attributes(_small(), "color") == {}
    assert g.succ["x"]["q"] is g.pred["q"]["x"]


def test_derived_graphs_answer_for_their_own_nodes():
    g = _small()
    sub = g.subgraph(["x", "q"])
    assert sorted(r.name for r in portmeta.records(sub)) == ["q", "x"]
    assert portmeta.users(sub, "q") == () and portmeta.users(g, "q") == ("dq",)
    with pytest.raises(KeyError):
        portmeta.record(sub, "dq")
    renamed = nx.relabel_nodes(g, {"x": "X"})
    assert portmeta.record(renamed, "X").name == "x"  # the record keeps the node's own name
    copy_ = g.copy()
    copy_.remove_node("relu")
    assert "relu" not in [r.name for r in portmeta.records(copy_)]


def test_mutable_metadata_is_fingerprinted_as_read():
    stack = {"L__self__": ("m", "M")}
    b = GraphBuilder()
    b.output(b.placeholder("x", meta={"nn_module_stack": stack}))
    g = b.build()
    assert "fingerprint" in g.graph  # taken at build time: the dict could change under it
    before = portmeta.fingerprint(g)
    stack["later"] = ("n", "N")
    assert portmeta.fingerprint(g) == before
    # immutable values wait for the first use
    assert "fingerprint" not in _small().graph


@pytest.mark.parametrize(
    "kwargs",
    [
        {"meta": {1: "a"}},
        {"meta": (("k", 1), ("k", 2))},
        {"kwargs": {1: 2}},
        {"args": (functools.reduce(lambda inner, _: [inner], range(3000), []),)},
    ],
    ids=["int-meta-key", "repeated-meta-key", "int-kwarg-key", "3000-deep-args"],
)
def test_hand_built_records_fingerprint_like_their_json_round_trip(kwargs):
    rec = NodeRecord("n", "call_function", Target.overload("aten.relu.default"), **kwargs)
    g = build_graph([rec])
    loaded = graph_from_dict(json.loads(json.dumps(graph_to_dict(g))))
    assert portmeta.fingerprint(loaded) == portmeta.fingerprint(g)
    assert dict(portmeta.record(loaded, "n").meta) == dict(rec.meta)


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
    assert g.graph["fingerprint"] == value == canonical_form(g).fingerprint()
    assert fingerprint_v1(g) == digest(canonical_lines(g), None)
    assert "fingerprint" in g.graph and len(g.graph) == 3  # the v1 value is not kept


def test_canonical_line_keeps_types_apart():  # scheme v1 (scheme v2: test_fingerprint.py)
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
    assert fingerprint_after(g, deltas, canonical_form(g)) == portmeta.fingerprint(rebuilt)
    # with the v1 lines, the v1 fingerprint (a plan saved before v2, applied)
    assert fingerprint_after(g, deltas, canonical_lines(g)) == fingerprint_v1(rebuilt)
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
    with pytest.raises(TypeError, match="foreign must be True or False"):
        NodeRecord("x", "placeholder", Target.named("x"), foreign=1)
    with pytest.raises(TypeError, match="meta_owner must be a node name"):
        NodeRecord("x", "placeholder", Target.named("x"), meta_owner=3)


def test_builder_names_like_fx_and_counts_nodes():
    b = GraphBuilder()
    x = b.placeholder("x")
    names = [b.qdq(x)[0] for _ in range(3)]
    assert names == ["q", "q_1", "q_2"]
    assert b.call("aten.relu.default", x, name="q_4") == "q_4"
    assert [b.qdq(x)[0] for _ in range(2)] == ["q_3", "q_5"]
    assert len(b) == 1 + 2 * 5 + 1
