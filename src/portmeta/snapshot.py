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

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import networkx as nx

from .errors import GraphBuildError
from .records import Annotation, NodeRecord, NodeRef, QInput, record_problem

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
    "own_nodes",
    "annotated_nodes",
    "meta_keys",
    "GRAPH_SEPARATOR",
    "graph_of",
    "qualified_node",
    "graph_name_problem",
    "merge_graphs",
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
    return tuple(rec for _, rec in _named_records(graph))


def _named_records(graph: Snapshot) -> Iterable[tuple[str, NodeRecord]]:
    """``(name, record)`` in graph order, through networkx's node data view (three times
    faster than looking each node's attributes up)."""
    return cast("Iterable[tuple[str, NodeRecord]]", graph.nodes(data="record"))


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


def own_nodes(graph: Snapshot) -> tuple[str, ...]:
    """Names of the graph's own nodes, in graph order: not the foreign records (nodes of
    another graph, or erased, that an annotation or a reference reaches). Summaries count these.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x"))
    >>> own_nodes(b.build())
    ('x', 'output')
    """
    return tuple(name for name, rec in _named_records(graph) if not rec.foreign)


def annotated_nodes(graph: Snapshot, *, include_ignored: bool = True) -> tuple[str, ...]:
    """Names of the graph's own annotated nodes, in graph order.

    With ``include_ignored=False``, only those the pass ports from: it ignores an annotation
    with no input and no output spec (what quantizers leave on weights and biases;
    :attr:`Annotation.is_valid`). Summaries count these.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder, static
    >>> b = GraphBuilder(); x = b.placeholder("x"); _, dq = b.qdq(x)
    >>> y = b.call("aten.relu.default", dq, name="relu"); b.annotate(y, inputs={x: static()})
    >>> b.annotate(x); b.output(y); g = b.build()
    >>> annotated_nodes(g), annotated_nodes(g, include_ignored=False)
    (('x', 'relu'), ('relu',))
    """
    names: tuple[str, ...] = graph.graph["annotated"]
    if include_ignored:
        return names
    return tuple(n for n in names if _annotation(graph, n).is_valid)


def _annotation(graph: Snapshot, name: str) -> Annotation:
    annotation = record(graph, name).annotation
    assert annotation is not None  # the snapshot lists the nodes with one
    return annotation


def meta_keys(graph: Snapshot) -> tuple[str, ...] | None:
    """The metadata keys the snapshot read, or ``None`` when it recorded what it was given."""
    keys: tuple[str, ...] | None = graph.graph["meta_keys"]
    return keys


# --------------------------------------------------------------------------- models


#: Between a subgraph's qualified name and a node name (``scan_combine_graph_0:dq``) in
#: :func:`merge_graphs`. FX never puts it in a node name, and it is never in a graph name.
GRAPH_SEPARATOR = ":"


def qualified_node(graph_name: str, node: str) -> str:
    """The name of ``node`` of graph ``graph_name`` in a model's merged snapshot: the top level
    (``""``) keeps its node names, a subgraph's get ``GRAPH:`` in front.

    Example
    -------
    >>> qualified_node("", "dq"), qualified_node("scan_combine_graph_0", "dq")
    ('dq', 'scan_combine_graph_0:dq')
    """
    return f"{graph_name}{GRAPH_SEPARATOR}{node}" if graph_name else node


def graph_of(node: str) -> str:
    """The qualified name of the graph ``node`` (a name in a model's merged snapshot) belongs
    to: the inverse of :func:`qualified_node`.

    Example
    -------
    >>> graph_of("dq"), graph_of("scan_combine_graph_0:dq")
    ('', 'scan_combine_graph_0')
    """
    graph, separator, _ = node.partition(GRAPH_SEPARATOR)
    return graph if separator else ""


def graph_name_problem(name: Any) -> str | None:
    """What is wrong with ``name`` as the qualified name of a graph of a model, or ``None``.

    ``""`` is the top level; a subgraph's name is its qualified module name
    (``scan_combine_graph_0``, ``outer.while_loop_body_graph_0``), never with
    :data:`GRAPH_SEPARATOR` in it.

    Example
    -------
    >>> graph_name_problem("scan_combine_graph_0") is None, graph_name_problem("a:b")
    (True, "graph name 'a:b' contains ':'")
    """
    if not isinstance(name, str):
        return f"graph name {name!r} is not a string"
    if GRAPH_SEPARATOR in name:
        return f"graph name {name!r} contains {GRAPH_SEPARATOR!r}"
    if name != name.strip() or (name and not all(name.split("."))):
        return f"graph name {name!r} is not a qualified module name"
    return None


def merge_graphs(graphs: Mapping[str, Snapshot]) -> Snapshot:
    """One snapshot of a whole model: every graph's records, node names qualified by graph.

    ``graphs`` maps qualified graph names to snapshots (``""``, the top level, first:
    ``portmeta.load_graphs`` and ``portmeta_fx.from_fx_graphs`` return them so). A subgraph's
    nodes become ``GRAPH:node`` (:func:`qualified_node`), with every reference renamed; the
    graphs share no node, so each rule, walk and check sees each graph exactly as alone, and the
    plan of the merged snapshot is the plans of its graphs, each node named with its graph. The
    command line works on it. A model of the top level alone is that snapshot itself, unchanged.

    Raises
    ------
    GraphBuildError
        On no graphs, or a graph name :func:`graph_name_problem` refuses.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x")); g = b.build()
    >>> list(merge_graphs({"": g, "scan_combine_graph_0": g}))
    ['x', 'output', 'scan_combine_graph_0:x', 'scan_combine_graph_0:output']
    >>> merge_graphs({"": g}) is g
    True
    """
    if not graphs:
        raise GraphBuildError("a model needs at least one graph")
    for name in graphs:
        problem = graph_name_problem(name)
        if problem is not None:
            raise GraphBuildError(problem)
    if list(graphs) == [""]:
        return graphs[""]
    recs: list[NodeRecord] = []
    for name, graph in graphs.items():
        own = records(graph)
        recs.extend((_renamed(rec, name) for rec in own) if name else own)
    keys = {meta_keys(g) for g in graphs.values()}
    return build_graph(
        recs, meta_keys=keys.pop() if len(keys) == 1 else None, allow_cycles=True, check=False
    )


def _renamed(rec: NodeRecord, graph_name: str) -> NodeRecord:
    """``rec`` with its name and every node name it holds qualified by ``graph_name``."""

    def q(node: str) -> str:
        return qualified_node(graph_name, node)

    def arg(value: Any) -> Any:
        if isinstance(value, NodeRef):
            return NodeRef(q(value.name))
        if isinstance(value, list):
            return [arg(v) for v in value]
        if isinstance(value, tuple):
            return tuple(arg(v) for v in value)
        if isinstance(value, dict):  # only values hold references (as in torch.fx)
            return {k: arg(v) for k, v in value.items()}
        return value

    ann = rec.annotation
    if ann is not None and ann.inputs:
        ann = Annotation(
            tuple(
                QInput(q(i.node) if i.is_node else i.node, i.qspec, i.is_node) for i in ann.inputs
            ),
            ann.output,
            ann.malformed,
        )
    return NodeRecord(
        name=q(rec.name),
        op=rec.op,
        target=rec.target,
        args=arg(rec.args),
        kwargs=tuple((k, arg(v)) for k, v in rec.kwargs),
        users=tuple(map(q, rec.users)),
        meta=rec.meta,
        annotation=ann,
        foreign=rec.foreign,
        meta_owner=None if rec.meta_owner is None else q(rec.meta_owner),
    )
