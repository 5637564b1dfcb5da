"""``assert_ported``: check which keys the pass writes on which node, with a readable failure.

Example
-------
>>> from portmeta.testing import GraphBuilder, NOTHING, assert_ported, static
>>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
>>> y = b.call("aten.relu.default", dq, name="relu", tag="P0"); b.annotate(y, inputs={x: static()})
>>> b.output(y)
>>> assert_ported(b.build(), {"dq": {"quantization_tag": "P1"}, "q": NOTHING})
Traceback (most recent call last):
...
AssertionError: assert_ported: 1 of 2 expectations failed
<BLANKLINE>
dq.quantization_tag
    expected  'P1'
    planned   'P0'  by rule static_input from 'relu' (annotated node 'relu'; path x -> q -> dq -> relu)
...
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import networkx as nx

from .._text import did_you_mean, short_value
from ..explain import explain
from ..fingerprint import fingerprint
from ..plan import MetaDelta, Plan, plan, same_value
from ..profiles import TORCHAO, Profile
from ..snapshot import Snapshot

__all__ = ["NOTHING", "Nothing", "assert_ported"]

#: Longest rendering of one value in a failure message (longer ones are cut in the middle).
VALUE_WIDTH = 300


class Nothing:
    """The type of :data:`NOTHING`; there is exactly one instance.

    Example
    -------
    >>> Nothing() is NOTHING, repr(NOTHING), bool(NOTHING)
    (True, 'NOTHING', False)
    """

    _instance: Nothing | None = None

    def __new__(cls) -> Nothing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOTHING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "NOTHING"


NOTHING: Final = Nothing()
"""The plan writes nothing here.

