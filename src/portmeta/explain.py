"""Plain-words explanation of why a node gets, or does not get, each ported key.

Example
-------
>>> from portmeta import explain
>>> from portmeta.testing import GraphBuilder, static
>>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
>>> y = b.call("aten.relu.default", dq, name="relu", tag="P0"); b.annotate(y, inputs={x: static()})
>>> b.output(y)
>>> print(explain(b.build(), "dq"))
node 'dq': call_function quantized_decomposed.dequantize_per_tensor.default (dequantize)
  stack_trace: not written: source 'relu' has no 'stack_trace'
  quantization_tag: 'P0'
    <- 'relu' by static_input (annotated node 'relu'; path x -> q -> dq -> relu)
"""

from __future__ import annotations

from ._text import short_value
from .check import REMEDIES
from .errors import PlanError, UnknownNodeError
from .plan import MetaDelta, Plan, plan_writes
from .profiles import TORCHAO, Profile
from .records import NodeRecord, NodeRef
from .rules import Severity, non_sym_users, static_input, walk_to_producer
from .snapshot import Snapshot, record, users
from .structure import Feed, Structure, anchors_near, op_role, structure

__all__ = ["explain", "role"]


def role(profile: Profile, rec: NodeRecord, graph: Snapshot | None = None) -> str:
    """The part a node plays for the rules: quantize, dequantize, choose_qparams, view, ...

    Parameters
    ----------
    profile:
        Where the op vocabularies come from.
    rec:
        The node's record.
    graph:
        The snapshot ``rec`` belongs to; with it a ``get_attr`` is told apart by its users as a
        weight (a quantize reads it, through view ops), a quantization parameter (a quantize,
        dequantize or choose_qparams reads it as a scale, zero point, ...) or another
        attribute. Without it a ``get_attr`` is an "attribute".

    Returns
    -------
    str
        A few words, e.g. ``'dequantize'``, ``'annotated op'``, ``'weight (get_attr)'``.

    Example
    -------
    >>> from portmeta.records import Target
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); w = b.get_attr("w"); _ = b.qdq(w); g = b.build()
    >>> role(TORCHAO, record(g, "w"), g), role(TORCHAO, record(g, "w"))
    ('weight (get_attr)', 'attribute (get_attr)')
    """
    found = op_role(profile, rec)
    if found is not None:
        return found
    if profile.is_sym_size(rec):
        return "sym-size (ignored as a user)"
    if rec.op == "get_attr":
        kind = _get_attr_kind(graph, profile, rec.name) if graph is not None else "attribute"
        return f"{kind} (get_attr)"
    if rec.op == "placeholder":
        return "graph input"
    if rec.op == "output":
        return "graph output"
    if rec.op == "call_function":
        return "annotated op" if rec.annotation is not None else "op"
    return rec.op


def explain(
    graph: Snapshot, node: str, profile: Profile = TORCHAO, plan: Plan | None = None
) -> str:
    """Explain, key by key, what the plan writes on ``node`` and why, or why nothing.

    Parameters
    ----------
    graph:
        The snapshot.
    node:
        The node to explain.
    profile:
        Used when ``plan`` is not given (the plan is then computed with ``errors="collect"``).
    plan:
        A plan of ``graph`` to explain instead.

    Returns
    -------
    str
        Several lines: the node, then per key the writes it receives (source, rule, annotated
        node, path, overwrites) or the reason it receives none; for a node that receives
        nothing, what would make it receive metadata (or that nothing can); then what it
        passes on and the diagnostics that concern it.

    Raises
    ------
    UnknownNodeError
        ``node`` is not in the graph.
    """
    if node not in graph:
        raise UnknownNodeError(node, known=graph)
    if plan is None:
        # the writes alone: explaining reads no fingerprint, and hashing every node of a
        # large graph costs as much again as planning it
        deltas, diagnostics = plan_writes(graph, profile, errors="collect")
        plan = Plan(deltas, diagnostics, "", profile)
    p = plan
    profile = p.profile
    rec = record(graph, node)
    lines = [f"node {node!r}: {rec.op} {rec.target} ({role(profile, rec, graph)})"]
    received = p.writes_to(node)
    quantized = structure(graph, profile, anchors_near(graph, profile, node))
    reasons = _why_not(graph, profile, node, p, quantized) if not received else []
    own = rec.meta_dict()
    for key in profile.keys:
        writes = [d for d in received if d.key == key]
        if writes:
            lines.append(f"  {key}: {short_value(writes[-1].value, 60)}")
            lines.extend(_describe(d, i, len(writes)) for i, d in enumerate(writes))
            continue
        kept = f" (keeps its own {short_value(own[key], 60)})" if key in own else ""
        if received:
            sources = sorted({d.source for d in received})
            why = f"source {', '.join(map(repr, sources))} has no {key!r}"
        else:
            why = reasons[0] if reasons else "no rule reaches this node"
        lines.append(f"  {key}: not written{kept}: {why}")
    lines.extend(f"    also: {r}" for r in reasons[1:])
    if not received:
        remedy = _structural_remedy(quantized, node) or _remedy(graph, profile, node)
        lines.append(f"  to receive metadata: {remedy}")
    given = p.writes_from(node)
    if given:
        targets = ", ".join(dict.fromkeys(repr(d.target) for d in given))
        lines.append(f"  passes its metadata on to {targets}")
    for diag in p.diagnostics:
        if diag.node == node or node in diag.related:
            lines.append(f"  {diag.severity.value}: [{diag.kind}] {diag.message}")
    return "\n".join(lines)


