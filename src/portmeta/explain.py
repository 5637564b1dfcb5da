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
from .errors import PlanError, UnknownNodeError
from .graph import Snapshot, record, users
from .plan import MetaDelta, Plan
from .plan import plan as make_plan
from .profiles import TORCHAO, Profile
from .records import NodeRecord, NodeRef
from .rules import Severity, non_sym_users, static_input, walk_to_producer

__all__ = ["explain", "role"]


def role(profile: Profile, rec: NodeRecord) -> str:
    """The part a node plays for the rules: quantize, dequantize, choose_qparams, view, ...

    Example
    -------
    >>> from portmeta.records import Target
    >>> role(TORCHAO, NodeRecord("w", "get_attr", Target.named("w")))
    'weight (get_attr)'
    """
    if profile.is_quantize(rec):
        return "quantize"
    if profile.is_dequantize(rec):
        return "dequantize"
    if profile.is_choose_qparams(rec):
        return "choose_qparams"
    if profile.is_view(rec):
        return "view op"
    if profile.is_sym_size(rec):
        return "sym-size (ignored as a user)"
    if rec.op == "get_attr":
        return "weight (get_attr)"
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
        node, path, overwrites) or the reason it receives none, then what it passes on and the
        diagnostics that concern it.

    Raises
    ------
    UnknownNodeError
        ``node`` is not in the graph.
    """
    if node not in graph:
        raise UnknownNodeError(node, known=graph)
    p = plan if plan is not None else make_plan(graph, profile, errors="collect")
    profile = p.profile
    rec = record(graph, node)
    lines = [f"node {node!r}: {rec.op} {rec.target} ({role(profile, rec)})"]
    received = p.writes_to(node)
    reasons = _why_not(graph, profile, node, p) if not received else []
    own = rec.meta_dict()
    for key in profile.keys:
        writes = [d for d in received if d.key == key]
        if writes:
            lines.append(f"  {key}: {short_value(writes[-1].value, 60, trace=False)}")
            lines.extend(_describe(d, i, len(writes)) for i, d in enumerate(writes))
            continue
        kept = f" (keeps its own {short_value(own[key], 60, trace=False)})" if key in own else ""
        if received:
            sources = sorted({d.source for d in received})
            why = f"source {', '.join(map(repr, sources))} has no {key!r}"
        else:
            why = reasons[0] if reasons else "no rule reaches this node"
        lines.append(f"  {key}: not written{kept}: {why}")
    lines.extend(f"    also: {r}" for r in reasons[1:])
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


def _why_not(graph: Snapshot, profile: Profile, node: str, p: Plan) -> list[str]:
    """Reasons, most specific first, why the plan writes nothing on ``node``."""
    rec = record(graph, node)
    errors = [
        d
        for d in p.diagnostics
        if d.severity is Severity.ERROR and (d.node == node or node in d.related)
    ]
    reasons = [f"planning of annotated node {d.node!r} failed: {d.message}" for d in errors]
    if profile.is_dequantize(rec):
        reasons.extend(_why_not_dequantize(graph, profile, node))
    elif profile.is_quantize(rec):
        reasons.extend(_why_not_quantize(graph, profile, node))
    elif profile.is_choose_qparams(rec):
        reasons.append("no annotated node has a dynamic input whose search reaches it first")
    elif profile.is_view(rec):
        reasons.append("it is not on a get_attr -> view ops -> quantize chain of a ported weight")
    else:
        reasons.append(
            "the rules write only to quantize, dequantize and choose_qparams nodes and to the "
            f"view ops between a weight and its quantize; this node is {role(profile, rec)}"
        )
    return reasons


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
    if not rec.args or not isinstance(rec.args[0], NodeRef):
        return ["it has no producer node in args[0]"]
    producer = rec.args[0].name
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
    reasons.append(
        "no static input rule reached it: no annotated consumer reads it through a dequantize "
        "with a weight (get_attr) above it"
    )
    return reasons
