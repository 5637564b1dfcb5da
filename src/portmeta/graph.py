"""The immutable graph snapshot: a frozen ``networkx.DiGraph`` of :class:`NodeRecord` values.

Layout of a snapshot ``G``:

* nodes are node names, inserted in graph order, each with attribute ``"record"``;
* an edge ``u -> v`` means ``v`` is a user of ``u``; ``G.succ[u]`` iterates users in
  ``node.users`` order (edges carry no attributes);
* ``G.graph["annotated"]``: names of the graph's own (not ``foreign``) nodes that carry an
  annotation, in graph order;
* ``G.graph["meta_keys"]``: the metadata keys the snapshot read (``None``: whatever the author
  gave, so absence always means absent);
* ``G.graph["fingerprint"]``: SHA-256 of the snapshot's canonical form, computed the first time
  :func:`fingerprint` asks for it (at once when a recorded metadata value is mutable).

The graph is frozen with :func:`networkx.freeze`; build a new one instead of changing it.

Example
-------
>>> from portmeta.records import NodeRecord, NodeRef, Target
>>> G = build_graph([
...     NodeRecord("x", "placeholder", Target.named("x"), users=("out",)),
...     NodeRecord("out", "output", Target.named("output"), args=((NodeRef("x"),),)),
... ])
>>> list(G.nodes), users(G, "x"), nx.is_frozen(G)
(['x', 'out'], ('out',), True)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, TypeAlias

import networkx as nx

from . import codec
from ._gc import without_gc
from ._io import atomic_write_text, parse_json, read_text
from .errors import GraphBuildError, GraphFormatError
from .records import (
    OPS,
    Annotation,
    Malformed,
    NodeRecord,
    NodeRef,
    Opaque,
    QInput,
    QSpec,
    Target,
    TargetKind,
    trusted_constructor,
)

if TYPE_CHECKING:
    _DiGraph: TypeAlias = nx.DiGraph[str]
else:
    _DiGraph = nx.DiGraph

__all__ = [
    "Snapshot",
    "GRAPH_FORMAT",
    "GRAPH_SCHEMA_VERSION",
    "build_graph",
    "record",
    "records",
    "users",
    "annotated_nodes",
    "meta_keys",
    "fingerprint",
    "graph_to_dict",
    "graph_from_dict",
    "dump_graph",
    "load_graph",
]

GRAPH_FORMAT = "portmeta.graph"
GRAPH_SCHEMA_VERSION = 1


class Snapshot(_DiGraph):
    """The snapshot type: a frozen ``networkx.DiGraph`` keyed by node name.

    A plain subclass: it only adds a readable ``repr`` (node count, annotated nodes, the first
    nodes), which pytest and hypothesis show in failure output. Copies, subgraph views,
    ``reverse``, ``to_directed``, relabelled graphs and pickles stay snapshots (unfrozen where
    networkx makes a new graph); ``to_undirected`` gives a ``networkx.Graph``.

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
        nodes = self._node  # type: ignore[attr-defined]
        names = list(nodes)
        annotated = []
        for name in names:
            rec = nodes[name].get("record")
            if isinstance(rec, NodeRecord) and rec.annotation is not None and not rec.foreign:
                annotated.append(name)
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


# --------------------------------------------------------------------------- building