def _describe(d: MetaDelta, index: int, count: int) -> str:
    via = f"; originally from {d.origin!r}" if d.origin != d.source else ""
    later = " (overwritten later)" if index < count - 1 else ""
    return (
        f"    <- {d.source!r} by {d.rule.value} (annotated node {d.anchor!r}; "
        f"path {' -> '.join(d.path)}){via}{later}"
    )


def _feeds_through(quantized: Structure, node: str) -> list[Feed]:
    """The feeds whose chain ``node`` is on."""
    return [f for f in quantized.feeds if node in f.chain]


def _structural_remedy(quantized: Structure, node: str) -> str | None:
    """What to do where the structure already says why no rule can reach ``node``: an
    annotation naming another graph's node, a dequantize inside a list or passed by keyword."""
    for feed in _feeds_through(quantized, node):
        if feed.stale:
            return REMEDIES["deep_copy"]
        if feed.dq == node and feed.place in ("container", "keyword"):
            return (
                f"no annotation can (the static input rule reads only top-level positional "
                f"arguments of {feed.anchor!r}): {REMEDIES[feed.place]}"
            )
    return None


def _why_not(
    graph: Snapshot, profile: Profile, node: str, p: Plan, quantized: Structure
) -> list[str]:
    """Reasons, most specific first, why the plan writes nothing on ``node``."""
    rec = record(graph, node)
    errors = [
        d
        for d in p.diagnostics
        if d.severity is Severity.ERROR and (d.node == node or node in d.related)
    ]
    reasons = [f"planning of annotated node {d.node!r} failed: {d.message}" for d in errors]
    reasons += [
        f"the annotation of {f.anchor!r} names {f.named!r}, a node of another graph, not "
        f"{f.input!r}, so no rule reaches its q/dq nodes (was the prepared model deep-copied "
        "between prepare_pt2e and convert_pt2e?)"
        for f in _feeds_through(quantized, node)
        if f.stale
    ]
    if profile.is_dequantize(rec):
        reasons.extend(_why_not_dequantize(graph, profile, node))
    elif profile.is_quantize(rec):
        reasons.extend(_why_not_quantize(graph, profile, node))
    elif profile.is_choose_qparams(rec):
        reasons.append("no annotated node has a dynamic input whose search reaches it first")
    elif profile.is_view(rec):
        reasons.append("it is not on a get_attr -> view ops -> quantize chain of a ported weight")
    else:
        reasons.append(_never_written(graph, profile, rec))
    return reasons


#: The nodes the rules write to.
_WRITTEN = (
    "quantize, dequantize and choose_qparams nodes, and the view ops between a weight and its "
    "quantize"
)


def _never_written(graph: Snapshot, profile: Profile, rec: NodeRecord) -> str:
    """Why a node the rules never write gets nothing, in words."""
    if rec.op == "call_function":
        return f"{rec.target.name} is not one of the ops the pass writes: {_WRITTEN}"
    kind = {
        "placeholder": "a graph input (placeholder)",
        "get_attr": f"a {_get_attr_kind(graph, profile, rec.name)} (get_attr)",
        "output": "the graph output",
    }.get(rec.op, f"a {rec.op} node")
    return f"the pass never writes {kind}: it writes only {_WRITTEN}"


def _get_attr_kind(graph: Snapshot, profile: Profile, name: str) -> str:
    """What a ``get_attr`` is to the rules, in words, from the nodes that read it."""
    if _quantize_below(graph, profile, name) is not None:
        return "weight"
    for user in users(graph, name):
        urec = record(graph, user)
        workflow = profile.is_quantize(urec) or profile.is_dequantize(urec)
        if (workflow or profile.is_choose_qparams(urec)) and _first(urec) != name:
            return "quantization parameter"
    return "attribute"


