"""The immutable graph snapshot: a frozen ``networkx.DiGraph`` of :class:`NodeRecord` values.

Layout of a snapshot ``G``:

* nodes are node names, inserted in graph order, each with attribute ``"record"``;
* an edge ``u -> v`` means ``v`` is a user of ``u``; ``G.succ[u]`` iterates users in
  ``node.users`` order (edges carry no attributes);
* ``G.graph["annotated"]``: names of the graph's own (not ``foreign``) nodes that carry an
  annotation, in graph order;
* ``G.graph["meta_keys"]``: the metadata keys the snapshot read (``None``: whatever the author
  gave, so absence always means absent);
* ``G.graph["fingerprint"]``: the snapshot's fingerprint (below), computed the first time
  :func:`fingerprint` asks for it (at once when a recorded metadata value is mutable).

The graph is frozen with :func:`networkx.freeze`; build a new one instead of changing it.

Fingerprints
------------
A plan carries the fingerprint of the snapshot it was made from, and ``apply_plan`` and the
CLI refuse (or note) a plan whose fingerprint is not the graph's. A fingerprint is the SHA-256
of the snapshot's canonical form, which covers structure, arguments, keyword arguments, users,
recorded metadata (and the metadata keys read), annotations, ``foreign`` and ``meta_owner``. A
live snapshot (holding live metadata objects) and its JSON round trip have the same
fingerprint, in any process: values are taken as a loaded snapshot holds them
(:mod:`portmeta.codec`).

* **Scheme v2** (:func:`fingerprint`, since this version): ``"v2:"`` and 64 hex digits, the
  SHA-256 of :func:`canonical_form`: ``marshal`` data (format 2: no back-references, so the
  bytes do not depend on which equal objects are shared; floats as their 8 bytes, every NaN
  made one) of a header (format name and version, metadata keys, record count), then per
  block of 1,024 records the columns of everything but the metadata (the names, ops, target
  names and target kinds, each column one text with NUL between its strings, or a list when
  a string holds a NUL; per record users, ``foreign``, ``meta_owner`` and keyword arguments;
  per argument of the block, with a count per record, a code, then the node references'
  names, the opaque constants' type names and texts, the other values; the annotations'
  inputs, specs and malformed parts), then per block the records' metadata entries. Codes
  and tags keep node references, opaque constants and dicts apart from strings and tuples, so
  ``1``, ``1.0`` and ``True``, a tuple and a list, a string and a node reference with its text
  all differ.
* **Scheme v1** (portmeta before v2, kept to check the plans saved then): 64 bare hex digits,
  the SHA-256 of one ``repr`` line per record (:func:`canonical_lines`), about 2.5 times as
  costly. :func:`fingerprint_matches` compares a plan's fingerprint with the graph's in the
  plan's scheme (:func:`fingerprint_scheme` tells them apart), so a saved plan keeps applying to
  the graph it was made from.

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
import marshal
import os
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain, compress, repeat
from operator import attrgetter, is_not, itemgetter
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs
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
    "fingerprint_matches",
    "fingerprint_scheme",
    "fingerprint_v1",
    "FINGERPRINT_SCHEME",
    "CanonicalForm",
    "canonical_form",
    "graph_to_dict",
    "graph_from_dict",
    "dump_graph",
    "load_graph",
]

GRAPH_FORMAT = "portmeta.graph"
GRAPH_SCHEMA_VERSION = 1


#: Serialises the first build of a snapshot's adjacency (see :class:`_LazyAdjacency`).
_ADJACENCY_LOCK = threading.Lock()


class _LazyAdjacency:
    """A snapshot's ``_succ`` / ``_adj`` or ``_pred``: built from the records on first read.

    Planning reads users from the records (``NodeRecord.users``, in the same order), so a
    snapshot read from FX for the drop-in pass never needs networkx's adjacency dicts; they
    are built, both at once and under a lock, the first time anything (a networkx algorithm,
    a view, ``copy``, the check, drawing) reads one. Assignment works as networkx's own
    descriptors do. On the 100-block residual MLP graphs the drop-in pass went from 17.39 to
    16.20 ms (static) and 16.74 to 15.13 ms (dynamic), measured in turns.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.base = nx.DiGraph.__dict__[name]  # networkx's setter, which resets cached views

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__.get(self.name)
        if value is None:
            _build_adjacency(obj)
            value = obj.__dict__[self.name]
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        self.base.__set__(obj, value)


