"""The snapshot's data layout: the adjacency networkx builds from the records' users, read
through networkx's API; the checked and unchecked builds; the fingerprint, taken on first use
and kept; and the planner's plain data: plan_writes, last_writes, final_meta, collect."""

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
from portmeta import NodeRecord, NodeRef, Opaque, Snapshot, Target, build_graph
from portmeta.io import graph_from_dict, graph_to_dict
from portmeta.plan import MetaDelta, last_writes, plan_writes
from portmeta.snapshot import meta_keys
from portmeta.testing import GraphBuilder, dynamic, static
from portmeta.testing.strategies import graphs


def _reference_graph(g: Snapshot) -> nx.DiGraph:
    """The same graph through networkx's public API, for comparison."""
    ref: nx.DiGraph = nx.DiGraph()
    for rec in portmeta.records(g):
        ref.add_node(rec.name, record=rec)
    for rec in portmeta.records(g):
        ref.add_edges_from((rec.name, user) for user in rec.users)
    return ref


@settings(max_examples=30)
@given(graphs(max_blocks=6))
def test_adjacency_equals_the_one_networkx_builds_from_the_records(g):
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


def _small() -> Snapshot:
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
    assert portmeta.users(g, "q") == ("dq",)
    with pytest.raises(KeyError):
        portmeta.record(sub, "dq")
    renamed = nx.relabel_nodes(g, {"x": "X"})
    assert portmeta.record(renamed, "X").name == "x"  # the record keeps the node's own name
    copy_ = g.copy()
    copy_.remove_node("relu")
    assert "relu" not in [r.name for r in portmeta.records(copy_)]


def test_derived_graphs_name_only_their_own_nodes_as_users():
    g = _small()
    assert portmeta.users(g.subgraph(["x", "q"]), "q") == ()
    copy_ = g.copy()
    copy_.remove_node("relu")
    assert portmeta.users(copy_, "dq") == ()


def test_the_fingerprint_is_taken_on_first_use_and_kept():
    # the snapshot holds metadata values as given: a value changed in place before the
    # fingerprint is first asked for counts, one changed after does not
    stack = {"L__self__": ("m", "M")}
    b = GraphBuilder()
    b.output(b.placeholder("x", meta={"nn_module_stack": stack}))
    g = b.build()
    assert "fingerprint" not in g.graph
    unchanged = portmeta.fingerprint(b.build())
    stack["later"] = ("n", "N")
    first = portmeta.fingerprint(g)
    assert first != unchanged and g.graph["fingerprint"] == first
    stack["even later"] = ("o", "O")
    assert portmeta.fingerprint(g) == first
    assert portmeta.fingerprint(b.build()) != first  # a new snapshot sees the value as it is now


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
    rec = NodeRecord.of("n", "call_function", Target.overload("aten.relu.default"), **kwargs)
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
    assert g.graph["fingerprint"] == value
    assert portmeta.fingerprint(g) is value  # kept, not computed again
    assert sorted(g.graph) == ["annotated", "fingerprint", "meta_keys"]


def test_constants_the_codec_cannot_keep_fingerprint_as_loaded():
    b = GraphBuilder()
    x = b.placeholder("x")
    b.output(b.call("aten.add.Tensor", x, Fraction(1, 3), name="add", meta={"tag": {1, 2}}))
    g = b.build()
    loaded = graph_from_dict(json.loads(json.dumps(graph_to_dict(g))))
    assert portmeta.record(loaded, "add").args[1] == Opaque("fractions.Fraction", "Fraction(1, 3)")
    assert portmeta.fingerprint(loaded) == portmeta.fingerprint(g)


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


def test_builder_names_like_fx_and_counts_nodes():
    b = GraphBuilder()
    x = b.placeholder("x")
    names = [b.qdq(x)[0] for _ in range(3)]
    assert names == ["q", "q_1", "q_2"]
    assert b.call("aten.relu.default", x, name="q_4") == "q_4"
    assert [b.qdq(x)[0] for _ in range(2)] == ["q_3", "q_5"]
    assert len(b) == 1 + 2 * 5 + 1


