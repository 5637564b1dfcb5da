"""Turn a ``torch.fx.GraphModule`` into a portmeta snapshot (and JSON).

:func:`from_fx` reads, for every node in graph order, its name, op, target, arguments, users,
the metadata keys the profile ports and the quantization annotation, and freezes them with
:func:`portmeta.build_graph`. It reads through torch.fx's public API (``graph.nodes``,
``node.args``, ``node.kwargs``, ``node.users``, ``node.meta``) and changes nothing.

How FX values become snapshot values
------------------------------------
* targets: ``OpOverload`` -> :meth:`Target.overload` (``aten.view.default``), ``OpOverloadPacket``
  -> :meth:`Target.packet` (``torchao.quantize_affine``), string targets (placeholder, get_attr,
  call_module, call_method, output) -> :meth:`Target.named`, any other callable ->
  :meth:`Target.function` with its qualified name (``operator.getitem``; ``repr`` when it has
  no name, e.g. for higher-order operators).
* arguments: ``Node`` -> :class:`NodeRef`; lists (also FX's ``immutable_list``), tuples and
  dicts (also ``immutable_dict``) recursively, lists staying lists and tuples tuples; ``None``,
  ``bool``, ``int``, ``float`` and ``str`` as they are; a ``slice`` becomes
  ``{"$slice": (start, stop, step)}`` so node references inside it are kept (FX registers them
  as inputs); a node inside a dict *key* is opaque (FX does not); anything else (dtypes,
  devices, tensors, ...) -> :func:`portmeta.codec.opaque_of`.
* metadata: for every profile key *present* in ``node.meta`` the value object itself.
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

import builtins
import functools
import os
import types
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch
import torch.fx

import portmeta
from portmeta import codec
from portmeta.records import (
    Annotation,
    Malformed,
    NodeRecord,
    NodeRef,
    Opaque,
    QInput,
    QSpec,
    Target,
)

__all__ = [
    "Q_ANNOTATION_KEY",
    "from_fx",
    "from_fx_graphs",
    "subgraph_modules",
    "module_path",
    "dump",
    "target_of",
    "arg_of",
    "qspec_of",
    "annotation_of",
    "snapshot_nodes",
    "read_model",
    "model_nodes",
    "resolve_profile",
]

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
    """``module.name`` of a callable target, as FX names it in generated code
    (``operator.getitem``, ``torch.relu``, ``torch.Tensor.add``); the callable's ``repr``
    when it has no such name (a lambda, a callable object, a higher-order operator)."""
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str) or name == "<lambda>":
        return codec.opaque_of(fn).text  # repr, or a stand-in when repr itself fails
    if getattr(builtins, name, None) is fn:
        return name
    if isinstance(fn, _DESCRIPTORS) and getattr(torch.Tensor, name, None) is fn:
        return f"torch.Tensor.{name}"
    module = getattr(fn, "__module__", None)
    if module is None:  # torch's C functions: found where FX looks for them
        module = next((m.__name__ for m in _HOMES if getattr(m, name, None) is fn), None)
        if module is None:
            return codec.opaque_of(fn).text
    module = {"_operator": "operator"}.get(module, module).replace("torch._ops", "torch.ops")
    return f"{module}.{name}"


_DESCRIPTORS = (types.MethodDescriptorType, types.WrapperDescriptorType)
_HOMES = (torch, torch.nn.functional)


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
    if isinstance(t, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return _operator_target(t)
    if isinstance(t, str):
        return Target.named(t)
    return Target.function(_qualified_name(t))


@functools.lru_cache(maxsize=4096)
def _operator_target(t: Any) -> Target:
    """Operators are global and long-lived: their targets are cached (``str()`` is slow)."""
    if isinstance(t, torch._ops.OpOverload):
        return Target.overload(str(t))
    return Target.packet(str(t))


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
_PLAIN = frozenset({*_SCALARS, type(None)})
#: Constants that are global singletons in torch (a dtype is in every q/dq node's arguments).
_SINGLETON_CONSTANTS = (torch.dtype, torch.device, torch.layout, torch.memory_format)


@functools.lru_cache(maxsize=1024)
def _opaque_singleton(value: Any) -> Opaque:
    return codec.opaque_of(value)


def _convert(value: Any, ref: Callable[[torch.fx.Node], NodeRef]) -> Any:
    """:func:`arg_of`, with ``ref`` turning a node into its reference."""
    if isinstance(value, torch.fx.Node):
        return ref(value)
    if value is None or type(value) in _SCALARS:
        return value
    if isinstance(value, _SINGLETON_CONSTANTS):
        return _opaque_singleton(value)
    if isinstance(value, list):  # includes torch.fx immutable_list
        return [_convert(v, ref) for v in value]
    if isinstance(value, tuple):  # tuple subclasses (torch.Size, named tuples) become tuples
        return tuple([_convert(v, ref) for v in value])
    if isinstance(value, dict):  # includes torch.fx immutable_dict
        # FX registers users through dict values only: a node used as a key is not an input
        return {_key_of(k): _convert(v, ref) for k, v in value.items()}
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
_NOT_ANNOTATED = Annotation()


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
    return QSpec(type(spec).__name__, None if value is _ABSENT else value is True)


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
    return _annotation(value, lambda node: _name(node, names))


def _annotation(value: Any, name: Callable[[torch.fx.Node], str]) -> Annotation | None:
    """:func:`annotation_of`, with ``name`` naming input nodes."""
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
        return _NOT_ANNOTATED  # not annotated, as upstream sees it (a weight's, a bias's)
    try:
        items = list(qspec_map.items())
    except Exception as exc:
        return Annotation(malformed=Malformed(type(exc).__name__, str(exc)))
    inputs = tuple(
        QInput(name(key), qspec_of(spec), True)
        if isinstance(key, torch.fx.Node)
        else QInput(repr(key), qspec_of(spec), False)
        for key, spec in items
    )
    return Annotation(inputs, qspec_of(output, read_dynamic=False))


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
    return _Reader(graph, keys=()).read()[1]


class _Reader:
    """One walk over an FX graph that names its nodes and records them.

    The graph's own nodes keep their names (made unique with ``+`` if a hand-assigned name
    repeats); a node of another graph met through an argument, a user or an annotation key is
    named ``name@k`` when first met and recorded after the own nodes, with the nodes it leads
    to (see :func:`snapshot_nodes`). Each node gets one :class:`NodeRef`.
    """

    def __init__(self, graph: torch.fx.Graph, keys: Sequence[str]) -> None:
        self.own = list(graph.nodes)
        self.names: dict[torch.fx.Node, str] = {}
        self.taken: set[str] = set()
        for node in self.own:
            name = node.name
            while name in self.taken:  # FX keeps names unique unless assigned by hand
                name += "+"
            self.names[node] = name
            self.taken.add(name)
        self.keys = tuple(keys)
        self.graph_number: dict[torch.fx.Graph, int] = {}
        self.foreign: deque[torch.fx.Node] = deque()
        self.refs: dict[torch.fx.Node, NodeRef] = {}

    def name(self, node: torch.fx.Node) -> str:
        name = self.names.get(node)
        if name is None:  # first meeting with a node of another graph
            k = self.graph_number.setdefault(node.graph, len(self.graph_number))
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
            ref = self.refs[node] = NodeRef(self.name(node))
        return ref

    def args(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """Arguments as snapshot values (:func:`arg_of`, with this reader's references)."""
        out = []
        for value in values:
            kind = type(value)
            if kind is torch.fx.Node:  # the usual arguments: nodes and scalars
                ref = self.refs.get(value)
                out.append(self.ref(value) if ref is None else ref)
            elif kind in _PLAIN:
                out.append(value)
            else:
                out.append(_convert(value, self.ref))
        return tuple(out)

    def record(self, node: torch.fx.Node, owner: str, foreign: bool) -> NodeRecord:
        name = self.names[node]
        if not isinstance(node.op, str) or not node.op:  # a hand-assigned op
            return NodeRecord.of(name, node.op, target_of(node))  # raises, saying what is wrong
        meta, kwargs = node.meta, node.kwargs
        try:
            users = tuple(map(self.names.__getitem__, node.users))
        except KeyError:  # a user in another graph, met here first
            users = tuple(map(self.name, node.users))
        annotation = None if foreign else meta.get(Q_ANNOTATION_KEY)
        return NodeRecord(
            name=name,
            op=node.op,
            target=target_of(node),
            args=self.args(node.args),
            kwargs=(
                tuple(zip(map(str, kwargs), self.args(kwargs.values()), strict=True))
                if kwargs
                else ()
            ),
            users=users,
            meta=tuple([(k, meta[k]) for k in self.keys if k in meta]),
            annotation=None if annotation is None else _annotation(annotation, self.name),
            foreign=foreign,
            meta_owner=None if owner == name else owner,
        )

    def read(self) -> tuple[list[NodeRecord], dict[str, torch.fx.Node]]:
        """The own nodes' records in graph order, then the foreign nodes' in the order met;
        and every node recorded, by snapshot name."""
        owners: dict[int, str] = {}  # id(meta dict) -> the first node holding it
        recs = []
        for node in self.own:
            owner = owners.setdefault(id(node.meta), self.names[node])
            recs.append(self.record(node, owner, foreign=False))
        while self.foreign:
            node = self.foreign.popleft()
            owner = owners.setdefault(id(node.meta), self.names[node])
            recs.append(self.record(node, owner, foreign=True))
        return recs, {name: node for node, name in self.names.items()}


def read_fx(
    gm: torch.fx.GraphModule | torch.fx.Graph, profile: portmeta.Profile
) -> tuple[portmeta.Snapshot, dict[str, torch.fx.Node]]:
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
    recs, nodes = _Reader(graph, profile.keys).read()
    # the reader builds every field with its type, and FX derives users from arguments, so
    # the records form a graph by construction; cycles (a hand edit can make one) are kept
    snapshot = portmeta.build_graph(recs, meta_keys=profile.keys, allow_cycles=True, check=False)
    return snapshot, nodes


def from_fx(
    gm: torch.fx.GraphModule | torch.fx.Graph,
    profile: portmeta.Profile = portmeta.TORCHAO,
    keys: Sequence[str] | None = None,
) -> portmeta.Snapshot:
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


def subgraph_modules(gm: torch.fx.GraphModule) -> dict[str, torch.fx.GraphModule]:
    """Every graph of a model, by qualified name: ``gm`` itself under ``""``, then each
    ``GraphModule`` a ``get_attr`` node of a graph reaches (the ``combine_fn`` of
    ``torch.ops.higher_order.scan``, the ``cond_fn`` and ``body_fn`` of ``while_loop``, the
    branches of ``cond``, ...), depth first in graph order, named as ``gm.named_modules()``
    names it (``scan_combine_graph_0``, ``outer_graph.scan_combine_graph_0``). A module
    reached twice is listed once. torchao 0.18's ``convert_pt2e`` runs the port pass on the top
    level, each scan ``combine_fn`` and each while_loop ``body_fn``.

    Example
    -------
    >>> gm = torch.fx.symbolic_trace(torch.nn.ReLU())
    >>> list(subgraph_modules(gm))
    ['']
    """
    found: dict[str, torch.fx.GraphModule] = {}
    seen: set[int] = set()

    def visit(name: str, module: torch.fx.GraphModule) -> None:
        found[name] = module
        seen.add(id(module))
        for node in module.graph.nodes:
            if node.op != "get_attr" or not isinstance(node.target, str):
                continue
            try:
                sub = module.get_submodule(node.target)
            except AttributeError:  # a parameter or buffer
                continue
            if isinstance(sub, torch.fx.GraphModule) and id(sub) not in seen:
                visit(module_path(name, node.target), sub)

    visit("", gm)
    return found


def module_path(parent: str, name: str) -> str:
    """The qualified name of module ``name`` inside the module qualified ``parent`` (``""``:
    the top level), as ``named_modules`` gives it.

    Example
    -------
    >>> module_path("", "scan_combine_graph_0"), module_path("body", "inner")
    ('scan_combine_graph_0', 'body.inner')
    """
    return f"{parent}.{name}" if parent else name


def from_fx_graphs(
    gm: torch.fx.GraphModule | torch.fx.Graph,
    profile: portmeta.Profile = portmeta.TORCHAO,
    keys: Sequence[str] | None = None,
) -> dict[str, portmeta.Snapshot]:
    """Snapshot every graph of a model (:func:`subgraph_modules`): :func:`from_fx` of each,
    by qualified name, the top level (``""``) first.

    Save them with :func:`dump` or :func:`portmeta.dump_graphs`; plan each with
    :func:`portmeta.plan`, or all at once, nodes named ``GRAPH:node``, with
    :func:`portmeta.merge_graphs` (what the command line does).

    Example
    -------
    >>> import portmeta
    >>> graphs = from_fx_graphs(torch.fx.symbolic_trace(torch.nn.ReLU()))
    >>> {name: portmeta.plan(g).deltas for name, g in graphs.items()}
    {'': ()}
    """
    if isinstance(gm, torch.fx.Graph):
        return {"": from_fx(gm, profile, keys)}
    return {name: from_fx(m, profile, keys) for name, m in subgraph_modules(gm).items()}


def read_model(
    gm: torch.fx.GraphModule | torch.fx.Graph, profile: portmeta.Profile
) -> tuple[portmeta.Snapshot, dict[str, torch.fx.Node]]:
    """:func:`read_fx` of every graph of a model, merged: the snapshot
    :func:`portmeta.merge_graphs` makes of them (a subgraph's nodes named ``GRAPH:node``, as in
    the plan the command line makes of a :func:`dump` file), and the nodes by those names.

    Example
    -------
    >>> gm = torch.fx.symbolic_trace(torch.nn.ReLU())
    >>> G, nodes = read_model(gm, portmeta.TORCHAO)
    >>> list(G) == list(nodes) == ["input_1", "relu", "output"]
    True
    """
    if isinstance(gm, torch.fx.Graph):
        return read_fx(gm, profile)
    snapshots: dict[str, portmeta.Snapshot] = {}
    nodes: dict[str, dict[str, torch.fx.Node]] = {}
    for name, module in subgraph_modules(gm).items():
        snapshots[name], nodes[name] = read_fx(module, profile)
    return portmeta.merge_graphs(snapshots), _qualified_nodes(nodes)


def model_nodes(gm: torch.fx.GraphModule | torch.fx.Graph) -> dict[str, torch.fx.Node]:
    """:func:`snapshot_nodes` of every graph of a model, a subgraph's nodes named
    ``GRAPH:node``: the nodes of :func:`read_model`, without reading the snapshot.

    Example
    -------
    >>> list(model_nodes(torch.fx.symbolic_trace(torch.nn.ReLU())))
    ['input_1', 'relu', 'output']
    """
    if isinstance(gm, torch.fx.Graph):
        return snapshot_nodes(gm)
    return _qualified_nodes({n: snapshot_nodes(m) for n, m in subgraph_modules(gm).items()})


def _qualified_nodes(
    per_graph: Mapping[str, Mapping[str, torch.fx.Node]],
) -> dict[str, torch.fx.Node]:
    return {
        portmeta.qualified_node(graph, name): node
        for graph, nodes in per_graph.items()
        for name, node in nodes.items()
    }


def dump(
    gm: torch.fx.GraphModule,
    path: str | os.PathLike[str],
    profile: portmeta.Profile = portmeta.TORCHAO,
    keys: Sequence[str] | None = None,
) -> None:
    """Write the snapshots of every graph of ``gm`` to ``path`` as JSON.

    A model without subgraphs gives a graph file as before (read it with
    :func:`portmeta.load_graph`); one with subgraphs (``scan``, ``while_loop``) a model file of
    all of them (:func:`portmeta.dump_graphs`; read it with :func:`portmeta.load_graphs`, which
    reads both). The ``portmeta`` command reads both.

    Example
    -------
    >>> import os, tempfile, portmeta
    >>> path = os.path.join(tempfile.mkdtemp(), "g.json")
    >>> dump(torch.fx.symbolic_trace(torch.nn.ReLU()), path)
    >>> list(portmeta.load_graph(path).nodes)
    ['input_1', 'relu', 'output']
    """
    portmeta.dump_graphs(from_fx_graphs(gm, profile, keys), path)