def _build_adjacency(G: Any) -> None:
    """Give ``G`` the ``_succ`` and ``_pred`` dicts of its records' ``users`` (once)."""
    with _ADJACENCY_LOCK:
        od = G.__dict__
        if "_succ" in od and "_pred" in od:  # built by another thread meanwhile
            return
        nodes = od["_node"]
        pred: dict[str, dict[str, Any]] = {name: {} for name in nodes}
        succ: dict[str, dict[str, Any]] = {}
        for name, data in nodes.items():
            out = succ[name] = {}
            for user in data["record"].users:  # users order
                out[user] = pred[user][name] = {}
        G._succ = succ
        G._pred = pred


class Snapshot(_DiGraph):
    """The snapshot type: a frozen ``networkx.DiGraph`` keyed by node name.

    A plain subclass with a readable ``repr`` (node count, annotated nodes, the first
    nodes), which pytest and hypothesis show in failure output. Copies, subgraph views,
    ``reverse``, ``to_directed``, relabelled graphs and pickles stay snapshots (unfrozen where
    networkx makes a new graph); ``to_undirected`` gives a ``networkx.Graph``.

    A snapshot read from FX builds its edges (``G.succ``, ``G.pred``, every networkx
    algorithm) from the records' ``users`` the first time something asks for them: planning
    reads the records alone.

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

    _adj = _succ = _LazyAdjacency("_adj")
    _pred = _LazyAdjacency("_pred")

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

    The node dicts are handed to networkx through the ``_node`` attribute its documentation
    describes for subclasses; the ``_succ`` and ``_pred`` dicts are left to be built from the
    records on first use (:class:`_LazyAdjacency`; :func:`_build_adjacency` builds them
    directly, a few times cheaper per edge than ``add_edges_from``, each edge with its own
    attribute dict shared by ``_succ`` and ``_pred``, as there).

    Metadata values are the live objects; if one can change in place (a dict, a list), the
    fingerprint is taken now rather than on first use, so that it describes the graph as read.
    """
    node = {rec.name: {"record": rec} for rec in recs}
    return _snapshot(recs, keys, node, None, None)


def _snapshot(
    recs: list[NodeRecord],
    keys: tuple[str, ...] | None,
    node: dict[str, dict[str, Any]],
    succ: dict[str, dict[str, Any]] | None,
    pred: dict[str, dict[str, Any]] | None,
) -> Snapshot:
    """The (unfrozen) snapshot with these networkx dicts (see :func:`_assemble`); without
    ``succ`` and ``pred``, they are built on first use (see :class:`_LazyAdjacency`)."""
    G = Snapshot()
    G._node = node  # type: ignore[attr-defined]
    if succ is None or pred is None:
        for name in ("_adj", "_succ", "_pred"):
            del G.__dict__[name]
    else:
        G._succ = succ
        G._pred = pred
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
    return tuple(graph._succ[name])


def annotated_nodes(graph: Snapshot) -> tuple[str, ...]:
    """Names of the annotated nodes in graph order."""
    names: tuple[str, ...] = graph.graph["annotated"]
    return names


def meta_keys(graph: Snapshot) -> tuple[str, ...] | None:
    """The metadata keys the snapshot read, or ``None`` when it recorded what it was given."""
    keys: tuple[str, ...] | None = graph.graph["meta_keys"]
    return keys


# --------------------------------------------------------------------------- fingerprint

#: The scheme :func:`fingerprint` computes (see the module docstring).
FINGERPRINT_SCHEME = "v2"

_V2_PREFIX = "v2:"
_HEX_DIGITS = frozenset("0123456789abcdef")