@settings(max_examples=40)
@given(graphs(max_blocks=6))
def test_an_unchecked_build_gives_the_checked_snapshot_and_plan(g):
    # what from_fx does: records of the right types, built with check=False
    unchecked = build_graph(
        portmeta.records(g), meta_keys=meta_keys(g), allow_cycles=True, check=False
    )
    assert [(u, list(unchecked.succ[u])) for u in unchecked] == [(u, list(g.succ[u])) for u in g]
    assert [(u, list(unchecked.pred[u])) for u in unchecked] == [(u, list(g.pred[u])) for u in g]
    assert list(unchecked.edges) == list(g.edges)
    assert nx.is_frozen(unchecked)
    assert plan_writes(unchecked, errors="collect") == plan_writes(g, errors="collect")
    assert portmeta.fingerprint(unchecked) == portmeta.fingerprint(g)


# ------------------------------------------------------------------- the planner's plain data


@settings(max_examples=40)
@given(graphs(max_blocks=6))
def test_final_meta_takes_a_plan_or_its_writes(g):
    p = portmeta.plan(g)
    after = portmeta.final_meta(g, p)
    assert portmeta.final_meta(g, p.deltas) == after
    assert portmeta.final_meta(g, iter(p.deltas)) == after  # any iterable, read once
    assert list(after) == list(g)
    recs = portmeta.records(g)
    sharing = {r.name for r in recs if r.meta_owner} | {r.meta_owner for r in recs if r.meta_owner}
    last = p.last_writes()
    for rec in recs:
        if rec.name in sharing:  # nodes sharing one meta dict show each other's writes
            continue
        for key, value in rec.meta:  # what the plan does not write stays as recorded
            if (rec.name, key) not in last:
                assert after[rec.name][key] is value
    for (target, key), d in last.items():
        if target not in sharing:  # the last write stays
            assert after[target][key] is d.value


@settings(max_examples=30)
@given(graphs(max_blocks=6))
def test_last_writes_is_the_last_delta_per_node_and_key(g):
    p = portmeta.plan(g, errors="collect")
    naive: dict[tuple[str, str], MetaDelta] = {}
    order: list[tuple[str, str]] = []
    for d in p.deltas:
        if (d.target, d.key) not in naive:
            order.append((d.target, d.key))
        naive[(d.target, d.key)] = d
    last = p.last_writes()
    assert list(last) == order
    assert all(last[k] is naive[k] for k in order)
    assert last == last_writes(p.deltas)
    assert p.final_state() == {
        t: {k: d.value for (t2, k), d in last.items() if t2 == t} for t, _ in last
    }


def test_collect_drops_exactly_the_failing_nodes_writes():
    # a dequantize shared by two consumers: the second, dynamically annotated, fails after the
    # first has written; its own writes go and the first's stay, as if it were not annotated
    def graph(annotate_failing: bool) -> Snapshot:
        b = GraphBuilder()
        x = b.placeholder("x")
        _q, dq = b.qdq(x)
        a = b.call("aten.relu.default", dq, name="a", tag="A", stack_trace="m.py:1")
        c = b.call("aten.neg.default", dq, name="c", tag="C", stack_trace="m.py:2")
        b.annotate(a, inputs={x: static()}, output=static())
        if annotate_failing:
            # a is not an input of c: its dynamic search finds no choose_qparams, so c fails
            b.annotate(c, inputs={x: static(), a: dynamic()}, check_inputs=False)
        _q2, dq2 = b.qdq(a)
        b.output(dq2, c)
        return b.build()

    collected = portmeta.plan(graph(True), errors="collect")
    assert [e.node for e in collected.errors] == ["c"]
    assert collected.errors[0].error_class == "NoChooseQParamsError"
    writes, _ = plan_writes(graph(False))
    assert writes and collected.deltas == writes
