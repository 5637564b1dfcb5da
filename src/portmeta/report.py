"""Human-readable views of a plan: a table of writes and a one-line summary.

Pure text, no torch. The CLI (``portmeta plan``) and the demo print these.

Example
-------
>>> from portmeta import plan
>>> from portmeta.testing import GraphBuilder, static
>>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
>>> y = b.call("aten.relu.default", dq, name="relu", tag="P0"); b.annotate(y, inputs={x: static()})
>>> b.output(y); g = b.build(); p = plan(g)
>>> print(format_table(g, p))
target  op                     key               value  source  rule
------  ---------------------  ----------------  -----  ------  ------------
dq      dequantize_per_tensor  quantization_tag  'P0'   relu    static_input
>>> print(summary(g, p))
5 nodes, 1 annotated; 1 write to 1 node (static_input 1, static_output 0, get_attr_chain 0, dynamic_input 0); 0 diagnostics
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from ._text import short_value
from .plan import Plan
from .records import TargetKind
from .rules import Rule
from .snapshot import Snapshot, annotated_nodes, graph_of, own_nodes, record

__all__ = [
    "short_target",
    "short_value",
    "format_table",
    "format_diagnostics",
    "summary",
    "by_graph",
]


def short_target(graph: Snapshot, name: str) -> str:
    """A node's op in a few characters: the operator's short name, else the FX ``op``.

    ``quantized_decomposed.quantize_per_tensor.default`` is ``quantize_per_tensor``,
    ``torchao.quantize_affine`` is ``quantize_affine``, ``operator.getitem`` is ``getitem``; a
    placeholder, get_attr or output node shows its ``op``.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x); b.output(dq)
    >>> short_target(b.build(), "q"), short_target(b.build(), "x")
    ('quantize_per_tensor', 'placeholder')
    """
    if name not in graph:
        return "?"
    rec = record(graph, name)
    if rec.op not in ("call_function", "call_method", "call_module"):
        return rec.op
    parts = rec.target.name.split(".")
    if rec.target.kind is TargetKind.OVERLOAD and len(parts) >= 3:
        return parts[-2]
    return parts[-1]


def _render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(map(len, column)) for column in zip(headers, *rows, strict=True)]
    # one format call per row: a table of a large plan has a row per write
    line = "  ".join(f"{{:<{w}}}" for w in widths).format
    lines = [line(*headers).rstrip(), "  ".join("-" * w for w in widths)]
    lines.extend([line(*row).rstrip() for row in rows])
    return "\n".join(lines)


def format_table(graph: Snapshot | None, p: Plan, *, width: int = 40) -> str:
    """Every write of ``p`` as an aligned text table, in write order.

    Columns: target node, its op (short target name; ``?`` without a graph), key, value
    (shortened), source node, rule. A plan with no writes gives ``(no writes)``.
    """
    if not p.deltas:
        return "(no writes)"
    ops: dict[str, str] = {}  # a node receives several writes: its op is worked out once
    rows = [
        (
            d.target,
            (ops.get(d.target) or ops.setdefault(d.target, short_target(graph, d.target)))
            if graph is not None
            else "?",
            d.key,
            short_value(d.value, width),
            d.source,
            d.rule.value,
        )
        for d in p.deltas
    ]
    return _render(("target", "op", "key", "value", "source", "rule"), rows)


def format_diagnostics(p: Plan) -> str:
    """One line per diagnostic (``severity kind node: message``); empty text when none."""
    lines = []
    for d in p.diagnostics:
        kind = (
            f" {d.error_class}"
            if d.error_class
            else ("" if d.kind == d.severity.value else f" [{d.kind}]")
        )
        lines.append(f"{d.severity.value}{kind} at {d.node}: {d.message}")
    return "\n".join(lines)


def summary(graph: Snapshot | None, p: Plan) -> str:
    """One line: the graph's own nodes, its annotated nodes (those the pass ports from), writes
    per rule, diagnostics per kind."""
    parts = []
    if graph is not None:
        own = len(own_nodes(graph))
        annotated = len(annotated_nodes(graph, include_ignored=False))
        parts.append(f"{own} nodes, {annotated} annotated")
    n = len(p.deltas)
    targets = len({d.target for d in p.deltas})
    counts = Counter(d.rule for d in p.deltas)
    per_rule = ", ".join(f"{r.value} {counts.get(r, 0)}" for r in Rule)
    parts.append(
        f"{n} write{'s' if n != 1 else ''} to {targets} node{'s' if targets != 1 else ''} "
        f"({per_rule})"
    )
    kinds = Counter(d.kind for d in p.diagnostics)
    diag = f"{len(p.diagnostics)} diagnostic{'s' if len(p.diagnostics) != 1 else ''}"
    if kinds:
        diag += " (" + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ")"
    parts.append(diag)
    return "; ".join(parts)


def by_graph(graph: Snapshot, p: Plan, findings: Iterable[str] | None = None) -> str:
    """For a model's graphs merged (:func:`portmeta.merge_graphs`), one line per graph, top
    level first: its own nodes, annotated nodes and writes, and, given the nodes of the check's
    findings, their count. ``""`` for a snapshot of one graph.

    Example
    -------
    >>> from portmeta import merge_graphs, plan
    >>> from portmeta.testing import GraphBuilder, static
    >>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
    >>> y = b.call("aten.relu.default", dq, name="relu", tag="P0")
    >>> b.annotate(y, inputs={x: static()}); b.output(y)
    >>> top = GraphBuilder(); top.output(top.placeholder("x"))
    >>> model = merge_graphs({"": top.build(), "scan_combine_graph_0": b.build()})
    >>> print(by_graph(model, plan(model), findings=[]))
    graph ''                      2 nodes, 0 annotated, 0 writes, 0 findings
    graph 'scan_combine_graph_0'  5 nodes, 1 annotated, 1 write, 0 findings
    """
    names = list(dict.fromkeys(graph_of(n) for n in graph))
    if len(names) < 2:
        return ""
    nodes = Counter(graph_of(n) for n in own_nodes(graph))
    annotated = Counter(graph_of(n) for n in annotated_nodes(graph, include_ignored=False))
    writes = Counter(graph_of(d.target) for d in p.deltas)
    found = None if findings is None else Counter(graph_of(n) for n in findings)
    width = max(len(repr(name)) for name in names)
    lines = []
    for name in names:
        line = (
            f"graph {name!r:<{width}}  {_count(nodes[name], 'node')}, "
            f"{annotated[name]} annotated, {_count(writes[name], 'write')}"
        )
        if found is not None:
            line += f", {_count(found[name], 'finding')}"
        lines.append(line)
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