In :func:`assert_ported`'s ``expected``, as a node's entry (``{"x_q": NOTHING}``) it means the
plan writes no key on that node; as a key's value (``{"x_dq": {"stack_trace": NOTHING}}``) it
means the plan does not write that key there. It differs from ``None``: ``None`` expects a
write whose value is ``None`` (the pass copies a key that is present with value ``None``).
"""


def _show(value: Any) -> str:
    return short_value(value, VALUE_WIDTH)


def _by(d: MetaDelta) -> str:
    """Where a write came from: rule, source, origin, annotated node and path."""
    origin = "" if d.origin == d.source else f", value first from {d.origin!r}"
    path = f"; path {' -> '.join(d.path)}" if d.path else ""
    return f"by rule {d.rule.value} from {d.source!r} (annotated node {d.anchor!r}{path}{origin})"


def _history(writes: list[MetaDelta]) -> list[str]:
    """Lines about earlier writes of the same node and key, which the last one replaced."""
    if len(writes) < 2:
        return []
    lines = [f"              (last of {len(writes)} writes; earlier:"]
    lines += [f"               {_show(d.value)} {_by(d)}" for d in writes[:-1]]
    lines[-1] += ")"
    return lines


def _scope(p: Plan, keys: Iterable[str] | None) -> tuple[str, ...]:
    if keys is None:
        return p.profile.keys
    if isinstance(keys, str):
        raise TypeError(f"keys must be a collection of key names, not the string {keys!r}")
    return tuple(keys)


class _Report:
    def __init__(self, p: Plan, graph: Snapshot | None) -> None:
        self.plan = p
        self.graph = graph
        self.writes: dict[tuple[str, str], list[MetaDelta]] = {}
        for d in p.deltas:
            self.writes.setdefault((d.target, d.key), []).append(d)
        self.final = p.last_writes()
        self.state = p.final_state()
        self.checked = 0
        self.blocks: list[list[str]] = []
        self.unwritten: list[str] = []  # nodes with a failing key the plan does not write

    def last(self, node: str, key: str) -> MetaDelta | None:
        return self.final.get((node, key))

    def fail(self, lines: list[str]) -> None:
        self.blocks.append(lines)

    def planned_lines(self, node: str, key: str, indent: str = "    planned   ") -> list[str]:
        d = self.last(node, key)
        if d is None:
            if node not in self.unwritten:
                self.unwritten.append(node)
            return [f"{indent}nothing (the plan writes no {key!r} on {node!r})"]
        return [f"{indent}{_show(d.value)}  {_by(d)}", *_history(self.writes[(node, key)])]

    def check_node_unknown(self, node: str) -> bool:
        """Report a node the graph does not have (a plan alone cannot tell: not checked)."""
        if self.graph is None or node in self.graph:
            return False
        hint = did_you_mean(node, self.graph)
        self.checked += 1
        self.fail([node, f"    the graph has no node named {node!r}{hint}"])
        return True

    def nothing(self, node: str, scope: tuple[str, ...]) -> None:
        self.checked += 1
        written = [k for k in self.state.get(node, {}) if k in scope]
        if not written:
            return
        lines = [node, "    expected  nothing"]
        for i, key in enumerate(written):
            head = "    planned   " if i == 0 else "              "
            lines += self.planned_lines(node, key, f"{head}{key} = ")
        self.fail(lines)

    def key(self, node: str, key: str, want: Any) -> None:
        self.checked += 1
        d = self.last(node, key)
        if key not in self.plan.profile.keys:
            ported = ", ".join(map(repr, self.plan.profile.keys))
            self.fail(
                [
                    f"{node}.{key}",
                    f"    {key!r} is not a key the profile {self.plan.profile.name!r} ports "
                    f"(it ports {ported})",
                ],
            )
            return
        if want is NOTHING:
            if d is not None:
                self.fail(
                    [f"{node}.{key}", "    expected  nothing", *self.planned_lines(node, key)]
                )
            return
        if d is not None and same_value(d.value, want):
            return
        self.fail(
            [f"{node}.{key}", f"    expected  {_show(want)}", *self.planned_lines(node, key)],
        )

    def unexpected(self, node: str, key: str) -> None:
        self.checked += 1
        self.fail(
            [
                f"{node}.{key}",
                "    expected  no write (strict: not listed in expected)",
                *self.planned_lines(node, key),
            ],
        )

    def message(self, failures: int) -> str:
        p = self.plan
        out = [f"assert_ported: {failures} of {self.checked} expectations failed", ""]
        for block in self.blocks:
            out += [*block, ""]
        if self.graph is not None:
            for node in self.unwritten:
                out.append(f"why: portmeta.explain(graph, {node!r})")
                out += ["    " + line for line in explain(self.graph, node, plan=p).splitlines()]
                out.append("")
        elif self.unwritten:
            names = ", ".join(map(repr, self.unwritten))
            out += [
                f"why: not shown for {names}: assert_ported was given a plan without its graph; "
                "pass graph=the_graph (or the graph instead of the plan) for portmeta.explain "
                "of those nodes and a check of node names",
                "",
            ]
        nodes = len(self.state)
        out.append(
            f"plan: profile {p.profile.name!r}, {len(p.deltas)} write"
            f"{'' if len(p.deltas) == 1 else 's'} to {nodes} node{'' if nodes == 1 else 's'}, "
            f"{len(p.diagnostics)} diagnostic{'' if len(p.diagnostics) == 1 else 's'}"
            + (":" if p.diagnostics else "")
        )
        for diag in p.diagnostics:
            rule = f" ({diag.rule.value})" if diag.rule is not None else ""
            out.append(
                f"    {diag.severity.value} {diag.kind} at {diag.node!r}{rule}: {diag.message}"
            )
        return "\n".join(out)


def assert_ported(
    plan_or_graph: Plan | Snapshot,
    expected: Mapping[str, Mapping[str, Any] | Nothing],
    *,
    strict: bool = False,
    keys: Iterable[str] | None = None,
    profile: Profile = TORCHAO,
    graph: Snapshot | None = None,
) -> Plan:
    """Assert what the pass writes on the nodes listed in ``expected``; return the plan.

    Parameters
    ----------
    plan_or_graph:
        A :class:`~portmeta.Plan`, or a snapshot (a :class:`GraphBuilder` graph or a saved
        one), which is planned with ``profile`` (a planning error propagates as it is).
    expected:
        ``{node: {key: value}}``. Every key listed must be written on that node with an equal
        value (the plan's last write, compared as :func:`portmeta.plan.same_value` does:
        ``None`` is a value and matches only a write of ``None``); keys not listed are not
        checked. :data:`NOTHING` as a node's entry means the plan writes no key on that node,
        as a key's value that it does not write that key there. Nodes not listed are not
        checked unless ``strict``.
    strict:
        ``expected`` is everything the plan writes: a write to a node or key that is not
        listed fails too.
    keys:
        The keys that ``strict`` and a node's :data:`NOTHING` look at (default: every key
        the profile ports). ``keys=["quantization_tag"]`` with ``strict=True`` pins down all
        the tags and ignores stack traces. Keys listed in ``expected`` are always checked.
    profile:
        The profile to plan a graph with (:data:`portmeta.TORCHAO` by default); ignored for
        a plan.
    graph:
        With a plan, the graph it was planned from: the failure message then has the same
        "why" section (:func:`portmeta.explain`) and node-name check as when the graph itself
        is given. Without it, the message says what it leaves out.

    Raises
    ------
    AssertionError
        Listing, per failing node and key, the expected value, the planned one with the
        rule, source, annotated node and path that produced it (and any earlier writes it
        replaced), why the node got what it got (:func:`portmeta.explain`, when a graph is
        known), and every diagnostic of the plan.
    TypeError
        ``expected`` is not shaped ``{node: {key: value} | NOTHING}``.
    ValueError
        ``graph`` is not the graph the plan was made from (their fingerprints differ), or is
        given with a graph instead of a plan.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder, static
    >>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
    >>> y = b.call("aten.relu.default", dq, name="relu", tag="P0", stack_trace="m.py:3")
    >>> b.annotate(y, inputs={x: static()}); b.output(y)
    >>> p = assert_ported(b.build(), {"dq": {"quantization_tag": "P0"}, "q": NOTHING})
    >>> _ = assert_ported(p, {"dq": {"quantization_tag": "P0"}}, strict=True, keys=["quantization_tag"])
    """
    __tracebackhide__ = True
    if isinstance(plan_or_graph, Plan):
        p = plan_or_graph
        if graph is not None and p.fingerprint and fingerprint(graph) != p.fingerprint:
            raise ValueError(
                "graph= is not the graph this plan was made from (their fingerprints differ)"
            )
    elif isinstance(plan_or_graph, nx.DiGraph):
        if graph is not None:
            raise ValueError("graph= goes with a plan; a graph was given instead of a plan")
        graph = plan_or_graph
        p = plan(graph, profile)
    else:
        raise TypeError(
            f"assert_ported takes a Plan or a snapshot graph, got {type(plan_or_graph).__name__}"
        )
    if not isinstance(expected, Mapping):
        raise TypeError(
            f"expected must map node names to {{key: value}} or NOTHING, "
            f"got {type(expected).__name__}"
        )
    scope = _scope(p, keys)
    report = _Report(p, graph)
    for node, want in expected.items():
        if not isinstance(node, str):
            raise TypeError(f"expected's keys must be node names (str), got {node!r}")
        if report.check_node_unknown(node):
            continue
        if want is NOTHING:
            report.nothing(node, scope)
        elif isinstance(want, Mapping):
            for key, value in want.items():
                if not isinstance(key, str):
                    raise TypeError(f"expected[{node!r}] must map key names (str), got {key!r}")
                report.key(node, key, value)
        else:
            raise TypeError(
                f"expected[{node!r}] must be a mapping of key -> value or NOTHING, "
                f"got {type(want).__name__} {_show(want)}"
            )
    if strict:
        for node, meta in report.state.items():
            listed = expected.get(node)
            if isinstance(listed, Nothing):
                continue  # already reported by the NOTHING check
            for key in meta:
                if key in scope and (listed is None or key not in listed):
                    report.unexpected(node, key)
    if report.blocks:
        raise AssertionError(report.message(len(report.blocks)))
    return p