def _first(rec: NodeRecord) -> str | None:
    """The node ``args[0]`` names, if any."""
    first = rec.args[0] if rec.args else None
    return first.name if isinstance(first, NodeRef) else None


def _weight_above(graph: Snapshot, profile: Profile, name: str | None) -> str | None:
    """The ``get_attr`` node at the top of the view ops above ``name`` (``name`` included)."""
    seen: set[str] = set()
    while name is not None and name in graph and name not in seen:
        rec = record(graph, name)
        if rec.op == "get_attr":
            return name
        if not profile.is_view(rec):
            return None
        seen.add(name)
        name = _first(rec)
    return None


def _quantize_below(graph: Snapshot, profile: Profile, name: str) -> str | None:
    """A quantize that reads ``name`` (as ``args[0]``) through view ops, if any."""
    todo, seen = [name], {name}
    while todo:
        cur = todo.pop(0)
        for user in users(graph, cur):
            urec = record(graph, user)
            if _first(urec) != cur or user in seen:
                continue
            if profile.is_quantize(urec):
                return user
            if profile.is_view(urec):
                seen.add(user)
                todo.append(user)
    return None


def _readers(graph: Snapshot, profile: Profile, name: str) -> str:
    """The ops (not quant-workflow nodes) that take ``name`` as a top-level positional
    argument, in words."""
    found = []
    for user in users(graph, name):
        urec = record(graph, user)
        workflow = profile.is_quantize(urec) or profile.is_dequantize(urec)
        if NodeRef(name) in urec.args and not (workflow or profile.is_choose_qparams(urec)):
            found.append(repr(user))
    return " or ".join(found) if found else "an op that reads it as a positional argument"


def _remedy(graph: Snapshot, profile: Profile, node: str) -> str:
    """What would make ``node`` receive metadata, or why nothing can."""
    rec = record(graph, node)
    source = _first(rec)
    if profile.is_dequantize(rec):
        try:
            walked = walk_to_producer(graph, profile, node, node)
        except PlanError as exc:
            return f"nothing can while the walk up from it fails ({exc})"
        if len(walked) < 2 or not profile.is_quantize(record(graph, walked[1])):
            return "nothing can: its args[0] is not a quantize op"
        readers = _readers(graph, profile, node)
        text = (
            f"give {walked[-1]!r}, the node it dequantizes, a static spec in the annotation of "
            f"{readers}, whose metadata it then receives"
        )
        if _in_dynamic_chain(graph, profile, record(graph, walked[1])) and len(walked) > 2:
            text += (
                f"; or, as it ends a choose_qparams chain, give {walked[2]!r} a dynamic spec there"
            )
        return text
    if profile.is_quantize(rec):
        if source is None:
            return "nothing can: it has no producer node in args[0]"
        dqs = [u for u in users(graph, node) if profile.is_dequantize(record(graph, u))]
        reading = f"reads {' or '.join(map(repr, dqs))}" if dqs else "reads its dequantize"
        weight = _weight_above(graph, profile, source)
        if weight is not None:
            return (
                f"give {source!r}, the node it quantizes, a static spec in the annotation of "
                f"a node that {reading}; it then receives the metadata of weight {weight!r}"
            )
        kept = non_sym_users(graph, profile, source)
        if kept and kept[-1] != node:
            last = kept[-1]
            what = (
                "writes that quantize instead"
                if profile.is_quantize(record(graph, last))
                else "writes nothing, as it is not a quantize"
            )
            text = (
                f"nothing can while {last!r} is the last user of {source!r} that is not a "
                f"sym-size node: an output spec on {source!r} {what}"
            )
        else:
            text = (
                f"annotate {source!r}, the node it quantizes, with an output spec; as the last "
                f"user of {source!r} that is not a sym-size node it then receives its metadata"
            )
        if _in_dynamic_chain(graph, profile, rec):
            text += (
                f"; or give {source!r} a dynamic spec in the annotation of a node that "
                f"{reading}, whose choose_qparams search must reach this chain"
            )
        return text
    if profile.is_choose_qparams(rec):
        what = repr(source) if source is not None else "its input"
        return (
            f"give {what} a dynamic spec in the annotation of a node that reads the chain's "
            f"dequantize; the search from the users of {what} must reach this node first"
        )
    if profile.is_view(rec):
        weight = _weight_above(graph, profile, node)
        if weight is None:
            return "nothing can: no get_attr weight is above it through view ops"
        q = _quantize_below(graph, profile, node)
        if q is None:
            return "nothing can: no quantize reads it through view ops"
        return (
            f"give {_first(record(graph, q))!r} a static spec in the annotation of a node that "
            f"reads the dequantize of {q!r}; it then receives the metadata of weight {weight!r}"
        )
    if rec.op == "get_attr":
        if _get_attr_kind(graph, profile, node) != "weight":
            return f"nothing can: the pass writes only {_WRITTEN}"
        return (
            "nothing can; a weight gives its own metadata to the quantize that reads it (and "
            "the view ops between) when a consumer's static spec names that quantize's input"
        )
    if rec.op == "call_function":
        if rec.annotation is not None:
            return "nothing can; as an annotated node it gives its own metadata to q/dq nodes"
        return (
            "nothing can; annotated, it would give its own metadata to the dequantizes it "
            "reads and the quantize after it"
        )
    return "nothing can"


