"""A picture of a plan: Graphviz DOT text, rendered to SVG or PNG by the ``dot`` program.

:func:`to_dot` is pure: the graph's nodes and data edges (solid, grey), each written node filled
with the color of the rule that wrote it (striped when several rules did) and labelled with the
values the plan leaves on it (``key = value``, the last write of each key), annotated nodes drawn
with a double border and their tag, the nodes of each hole :func:`portmeta.check` reports
with a dashed red border and the finding's kind, annotated node and cause, and one dashed,
colored *metadata-flow* arrow per
``(source, target)`` pair, labelled with the rule and the keys copied. A legend explains the
colors. :func:`render` runs Graphviz ``dot`` in a subprocess; :func:`write_drawing` picks the
format from the file extension (``.dot``/``.gv``, ``.svg``, ``.png``) and writes atomically.

Example
-------
>>> from portmeta import plan
>>> from portmeta.testing import GraphBuilder, static
>>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
>>> y = b.call("aten.relu.default", dq, name="relu", tag="P0"); b.annotate(y, inputs={x: static()})
>>> b.output(y); g = b.build()
>>> text = to_dot(g, plan(g))
>>> text.startswith("digraph portmeta {"), '"relu" -> "dq" [' in text, "quantization_tag = 'P0'" in text
(True, True, True)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from ._text import short_value
from .check import check_writes
from .errors import RenderError
from .fingerprint import require_plan_of
from .io import atomic_write_text
from .plan import Plan
from .report import short_target
from .rules import Rule, Severity
from .snapshot import Snapshot, annotated_nodes, record
from .structure import structure

__all__ = [
    "RULE_COLORS",
    "RenderError",
    "to_dot",
    "render",
    "write_drawing",
    "FORMATS",
]

#: Fill color (nodes) and line color (metadata arrows) of each rule.
RULE_COLORS: dict[Rule, tuple[str, str]] = {
    Rule.STATIC_INPUT: ("#a6d8f0", "#1d6fa5"),
    Rule.STATIC_OUTPUT: ("#ffd37a", "#c07a00"),
    Rule.GET_ATTR_CHAIN: ("#b7e4a0", "#3b8a1e"),
    Rule.DYNAMIC_INPUT: ("#f6b1c3", "#b8245a"),
}

_RULE_TEXT: dict[Rule, str] = {
    Rule.STATIC_INPUT: "static input: dq <- consumer",
    Rule.STATIC_OUTPUT: "static output: q <- producer",
    Rule.GET_ATTR_CHAIN: "get_attr chain: q, views <- weight",
    Rule.DYNAMIC_INPUT: "dynamic input: choose_qparams, q, dq <- consumer",
}

#: File extensions :func:`write_drawing` understands, and the ``dot -T`` format of each.
FORMATS: dict[str, str | None] = {".dot": None, ".gv": None, ".svg": "svg", ".png": "png"}

#: Longest rendering of a written value in a node's label.
VALUE_WIDTH = 32


def _q(text: str) -> str:
    """A DOT double-quoted string (``\\n`` inside ``text`` stays a line break)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(**kw: str) -> str:
    return "[" + ", ".join(f"{k}={_q(v)}" for k, v in kw.items()) + "]"


def to_dot(graph: Snapshot, p: Plan, *, title: str | None = None) -> str:
    """The DOT text of ``p`` drawn over ``graph`` (see the module docstring).

    A written node shows the value each key holds once the plan is applied (``key = value``,
    shortened as in ``portmeta plan``'s table), so two plans of one graph that write different
    values draw differently.

    Raises
    ------
    StalePlanError
        ``p`` was not made from ``graph`` (their fingerprints differ).
    """
    require_plan_of(graph, p.fingerprint, "drawing")
    written: dict[str, dict[Rule, None]] = {}
    for d in p.deltas:
        written.setdefault(d.target, {})[d.rule] = None
    flows: dict[tuple[str, str], dict[Rule, dict[str, None]]] = {}
    for d in p.deltas:
        flows.setdefault((d.source, d.target), {}).setdefault(d.rule, {})[d.key] = None
    final = p.final_state()
    flagged = {d.node: d.severity for d in p.diagnostics if d.severity is not Severity.INFO}
    annotated = set(annotated_nodes(graph))

    heading = title or (
        f"portmeta plan ({p.profile.name}): {len(p.deltas)} writes to {len(written)} nodes"
    )
    out = [
        "digraph portmeta {",
        f"  graph {_attrs(rankdir='TB', fontname='Helvetica', fontsize='12', labelloc='t', label=heading, nodesep='0.3', ranksep='0.35')};",
        f"  node {_attrs(shape='box', style='rounded,filled', fillcolor='#f4f4f4', color='#888888', fontname='Helvetica', fontsize='10')};",
        f"  edge {_attrs(color='#9a9a9a', arrowsize='0.6', fontname='Helvetica')};",
    ]

    quantized = structure(graph, p.profile)
    holes: dict[str, str] = {}  # node -> what the check says it misses
    for f in check_writes(graph, p.deltas, p.diagnostics, p.profile):
        chain = [n for n in f.related if quantized.role_of(n) is not None and n != f.anchor]
        for n in (f.node, *chain):
            holes.setdefault(n, f"{f.kind} of {f.anchor}: {f.cause}")

    def node_line(name: str) -> str:
        op = short_target(graph, name)
        label = [name] if op == name else [name, op]
        kw: dict[str, str] = {}
        tag = record(graph, name).meta_dict().get("quantization_tag")
        tag_text = f"[{tag}]" if isinstance(tag, str) and name not in final else ""
        if name in annotated:
            label.append(f"annotated {tag_text}".rstrip())
            kw.update(peripheries="2", penwidth="1.6", color="#333333")
        elif tag_text:
            label.append(tag_text)
        rules = list(written.get(name, ()))
        if len(rules) == 1:
            kw["fillcolor"] = RULE_COLORS[rules[0]][0]
        elif rules:
            kw["style"] = "striped"
            kw["fillcolor"] = ":".join(RULE_COLORS[r][0] for r in rules)
        if rules:
            label.append("<- " + ", ".join(r.value for r in rules))
        for key, value in final.get(name, {}).items():
            label.append(f"{key} = {short_value(value, VALUE_WIDTH)}")
        if name in holes:  # a node of a hole portmeta.check reports
            label.append(holes[name])
            kw.update(style=kw.get("style", "rounded,filled") + ",dashed", color="#d00000")
            kw["penwidth"] = "1.6"
        if name in flagged:
            kw.update(color="#d00000", penwidth="2")
        return f"  {_q(name)} {_attrs(label=chr(10).join(label), **kw)};"

    for name in graph:
        out.append(node_line(name))
    for u, v in graph.edges:
        out.append(f"  {_q(u)} -> {_q(v)};")
    for (src, dst), by_rule in flows.items():
        first = next(iter(by_rule))
        label = "\n".join(f"{r.value}: {', '.join(keys)}" for r, keys in by_rule.items())
        out.append(
            f"  {_q(src)} -> {_q(dst)} "
            + _attrs(
                style="dashed",
                color=RULE_COLORS[first][1],
                fontcolor=RULE_COLORS[first][1],
                penwidth="1.4",
                constraint="false",
                fontsize="8",
                label=label,
            )
            + ";"
        )
    out.extend(_legend())
    out.append("}")
    return "\n".join(out) + "\n"