@without_gc
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
        saved graphs (:func:`load_graph`) never do.
    check:
        Check the records form a graph (below). ``False`` skips every check, cycles included,
        for producers that guarantee them: ``portmeta_fx.from_fx`` reads ``users`` from
        ``torch.fx``, which derives them from the arguments. Records that break them give a
        snapshot the rules misread.

    Returns
    -------
    networkx.DiGraph
        A frozen graph (see the module docstring for its layout).

    Raises
    ------
    GraphBuildError
        On duplicate names, references to unknown nodes, ``users`` that disagree with the
        arguments that reference a node, or (unless ``allow_cycles``) a cycle. The message
        names the node.

    Example
    -------
    >>> from portmeta.records import NodeRecord, Target
    >>> build_graph([NodeRecord("x", "placeholder", Target.named("x"), users=("y",))])
    Traceback (most recent call last):
    ...
    portmeta.errors.GraphBuildError: node 'x' lists unknown user 'y'
    """
    recs = list(node_records)
    keys = None if meta_keys is None else tuple(meta_keys)
    # records in order (every reference to an earlier record) cannot form a cycle: networkx's
    # search is needed only for the others
    G = _assemble_in_order(recs, keys) if check else None
    if G is None:
        if check:
            _check_records_carefully(recs)
        G = _assemble(recs, keys)
        if check and not allow_cycles and not nx.is_directed_acyclic_graph(G):
            cycle = [u for u, _ in nx.find_cycle(G)]
            raise GraphBuildError(f"graph has a cycle through nodes {cycle!r}")
    frozen: Snapshot = nx.freeze(G)
    return frozen


def _assemble_in_order(recs: list[NodeRecord], keys: tuple[str, ...] | None) -> Snapshot | None:
    """:func:`_assemble` of records that form a graph in order, checked on the way; ``None``
    for any others (left to :func:`_check_records_carefully`, which says what is wrong).

    In order means: names unique, every reference to an earlier record, every ``users`` entry
    a later record, and the records that list a node as a user exactly those that reference
    it (as :func:`_check_records_carefully` demands). Such records cannot form a cycle. The
    check rides on the assembly: each record's ``_pred`` dict is complete when the record is
    reached (its users lists are those of earlier records), so it is compared with the
    record's references there, and no index of positions is needed.
    """
    if not set(map(type, recs)) <= _RECORD_TYPE:
        return None
    pred: dict[str, dict[str, Any]] = {rec.name: {} for rec in recs}
    if len(pred) != len(recs):  # a name twice
        return None
    later = pred.copy()  # the _pred dicts of the records not reached yet
    take, find = later.pop, later.get
    node: dict[str, dict[str, Any]] = {}
    succ: dict[str, dict[str, Any]] = {}
    owned = []
    for rec in recs:
        name = rec.name
        before = take(name)  # the records that list this one as a user
        node[name] = {"record": rec}
        out = succ[name] = {}
        user_list = rec.users
        for user in user_list:  # users order
            into = find(user)
            if into is None:  # unknown, this record or an earlier one
                return None
            out[user] = into[name] = {}
        if len(out) != len(user_list):  # a user twice
            return None
        # the references among the arguments themselves (the usual case) are read inline;
        # nested values, keyword arguments and a reference twice through input_names()
        count = -1 if rec.kwargs else 0
        if count == 0:
            for value in rec.args:
                kind = type(value)
                if kind is NodeRef:
                    if value.name not in before:
                        return None
                    count += 1
                elif kind not in _PLAIN_LEAVES:
                    count = -1
                    break
        if count != len(before) or count > 1:
            refs = rec.input_names()
            if len(refs) != len(before) or not all(map(before.__contains__, refs)):
                return None
        if rec.meta_owner is not None:
            owned.append(rec)
    for rec in owned:
        owner = node.get(rec.meta_owner)  # type: ignore[arg-type]
        if owner is None or owner["record"] is rec or owner["record"].meta_owner is not None:
            return None
    return _snapshot(recs, keys, node, succ, pred)


_RECORD_TYPE = frozenset({NodeRecord})


def _check_records_carefully(recs: list[NodeRecord]) -> bool:
    """:func:`_check_records` for any records: raises on the first problem, with its message."""
    index: dict[str, NodeRecord] = {}
    for rec in recs:
        if not isinstance(rec, NodeRecord):
            raise GraphBuildError(f"expected NodeRecord, got {type(rec).__name__}")
        if rec.name in index:
            raise GraphBuildError(f"duplicate node name {rec.name!r}")
        index[rec.name] = rec
    referenced_by: dict[str, dict[str, None]] = {name: {} for name in index}
    for rec in recs:
        for ref in rec.input_names():
            if ref not in index:
                raise GraphBuildError(f"node {rec.name!r} refers to unknown node {ref!r}")
            referenced_by[ref].setdefault(rec.name, None)
    for rec in recs:
        if len(set(rec.users)) != len(rec.users):
            raise GraphBuildError(f"node {rec.name!r} lists a user twice: {list(rec.users)!r}")
        for user in rec.users:
            if user not in index:
                raise GraphBuildError(f"node {rec.name!r} lists unknown user {user!r}")
        expected = referenced_by[rec.name]
        if set(rec.users) != set(expected):
            raise GraphBuildError(
                f"users of node {rec.name!r} disagree with the arguments that reference it: "
                f"users {sorted(rec.users)!r}, referenced by {sorted(expected)!r}"
            )
    for rec in recs:
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
    return False


#: Metadata value types a snapshot can hold without the value changing under it.
_IMMUTABLE_META = frozenset({str, int, float, bool, type(None)})


def _assemble(recs: list[NodeRecord], keys: tuple[str, ...] | None) -> Snapshot:
    """The (unfrozen) snapshot of ``recs``, which must already form a graph.

    The adjacency dicts are built directly and handed to networkx through the ``_node``,
    ``_succ`` and ``_pred`` attributes its documentation describes for subclasses (assigning
    them resets networkx's cached views): ``add_edges_from`` costs a few times more per edge.
    As there, each edge has its own attribute dict, shared by ``_succ`` and ``_pred``.

    Metadata values are the live objects; if one can change in place (a dict, a list), the
    fingerprint is taken now rather than on first use, so that it describes the graph as read.
    """
    pred: dict[str, dict[str, Any]] = {rec.name: {} for rec in recs}
    succ: dict[str, dict[str, Any]] = {}
    for rec in recs:
        name = rec.name
        out = succ[name] = {}
        for user in rec.users:  # users order
            out[user] = pred[user][name] = {}
    node = {rec.name: {"record": rec} for rec in recs}
    return _snapshot(recs, keys, node, succ, pred)


def _snapshot(
    recs: list[NodeRecord],
    keys: tuple[str, ...] | None,
    node: dict[str, dict[str, Any]],
    succ: dict[str, dict[str, Any]],
    pred: dict[str, dict[str, Any]],
) -> Snapshot:
    """The (unfrozen) snapshot with these networkx dicts (see :func:`_assemble`)."""
    G = Snapshot()
    G._node = node  # type: ignore[attr-defined]
    G._succ = succ  # type: ignore[attr-defined]
    G._pred = pred  # type: ignore[attr-defined]
    G.graph["annotated"] = tuple(
        rec.name for rec in recs if rec.annotation is not None and not rec.foreign
    )
    G.graph["meta_keys"] = keys
    meta = chain.from_iterable(map(attrgetter("meta"), recs))
    if not set(map(type, map(itemgetter(1), meta))) <= _IMMUTABLE_META:  # in C: no frame per value
        fingerprint(G)
    return G


# --------------------------------------------------------------------------- reading


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
    # networkx's node dict itself (``G.nodes[name]`` is the same lookup behind a method call);
    # a subgraph view's is filtered, so derived graphs answer for their own nodes
    rec: NodeRecord = graph._node[name]["record"]  # type: ignore[attr-defined]
    return rec


def records(graph: Snapshot) -> Iterator[NodeRecord]:
    """Every record, in graph order."""
    for data in graph._node.values():  # type: ignore[attr-defined]
        yield data["record"]


def users(graph: Snapshot, name: str) -> tuple[str, ...]:
    """The users of ``name`` in ``node.users`` order (empty for an unknown name)."""
    if name not in graph:
        return ()
    return tuple(graph._succ[name])  # type: ignore[attr-defined]


def annotated_nodes(graph: Snapshot) -> tuple[str, ...]:
    """Names of the annotated nodes in graph order."""
    names: tuple[str, ...] = graph.graph["annotated"]
    return names


def meta_keys(graph: Snapshot) -> tuple[str, ...] | None:
    """The metadata keys the snapshot read, or ``None`` when it recorded what it was given."""
    keys: tuple[str, ...] | None = graph.graph["meta_keys"]
    return keys


def fingerprint(graph: Snapshot) -> str:
    """SHA-256 (hex) of the snapshot's canonical form: structure, recorded meta, annotations.

    Computed on first use and kept in ``graph.graph["fingerprint"]``: planning and writing do
    not need it, saving and checking a plan do. A graph and its JSON round trip have the same
    fingerprint.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x")); g = b.build()
    >>> fingerprint(g) == fingerprint(graph_from_dict(graph_to_dict(g)))
    True
    """
    value: str | None = graph.graph.get("fingerprint")
    if value is None:
        value = graph.graph["fingerprint"] = digest(canonical_lines(graph), meta_keys(graph))
    return value


def canonical_lines(graph: Snapshot) -> list[str]:
    """One canonical text per record, in graph order: what :func:`fingerprint` hashes."""
    return [canonical_line(rec) for rec in records(graph)]


def canonical_line(rec: NodeRecord, meta: Iterable[tuple[str, Any]] | None = None) -> str:
    """The canonical text of one record (``meta`` in place of the record's own, if given).

    It is the ``repr`` of a tuple of plain values: arguments as they are (their values are
    plain data, :class:`NodeRef` and :class:`Opaque`, whose ``repr`` is deterministic; other
    constants as a loaded snapshot would hold them), metadata through
    :func:`portmeta.codec.encode` (a live snapshot holds the objects themselves, a loaded one
    their decoded stand-ins; both encode alike).

    Example
    -------
    >>> from portmeta.records import Target
    >>> canonical_line(NodeRecord("x", "placeholder", Target.named("x"), meta={"tag": "T"}))
    "('x', 'placeholder', 'x', 'name', (), (), (), (('tag', 'T'),), None, False, None)"
    """
    # the common cases are tested inline: this runs once per node of every checked graph
    args, kwargs, ann = rec.args, rec.kwargs, rec.annotation
    values = rec.meta if meta is None else tuple(meta)
    return repr(
        (
            rec.name,
            rec.op,
            rec.target.name,
            rec.target.kind._value_,
            args if set(map(type, args)) <= _PLAIN_LEAVES else tuple(map(_canonical, args)),
            tuple([(k, _canonical(v)) for k, v in kwargs]),
            rec.users,
            values if {type(v) for _, v in values} <= _STR else _encoded(values),
            None if ann is None else _annotation_key(ann),
            rec.foreign,
            rec.meta_owner,
        )
    )


_STR = frozenset({str})
_PLAIN_LEAVES = frozenset({str, int, bool, float, NodeRef, Opaque, type(None)})
_CONTAINERS = frozenset({tuple, list, dict})


def _is_plain(value: Any) -> bool:
    """Whether ``value``'s ``repr`` is canonical: only types the codec keeps as they are.

    Floats count: their ``repr`` is exact, and ``nan`` / ``inf`` repr alike live and loaded.
    """
    kind = type(value)
    if kind in _PLAIN_LEAVES:
        return True
    if kind is dict:
        return _is_plain(list(value)) and _is_plain(list(value.values()))
    if kind is not tuple and kind is not list:
        return False
    kinds = set(map(type, value))
    if kinds <= _PLAIN_LEAVES:  # the usual flat argument tuple, checked in C
        return True
    if not kinds <= _PLAIN_LEAVES | _CONTAINERS:
        return False
    return all(map(_is_plain, value))


def _encoded(meta: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, Any], ...]:
    return tuple((k, codec.encode(v)) for k, v in meta)


def _canonical(value: Any) -> Any:
    """One argument itself if its ``repr`` is canonical, else as a loaded snapshot holds it
    (the JSON form encodes each argument on its own, so a constant it cannot keep becomes an
    Opaque of that argument)."""
    try:
        if _is_plain(value):
            return value
    except RecursionError:  # nested too deeply to check: the codec keeps it as an Opaque
        pass
    return _plain(value)


def _plain(value: Any) -> Any:
    """``value`` as a loaded snapshot holds it (constants the codec cannot keep become Opaque)."""
    return codec.decode(codec.encode(value))


def _qspec_key(spec: QSpec | None) -> Any:
    return None if spec is None else (spec.kind, spec.is_dynamic)


def _annotation_key(ann: Annotation) -> Any:
    bad = ann.malformed
    return (
        tuple((i.node, _qspec_key(i.qspec), i.is_node) for i in ann.inputs),
        _qspec_key(ann.output),
        None if bad is None else (bad.error, bad.message),
    )


def digest(lines: Iterable[str], keys: tuple[str, ...] | None) -> str:
    """SHA-256 (hex) of canonical ``lines`` read with metadata ``keys``."""
    h = hashlib.sha256(repr(keys).encode())
    h.update("\n".join(lines).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


# --------------------------------------------------------------------------- JSON


def _qspec_to_data(spec: QSpec | None) -> Any:
    return None if spec is None else {"kind": spec.kind, "is_dynamic": spec.is_dynamic}


def _annotation_to_data(ann: Annotation | None) -> Any:
    if ann is None:
        return None
    data: dict[str, Any] = {
        "inputs": [
            {"node": i.node, "qspec": _qspec_to_data(i.qspec), "is_node": i.is_node}
            for i in ann.inputs
        ],
        "output": _qspec_to_data(ann.output),
    }
    if ann.malformed is not None:
        data["malformed"] = {"error": ann.malformed.error, "message": ann.malformed.message}
    return data


def _record_to_data(rec: NodeRecord) -> dict[str, Any]:
    data = {
        "name": rec.name,
        "op": rec.op,
        "target": {"name": rec.target.name, "kind": rec.target.kind.value},
        "args": [codec.encode(a) for a in rec.args],
        "kwargs": {k: codec.encode(v) for k, v in rec.kwargs},
        "users": list(rec.users),
        "meta": {k: codec.encode(v) for k, v in rec.meta},
        "annotation": _annotation_to_data(rec.annotation),
    }
    if rec.foreign:
        data["foreign"] = True
    if rec.meta_owner is not None:
        data["meta_owner"] = rec.meta_owner
    return data


def _nodes_to_data(recs: Iterable[NodeRecord]) -> list[dict[str, Any]]:
    return [_record_to_data(rec) for rec in recs]


def graph_to_dict(graph: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON-ready data (the versioned schema :func:`load_graph` reads).

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x"))
    >>> d = graph_to_dict(b.build())
    >>> d["format"], d["version"], [n["name"] for n in d["nodes"]]
    ('portmeta.graph', 1, ['x', 'output'])
    """
    keys = meta_keys(graph)
    return {
        "format": GRAPH_FORMAT,
        "version": GRAPH_SCHEMA_VERSION,
        "meta_keys": None if keys is None else list(keys),
        "nodes": _nodes_to_data(records(graph)),
    }


class _Reader:
    """Structural checks for :func:`graph_from_dict`, with messages that say where."""

    def __init__(self, source: str | None) -> None:
        self.source = source
        # equal targets read from one file are one object (a file names a few operators
        # many times over)
        self.targets: dict[tuple[str, str], Target] = {}
        self.opaques: dict[tuple[str, str], Opaque] = {}

    def fail(self, problem: str) -> GraphFormatError:
        return GraphFormatError(problem, self.source)

    def field(self, obj: Mapping[str, Any], key: str, kind: Any, where: str) -> Any:
        if key not in obj:
            raise self.fail(f"{where}: missing field {key!r}")
        value = obj[key]
        if not _is(value, kind):
            raise self.fail(
                f"{where}: field {key!r} must be {_kind_name(kind)}, got {_json_type(value)}"
            )
        return value

    def value(self, data: Any, where: str) -> Any:
        try:
            return codec.decode(data)
        except codec.CodecError as exc:
            raise self.fail(f"{where}: {exc}") from None

    def qspec(self, data: Any, where: str) -> QSpec | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            raise self.fail(f"{where}: qspec must be an object or null, got {_json_type(data)}")
        kind = self.field(data, "kind", str, where)
        dyn = data.get("is_dynamic")
        if dyn is not None and not isinstance(dyn, bool):
            raise self.fail(f"{where}: is_dynamic must be true, false or null")
        return QSpec(kind, dyn)

    def annotation(self, data: Any, where: str) -> Annotation | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            raise self.fail(f"{where}: annotation must be an object or null")
        inputs = []
        for i, item in enumerate(self.field(data, "inputs", list, where)):
            iw = f"{where}.inputs[{i}]"
            if not isinstance(item, dict):
                raise self.fail(f"{iw}: must be an object, got {_json_type(item)}")
            inputs.append(
                QInput(
                    self.field(item, "node", str, iw),
                    self.qspec(item.get("qspec"), iw),
                    bool(self.field(item, "is_node", bool, iw)) if "is_node" in item else True,
                )
            )
        if "output" not in data:
            raise self.fail(f"{where}: missing field 'output'")
        malformed = None
        if data.get("malformed") is not None:
            bad = data["malformed"]
            mw = f"{where}.malformed"
            if not isinstance(bad, dict):
                raise self.fail(f"{mw}: must be an object or null, got {_json_type(bad)}")
            malformed = Malformed(
                self.field(bad, "error", str, mw), self.field(bad, "message", str, mw)
            )
        return Annotation(tuple(inputs), self.qspec(data["output"], f"{where}.output"), malformed)

    def fast_node(self, data: Any) -> NodeRecord | None:
        """The record of a node in the usual shape, or ``None`` to leave it to :meth:`node`.

        It accepts only what :meth:`node` accepts and builds an equal record, without the
        per-field calls and messages :meth:`node` prepares; anything unusual (a missing or
        mistyped field, an encoded value other than a node reference or a tuple of plain
        values, a malformed annotation) goes to :meth:`node`, which reads it or says what is
        wrong.
        """
        if type(data) is not dict:
            return None
        get = data.get
        name, op, target = get("name"), get("op"), get("target")
        args, kwargs, user_list, meta = get("args"), get("kwargs"), get("users"), get("meta")
        if (
            type(name) is not str
            or type(op) is not str
            or not op
            or type(target) is not dict
            or type(args) is not list
            or type(kwargs) is not dict
            or type(user_list) is not list
            or type(meta) is not dict
            or "annotation" not in data
        ):
            return None
        tname, tkind = target.get("name"), target.get("kind")
        if type(tname) is not str or type(tkind) is not str:
            return None
        found = self.targets.get((tname, tkind))
        if found is None:
            kind = _KINDS.get(tkind)
            if kind is None:
                return None
            found = self.targets[tname, tkind] = Target.of(tname, kind)
        if not set(map(type, user_list)) <= _STR:
            return None
        foreign, meta_owner = get("foreign", False), get("meta_owner")
        if (foreign is not True and foreign is not False) or (
            meta_owner is not None and type(meta_owner) is not str
        ):
            return None
        plain = _FAST_PLAIN
        decoded_args = []
        for a in args:
            atype = type(a)
            if atype in plain:
                decoded_args.append(a)
            elif atype is dict and type(ref := a.get("$node")) is str and len(a) == 1:
                decoded_args.append(_new_ref(ref))  # the usual encoded argument, inline
            else:
                a = _fast_value(a, self.opaques)
                if a is _UNUSUAL:
                    return None
                decoded_args.append(a)
        pairs = []
        for k, v in kwargs.items():
            if type(v) not in plain:
                v = _fast_value(v, self.opaques)
                if v is _UNUSUAL:
                    return None
            pairs.append((k, v))
        values = []
        for k, v in meta.items():
            if type(v) not in plain:
                v = _fast_value(v, self.opaques)
                if v is _UNUSUAL:
                    return None
            values.append((k, v))
        ann = data["annotation"]
        if ann is not None:
            ann = _fast_annotation(ann)
            if ann is None:
                return None
        return _new_record(
            name,
            op,
            found,
            tuple(decoded_args),
            tuple(pairs),
            tuple(user_list),
            tuple(values),
            ann,
            foreign,
            meta_owner,
        )

    def node(self, data: Any, index: int) -> NodeRecord:
        where = f"nodes[{index}]"
        if not isinstance(data, dict):
            raise self.fail(f"{where}: must be an object, got {_json_type(data)}")
        name = self.field(data, "name", str, where)
        where = f"node {name!r}"
        op = self.field(data, "op", str, where)
        if not op:
            raise self.fail(f"{where}: op must not be empty (one of {sorted(OPS)}, usually)")
        target = self.field(data, "target", dict, where)
        tname = self.field(target, "name", str, f"{where}.target")
        tkind = self.field(target, "kind", str, f"{where}.target")
        if tkind not in {k.value for k in TargetKind}:
            raise self.fail(f"{where}.target: unknown kind {tkind!r}")
        args = [self.value(a, f"{where}.args") for a in self.field(data, "args", list, where)]
        kwargs = {
            k: self.value(v, f"{where}.kwargs[{k!r}]")
            for k, v in self.field(data, "kwargs", dict, where).items()
        }
        user_list = self.field(data, "users", list, where)
        if not all(isinstance(u, str) for u in user_list):
            raise self.fail(f"{where}: users must be node names (strings)")
        meta = {
            k: self.value(v, f"{where}.meta[{k!r}]")
            for k, v in self.field(data, "meta", dict, where).items()
        }
        if "annotation" not in data:
            raise self.fail(f"{where}: missing field 'annotation'")
        foreign = data.get("foreign", False)
        if not isinstance(foreign, bool):
            raise self.fail(
                f"{where}: field 'foreign' must be a boolean, got {_json_type(foreign)}"
            )
        meta_owner = data.get("meta_owner")
        if meta_owner is not None and not isinstance(meta_owner, str):
            raise self.fail(f"{where}: field 'meta_owner' must be a node name or null")
        return NodeRecord(
            name=name,
            op=op,
            target=Target.of(tname, tkind),
            args=tuple(args),
            kwargs=kwargs,
            users=tuple(user_list),
            meta=meta,
            annotation=self.annotation(data["annotation"], f"{where}.annotation"),
            foreign=foreign,
            meta_owner=meta_owner,
        )


_KINDS = {k.value: k for k in TargetKind}
_FAST_PLAIN = frozenset({str, int, bool, type(None)})
_UNUSUAL = object()
_new_record = trusted_constructor(NodeRecord)
_new_ref = trusted_constructor(NodeRef)
_new_opaque = trusted_constructor(Opaque)
_new_qspec = trusted_constructor(QSpec)
_new_input = trusted_constructor(QInput)
_new_annotation = trusted_constructor(Annotation)


def _fast_value(data: Any, opaques: dict[tuple[str, str], Opaque]) -> Any:
    """A float, a node reference, an opaque constant or a tuple of plain values, decoded as
    :func:`portmeta.codec.decode` does; ``_UNUSUAL`` for anything else.

    Equal opaque constants (a dtype in every q/dq node) are one object, kept in ``opaques``.
    """
    kind = type(data)
    if kind is float:
        return data
    if kind is dict:
        if len(data) == 1:
            body = data.get("$node")
            if type(body) is str:
                return _new_ref(body)
            body = data.get("$tuple")
            if type(body) is list and set(map(type, body)) <= _FAST_PLAIN:
                return tuple(body)
        elif len(data) == 2:
            text, type_name = data.get("$opaque"), data.get("type")
            if type(text) is str and type(type_name) is str:
                found = opaques.get((type_name, text))
                if found is None:
                    found = opaques[type_name, text] = _new_opaque(type_name, text)
                return found
    return _UNUSUAL


def _fast_qspec(data: Any) -> Any:
    if data is None:
        return None
    if type(data) is not dict:
        return _UNUSUAL
    kind, dyn = data.get("kind"), data.get("is_dynamic")
    if type(kind) is not str or (dyn is not None and dyn is not True and dyn is not False):
        return _UNUSUAL
    return _new_qspec(kind, dyn)


def _fast_annotation(data: Any) -> Annotation | None:
    """An annotation without ``malformed``, decoded; ``None`` for anything else."""
    if type(data) is not dict or "output" not in data or data.get("malformed") is not None:
        return None
    items = data.get("inputs")
    if type(items) is not list:
        return None
    inputs = []
    for item in items:
        if type(item) is not dict:
            return None
        node, is_node = item.get("node"), item.get("is_node", True)
        qspec = _fast_qspec(item.get("qspec"))
        if type(node) is not str or (is_node is not True and is_node is not False):
            return None
        if qspec is _UNUSUAL:
            return None
        inputs.append(_new_input(node, qspec, is_node))
    output = _fast_qspec(data["output"])
    if output is _UNUSUAL:
        return None
    return _new_annotation(tuple(inputs), output, None)


_MISSING = object()
_LEAVES = frozenset({str, int, bool, float, type(None)})
_FLAT = _LEAVES | {NodeRef, Opaque}
#: What a value is once :class:`_HookedDecoder` has seen it: a JSON scalar, or an object only
#: the decoder makes (a ``tuple`` comes only from a ``$tuple`` of flat values); lists and
#: dicts are raw JSON.
_DECODED = _FLAT | {tuple}
_NODE_RECORD = frozenset({NodeRecord})


def _hooked_value(data: Any, depth: int = 0) -> Any:
    """A value whose objects :class:`_HookedDecoder` has seen, decoded as
    :func:`portmeta.codec.decode` decodes the raw value; raises
    :class:`~portmeta.errors.CodecError` (without a message: the careful reader says what is
    wrong) where that raises, where the decoder made an object that is no value, and below ``_DEEPEST`` levels
    of nesting (the careful reader then says whether the value is too deep for it)."""
    kind = type(data)
    if kind in _DECODED:
        return data
    if depth >= _DEEPEST:
        raise codec.CodecError
    depth += 1
    if kind is list:
        return [_hooked_value(item, depth) for item in data]
    if kind is dict and len(data) == 1:
        ((tag, body),) = data.items()
        if type(body) is list:
            if tag == "$tuple":  # one holding more than flat values (hook() makes the others)
                return tuple([_hooked_value(item, depth) for item in body])
            if tag == "$dict":
                out: dict[Any, Any] = {}
                for pair in body:
                    if type(pair) is not list or len(pair) != 2:
                        raise codec.CodecError
                    key = _hooked_value(pair[0], depth)
                    try:
                        out[key] = _hooked_value(pair[1], depth)
                    except TypeError:  # unhashable key
                        raise codec.CodecError from None
                return out
    raise codec.CodecError


#: How deep :func:`_hooked_value` decodes nested values: far deeper than graphs hold them,
#: far shallower than the careful reader's recursion can go.
_DEEPEST = 64


class _HookedDecoder:
    """Decodes a saved graph while ``json.loads`` parses it: :meth:`hook` is its
    ``object_hook``, called on each JSON object once its members are parsed, while they are
    still in the processor's cache.

    :meth:`hook` turns an object of a known shape into what the careful reader
    (:class:`_Reader`) makes of such an object where the schema puts it: an encoded node
    reference, opaque constant, tuple or non-finite float into its value, a target into a
    :class:`Target`, a qspec, annotation input, malformed note or annotation into its record,
    and a node, whose members are decoded by then, into its :class:`NodeRecord`. Equal
    opaque constants, targets and qspecs read from one file are one object. Anything else is
    left as it is.

    The shapes are told apart by their keys, not by where they are, so an object elsewhere
    (a metadata dict with a ``$node`` key, say) may be turned into something it is not; but
    each place of the schema takes only the type its own shape makes (a node's ``meta`` only
    a plain dict, its ``target`` only a ``Target``, a value only a JSON scalar, a reference,
    an opaque constant, a tuple, or a list or ``$dict`` of values), so such a file, like one
    with a mistake or an unusual shape, ends as something :meth:`nodes` refuses, and
    :func:`load_graph` reads it again with the careful reader, which says what is wrong.
    """

    def __init__(self) -> None:
        self.opaques: dict[tuple[str, str], Opaque] = {}
        self.targets: dict[tuple[str, str], Target] = {}
        self.qspecs: dict[tuple[str, bool | None], QSpec] = {}

    def hook(self, data: dict[str, Any]) -> Any:
        """The ``object_hook``: ``data`` decoded, or ``data`` itself (see the class)."""
        size = len(data)
        if size == 1:
            name = data.get("$node")
            if type(name) is str:
                return _new_ref(name)
        elif size == 2:
            get = data.get
            text = get("$opaque")
            if text is not None:
                type_name = get("type")
                if type(text) is not str or type(type_name) is not str:
                    return data
                key = (type_name, text)
                found = self.opaques.get(key)
                if found is None:
                    found = self.opaques[key] = _new_opaque(type_name, text)
                return found
            kind = get("kind")
            if type(kind) is str:
                name = get("name")
                if type(name) is str:
                    return self.target(data, name, kind)
                if name is None and "is_dynamic" in data:
                    return self.qspec(data, kind, get("is_dynamic"))
        elif size >= 8:
            return self.node(data, size)
        elif not size:  # a node's kwargs or meta, most often
            return data
        return self.other(data)

    def target(self, data: dict[str, Any], name: str, kind: str) -> Any:
        """A target ``{"name": name, "kind": kind}``, read as :meth:`_Reader.node` reads it."""
        key = (name, kind)
        found = self.targets.get(key)
        if found is None:
            tkind = _KINDS.get(kind)
            if tkind is None:
                return data
            if tkind is TargetKind.OVERLOAD or tkind is TargetKind.PACKET:
                found = Target.of(name, tkind)  # interned
            else:
                found = _new_target(name, tkind)
            self.targets[key] = found
        return found

    def qspec(self, data: dict[str, Any], kind: str, dyn: Any) -> Any:
        """A qspec ``{"kind": kind[, "is_dynamic": dyn]}``, as :meth:`_Reader.qspec` reads it."""
        if dyn is not None and dyn is not True and dyn is not False:
            return data
        key = (kind, dyn)
        found = self.qspecs.get(key)
        if found is None:
            found = self.qspecs[key] = _new_qspec(kind, dyn)
        return found

    def node(self, data: dict[str, Any], size: int) -> Any:
        """A node's record, as :meth:`_Reader.node` reads it (``data`` if anything differs)."""
        get = data.get
        name, op, target = get("name"), get("op"), get("target")
        args, kwargs, user_list, meta = get("args"), get("kwargs"), get("users"), get("meta")
        ann = get("annotation", _MISSING)
        if size == 8:  # the eight fields above, if they are there: no "foreign", "meta_owner"
            foreign, meta_owner = False, None
        else:
            foreign, meta_owner = get("foreign", False), get("meta_owner")
        if (
            type(name) is not str
            or type(op) is not str
            or not op
            or type(target) is not Target
            or type(args) is not list
            or type(kwargs) is not dict
            or type(user_list) is not list
            or type(meta) is not dict
            or (ann is not None and type(ann) is not Annotation)
            or (foreign is not False and foreign is not True)
            or (meta_owner is not None and type(meta_owner) is not str)
        ):
            return data
        # inline loops: cheaper than a check in C (a map) for lists this short
        for user in user_list:
            if type(user) is not str:
                return data
        decoded = True
        for value in args:
            if type(value) not in _DECODED:
                decoded = False
                break
        try:
            values = tuple(args) if decoded else tuple([_hooked_value(a) for a in args])
            pairs = _hooked_pairs(kwargs) if kwargs else ()
            recorded = _hooked_pairs(meta) if meta else ()
        except codec.CodecError:
            return data
        return _new_record(
            name, op, target, values, pairs, tuple(user_list), recorded, ann, foreign, meta_owner
        )

    def other(self, data: dict[str, Any]) -> Any:
        """The less common shapes: ``$tuple``, ``$float``, qspecs, inputs, annotations and
        malformed notes (``data`` itself for any other)."""
        get = data.get
        size = len(data)
        if size == 1:
            body = get("$tuple")
            if type(body) is list and _FLAT.issuperset(map(type, body)):
                return tuple(body)  # others stay raw, for _hooked_value (it counts the depth)
            body = get("$float")
            if type(body) is str and body in codec._FLOATS:
                return codec._FLOATS[body]
        kind = get("kind")
        if type(kind) is str:
            if size != 1:  # {"kind", "is_dynamic"} is read by hook()
                return data
            return self.qspec(data, kind, None)
        node = get("node")
        if type(node) is str:
            spec, is_node = get("qspec"), get("is_node", True)
            if (
                size != 1 + ("qspec" in data) + ("is_node" in data)
                or (spec is not None and type(spec) is not QSpec)
                or (is_node is not True and is_node is not False)
            ):
                return data
            return _new_input(node, spec, is_node)
        inputs = get("inputs")
        if type(inputs) is list:
            output, bad = get("output", _MISSING), get("malformed")
            if (
                size != 2 + ("malformed" in data)
                or (output is not None and type(output) is not QSpec)
                or (bad is not None and type(bad) is not Malformed)
                or not set(map(type, inputs)) <= _QINPUT
            ):
                return data
            return _new_annotation(tuple(inputs), output, bad)
        error, message = get("error"), get("message")
        if size == 2 and type(error) is str and type(message) is str:
            return _new_malformed(error, message)
        return data

    def nodes(self, data: Any) -> tuple[list[NodeRecord], list[str] | None] | None:
        """The records and metadata keys of a parsed file, or ``None`` unless the file is a
        graph of the current schema whose every node :meth:`hook` decoded."""
        if type(data) is not dict:
            return None
        fmt, version, keys, recs = (
            data.get("format"),
            data.get("version"),
            data.get("meta_keys"),
            data.get("nodes"),
        )
        if (
            type(fmt) is not str
            or fmt != GRAPH_FORMAT
            or type(version) is not int
            or version != GRAPH_SCHEMA_VERSION
            or (keys is not None and (type(keys) is not list or not set(map(type, keys)) <= _STR))
            or type(recs) is not list
            or not set(map(type, recs)) <= _NODE_RECORD
        ):
            return None
        return recs, keys


def _hooked_pairs(mapping: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The ``(key, value)`` pairs of a node's ``kwargs`` or ``meta``, values decoded."""
    if _DECODED.issuperset(map(type, mapping.values())):
        return tuple(mapping.items())
    return tuple([(k, _hooked_value(v)) for k, v in mapping.items()])


_QINPUT = frozenset({QInput})
_new_malformed = trusted_constructor(Malformed)
_new_target = trusted_constructor(Target)


@without_gc
def graph_from_dict(data: Any, *, source: str | None = None) -> Snapshot:
    """Build a snapshot from :func:`graph_to_dict` data.

    Raises
    ------
    GraphFormatError
        On a wrong format or version, a missing or mistyped field, or records that do not form
        a graph (duplicates, unknown references, disagreeing users, cycles). The message names
        ``source`` (a file name) when given, the node, and the problem.

    Example
    -------
    >>> graph_from_dict({"format": "portmeta.graph", "version": 99, "nodes": []})
    Traceback (most recent call last):
    ...
    portmeta.errors.GraphFormatError: unsupported graph schema version 99 (this portmeta reads version 1)
    """
    reader = _Reader(source)
    try:
        if not isinstance(data, dict):
            raise reader.fail(f"expected a JSON object at the top level, got {_json_type(data)}")
        fmt = data.get("format")
        if fmt != GRAPH_FORMAT:
            raise reader.fail(
                f"not a portmeta graph file (format is {fmt!r}, expected {GRAPH_FORMAT!r})"
            )
        version = data.get("version")
        if type(version) is not int or version != GRAPH_SCHEMA_VERSION:
            raise reader.fail(
                f"unsupported graph schema version {version!r} "
                f"(this portmeta reads version {GRAPH_SCHEMA_VERSION})"
            )
        keys = data.get("meta_keys")
        if keys is not None and not (
            isinstance(keys, list) and all(isinstance(k, str) for k in keys)
        ):
            raise reader.fail("field 'meta_keys' must be a list of strings or null")
        nodes = reader.field(data, "nodes", list, "graph")
        fast = reader.fast_node
        recs = [fast(item) or reader.node(item, i) for i, item in enumerate(nodes)]
        return build_graph(recs, meta_keys=keys)
    except GraphBuildError as exc:
        raise GraphFormatError(str(exc), source) from None
    except RecursionError:
        raise GraphFormatError("data is nested too deeply", source) from None


def dump_graph(graph: Snapshot, path: str | os.PathLike[str]) -> None:
    """Write a snapshot to ``path`` as JSON (atomically: temporary file, then rename).

    Example
    -------
    >>> import tempfile, os
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x"))
    >>> path = os.path.join(tempfile.mkdtemp(), "g.json")
    >>> dump_graph(b.build(), path); list(load_graph(path).nodes)
    ['x', 'output']
    """
    atomic_write_text(path, json.dumps(graph_to_dict(graph), indent=1) + "\n")


def _parse_hooked(text: str, decoder: _HookedDecoder) -> Any:
    """``json.loads`` with the decoder's hook, called as deep in the stack as
    :func:`portmeta._io.parse_json` calls it: a file nested too deeply for the careful reader's
    parse is too deep here too (the hook's frames only add to the depth)."""
    return json.loads(text, object_hook=decoder.hook)


@without_gc
def load_graph(path: str | os.PathLike[str]) -> Snapshot:
    """Read a snapshot written by :func:`dump_graph` (or by ``portmeta_fx.dump``).

    Raises
    ------
    GraphFormatError
        Naming the file and the problem: unreadable, empty, not UTF-8, not JSON, nested too
        deeply, wrong format or schema version, or any problem :func:`graph_from_dict` finds.
    """
    source = str(path)
    text = read_text(path)
    decoder = _HookedDecoder()
    try:
        found = decoder.nodes(_parse_hooked(text, decoder))
    except (ValueError, RecursionError):  # not JSON, or nested too deeply: said below
        found = None
    if found is None:  # a mistake or an unusual shape: the careful reader says or reads it
        return graph_from_dict(parse_json(text, source), source=source)
    recs, keys = found
    try:
        return build_graph(recs, meta_keys=keys)
    except GraphBuildError as exc:
        raise GraphFormatError(str(exc), source) from None
    except RecursionError:
        raise GraphFormatError("data is nested too deeply", source) from None


# --------------------------------------------------------------------------- helpers


def _is(value: Any, kind: Any) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _kind_name(kind: Any) -> str:
    return {
        str: "a string",
        list: "an array",
        dict: "an object",
        bool: "a boolean",
        int: "an integer",
    }.get(kind, str(kind))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
