"""Turn a ``torch.fx.GraphModule`` into a portmeta snapshot (and JSON).

:func:`from_fx` reads, for every node in graph order, its name, op, target, arguments, users,
the metadata keys the profile ports and the quantization annotation, and freezes them with
:func:`portmeta.build_graph`. Nothing on the graph module is changed.

How FX values become snapshot values
------------------------------------
* targets: ``OpOverload`` -> :meth:`Target.overload` (``aten.view.default``), ``OpOverloadPacket``
  -> :meth:`Target.packet` (``torchao.quantize_affine``), string targets (placeholder, get_attr,
  call_module, call_method, output) -> :meth:`Target.named`, any other callable ->
  :meth:`Target.function` with its qualified name (``operator.getitem``; ``repr`` when no
  qualified name can be computed, e.g. for higher-order operators).
* arguments: ``Node`` -> :class:`NodeRef`; lists (also FX's ``immutable_list``), tuples and
  dicts (also ``immutable_dict``) recursively, lists staying lists and tuples tuples; ``None``,
  ``bool``, ``int``, ``float`` and ``str`` as they are; a ``slice`` becomes
  ``{"$slice": (start, stop, step)}`` so node references inside it are kept (FX registers them
  as inputs); a node inside a dict *key* is opaque (FX does not); anything else (dtypes,
  devices, tensors, ...) -> :func:`portmeta.codec.opaque_of`.
* metadata: for every profile key *present* in ``node.meta`` the value object itself (the
  snapshot's fingerprint encodes it with :mod:`portmeta.codec`).
* annotation: ``node.meta.get("quantization_annotation")``; see :func:`annotation_of`.

Example
-------
>>> import torch
>>> from portmeta_fx import from_fx
>>> gm = torch.fx.symbolic_trace(torch.nn.ReLU())
>>> G = from_fx(gm)
>>> list(G.nodes)
['input_1', 'relu', 'output']
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch
import torch.fx

import portmeta
from portmeta import codec
from portmeta._gc import without_gc
from portmeta.graph import Snapshot
from portmeta.records import (
    Annotation,
    Malformed,
    NodeRecord,
    NodeRef,
    Opaque,
    QInput,
    QSpec,
    Target,
    trusted_constructor,
)

__all__ = [
    "Q_ANNOTATION_KEY",
    "from_fx",
    "dump",
    "target_of",
    "arg_of",
    "qspec_of",
    "annotation_of",
    "record_of",
    "read_fx",
    "snapshot_nodes",
    "resolve_profile",
]

#: Records are built from values of the right types (names are strings, tuples are tuples): the
#: trusted constructor skips the converters and checks the public one runs.
_new_record = trusted_constructor(NodeRecord)
_new_ref = trusted_constructor(NodeRef)
_new_input = trusted_constructor(QInput)
_new_annotation = trusted_constructor(Annotation)

#: The annotation of a node with an empty annotation (no input specs, no output spec).
_NOT_ANNOTATED = Annotation()

#: The ``node.meta`` key quantizers store their annotation under (torchao's ``Q_ANNOTATION_KEY``).
Q_ANNOTATION_KEY = "quantization_annotation"


def resolve_profile(
    profile: portmeta.Profile = portmeta.TORCHAO, keys: Sequence[str] | None = None
) -> portmeta.Profile:
    """``profile`` with its keys replaced by ``keys`` (``None``: unchanged).

    Example
    -------
    >>> resolve_profile(keys=["stack_trace"]).keys
    ('stack_trace',)
    >>> resolve_profile() is portmeta.TORCHAO
    True
    """
    if keys is None:
        return profile
    if isinstance(keys, str):
        raise portmeta.ProfileError(f"keys must be a sequence of strings, not the string {keys!r}")
    return attrs.evolve(profile, keys=tuple(keys))


def _qualified_name(fn: Any) -> str:
    try:
        name = torch.fx.node._get_qualified_name(fn)
    except Exception:
        return codec.opaque_of(fn).text  # repr, or a stand-in when repr itself fails
    if name.startswith("_operator."):
        name = "operator." + name[len("_operator.") :]
    return name


def target_of(node: torch.fx.Node) -> Target:
    """The snapshot :class:`~portmeta.records.Target` of an FX node.

    Example
    -------
    >>> import operator
    >>> g = torch.fx.Graph(); x = g.placeholder("x")
    >>> target_of(g.call_function(operator.getitem, (x, 0)))
    Target(name='operator.getitem', kind=<TargetKind.CALLABLE: 'callable'>)
    >>> target_of(g.call_function(torch.ops.aten.relu.default, (x,))).kind.value
    'overload'
    """
    t = node.target
    if isinstance(t, str):
        return Target.named(t)
    if isinstance(t, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return _operator_target(t)
    return Target.function(_qualified_name(t))


@functools.lru_cache(maxsize=4096)
def _operator_target(t: Any) -> Target:
    """Operators are global and long-lived: their targets are cached (``str()`` is slow)."""
    if isinstance(t, torch._ops.OpOverload):
        return Target.overload(str(t))
    return Target.packet(str(t))


#: Constants that are global singletons in torch: their Opaque stand-ins are cached.
_SINGLETON_CONSTANTS = (torch.dtype, torch.device, torch.layout, torch.memory_format)


@functools.lru_cache(maxsize=1024)
def _opaque_singleton(value: Any) -> Opaque:
    return codec.opaque_of(value)


def arg_of(value: Any, names: Mapping[torch.fx.Node, str] | None = None) -> Any:
    """An FX argument value as a snapshot value (see the module docstring).

    ``names`` maps nodes to snapshot names (a node's own name when absent).

    Example
    -------
    >>> g = torch.fx.Graph(); x = g.placeholder("x")
    >>> arg_of([x, (1, torch.int8), {"k": None}])
    [NodeRef(name='x'), (1, Opaque(type_name='torch.dtype', text='torch.int8')), {'k': None}]
    """
    return _convert(value, lambda node: NodeRef(_name(node, names)))


_SCALARS = (bool, int, float, str)
#: Targets converted so far, by the identity of the target object (held, so the identity stays
#: its own): operators and functions are few and long-lived, and a graph's first node of each
#: kind then costs no conversion. Bounded: emptied when full.
_TARGETS: dict[int, tuple[Any, Target]] = {}
_TARGETS_LIMIT = 4096


def _convert(value: Any, ref: Callable[[torch.fx.Node], NodeRef]) -> Any:
    """:func:`arg_of`, with ``ref`` turning a node into its reference."""
    if isinstance(value, torch.fx.Node):
        return ref(value)
    kind = type(value)
    if value is None or kind in _SCALARS:
        return value
    if isinstance(value, list):  # includes torch.fx immutable_list
        return [_convert(v, ref) for v in value]
    if isinstance(value, tuple):  # tuple subclasses (torch.Size, named tuples) become tuples
        return tuple([_convert(v, ref) for v in value])
    if isinstance(value, dict):  # includes torch.fx immutable_dict
        # FX registers users through dict values only: a node used as a key is not an input
        return {_key_of(k): _convert(v, ref) for k, v in value.items()}
    if isinstance(value, _SINGLETON_CONSTANTS):
        return _opaque_singleton(value)
    if isinstance(value, slice):  # FX looks for nodes inside slices too
        parts = (value.start, value.stop, value.step)
        return {"$slice": tuple([_convert(p, ref) for p in parts])}
    return codec.opaque_of(value)


def _key_of(key: Any) -> Any:
    """A dict key: FX never registers users through keys, so nodes in keys are opaque."""
    if isinstance(key, torch.fx.Node):
        return Opaque("torch.fx.Node", f"<node {key.name}>")
    if isinstance(key, tuple):
        return tuple(_key_of(k) for k in key)
    return arg_of(key)


_ABSENT = object()


def _return_slot(self: Any) -> Any:
    return self.slot


def _property_returns(prop: Any, slot: str) -> bool:
    """Whether the property ``prop`` is exactly ``return self.<slot>`` (its bytecode checked)."""
    code = getattr(getattr(prop, "fget", None), "__code__", None)
    return (
        code is not None
        and code.co_names == (slot,)
        and code.co_code == _return_slot.__code__.co_code
        and code.co_argcount == 1
    )


#: torch.fx's ``Node.args`` and ``Node.kwargs`` are Python properties returning the C-level
#: members ``_args`` and ``_kwargs``; the reader's loop reads the members when the properties
#: are exactly that (checked here, on the torch in use), saving a Python call per read: the
#: reader 6.78 -> 6.35 ms (static), 7.20 -> 6.72 ms (dynamic).
_MEMBERS = _property_returns(torch.fx.Node.args, "_args") and _property_returns(
    torch.fx.Node.kwargs, "_kwargs"
)


def qspec_of(spec: Any, *, read_dynamic: bool = True) -> QSpec | None:
    """The part of a quantization spec that planning reads.

    ``is_dynamic`` is ``True`` only when the spec's ``is_dynamic`` attribute *is* ``True``
    (upstream's test), ``None`` when the spec has no such attribute, ``False`` otherwise.
    With ``read_dynamic=False`` (output specs, whose ``is_dynamic`` upstream never reads) it
    is not read at all and recorded as ``None``.

    Example
    -------
    >>> class Odd:  # an unknown spec class without is_dynamic
    ...     pass
    >>> qspec_of(Odd()), qspec_of(None)
    (QSpec(kind='Odd', is_dynamic=None), None)
    """
    if spec is None:
        return None
    value = getattr(spec, "is_dynamic", _ABSENT) if read_dynamic else _ABSENT
    return QSpec(kind=type(spec).__name__, is_dynamic=None if value is _ABSENT else value is True)


def annotation_of(
    value: Any, names: Mapping[torch.fx.Node, str] | None = None
) -> Annotation | None:
    """The snapshot :class:`~portmeta.records.Annotation` of a ``quantization_annotation`` value.

    ``input_qspec_map`` is read in insertion order; a ``Node`` key becomes a reference to its
    snapshot name (``names``, from :func:`snapshot_nodes`; the node's own name without it). A
    key that is not a ``Node`` at all becomes ``QInput(repr(key), spec, is_node=False)``, which
    nothing connects to.

    Objects that do not look like a ``QuantizationAnnotation`` never make this function fail.
    Where upstream's reads of them fail (a missing ``input_qspec_map`` or ``output_qspec``, a
    map without ``len`` or ``items``), the annotation is recorded as
    :class:`~portmeta.records.Malformed` with the error upstream raises, and planning raises
    the matching :class:`~portmeta.errors.MalformedAnnotationError`.

    Example
    -------
    >>> from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    >>> g = torch.fx.Graph(); x = g.placeholder("x")
    >>> annotation_of(QuantizationAnnotation({x: None}))
    Annotation(inputs=(QInput(node='x', qspec=None, is_node=True),), output=None, malformed=None)
    >>> annotation_of(object()).malformed.error   # upstream fails reading it
    'AttributeError'
    """
    return _annotation(value, lambda node: _name(node, names), qspec_of)


def _annotation(
    value: Any,
    name: Callable[[torch.fx.Node], str],
    qspec: Callable[..., QSpec | None],
) -> Annotation | None:
    """:func:`annotation_of`, with ``name`` naming input nodes and ``qspec`` reading specs."""
    if value is None:
        return None
    # the reads upstream's is_valid_annotation and its loop make, in their order
    try:
        qspec_map = value.input_qspec_map
        output = value.output_qspec
    except AttributeError as exc:
        return Annotation(malformed=Malformed("AttributeError", str(exc)))
    try:
        empty = len(qspec_map) == 0
    except TypeError as exc:
        return Annotation(malformed=Malformed("TypeError", str(exc)))
    if empty and output is None:
        return Annotation()  # not annotated, as upstream sees it
    try:
        items = list(qspec_map.items())
    except Exception as exc:
        return Annotation(malformed=Malformed(type(exc).__name__, str(exc)))
    inputs = []
    for key, spec in items:
        if isinstance(key, torch.fx.Node):
            inputs.append(_new_input(name(key), qspec(spec), True))
        else:
            inputs.append(_new_input(repr(key), qspec(spec), False))
    return _new_annotation(tuple(inputs), qspec(output, read_dynamic=False), None)


def _name(node: torch.fx.Node, names: Mapping[torch.fx.Node, str] | None) -> str:
    return node.name if names is None else names.get(node, node.name)


def snapshot_nodes(gm: torch.fx.GraphModule | torch.fx.Graph) -> dict[str, torch.fx.Node]:
    """Every node a snapshot of ``gm`` records, by snapshot name.

    First the graph's own nodes in graph order, under their own names. Then every *foreign*
    node reachable from them, transitively, through arguments, users or the inputs of
    annotations upstream can read (planning fails on the others before any rule walks): a node
    of another graph (an annotation kept from a copied graph), or an erased node that an
    annotation still names. Upstream's rules follow ``node.users`` and ``node.args`` wherever
    they lead and write to what they find, so the snapshot must see those nodes too. A foreign
    node is named ``"<name>@<k>"``, ``k`` numbering the graphs such nodes belong to; ``@`` never
    occurs in an FX node name.

    Example
    -------
    >>> from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    >>> other = torch.fx.Graph(); w = other.placeholder("w")
    >>> g = torch.fx.Graph(); x = g.placeholder("x"); y = g.call_function(torch.relu, (x,))
    >>> y.meta["quantization_annotation"] = QuantizationAnnotation({w: None})
    >>> list(snapshot_nodes(g))
    ['x', 'relu', 'w@0']
    """
    graph = gm if isinstance(gm, torch.fx.Graph) else gm.graph
    reader = _Reader(graph, keys=())
    reader.records()  # meets every foreign node, as a snapshot does
    return reader.nodes()


def record_of(
    node: torch.fx.Node,
    keys: Sequence[str],
    names: Mapping[torch.fx.Node, str] | None = None,
    *,
    foreign: bool = False,
) -> NodeRecord:
    """The :class:`~portmeta.records.NodeRecord` of one FX node, reading metadata ``keys``.

    ``names`` maps nodes to snapshot names (see :func:`snapshot_nodes`); a ``foreign`` node's
    annotation is not recorded (upstream never visits it).

    Example
    -------
    >>> g = torch.fx.Graph(); x = g.placeholder("x"); x.meta["stack_trace"] = None
    >>> record_of(x, ("stack_trace", "quantization_tag")).meta_dict()
    {'stack_trace': None}
    """
    meta = node.meta
    return NodeRecord(
        name=_name(node, names),
        op=node.op,
        target=target_of(node),
        args=tuple(arg_of(a, names) for a in node.args),
        kwargs={k: arg_of(v, names) for k, v in node.kwargs.items()},
        users=tuple(_name(u, names) for u in node.users),
        meta=tuple((k, meta[k]) for k in keys if k in meta),
        annotation=None if foreign else annotation_of(meta.get(Q_ANNOTATION_KEY), names),
        foreign=foreign,
    )


class _Reader:
    """One walk over an FX graph that names its nodes and records them.

    The graph's own nodes keep their names (made unique with ``+`` if a hand-assigned name
    repeats); a node of another graph met through an argument, a user or an annotation key is
    named ``name@k`` when first met and recorded after the own nodes, with the nodes it leads
    to (see :func:`snapshot_nodes`, which names nodes the same way). Node references and
    quantization specs, met many times, are converted once.
    """

    def __init__(self, graph: torch.fx.Graph, keys: Sequence[str]) -> None:
        own = list(graph.nodes)
        self.names = {node: node.name for node in own}
        self.taken = set(self.names.values())
        if len(self.taken) != len(own):  # FX keeps names unique unless assigned by hand
            self.names, self.taken = {}, set()
            for node in own:
                name = node.name
                while name in self.taken:
                    name += "+"
                self.names[node] = name
                self.taken.add(name)
        self.own = own
        self.keys = tuple(keys)
        self.graph_number: dict[int, int] = {}
        self.foreign: deque[torch.fx.Node] = deque()
        self.refs: dict[torch.fx.Node, NodeRef] = {}
        self.targets = _TARGETS
        self.input_specs: dict[int, tuple[Any, QSpec | None]] = {}
        self.output_specs: dict[int, tuple[Any, QSpec | None]] = {}

    def name(self, node: torch.fx.Node) -> str:
        name = self.names.get(node)
        if name is None:  # first meeting with a node of another graph
            k = self.graph_number.setdefault(id(node.graph), len(self.graph_number))
            name = f"{node.name}@{k}"
            while name in self.taken:  # two erased nodes of one graph may share a name
                name += "+"
            self.names[node] = name
            self.taken.add(name)
            self.foreign.append(node)
        return name

    def ref(self, node: torch.fx.Node) -> NodeRef:
        ref = self.refs.get(node)
        if ref is None:
            ref = self.refs[node] = _new_ref(self.name(node))
        return ref

    def arg(self, value: Any) -> Any:
        if type(value) is torch.fx.Node:
            return self.ref(value)
        if value is None or type(value) in _SCALARS:
            return value
        return _convert(value, self.ref)

    def args(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """``node.args`` converted; nodes met before and plain scalars take no call."""
        refs = self.refs
        out = []
        for value in values:
            kind = type(value)
            if kind is torch.fx.Node:
                ref = refs.get(value)
                out.append(self.ref(value) if ref is None else ref)
            elif value is None or kind in _SCALARS:
                out.append(value)
            elif kind is torch.dtype:  # in every quantize / dequantize node's arguments
                out.append(_opaque_singleton(value))
            else:
                out.append(_convert(value, self.ref))
        return tuple(out)

    def users(self, node: torch.fx.Node) -> tuple[str, ...]:
        names = self.names
        return tuple([names.get(user) or self.name(user) for user in node.users])

    def qspec(self, spec: Any, *, read_dynamic: bool = True) -> QSpec | None:
        """:func:`qspec_of`, once per spec object (quantizers share specs between nodes)."""
        specs = self.input_specs if read_dynamic else self.output_specs
        found = specs.get(id(spec))
        if found is None or found[0] is not spec:
            found = specs[id(spec)] = (spec, qspec_of(spec, read_dynamic=read_dynamic))
        return found[1]

    def annotation(self, value: Any) -> Annotation | None:
        """:func:`annotation_of` for a node's ``quantization_annotation`` value (not ``None``).

        The usual annotation (a dict of the graph's nodes to specs met before) is read here
        without a call per input; anything else by :func:`_annotation`. The empty one that
        marks a node as handled (torchao's quantizers leave it on weights and biases) is one
        shared record.
        """
        try:
            qspec_map = value.input_qspec_map
            output = value.output_qspec
        except AttributeError:  # malformed: the general reader says how
            qspec_map = None
        if type(qspec_map) is not dict:
            return _annotation(value, self.name, self.qspec)
        if not qspec_map:
            if output is None:
                return _NOT_ANNOTATED
            return _new_annotation((), self.qspec(output, read_dynamic=False), None)
        names, specs = self.names, self.input_specs
        inputs = []
        for key, spec in qspec_map.items():
            name = names.get(key) if type(key) is torch.fx.Node else None
            found = specs.get(id(spec))
            if name is None or found is None or found[0] is not spec:
                return _annotation(value, self.name, self.qspec)
            inputs.append(_new_input(name, found[1], True))
        return _new_annotation(tuple(inputs), self.qspec(output, read_dynamic=False), None)

    def target(self, node: torch.fx.Node) -> Target:
        """:func:`target_of`, once per target object (by identity: equal callables may differ)."""
        t = node.target
        found = self.targets.get(id(t))
        if found is None or found[0] is not t:
            if len(self.targets) >= _TARGETS_LIMIT:
                self.targets.clear()
            found = self.targets[id(t)] = (t, target_of(node))
        return found[1]

    def record(self, node: torch.fx.Node, owner: str | None, foreign: bool) -> NodeRecord:
        name = self.names[node]
        meta = node.meta
        op = node.op
        if type(op) is not str or not op:  # a hand-assigned op: the checked constructor says why
            return NodeRecord(name, op, self.target(node))
        t = node.target
        found = self.targets.get(id(t))
        target = self.target(node) if found is None or found[0] is not t else found[1]
        kwargs = node.kwargs
        try:  # every user already named: no Python-level call per user
            users = tuple(map(self.names.__getitem__, node.users))
        except KeyError:
            users = self.users(node)
        values = ()
        for key in self.keys:
            if key in meta:
                values += ((key, meta[key]),)
        annotation = None if foreign else meta.get(Q_ANNOTATION_KEY)
        return _new_record(
            name,
            op,
            target,
            self.args(node.args),
            tuple([(str(k), self.arg(v)) for k, v in kwargs.items()]) if kwargs else (),
            users,
            values,
            None if annotation is None else self.annotation(annotation),
            foreign,
            None if owner == name else owner,
        )

    def records(self) -> list[NodeRecord]:
        """The own nodes' records in graph order, then the foreign nodes' in order met.

        The usual node (a target met before, no keyword arguments, every user one of the
        graph's own nodes) is read in the loop itself, annotated or not; each own node's
        :class:`NodeRef` is made as the node is read, so that its users, read later, find it
        (a torch.fx graph lists arguments before their users). Anything else goes through
        :meth:`record`.
        """
        owners: dict[int, str] = {}  # id(meta dict) -> first node holding it
        recs = []
        names, targets, keys, refs = self.names, self.targets, self.keys, self.refs
        user_name, ref_of = names.__getitem__, refs.get
        new_ref, new_record, annotation_of_value = _new_ref, _new_record, self.annotation
        node_type, scalars, dtype = torch.fx.Node, _SCALARS, torch.dtype
        members = _MEMBERS
        for node in self.own:
            meta = node.meta
            name = names[node]
            if node not in refs:
                refs[node] = new_ref(name)
            owner = owners.setdefault(id(meta), name)
            t = node.target
            found = targets.get(id(t))
            op = node.op
            kwargs = node._kwargs if members else node.kwargs
            if found is None or found[0] is not t or kwargs or type(op) is not str or not op:
                recs.append(self.record(node, owner, foreign=False))  # the general case
                continue
            try:
                users = tuple(map(user_name, node.users))
            except KeyError:  # a user of another graph
                recs.append(self.record(node, owner, foreign=False))
                continue
            values: tuple[tuple[str, Any], ...] = ()
            for key in keys:
                if key in meta:
                    values += ((key, meta[key]),)
            annotation = meta.get(Q_ANNOTATION_KEY)
            # the arguments as :meth:`args` converts them, inline: 7.78 -> 7.27 ms on the
            # dynamic 100-block graph's 2,603 nodes
            args: list[Any] = []
            for value in node._args if members else node.args:
                kind = type(value)
                if kind is node_type:
                    ref = ref_of(value)
                    args.append(self.ref(value) if ref is None else ref)
                elif value is None or kind in scalars:
                    args.append(value)
                elif kind is dtype:
                    args.append(_opaque_singleton(value))
                else:
                    args.append(_convert(value, self.ref))
            recs.append(
                new_record(
                    name,
                    op,
                    found[1],
                    tuple(args),
                    (),
                    users,
                    values,
                    None if annotation is None else annotation_of_value(annotation),
                    False,
                    None if owner == name else owner,
                )
            )
        while self.foreign:
            node = self.foreign.popleft()
            owner = owners.setdefault(id(node.meta), self.names[node])
            recs.append(self.record(node, owner, foreign=True))
        return recs

    def nodes(self) -> dict[str, torch.fx.Node]:
        """Every node recorded, by snapshot name (after :meth:`records`)."""
        return {name: node for node, name in self.names.items()}


@without_gc
def read_fx(
    gm: torch.fx.GraphModule | torch.fx.Graph, profile: portmeta.Profile
) -> tuple[Snapshot, dict[str, torch.fx.Node]]:
    """The snapshot of ``gm`` read with ``profile.keys``, and its nodes by snapshot name.

    One walk serves both, for callers that write back (``apply_plan``, the drop-in pass).

    Example
    -------
    >>> gm = torch.fx.symbolic_trace(torch.nn.ReLU())
    >>> G, nodes = read_fx(gm, portmeta.TORCHAO)
    >>> list(G) == list(nodes)
    True
    """
    graph = gm if isinstance(gm, torch.fx.Graph) else gm.graph
    reader = _Reader(graph, profile.keys)
    recs = reader.records()
    # FX derives users from arguments, so the records form a graph by construction; cycles
    # (a hand edit can make one) are kept as they are
    snapshot = portmeta.build_graph(recs, meta_keys=profile.keys, allow_cycles=True, check=False)
    return snapshot, reader.nodes()


@without_gc
def from_fx(
    gm: torch.fx.GraphModule | torch.fx.Graph,
    profile: portmeta.Profile = portmeta.TORCHAO,
    keys: Sequence[str] | None = None,
) -> Snapshot:
    """Snapshot an FX graph module for :func:`portmeta.plan`.

    Parameters
    ----------
    gm:
        The graph module (a bare ``torch.fx.Graph`` is accepted too).
    profile:
        Decides which metadata keys are read (``profile.keys``).
    keys:
        The full list of keys to read, replacing the profile's (``None``: the profile's).

    Returns
    -------
    Snapshot
        The graph's nodes in graph order, then any foreign nodes (see :func:`snapshot_nodes`).

    Example
    -------
    >>> import portmeta
    >>> gm = torch.fx.symbolic_trace(torch.nn.ReLU())
    >>> portmeta.plan(from_fx(gm)).deltas
    ()
    """
    return read_fx(gm, resolve_profile(profile, keys))[0]


def dump(
    gm: torch.fx.GraphModule,
    path: str | os.PathLike[str],
    profile: portmeta.Profile = portmeta.TORCHAO,
    keys: Sequence[str] | None = None,
) -> None:
    """Write the snapshot of ``gm`` to ``path`` as JSON (read it back with ``portmeta.load_graph``).

    Example
    -------
    >>> import os, tempfile, portmeta
    >>> path = os.path.join(tempfile.mkdtemp(), "g.json")
    >>> dump(torch.fx.symbolic_trace(torch.nn.ReLU()), path)
    >>> list(portmeta.load_graph(path).nodes)
    ['input_1', 'relu', 'output']
    """
    portmeta.dump_graph(from_fx(gm, profile, keys), path)
