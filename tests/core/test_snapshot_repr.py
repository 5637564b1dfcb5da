"""Snapshots print readably (node count, annotated nodes, the first nodes) in pytest and
hypothesis output, and stay networkx DiGraphs through copies, views and pickling."""

from __future__ import annotations

import copy
import pickle

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis.vendor.pretty import pretty

import portmeta
from portmeta import Snapshot
from portmeta.testing import GraphBuilder, static
from portmeta.testing.strategies import graphs

pytest_plugins = ["pytester"]


def _small() -> Snapshot:
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu")
    b.annotate(relu, inputs={x: static()})
    b.output(relu)
    return b.build()


def test_repr_names_node_count_annotated_nodes_and_first_nodes():
    g = _small()
    assert repr(g) == "<Snapshot 5 nodes, 1 annotated (relu): x, q, dq, relu, output>"
    assert pretty(g) == repr(g)  # what hypothesis prints in a falsifying example
    assert repr(portmeta.build_graph([])) == "<Snapshot 0 nodes>"
    assert type(g) is Snapshot and Snapshot is portmeta.snapshot.Snapshot
    assert "Snapshot" in portmeta.__all__


def test_repr_of_a_long_graph_is_cut_after_the_first_nodes():
    b = GraphBuilder()
    cur = b.placeholder("x")
    for i in range(12):
        _q, dq = b.qdq(cur)
        prev, cur = cur, b.call("aten.relu.default", dq, name=f"r{i}")
        b.annotate(cur, inputs={prev: static()})
    b.output(cur)
    text = repr(b.build())
    assert text.startswith("<Snapshot 38 nodes, 12 annotated (r0, r1, r2, r3, r4, r5, r6, r7, ...)")
    assert text.endswith(": x, q, dq, r0, q_1, dq_1, r1, q_2, ... (30 more)>")
    assert len(text) < 200


def test_snapshots_stay_digraphs_through_networkx_operations():
    g = _small()
    assert isinstance(g, nx.DiGraph) and nx.is_frozen(g)
    derived = {
        "copy": g.copy(),
        "deepcopy": copy.deepcopy(g),
        "pickle": pickle.loads(pickle.dumps(g)),
        "reverse": g.reverse(),
        "to_directed": g.to_directed(),
        "relabel": nx.relabel_nodes(g, {"x": "X"}),
    }
    for name, other in derived.items():
        assert isinstance(other, Snapshot), name
        assert repr(other).startswith("<Snapshot 5 nodes, 1 annotated (relu): "), name
    assert nx.is_frozen(derived["pickle"]) and nx.is_frozen(derived["deepcopy"])
    assert not nx.is_frozen(derived["copy"])
    sub = g.subgraph(["x", "q"])  # a frozen view: counts only its own nodes
    assert isinstance(sub, Snapshot) and nx.is_frozen(sub)
    assert repr(sub).startswith("<Snapshot 2 nodes, 0 annotated: ")
    assert type(g.to_undirected()) is nx.Graph
    # a copy edited by hand, with a node that carries no record, still prints
    edited = g.copy()
    edited.add_node("extra")
    assert repr(edited).startswith("<Snapshot 6 nodes, 1 annotated (relu): ")


def test_hypothesis_falsifying_example_shows_the_snapshot():
    @settings(max_examples=5)
    @given(graphs(max_blocks=1, patterns={"static"}))
    def fails(graph):
        raise AssertionError("boom")

    with pytest.raises(AssertionError) as info:
        fails()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "fails(\n    graph=<Snapshot " in notes or "fails(graph=<Snapshot " in notes
    assert "object at 0x" not in notes


def test_pytest_assertion_output_shows_the_snapshot(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        from portmeta.testing import GraphBuilder

        def test_x():
            b = GraphBuilder(); b.output(b.placeholder("x"))
            g = b.build()
            assert g is None
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert <Snapshot 2 nodes, 0 annotated: x, output> is None*"])
