"""The immutable graph snapshot: a frozen ``networkx.DiGraph`` of :class:`NodeRecord` values.

Layout of a snapshot ``G``:

* nodes are node names, inserted in graph order, each with attribute ``"record"``;
* an edge ``u -> v`` means ``v`` is a user of ``u``; ``G.succ[u]`` iterates users in
  ``node.users`` order (edges carry no attributes). The edges are derived from the records'
  ``users``, which are the one source the library reads (:func:`users`);
* ``G.graph["annotated"]``: names of the graph's own (not ``foreign``) nodes that carry an
  annotation, in graph order;
* ``G.graph["meta_keys"]``: the metadata keys the snapshot read (``None``: whatever the author
  gave, so absence always means absent);
* ``G.graph["fingerprint"]``: set by :func:`portmeta.fingerprint` the first time it is asked.

The graph is frozen with :func:`networkx.freeze`; build a new one instead of changing it.

Example
-------
>>> from portmeta.records import NodeRecord, NodeRef, Target
>>> G = build_graph([
...     NodeRecord.of("x", "placeholder", Target.named("x"), users=["out"]),
...     NodeRecord.of("out", "output", Target.named("output"), args=[(NodeRef("x"),)]),
... ])
>>> list(G.nodes), users(G, "x"), nx.is_frozen(G)
(['x', 'out'], ('out',), True)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypeAlias

import networkx as nx

from .errors import GraphBuildError
from .records import NodeRecord, record_problem

if TYPE_CHECKING:
    _DiGraph: TypeAlias = nx.DiGraph[str]
else:
    _DiGraph = nx.DiGraph

__all__ = [
    "Snapshot",
    "build_graph",
    "record",
    "records",
    "users",
    "annotated_nodes",
    "meta_keys",
]


class Snapshot(_DiGraph):
    """The snapshot type: a frozen ``networkx.DiGraph`` keyed by node name.

    A plain subclass with a readable ``repr`` (node count, annotated nodes, the first nodes),
    which pytest and hypothesis show in failure output. Copies, subgraph views, ``reverse``,
    ``to_directed``, relabelled graphs and pickles stay snapshots (unfrozen where networkx makes
    a new graph); ``to_undirected`` gives a ``networkx.Graph``.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder, static
    >>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
    >>> y = b.call("aten.relu.default", dq, name="relu"); b.annotate(y, inputs={x: static()})
    >>> b.output(y); b.build()
    <Snapshot 5 nodes, 1 annotated (relu): x, q, dq, relu, output>
    """

    #: How many node names the ``repr`` shows before ``...``.
    REPR_NODES = 8

    def to_directed_class(self) -> type[Snapshot]:
        """``to_directed`` copies stay snapshots (networkx's hook for subclasses)."""
        return Snapshot

    def __repr__(self) -> str:
        names = list(self.nodes)
        annotated = [
            name
            for name, rec in self.nodes(data="record")
            if isinstance(rec, NodeRecord) and rec.annotation is not None and not rec.foreign
        ]
        n = self.REPR_NODES
        text = f"<{type(self).__name__} {len(names)} node{'' if len(names) == 1 else 's'}"
        if annotated:
            more = ", ..." if len(annotated) > n else ""
            text += f", {len(annotated)} annotated ({', '.join(annotated[:n])}{more})"
        elif names:
            text += ", 0 annotated"
        if names:
            more = f", ... ({len(names) - n} more)" if len(names) > n else ""
            text += f": {', '.join(names[:n])}{more}"
        return text + ">"


def build_graph(
    node_records: Iterable[NodeRecord],
    *,
    meta_keys: Sequence[str] | None = None,
    allow_cycles: bool = False,
    check: bool = True,
) -> Snapshot:
    """Check node records and freeze them into a snapshot graph.

    Parameters
    ----------
    node_records:
        Records in graph order.
    meta_keys:
        The metadata keys the records were read with, or ``None``.
    allow_cycles:
        Accept a graph with a cycle. ``portmeta_fx.from_fx`` does, to represent a hand-edited
        FX graph faithfully (upstream only hangs if one of its walks enters the cycle, and
        portmeta's walks raise :class:`~portmeta.errors.CyclicWalkError` there instead);
        saved graphs (:func:`portmeta.load_graph`) never do.
    check:
        Check the records (below). ``portmeta_fx.from_fx`` passes ``False``: it builds every
        field with the right type and reads ``users`` from ``torch.fx``, which derives them from
        the arguments. Records that break the checks give a snapshot the rules misread.

    Returns
    -------
    Snapshot
        A frozen graph (see the module docstring for its layout).

    Raises
    ------
    GraphBuildError
        On a field of the wrong type, duplicate names, references to unknown nodes, ``users``
        that disagree with the arguments that reference a node, an annotation input that is no
        node of the graph, a bad ``meta_owner``, or (unless ``allow_cycles``) a cycle. The
        message names the node.

    Example
    -------
    >>> from portmeta.records import NodeRecord, Target
    >>> build_graph([NodeRecord.of("x", "placeholder", Target.named("x"), users=["y"])])
    Traceback (most recent call last):
    ...
    portmeta.errors.GraphBuildError: node 'x' lists unknown user 'y'
    """
    recs = list(node_records)
    in_order = _check_records(recs) if check else False
    G = Snapshot()
    G.add_nodes_from(rec.name for rec in recs)
    nx.set_node_attributes(G, {rec.name: rec for rec in recs}, "record")
    G.add_edges_from((rec.name, user) for rec in recs for user in rec.users)
    # records whose references all point to earlier records cannot form a cycle
    if check and not allow_cycles and not in_order and not nx.is_directed_acyclic_graph(G):
        cycle = [u for u, _ in nx.find_cycle(G)]
        raise GraphBuildError(f"graph has a cycle through nodes {cycle!r}")
    G.graph["annotated"] = tuple(
        rec.name for rec in recs if rec.annotation is not None and not rec.foreign
    )
    G.graph["meta_keys"] = None if meta_keys is None else tuple(meta_keys)
    frozen: Snapshot = nx.freeze(G)
    return frozen


def _check_records(recs: list[NodeRecord]) -> bool:
    """Raise :class:`GraphBuildError` on the first problem :func:`build_graph` names; return
    whether every reference points to an earlier record."""
    index: dict[str, NodeRecord] = {}
    for rec in recs:
        problem = record_problem(rec)
        if problem is not None:
            raise GraphBuildError(problem)
        if rec.name in index:
            raise GraphBuildError(f"duplicate node name {rec.name!r}")
        index[rec.name] = rec
    position = {name: i for i, name in enumerate(index)}
    referenced_by: dict[str, dict[str, None]] = {name: {} for name in index}
    in_order = True
    for i, rec in enumerate(recs):
        for ref in rec.input_names():
            if ref not in index:
                raise GraphBuildError(f"node {rec.name!r} refers to unknown node {ref!r}")
            referenced_by[ref][rec.name] = None
            in_order = in_order and position[ref] < i
    for rec in recs:
        if len(set(rec.users)) != len(rec.users):
            raise GraphBuildError(f"node {rec.name!r} lists a user twice: {list(rec.users)!r}")
        for user in rec.users:
            if user not in index:
                raise GraphBuildError(f"node {rec.name!r} lists unknown user {user!r}")
        if set(rec.users) != set(referenced_by[rec.name]):
            raise GraphBuildError(
                f"users of node {rec.name!r} disagree with the arguments that reference it: "
                f"users {sorted(rec.users)!r}, referenced by {sorted(referenced_by[rec.name])!r}"
            )
        if rec.annotation is not None:
            for inp in rec.annotation.inputs:
                if inp.is_node and inp.node not in index:
                    raise GraphBuildError(
                        f"node {rec.name!r}: annotation input {inp.node!r} is not a node of the "
                        "graph; name one of its nodes (a node of another graph is recorded as a "
                        "foreign node)"
                    )
        owner = rec.meta_owner
        if owner is None:
            continue
        if owner not in index or owner == rec.name:
            raise GraphBuildError(f"node {rec.name!r} shares the meta of unknown node {owner!r}")
        if index[owner].meta_owner is not None:
            raise GraphBuildError(
                f"node {rec.name!r} shares the meta of {owner!r}, which itself shares another "
                "node's meta; name the first node of the group"
            )
    return in_order


def record(graph: Snapshot, name: str) -> NodeRecord:
    """The record of node ``name``.

    Raises
    ------
    KeyError
        If the graph has no such node.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); x = b.placeholder("x"); b.output(x)
    >>> record(b.build(), "x").op
    'placeholder'
    """
    rec: NodeRecord = graph.nodes[name]["record"]
    return rec


def records(graph: Snapshot) -> tuple[NodeRecord, ...]:
    """Every record, in graph order.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x"))
    >>> [rec.name for rec in records(b.build())]
    ['x', 'output']
    """
    return tuple(data["record"] for data in graph.nodes.values())


def users(graph: Snapshot, name: str) -> tuple[str, ...]:
    """The users of ``name`` in ``node.users`` order that are nodes of ``graph`` (all of them,
    but in a subgraph view or an edited copy); empty for an unknown name.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); x = b.placeholder("x"); b.output(x)
    >>> users(b.build(), "x"), users(b.build(), "nope")
    (('output',), ())
    """
    if name not in graph:
        return ()
    return tuple(user for user in record(graph, name).users if user in graph)


def annotated_nodes(graph: Snapshot) -> tuple[str, ...]:
    """Names of the graph's own annotated nodes, in graph order."""
    names: tuple[str, ...] = graph.graph["annotated"]
    return names


def meta_keys(graph: Snapshot) -> tuple[str, ...] | None:
    """The metadata keys the snapshot read, or ``None`` when it recorded what it was given."""
    keys: tuple[str, ...] | None = graph.graph["meta_keys"]
    return keys