def fingerprint(graph: Snapshot) -> str:
    """The snapshot's fingerprint: ``"v2:"`` and the SHA-256 (hex) of its canonical form.

    The canonical form (:func:`canonical_form`) covers the structure, arguments, users,
    recorded metadata and annotations. Computed on first use and kept in
    ``graph.graph["fingerprint"]``: planning and writing do not need it, saving and checking
    a plan do. A graph and its JSON round trip have the same fingerprint, in any process.

    Plans saved before scheme v2 carry a v1 fingerprint (64 bare hex digits):
    compare a plan's fingerprint with :func:`fingerprint_matches`, which reads either scheme.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x")); g = b.build()
    >>> fingerprint(g) == fingerprint(graph_from_dict(graph_to_dict(g)))
    True
    >>> fingerprint(g)[:3], len(fingerprint(g))
    ('v2:', 67)
    """
    value: str | None = graph.graph.get("fingerprint")
    if value is None:
        value = graph.graph["fingerprint"] = canonical_form(graph).fingerprint()
    return value


def fingerprint_scheme(value: str) -> str | None:
    """The scheme of a fingerprint: ``"v2"``, ``"v1"`` (64 bare hex digits) or ``None``.

    Example
    -------
    >>> fingerprint_scheme("v2:" + "0" * 64), fingerprint_scheme("0" * 64), fingerprint_scheme("")
    ('v2', 'v1', None)
    """
    if len(value) == 67 and value.startswith(_V2_PREFIX) and set(value[3:]) <= _HEX_DIGITS:
        return "v2"
    if len(value) == 64 and set(value) <= _HEX_DIGITS:
        return "v1"
    return None


def fingerprint_matches(graph: Snapshot, value: str) -> bool:
    """Whether ``value`` (a plan's fingerprint) is ``graph``'s, in the scheme it was taken with.

    A v1 fingerprint (a plan saved before scheme v2) is compared with :func:`fingerprint_v1`,
    anything else with :func:`fingerprint`.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x")); g = b.build()
    >>> fingerprint_matches(g, fingerprint(g)), fingerprint_matches(g, fingerprint_v1(g))
    (True, True)
    >>> fingerprint_matches(g, "0" * 64)
    False
    """
    if fingerprint_scheme(value) == "v1":
        return fingerprint_v1(graph) == value
    return fingerprint(graph) == value


def fingerprint_v1(graph: Snapshot) -> str:
    """The fingerprint of scheme v1: SHA-256 (hex) of :func:`canonical_lines`.

    What portmeta computed before scheme v2, kept to check the plans saved then; computed each
    time it is asked for (it costs about 2.5 times the v2 fingerprint).

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x"))
    >>> fingerprint_scheme(fingerprint_v1(b.build()))
    'v1'
    """
    return digest(canonical_lines(graph), meta_keys(graph))