def _legend() -> Iterable[str]:
    yield "  subgraph cluster_legend {"
    yield f"    graph {_attrs(label='legend', fontsize='10', color='#bbbbbb', style='rounded')};"
    prev = None
    for rule in Rule:
        nid = f"legend_{rule.value}"
        yield (
            f"    {_q(nid)} "
            + _attrs(label=_RULE_TEXT[rule], fillcolor=RULE_COLORS[rule][0], fontsize="9")
            + ";"
        )
        if prev is not None:
            yield f"    {_q(prev)} -> {_q(nid)} [style=invis];"
        prev = nid
    yield (
        '    "legend_annotated" '
        + _attrs(
            label="annotated node (double border)", peripheries="2", penwidth="1.6", fontsize="9"
        )
        + ";"
    )
    yield (
        '    "legend_flow" '
        + _attrs(
            label="dashed arrow: metadata copied\nsource -> target (rule: keys)",
            shape="plaintext",
            style="",
            fontsize="9",
        )
        + ";"
    )
    yield (
        '    "legend_hole" '
        + _attrs(
            label="a hole portmeta.check reports:\nkind of annotated node: cause (dashed red)",
            style="rounded,filled,dashed",
            color="#d00000",
            penwidth="1.6",
            fontsize="9",
        )
        + ";"
    )
    yield f'    {_q(str(prev))} -> "legend_annotated" [style=invis];'
    yield '    "legend_annotated" -> "legend_hole" [style=invis];'
    yield '    "legend_hole" -> "legend_flow" [style=invis];'
    yield "  }"


def render(dot_text: str, fmt: str, *, dot: str | None = None, timeout: float = 120) -> bytes:
    """Run Graphviz ``dot -T<fmt>`` on ``dot_text`` and return the output bytes.

    Raises
    ------
    RenderError
        ``dot`` is not installed, fails, or times out.
    """
    exe = dot or shutil.which("dot")
    if exe is None:
        raise RenderError(
            "Graphviz 'dot' not found on PATH; install Graphviz (e.g. apt-get install graphviz) "
            "or write a .dot file instead"
        )
    try:
        done = subprocess.run(
            [exe, f"-T{fmt}"],
            input=dot_text.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RenderError(f"Graphviz 'dot' did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise RenderError(f"cannot run Graphviz 'dot' ({exe}): {exc.strerror or exc}") from None
    if done.returncode != 0 or not done.stdout:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RenderError(
            f"Graphviz 'dot' failed (exit {done.returncode})" + (f": {err[0]}" if err else "")
        )
    return done.stdout


def write_drawing(
    graph: Snapshot, p: Plan, path: str | os.PathLike[str], *, title: str | None = None
) -> str:
    """Write the picture to ``path``; the extension picks the format. Returns the format.

    Raises
    ------
    RenderError
        Unknown extension, or Graphviz missing / failing (for ``.svg`` and ``.png``).
    OSError
        The file cannot be written (nothing is left behind).
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise RenderError(
            f"{os.fspath(path)}: unknown picture format {suffix or '(no extension)'!r}; "
            f"use {', '.join(FORMATS)}"
        )
    text = to_dot(graph, p, title=title)
    fmt = FORMATS[suffix]
    if fmt is None:
        atomic_write_text(path, text)
        return "dot"
    atomic_write_text(path, render(text, fmt))
    return fmt
