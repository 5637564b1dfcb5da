"""The quantized structure of a snapshot: which q/dq node belongs to which annotated node.

Computed once per snapshot and profile, as data, and read by the check, ``explain`` and the
drawing (the porting rules keep their own walks: they reproduce upstream's quirks, this
describes what a partition *should* get):

* a :class:`Feed` per dequantize that feeds an annotated node through an input its annotation
  quantizes: how it is reached (a top-level positional argument, inside a list or tuple, or a
  keyword), the ``args[0]`` walk up to the input, and the nodes of its chain (the quantize, a
  dynamic chain's choose_qparams and getitems, a weight's view ops);
* an :class:`Output` per quantize right after an annotated node with an output spec;
* the annotated node(s) each of those nodes belongs to, and each one's role.

An annotation whose input is a *foreign* record (a node of another graph: a
``copy.deepcopy`` of the prepared model between ``prepare_pt2e`` and ``convert_pt2e`` keeps
annotations that point at the original graph) is read against the graph's own node of the same
name, and its feeds are marked ``stale``: the rules never write them (docs/check.md, cause
``stale_annotation``).

Example
-------
>>> from portmeta.testing import GraphBuilder, static
>>> b = GraphBuilder(); x = b.placeholder("x"); y = b.placeholder("y")
>>> _, dq = b.qdq(x); _, dq_1 = b.qdq(y)
>>> cat = b.call("aten.cat.default", [dq, dq_1], 1, name="cat")
>>> b.annotate(cat, inputs={x: static(), y: static()}); b.output(cat)
>>> s = structure(b.build())
>>> [(f.dq, f.anchor, f.input, f.place) for f in s.feeds]
[('dq', 'cat', 'x', 'container'), ('dq_1', 'cat', 'y', 'container')]
>>> s.owners_of("q"), s.role_of("q")
(('cat',), 'quantize')
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from .errors import PortmetaError
from .profiles import TORCHAO, Profile
from .records import NodeRecord, NodeRef, Target, iter_node_refs
from .rules.static_input import walk_to_producer_lenient
from .rules.view_chain import view_chain
from .snapshot import Snapshot, annotated_nodes, record, users

__all__ = ["Feed", "Output", "Structure", "structure", "anchors_near", "own_name", "op_role"]


@attrs.frozen
class Feed:
    """A dequantize that feeds ``anchor`` through its quantized input ``input``.

    Attributes
    ----------
    dq, anchor, input:
        The dequantize, the annotated node it feeds, and the input the annotation quantizes
        (the graph's own node; see ``stale``).
    dynamic:
        The input's spec is dynamic (its chain has a choose_qparams).
    place:
        How ``anchor`` reads ``dq``: ``"positional"`` (a top-level positional argument, the
        only place the static input rule looks), ``"container"`` (inside a list or tuple
        argument) or ``"keyword"``.
    walk:
        ``dq``, ..., ``input``: the ``args[0]`` walk the static rule makes, up to the input.
    chain:
        Every node of the q/dq chain that belongs to ``anchor``: ``dq``, its quantize when the
        input's spec is dynamic or the quantize's scale comes from a choose_qparams, that
        choose_qparams and its getitems, a weight's view ops.
    named:
        The node the annotation names instead of ``input`` when it names a node of another
        graph (``"<input>@k"``), else ``None``.

    Example
    -------
    >>> Feed("dq", "relu", "x", False, "positional", ("dq", "q", "x"), ("dq", "q")).chain
    ('dq', 'q')
    """

    dq: str
    anchor: str
    input: str
    dynamic: bool
    place: str
    walk: tuple[str, ...]
    chain: tuple[str, ...]
    named: str | None = None

    @property
    def stale(self) -> bool:
        """The annotation names the input as a node of another graph."""
        return self.named is not None


@attrs.frozen
class Output:
    """A quantize right after ``anchor`` (reading it as ``args[0]``), which has an output spec.

    ``dynamic``: its scale comes from a choose_qparams node (the consumer's dynamic chain), so
    the consumer's search writes it too and it is not expected to keep ``anchor``'s values.

    Example
    -------
    >>> Output("q", "relu", False).q
    'q'
    """

    q: str
    anchor: str
    dynamic: bool


#: The roles :meth:`Structure.role_of` gives.
ROLES = ("dequantize", "quantize", "choose_qparams", "getitem", "view op")


@attrs.frozen
class Structure:
    """:func:`structure`'s result: the feeds, the outputs and who owns which chain node.

    ``owners`` maps a chain node to the annotated nodes it belongs to (first owner first) and
    ``roles`` to its role (one of :data:`ROLES`).

    Example
    -------
    >>> s = Structure((), (), {"dq": ("relu",)}, {"dq": "dequantize"})
    >>> s.owners_of("dq"), s.owners_of("nope")
    (('relu',), ())
    """

    feeds: tuple[Feed, ...]
    outputs: tuple[Output, ...]
    owners: dict[str, tuple[str, ...]]
    roles: dict[str, str]

    def owners_of(self, name: str) -> tuple[str, ...]:
        """The annotated nodes whose q/dq chain ``name`` is on (empty when none)."""
        return self.owners.get(name, ())

    def role_of(self, name: str) -> str | None:
        """The role of a chain node (``None`` for a node on no chain)."""
        return self.roles.get(name)


def own_name(graph: Snapshot, name: str) -> str | None:
    """The graph's own node a foreign record stands for: the same name without ``@k``.

    A ``copy.deepcopy`` of a graph module keeps node names, so a foreign ``relu@0`` named by a
    copied annotation is the copy's own ``relu``. ``None`` when there is no such own node.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("relu")); g = b.build()
    >>> own_name(g, "relu@0"), own_name(g, "x@0"), own_name(g, "relu")
    ('relu', None, None)
    """
    base, at, _ = name.rpartition("@")
    if not at or base not in graph or record(graph, base).foreign:
        return None
    return base


def _places(rec: NodeRecord) -> dict[str, str]:
    """Every node ``rec`` reads, with where (first place wins, positional args first)."""
    places: dict[str, str] = {}
    for arg in rec.args:
        if isinstance(arg, NodeRef):
            places.setdefault(arg.name, "positional")
    for arg in rec.args:
        if not isinstance(arg, NodeRef):
            for name in iter_node_refs(arg):
                places.setdefault(name, "container")
    for _, value in rec.kwargs:
        for name in iter_node_refs(value):
            places.setdefault(name, "keyword")
    return places


def _view_ops(graph: Snapshot, profile: Profile, anchor: str, q: str) -> list[str]:
    """The view ops between quantize ``q`` and a get_attr weight (empty when not a weight)."""
    try:
        copies = view_chain(graph, profile, anchor, q).copies
    except PortmetaError:
        return []
    return [c.target for c in copies if c.target != q]


def _qparams(graph: Snapshot, profile: Profile, q: str) -> list[str]:
    """The getitems and choose_qparams a dynamic quantize reads its scale and zero point from."""
    out: list[str] = []
    rec = record(graph, q)
    for name in dict.fromkeys(iter_node_refs((rec.args[1:], [v for _, v in rec.kwargs]))):
        r = record(graph, name)
        if profile.is_choose_qparams(r):
            out.append(name)
        elif r.args and isinstance(r.args[0], NodeRef):
            above = record(graph, r.args[0].name)
            if profile.is_choose_qparams(above):
                out += [name, above.name]
    return list(dict.fromkeys(out))


def _inputs(graph: Snapshot, rec: NodeRecord) -> dict[str, tuple[bool, str | None]]:
    """The inputs ``rec``'s annotation quantizes: own name -> (dynamic, the foreign name the
    annotation uses instead, if any)."""
    ann = rec.annotation
    specs: dict[str, tuple[bool, str | None]] = {}
    if ann is None or ann.malformed is not None:
        return specs
    for entry in ann.inputs:
        if entry.qspec is None or not entry.is_node:
            continue
        if record(graph, entry.node).foreign:
            name, named = own_name(graph, entry.node), entry.node
        else:
            name, named = entry.node, None
        if name is not None:
            specs.setdefault(name, (entry.qspec.dynamic, named))
    return specs


def _feeds(graph: Snapshot, profile: Profile, anchor: str) -> list[Feed]:
    rec = record(graph, anchor)
    specs = _inputs(graph, rec)
    if not specs:
        return []
    out = []
    for name, place in _places(rec).items():
        if not profile.is_dequantize(record(graph, name)):
            continue
        walk = walk_to_producer_lenient(graph, profile, name)
        hits = [i for i, n in enumerate(walk) if i > 0 and n in specs]
        if not hits:
            continue
        walk = walk[: hits[0] + 1]
        dynamic, named = specs[walk[-1]]
        # a dynamic chain is the dequantize, its quantize and that quantize's qparams: a static
        # q/dq pair above it (an output spec on the input) belongs to the input's producer
        chain = list(walk[: min(2, len(walk) - 1)] if dynamic else walk[:-1])
        q = walk[1] if len(walk) > 2 else None
        if q is not None and profile.is_quantize(record(graph, q)):
            # qparams: the input's dynamic chain, or one a static spec shares (X86Inductor's
            # dynamic config gives cat's second input a SharedQuantizationSpec)
            chain += _qparams(graph, profile, q)
            chain += _view_ops(graph, profile, anchor, q)
        out.append(Feed(name, anchor, walk[-1], dynamic, place, walk, tuple(chain), named))
    return out


def _outputs(graph: Snapshot, profile: Profile, anchor: str) -> list[Output]:
    ann = record(graph, anchor).annotation
    if ann is None or ann.malformed is not None or ann.output is None:
        return []
    out = []
    for u in users(graph, anchor):
        r = record(graph, u)
        if profile.is_quantize(r) and r.args and r.args[0] == NodeRef(anchor):
            out.append(Output(u, anchor, bool(_qparams(graph, profile, u))))
    return out


def op_role(profile: Profile, rec: NodeRecord) -> str | None:
    """``"quantize"``, ``"dequantize"``, ``"choose_qparams"`` or ``"view op"`` for a node of
    the profile's op sets, else ``None``.

    Example
    -------
    >>> from portmeta.records import Target
    >>> op_role(TORCHAO, NodeRecord.of("v", "call_function", Target.overload("aten.view.default")))
    'view op'
    """
    if profile.is_quantize(rec):
        return "quantize"
    if profile.is_dequantize(rec):
        return "dequantize"
    if profile.is_choose_qparams(rec):
        return "choose_qparams"
    if profile.is_view(rec):
        return "view op"
    return None


def structure(
    graph: Snapshot, profile: Profile = TORCHAO, anchors: Iterable[str] | None = None
) -> Structure:
    """The quantized structure of ``graph`` (see the module docstring).

    Parameters
    ----------
    graph:
        A snapshot, taken before or after porting (the structure reads no metadata).
    profile:
        Where the op vocabularies come from.
    anchors:
        Only these annotated nodes' chains (``None``: every annotated node's). For a reader
        asking about a few nodes (``explain``): :func:`anchors_near` gives the ones that can
        own a node.

    Returns
    -------
    Structure
        Feeds in graph order of their annotated node, then argument order; outputs likewise.
    """
    feeds: list[Feed] = []
    outputs: list[Output] = []
    owners: dict[str, list[str]] = {}

    def own(names: Iterable[str], anchor: str) -> None:
        for name in names:
            found = owners.setdefault(name, [])
            if anchor not in found:
                found.append(anchor)

    wanted = None if anchors is None else set(anchors)
    for anchor in annotated_nodes(graph):
        if wanted is not None and anchor not in wanted:
            continue
        for feed in _feeds(graph, profile, anchor):
            feeds.append(feed)
            own(feed.chain, anchor)
        for output in _outputs(graph, profile, anchor):
            outputs.append(output)
            own((output.q,), anchor)
    # a chain node of none of the op sets is the getitem between a choose_qparams and its q
    roles = {name: op_role(profile, record(graph, name)) or "getitem" for name in owners}
    return Structure(tuple(feeds), tuple(outputs), {k: tuple(v) for k, v in owners.items()}, roles)


def anchors_near(graph: Snapshot, profile: Profile, name: str) -> set[str]:
    """The annotated nodes whose chains can hold ``name``: those reached from it down through
    users while the way goes through chain nodes (quantize, dequantize, choose_qparams, view
    ops, getitems), and the node it reads (an annotated output before its quantize).

    Example
    -------
    >>> from portmeta.testing import GraphBuilder, static
    >>> b = GraphBuilder(); x = b.placeholder("x"); _, dq = b.qdq(x)
    >>> y = b.call("aten.relu.default", dq, name="relu"); b.annotate(y, inputs={x: static()})
    >>> b.output(y); sorted(anchors_near(b.build(), TORCHAO, "q"))
    ['relu']
    """
    near = {name}
    rec = record(graph, name)
    near.update(a.name for a in rec.args if isinstance(a, NodeRef))
    frontier = [name]
    while frontier:
        for user in users(graph, frontier.pop()):
            if user in near:
                continue
            near.add(user)
            urec = record(graph, user)
            if op_role(profile, urec) is not None or urec.target == _GETITEM:
                frontier.append(user)
    return near & set(annotated_nodes(graph))


_GETITEM = Target.function("operator.getitem")
