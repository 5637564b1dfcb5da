"""A snapshot assembled without checks (``build_graph(check=False)``, what ``from_fx`` does)
builds its networkx adjacency from the records' ``users`` on first use.

* planning never builds it, and plans the same as on a snapshot with eager adjacency;
* once built, the edges are those of the checked build, in users order, with one attribute
  dict per edge shared by ``succ`` and ``pred``;
* networkx's algorithms, views, copies, pickles and ``freeze`` work on a snapshot whether or not
  its adjacency was built yet;
* threads that ask at once get one adjacency.
"""

from __future__ import annotations

import copy
import pickle
import threading

import networkx as nx
from hypothesis import given, settings

import portmeta
from portmeta.graph import Snapshot, meta_keys
from portmeta.plan import plan_writes
from portmeta.testing import GraphBuilder, static
from portmeta.testing.strategies import graphs

_ADJACENCY = ("_adj", "_succ", "_pred")


def _lazy(g: Snapshot) -> Snapshot:
    """``g`` built again as ``from_fx`` builds: unchecked, adjacency not yet made."""
    lazy = portmeta.build_graph(
        portmeta.records(g), meta_keys=meta_keys(g), allow_cycles=True, check=False
    )
    assert not any(name in lazy.__dict__ for name in _ADJACENCY)
    return lazy


def _edges(g: nx.DiGraph) -> list[tuple[str, list[str]]]:
    return [(u, list(g.succ[u])) for u in g] + [(u, list(g.pred[u])) for u in g]


def _small() -> Snapshot:
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    y = b.call("aten.relu.default", dq, name="relu", tag="P0")
    b.annotate(y, inputs={x: static()})
    b.output(y)
    return b.build()


@settings(max_examples=40)
@given(graphs(max_blocks=6))
def test_planning_never_builds_the_adjacency_and_plans_the_same(g):
    lazy = _lazy(g)
    assert plan_writes(lazy, errors="collect") == plan_writes(g, errors="collect")
    assert not any(name in lazy.__dict__ for name in _ADJACENCY)
    assert _edges(lazy) == _edges(g)  # now built: the checked build's edges, in users order
    assert list(lazy.edges) == list(g.edges)
    for u, v in lazy.edges:
        assert lazy.succ[u][v] is lazy.pred[v][u] and lazy.succ[u][v] == {}


def test_networkx_reads_a_lazy_snapshot_like_an_eager_one():
    g = _small()
    for use in (
        lambda s: nx.is_directed_acyclic_graph(s),
        lambda s: list(nx.topological_sort(s)),
        lambda s: sorted(s.in_degree()),
        lambda s: sorted(s.reverse().edges),
        lambda s: sorted(s.copy().edges),
        lambda s: sorted(s.subgraph(["q", "dq", "relu"]).edges),
        lambda s: sorted(nx.relabel_nodes(s, str.upper).edges),
        lambda s: (type(s.to_directed()).__name__, sorted(s.to_directed().edges)),
        lambda s: list(s.neighbors("x")),
        lambda s: list(s.predecessors("relu")),
        lambda s: s.has_edge("q", "dq"),
        lambda s: nx.is_frozen(s),
        lambda s: repr(s),
    ):
        assert use(_lazy(g)) == use(g)


def test_copies_and_pickles_made_before_the_adjacency_build_their_own():
    g = _small()
    for make in (copy.copy, copy.deepcopy, lambda s: pickle.loads(pickle.dumps(s))):
        lazy = _lazy(g)
        twin = make(lazy)
        assert isinstance(twin, Snapshot)
        assert _edges(twin) == _edges(g)
        assert not any(name in lazy.__dict__ for name in _ADJACENCY)
        assert _edges(lazy) == _edges(g)
        assert twin._succ is not lazy._succ


def test_a_lazy_snapshot_stays_frozen():
    lazy = _lazy(_small())
    try:
        lazy.add_edge("x", "relu")
    except nx.NetworkXError as exc:
        assert "Frozen" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("a frozen snapshot took an edge")
    assert not lazy.has_edge("x", "relu")


def test_threads_asking_at_once_share_one_adjacency():
    lazy = _lazy(_small())
    barrier = threading.Barrier(8)
    seen: list[tuple[int, int]] = []

    def ask() -> None:
        barrier.wait()
        seen.append((id(lazy._succ), id(lazy._pred)))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1
    assert lazy._adj is lazy._succ
    assert lazy.succ["q"]["dq"] is lazy.pred["dq"]["q"]