def _in_dynamic_chain(graph: Snapshot, profile: Profile, rec: NodeRecord) -> bool:
    """Whether a quantize reads its scale or zero point from a choose_qparams node."""
    for arg in rec.args[1:]:
        if isinstance(arg, NodeRef) and arg.name in graph:
            above = _first(record(graph, arg.name))
            if above is not None and profile.is_choose_qparams(record(graph, above)):
                return True
    return False


def _why_not_dequantize(graph: Snapshot, profile: Profile, node: str) -> list[str]:
    consumers = users(graph, node)
    if not consumers:
        return ["it has no users, so no annotated consumer can claim it"]
    reasons = []
    for c in consumers:
        crec = record(graph, c)
        ann = crec.annotation
        if ann is None:
            reasons.append(f"its user {c!r} is not annotated")
            continue
        if not ann.is_valid:
            reasons.append(f"the annotation of {c!r} has no inputs and no output spec (ignored)")
            continue
        if NodeRef(node) not in crec.args:
            reasons.append(
                f"it reaches {c!r} as a keyword or inside a container argument; only top-level "
                "positional arguments are searched"
            )
            continue
        try:
            producer = walk_to_producer(graph, profile, c, node)[-1]
        except PlanError as exc:
            reasons.append(f"the walk up from it fails: {exc}")
            continue
        entries = [i for i in ann.inputs if i.node == producer and i.is_node]
        if not entries:
            reasons.append(
                f"the annotation of {c!r} has no input entry for {producer!r}, the node it "
                "dequantizes"
            )
        elif entries[0].qspec is None:
            reasons.append(f"the annotation of {c!r} gives input {producer!r} no spec (None)")
        elif entries[0].qspec.dynamic:
            reasons.append(
                f"input {producer!r} of {c!r} is dynamic: the dynamic rule writes the "
                "choose_qparams chain instead"
            )
        else:
            q = record(graph, walk_to_producer(graph, profile, c, node)[1])
            if not profile.is_quantize(q):
                reasons.append(
                    f"args[0] of it ({q.name!r}) is not a quantize op, so nothing is written"
                )
            else:
                try:
                    found = static_input(graph, profile, c, producer).copies
                except PlanError as exc:
                    reasons.append(f"the static input rule of {c!r} fails: {exc}")
                    continue
                winner = [x.target for x in found if x.rule.value == "static_input"]
                if winner and winner[0] != node:
                    reasons.append(
                        f"an earlier argument {winner[0]!r} of {c!r} also dequantizes "
                        f"{producer!r} and is the one chosen"
                    )
    return reasons


def _why_not_quantize(graph: Snapshot, profile: Profile, node: str) -> list[str]:
    rec = record(graph, node)
    producer = _first(rec)
    if producer is None:
        return ["it has no producer node in args[0]"]
    weight = _weight_above(graph, profile, producer)
    if weight is not None:  # only the static input rule writes a weight's quantize
        return [
            f"it quantizes weight {weight!r}, and no annotated node that reads its dequantize "
            f"gives {producer!r} a static spec"
        ]
    prec = record(graph, producer)
    reasons = []
    if prec.annotation is None or prec.annotation.output is None:
        reasons.append(f"its producer {producer!r} has no annotation with an output spec")
    else:
        kept = non_sym_users(graph, profile, producer)
        if kept and kept[-1] != node:
            reasons.append(
                f"the output rule of {producer!r} takes its last non-sym-size user, "
                f"{kept[-1]!r}, not this node"
            )
    if _in_dynamic_chain(graph, profile, rec):
        reasons.append(
            "no annotated node has a dynamic input whose choose_qparams search reaches its chain"
        )
    return reasons
