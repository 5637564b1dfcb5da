"""``assert_no_findings``: fail a test when :func:`portmeta.check` finds something.

Example
-------
>>> from portmeta.testing import GraphBuilder, assert_no_findings, static
>>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
>>> q_1, dq_1 = b.qdq(x)
>>> y = b.call("aten.add.Tensor", dq, dq_1, name="add", tag="add_0")
>>> b.annotate(y, inputs={x: static()}); b.output(y)
>>> assert_no_findings(b.build())
Traceback (most recent call last):
...
AssertionError: assert_no_findings: 1 finding (unported_input 1)
<BLANKLINE>
unported_input at 'dq_1' (annotated node 'add'; keys quantization_tag; cause not_first)
    'dq_1' feeds 'add' through its quantized input 'x' but ends without its quantization_tag (it has no quantization_tag): an earlier positional argument 'dq' of 'add' also dequantizes 'x' and is the one written
<BLANKLINE>
allow a finding with allow=[...]: its kind, its cause, its node or anchor name, or a predicate
>>> [f.node for f in assert_no_findings(b.build(), allow=["not_first"])]
['dq_1']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import networkx as nx

from ..check import CAUSES, KINDS, Finding, check
from ..plan import Plan
from ..profiles import TORCHAO, Profile
from ..snapshot import Snapshot

__all__ = ["assert_no_findings"]

Allow = str | Callable[[Finding], bool]


def _allowed(f: Finding, allow: list[Allow]) -> bool:
    for item in allow:
        if callable(item):
            if item(f):
                return True
        elif item in (f.kind, f.cause, f.node, f.anchor):
            return True
    return False


def assert_no_findings(
    graph: Snapshot,
    *,
    allow: Iterable[Allow] = (),
    profile: Profile = TORCHAO,
    plan: Plan | None = None,
    ported: bool = False,
    keys: Iterable[str] | None = None,
) -> tuple[Finding, ...]:
    """Assert that :func:`portmeta.check` finds nothing on ``graph`` but what ``allow`` allows.

    Parameters
    ----------
    graph:
        A snapshot (before porting, or after it with ``ported=True``; a
        :class:`~portmeta.testing.GraphBuilder` graph or
        a saved one).
    allow:
        Findings to accept: a string allows every finding whose kind (:data:`portmeta.check.KINDS`),
        cause (:data:`portmeta.check.CAUSES`), node or anchor it equals; a callable allows those
        it returns ``True`` for.
    profile, plan, ported, keys:
        As for :func:`portmeta.check` (``ported=True`` for a snapshot taken after porting;
        ``keys`` to choose the keys compared).

    Returns
    -------
    tuple of Finding
        The allowed findings (to check them further).

    Raises
    ------
    AssertionError
        Listing every other finding: kind, node, annotated node, keys, cause and message.
    ValueError
        A string in ``allow`` is neither a kind, a cause, nor a node of ``graph`` (a typo would
        otherwise allow nothing, silently).
    TypeError
        ``graph`` is not a snapshot, or ``allow`` is a single string.
    OptionError
        ``keys`` names a key the profile does not copy.
    """
    __tracebackhide__ = True
    if not isinstance(graph, nx.DiGraph):
        raise TypeError(f"assert_no_findings takes a snapshot graph, got {type(graph).__name__}")
    if isinstance(allow, str):
        raise TypeError(f"allow must be a collection, not the string {allow!r}; use [{allow!r}]")
    items = list(allow)
    for item in items:
        if callable(item):
            continue
        if not isinstance(item, str):
            raise TypeError(f"allow entries must be strings or callables, got {item!r}")
        if item not in KINDS and item not in CAUSES and item not in graph:
            raise ValueError(
                f"allow entry {item!r} is not a finding kind {list(KINDS)!r}, a cause, nor a "
                "node of the graph"
            )
    found = check(graph, profile, plan, ported=ported, keys=keys)
    allowed = tuple(f for f in found if _allowed(f, items))
    failing = [f for f in found if not _allowed(f, items)]
    if failing:
        counts = Counter(f.kind for f in failing)
        kinds = ", ".join(f"{k} {counts[k]}" for k in KINDS if counts[k])
        n = len(failing)
        lines = [f"assert_no_findings: {n} finding{'s' if n != 1 else ''} ({kinds})", ""]
        for f in failing:
            anchor = f"annotated node {f.anchor!r}; " if f.anchor is not None else ""
            lines.append(
                f"{f.kind} at {f.node!r} ({anchor}keys {', '.join(f.keys)}; cause {f.cause})"
            )
            lines.append(f"    {f.message}")
            lines.append("")
        lines.append(
            "allow a finding with allow=[...]: its kind, its cause, its node or anchor name, "
            "or a predicate"
        )
        raise AssertionError("\n".join(lines))
    return allowed