@attrs.frozen(slots=True, eq=False, repr=False, weakref_slot=False)
class CanonicalForm:
    """A snapshot's canonical form (scheme v2), as :func:`fingerprint` hashes it.

    ``structure`` is the SHA-256 state after everything but the recorded metadata; ``meta``
    holds one canonical entry per record, in graph order, hashed last, block by block
    (``meta_blocks``: each block's entries, marshalled), so that the fingerprint of the graph
    after writes to some nodes' metadata costs only their blocks again
    (:func:`portmeta.plan.fingerprint_after`).

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x", tag="T")); g = b.build()
    >>> form = canonical_form(g)
    >>> form.meta
    ((('quantization_tag', 'T'),), ())
    >>> form.fingerprint() == fingerprint(g)
    True
    >>> form.fingerprint({0: [("quantization_tag", "U")]}) == form.fingerprint()
    False
    """

    structure: Any  # a hashlib SHA-256 object, read only through copies
    meta: tuple[tuple[tuple[Any, Any], ...], ...]
    meta_blocks: tuple[bytes, ...]

    def fingerprint(self, meta: Mapping[int, Iterable[tuple[str, Any]]] | None = None) -> str:
        """The fingerprint, with the metadata of the records at positions ``meta`` replaced.

        ``meta`` maps a record's position in graph order to its ``(key, value)`` pairs.
        """
        blocks = list(self.meta_blocks)
        if meta:
            entries = list(self.meta)
            for i, pairs in meta.items():
                entries[i] = _meta_key(pairs)
            for b in {i // _BLOCK for i in meta}:
                blocks[b] = _dumps(tuple(entries[b * _BLOCK : (b + 1) * _BLOCK]))
        h = self.structure.copy()
        for block in blocks:
            h.update(block)
        return _V2_PREFIX + str(h.hexdigest())


@without_gc
def canonical_form(graph: Snapshot) -> CanonicalForm:
    """The canonical form (scheme v2) of the snapshot: what :func:`fingerprint` hashes.

    Built column by column over all records, mostly in C (see the module docstring for its
    layout); records with unusual values (containers or constants of other types among the
    arguments, keyword arguments, metadata values that are not strings, malformed
    annotations) are completed value by value, and a snapshot with fields of unusual types
    (a ``str`` subclass, say) record by record (:func:`_plain_record`), to the same form.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x")); g = b.build()
    >>> canonical_form(g).fingerprint() == fingerprint(g)
    True
    """
    recs: list[NodeRecord] = list(map(_RECORD, graph._node.values()))  # type: ignore[attr-defined]
    keys = meta_keys(graph)
    try:
        return _form(recs, keys)
    except ValueError:  # marshal refused a value: a str subclass, an odd object in a field no
        # constructor checks; the careful path makes every such value a plain one
        return _form(list(map(_plain_record, recs)), keys, careful=True)


#: marshal format 2: no back-references (format 3 on marks objects met twice, so its output
#: would depend on which equal objects are one object), floats as their 8 bytes (every NaN is
#: made :data:`_NAN` first, as JSON keeps one NaN), strings as UTF-8 (surrogates passed).
_MARSHAL_FORMAT = 2
#: The one NaN of the canonical form: a quiet NaN, sign bit clear.
_NAN: float = struct.unpack("<d", bytes.fromhex("000000000000f87f"))[0]


def _dumps(value: Any) -> bytes:
    return marshal.dumps(value, _MARSHAL_FORMAT)


_FORM_HEADER = ("portmeta.fingerprint", 2)
#: Records per block of the canonical form: a block's columns are built and marshalled while
#: its records are still in the CPU caches (a whole 100k-node graph's are not).
_BLOCK = 1024

_RECORD = itemgetter("record")
#: The string fields of a record, each a column joined into one text (:func:`_joined`).
_TEXT_FIELDS = tuple(map(attrgetter, ("name", "op", "target.name", "target.kind._value_")))
_HEAD = attrgetter("users", "foreign", "meta_owner", "kwargs")
_HEAD_KWARGS = itemgetter(3)
_ARGS = attrgetter("args")
_META = attrgetter("meta")
_ANNOTATION = attrgetter("annotation")
_INPUTS = attrgetter("inputs")
_INPUT_HEAD = attrgetter("node", "is_node")
_QSPEC = attrgetter("qspec")
_OUTPUT = attrgetter("output")
_MALFORMED = attrgetter("malformed")
_MALFORMED_KEY = attrgetter("error", "message")
_OPAQUE_KEY = attrgetter("type_name", "text")
_NAME = attrgetter("name")
_TYPE_NAME = attrgetter("type_name")
_TEXT = attrgetter("text")

#: Argument codes: a scalar other than a float, a node reference (its name goes to the names
#: column), an opaque constant (its type name and text go to their columns), anything else
#: (a container: its key, :func:`_key`, goes to the values column, as scalars do), a float
#: (any NaN made :data:`_NAN`).
_PLAIN_ARG, _REF_ARG, _OPAQUE_ARG, _OTHER_ARG, _FLOAT_ARG = 0, 1, 2, 3, 4
#: ``codes.translate`` tables: 1 where the code is that of a node reference, of an opaque
#: constant, of another argument, of a float; the codes of the arguments that are no values.
_IS_REF = bytes(int(c == _REF_ARG) for c in range(256))
_IS_OPAQUE = bytes(int(c == _OPAQUE_ARG) for c in range(256))
_IS_VALUE = bytes(int(c not in (_REF_ARG, _OPAQUE_ARG)) for c in range(256))
_IS_FLOAT = bytes(int(c == _FLOAT_ARG) for c in range(256))
_NOT_VALUE = bytes([_REF_ARG, _OPAQUE_ARG])
_ARG_CODES: dict[type, int] = {
    str: _PLAIN_ARG,
    int: _PLAIN_ARG,
    bool: _PLAIN_ARG,
    float: _FLOAT_ARG,
    type(None): _PLAIN_ARG,
    NodeRef: _REF_ARG,
    Opaque: _OPAQUE_ARG,
}
_SCALARS = frozenset({str, int, bool, float, type(None)})
#: The scalar types whose values are their own key (not floats: NaN), as are flat tuples and
#: lists of them.
_SELF_KEYED = frozenset({str, int, bool, type(None)})

_QSPEC_TYPES = frozenset({QSpec, type(None)})
_TUPLE = frozenset({tuple})


def _form(
    recs: list[NodeRecord], keys: tuple[str, ...] | None, *, careful: bool = False
) -> CanonicalForm:
    """The canonical form of ``recs``, hashed block by block of :data:`_BLOCK` records.

    ``careful`` takes every argument through :func:`_arg_key` (for records from
    :func:`_plain_record`); the result is the same for records the fast path can read.
    """
    header = (_FORM_HEADER, None if keys is None else tuple(map(_plain_field, keys)), len(recs))
    structure = hashlib.sha256(_dumps(header))
    meta: list[Any] = []
    blocks = []  # the metadata, marshalled while each block is in the caches
    for start in range(0, len(recs), _BLOCK):
        columns, block_meta = _block(recs[start : start + _BLOCK], careful)
        structure.update(_dumps(columns))
        meta += block_meta
        blocks.append(_dumps(tuple(block_meta)))
    return CanonicalForm(structure, tuple(meta), tuple(blocks))


def _block(recs: list[NodeRecord], careful: bool) -> tuple[tuple[Any, ...], list[Any]]:
    """The columns of one block of records (all but the metadata) and its metadata entries.

    Each column is one pass over the block, in C where it can be; the unusual values are
    completed one by one.
    """
    # per record: the string fields, a column each; the users, flags and keyword arguments
    texts = tuple([_joined(list(map(field, recs))) for field in _TEXT_FIELDS])
    heads = list(map(_HEAD, recs))

    # arguments, all records' in one list: a count per record and a code per argument, then
    # a column per kind: the node references' names, the opaque constants' type names and
    # texts (each column one text), the other arguments (scalars, containers' keys)
    arg_tuples = list(map(_ARGS, recs))
    args = list(chain.from_iterable(arg_tuples))
    if careful:
        keyed = list(map(_arg_key, args))
        codes = bytearray(map(itemgetter(0), keyed))
        args = list(map(itemgetter(1), keyed))
    else:
        codes = bytearray(map(_ARG_CODES.get, map(type, args), repeat(_OTHER_ARG)))
        for i in _positions(codes, _OTHER_ARG):  # containers, constants of other types: rare
            codes[i], args[i] = _arg_key(args[i])
    names = list(map(_NAME, compress(args, codes.translate(_IS_REF))))
    opaques = list(compress(args, codes.translate(_IS_OPAQUE)))
    values = list(compress(args, codes.translate(_IS_VALUE)))
    # floats: one NaN for all (a sum in C tells whether there is any NaN, or inf - inf)
    total = sum(compress(values, codes.translate(None, _NOT_VALUE).translate(_IS_FLOAT)), 0.0)
    if total != total:
        values = [_float_key(v) if type(v) is float else v for v in values]

    # keyword arguments (few records have any): (key, code, payload) per argument
    for i in compress(range(len(heads)), map(_HEAD_KWARGS, heads)):
        *head, kwargs = heads[i]
        heads[i] = (*head, tuple([_kwarg_key(k, v) for k, v in kwargs]))

    # recorded metadata: pairs of strings as they are; other values by their canonical key
    meta = list(map(_META, recs))
    if not set(map(type, map(itemgetter(1), chain.from_iterable(meta)))) <= _STR:
        for i, pairs in enumerate(meta):
            if not set(map(type, map(itemgetter(1), pairs))) <= _STR:
                meta[i] = _meta_key(pairs)

    # annotations: which records have one; per annotation its input count, per input its
    # node and is_node; per spec (the inputs', then the outputs') its kind and is_dynamic,
    # None for None; per annotation its malformed (error, message) or None
    anns = list(map(_ANNOTATION, recs))
    annotated = bytes(map(is_not, anns, repeat(None)))
    anns = list(compress(anns, annotated))
    inputs = list(map(_INPUTS, anns))
    flat_inputs = list(chain.from_iterable(inputs))
    specs = list(map(_QSPEC, flat_inputs))
    specs += map(_OUTPUT, anns)
    if not set(map(type, specs)) <= _QSPEC_TYPES:
        raise ValueError("a quantization spec that is not a QSpec")  # careful path
    malformed = list(map(_MALFORMED, anns))
    for i in compress(range(len(malformed)), map(is_not, malformed, repeat(None))):
        malformed[i] = _MALFORMED_KEY(malformed[i])

    columns = (
        texts,
        heads,
        list(map(len, arg_tuples)),
        bytes(codes),
        _joined(names),
        _joined(list(map(_TYPE_NAME, opaques))),
        _joined(list(map(_TEXT, opaques))),
        values,
        annotated,
        list(map(len, inputs)),
        list(map(_INPUT_HEAD, flat_inputs)),
        list(map(getattr, specs, repeat("kind"), specs)),
        list(map(getattr, specs, repeat("is_dynamic"), specs)),
        malformed,
    )
    return columns, meta


def _joined(strings: list[Any]) -> Any:
    """A column of strings as one text, NUL between them (unless one of them holds a NUL:
    then the list as it is)."""
    try:
        text = "\0".join(strings)
    except TypeError:  # not all strings (the careful path's keys of odd values)
        return strings
    return text if text.count("\0") == len(strings) - 1 else strings


def _positions(codes: bytearray, code: int) -> Iterator[int]:
    """The positions of ``code`` in ``codes`` (a C search between them: codes other than the
    usual ones are rare)."""
    i = codes.find(code)
    while i >= 0:
        yield i
        i = codes.find(code, i + 1)


def _arg_key(value: Any) -> tuple[int, Any]:
    """The code of one argument and the argument as the columns take it: the value as a
    loaded snapshot holds it (:func:`_canonical`), with plain strings in a node reference or
    an opaque constant, a float's NaN made :data:`_NAN`, a container as its key."""
    kind = type(value)
    if (kind is tuple or kind is list) and set(map(type, value)) <= _SELF_KEYED:
        return _OTHER_ARG, value  # a shape, a list of dims: its own key
    value = _canonical(value)
    kind = type(value)
    if kind is NodeRef:
        return _REF_ARG, _make_ref(_plain_field(value.name))
    if kind is Opaque:
        return _OPAQUE_ARG, _make_opaque(_plain_field(value.type_name), _plain_field(value.text))
    if kind is float:
        return _FLOAT_ARG, _float_key(value)
    if kind in _SCALARS:
        return _PLAIN_ARG, value
    return _OTHER_ARG, _guarded_key(value)


def _kwarg_key(key: Any, value: Any) -> tuple[Any, int, Any]:
    """One keyword argument as the canonical form holds it: key, code, payload (a node
    reference's name, an opaque constant's (type name, text), or the argument's key)."""
    code, item = _arg_key(value)
    if code == _REF_ARG:
        item = item.name
    elif code == _OPAQUE_ARG:
        item = _OPAQUE_KEY(item)
    return _plain_field(key), code, item


def _meta_key(pairs: Iterable[tuple[Any, Any]]) -> tuple[tuple[Any, Any], ...]:
    """The canonical entry of one record's metadata ``pairs`` (strings stay as they are)."""
    pairs = tuple(pairs)
    if set(map(type, pairs)) <= _TUPLE and set(map(type, chain.from_iterable(pairs))) <= _STR:
        return pairs  # (key, text) pairs, the usual metadata: their own entry
    return tuple([(_plain_field(k), _value_key(v)) for k, v in pairs])


def _value_key(value: Any) -> Any:
    """The canonical key of any value: of the value as a loaded snapshot holds it."""
    kind = type(value)
    if kind in _SCALARS:
        return _float_key(value) if kind is float else value
    return _guarded_key(_canonical(value))


def _guarded_key(value: Any) -> Any:
    """:func:`_key` of a canonical value; one nested too deeply to walk is keyed as an opaque
    constant of the whole, as the codec would keep it."""
    try:
        return _key(value)
    except RecursionError:
        return _key(codec.opaque_of(value))


def _key(value: Any) -> Any:
    """The marshal-ready key of a canonical value (one of the codec's domain).

    Scalars, tuples and lists stay what they are (marshal keeps their types apart); a node
    reference, an opaque constant and a dict become tuples tagged with ``...`` (Ellipsis,
    which no canonical value holds: the codec makes it an opaque constant) and a name, so
    that none of them equals a string or a tuple.
    """
    kind = type(value)
    if kind is tuple:
        return tuple(map(_key, value))
    if kind is list:
        return list(map(_key, value))
    if kind is NodeRef:
        return (..., "node", _plain_field(value.name))
    if kind is Opaque:
        return (..., "opaque", _plain_field(value.type_name), _plain_field(value.text))
    if kind is dict:
        return (..., "dict", *chain.from_iterable((_key(k), _key(v)) for k, v in value.items()))
    return _float_key(value) if kind is float else value


def _float_key(value: float) -> float:
    """A float as the canonical form holds it: itself, or :data:`_NAN` for any NaN."""
    return value if value == value else _NAN


def _plain_field(value: Any) -> Any:
    """A field the canonical form takes as it is: a ``str`` stays, a ``str`` subclass becomes
    the ``str`` of its text (as in its JSON round trip: ``str.__str__``, not a ``__str__`` of
    its own, as an enum's), anything else becomes its canonical key."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    return _value_key(value)


_make_record = trusted_constructor(NodeRecord)
_make_target = trusted_constructor(Target)
_make_annotation = trusted_constructor(Annotation)
_make_input = trusted_constructor(QInput)
_make_qspec = trusted_constructor(QSpec)
_make_malformed = trusted_constructor(Malformed)
_make_opaque = trusted_constructor(Opaque)
_make_ref = trusted_constructor(NodeRef)


def _plain_qspec(spec: Any) -> QSpec | None:
    if spec is None:
        return None
    return _make_qspec(_plain_field(spec.kind), _plain_field(spec.is_dynamic))


def _plain_record(rec: NodeRecord) -> NodeRecord:
    """``rec`` with plain values in every field the canonical form takes as it is.

    The fallback of :func:`canonical_form` for a snapshot whose records hold a ``str`` subclass
    or an odd object in a field no constructor checks (``users``, ``is_node``, a malformed
    annotation's texts); its arguments are then keyed one by one.
    """
    ann = rec.annotation
    if ann is not None:
        bad = ann.malformed
        ann = _make_annotation(
            tuple(
                [
                    _make_input(
                        _plain_field(i.node), _plain_qspec(i.qspec), _plain_field(i.is_node)
                    )
                    for i in ann.inputs
                ]
            ),
            _plain_qspec(ann.output),
            None
            if bad is None
            else _make_malformed(_plain_field(bad.error), _plain_field(bad.message)),
        )
    target = rec.target
    return _make_record(
        _plain_field(rec.name),
        _plain_field(rec.op),
        _make_target(_plain_field(target.name), target.kind),
        rec.args,
        rec.kwargs,
        tuple(map(_plain_field, rec.users)),
        tuple([(_plain_field(k), v) for k, v in rec.meta]),
        ann,
        _plain_field(rec.foreign),
        _plain_field(rec.meta_owner),
    )


# ---------------------------------------------------------------------- fingerprint, scheme v1


def canonical_lines(graph: Snapshot) -> list[str]:
    """One canonical text per record, in graph order: what :func:`fingerprint_v1` hashes."""
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
    """SHA-256 (hex) of canonical ``lines`` read with metadata ``keys``: a v1 fingerprint."""
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
