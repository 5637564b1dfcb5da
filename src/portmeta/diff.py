"""What differs between two plans (``portmeta diff``).

Two plans are compared by their *final state*: for every ``(node, key)`` either plan writes,
the last write's value, source, origin and rule. Diagnostics are compared as multisets of
``(kind, severity, node, message)``. Profile name, snapshot fingerprint and the number of writes
are reported as notes: plans of different graphs or with a different write order can still agree.

Example
-------
>>> from portmeta import plan, LEGACY_TORCH_AO
>>> from portmeta.testing import GraphBuilder, static
>>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
>>> y = b.call("aten.relu.default", dq, name="relu", tag="P0"); b.annotate(y, inputs={x: static()})
>>> b.output(y); g = b.build()
>>> d = diff_plans(plan(g), plan(g, LEGACY_TORCH_AO))
>>> d.agree, d.notes
(True, ('profiles differ: torchao vs legacy',))
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from ._text import shown_apart
from .plan import MetaDelta, Plan, same_value
from .report import short_value

__all__ = ["WriteChange", "PlanDiff", "diff_plans", "format_diff"]


@attrs.frozen(slots=True)
class WriteChange:
    """The final write of one ``(node, key)`` in plan A and in plan B (``None``: not written)."""

    target: str
    key: str
    a: MetaDelta | None
    b: MetaDelta | None

    @property
    def fields(self) -> tuple[str, ...]:
        """Which of value, source, origin, rule differ (empty when one side is missing)."""
        if self.a is None or self.b is None:
            return ()
        out = []
        if not same_value(self.a.value, self.b.value):
            out.append("value")
        for name in ("source", "origin", "rule"):
            if getattr(self.a, name) != getattr(self.b, name):
                out.append(name)
        return tuple(out)


def _same_write(a: MetaDelta, b: MetaDelta) -> bool:
    return attrs.evolve(a, anchor="", path=()) == attrs.evolve(b, anchor="", path=())


_DiagKey = tuple[str, str, str, str]


@attrs.frozen(slots=True)
class PlanDiff:
    """The differences between plan A and plan B.

    Attributes
    ----------
    only_a, only_b:
        ``(node, key)`` final writes present in one plan only.
    changed:
        ``(node, key)`` written by both whose final value, source, origin or rule differ.
    diagnostics_only_a, diagnostics_only_b:
        Diagnostics ``(kind, severity, node, message)`` found in one plan only.
    notes:
        Differences that do not make the plans disagree (profile, fingerprint, write count).
    """

    only_a: tuple[MetaDelta, ...]
    only_b: tuple[MetaDelta, ...]
    changed: tuple[WriteChange, ...]
    diagnostics_only_a: tuple[_DiagKey, ...]
    diagnostics_only_b: tuple[_DiagKey, ...]
    notes: tuple[str, ...]

    @property
    def agree(self) -> bool:
        """Same final state and the same diagnostics."""
        return not (
            self.only_a
            or self.only_b
            or self.changed
            or self.diagnostics_only_a
            or self.diagnostics_only_b
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (values shortened to text)."""

        def write(d: MetaDelta | None, shown: str | None = None) -> Any:
            if d is None:
                return None
            return {
                "value": short_value(d.value, 200) if shown is None else shown,
                "source": d.source,
                "origin": d.origin,
                "rule": d.rule.value,
            }

        def _pair(c: WriteChange) -> tuple[str | None, str | None]:
            if c.a is None or c.b is None:
                return None, None
            return shown_apart(c.a.value, c.b.value, 200)

        def diag(k: _DiagKey) -> dict[str, str]:
            return {"kind": k[0], "severity": k[1], "node": k[2], "message": k[3]}

        return {
            "agree": self.agree,
            "only_a": [{"target": d.target, "key": d.key, "a": write(d)} for d in self.only_a],
            "only_b": [{"target": d.target, "key": d.key, "b": write(d)} for d in self.only_b],
            "changed": [
                {
                    "target": c.target,
                    "key": c.key,
                    "fields": list(c.fields),
                    "a": write(c.a, shown[0]),
                    "b": write(c.b, shown[1]),
                }
                for c, shown in zip(self.changed, map(_pair, self.changed), strict=True)
            ],
            "diagnostics_only_a": [diag(k) for k in self.diagnostics_only_a],
            "diagnostics_only_b": [diag(k) for k in self.diagnostics_only_b],
            "notes": list(self.notes),
        }


def _diag_keys(p: Plan) -> Counter[_DiagKey]:
    return Counter((d.kind, d.severity.value, d.node, d.message) for d in p.diagnostics)


def diff_plans(a: Plan, b: Plan) -> PlanDiff:
    """Compare two plans (see the module docstring)."""
    fa, fb = a.last_writes(), b.last_writes()
    only_a = tuple(d for k, d in fa.items() if k not in fb)
    only_b = tuple(d for k, d in fb.items() if k not in fa)
    changed = tuple(
        WriteChange(k[0], k[1], d, fb[k])
        for k, d in fa.items()
        if k in fb and not _same_write(d, fb[k])
    )
    ca, cb = _diag_keys(a), _diag_keys(b)
    notes = []
    if a.profile.name != b.profile.name:
        notes.append(f"profiles differ: {a.profile.name} vs {b.profile.name}")
    else:
        chains = a.profile.dynamic_chain, b.profile.dynamic_chain
        if chains[0] != chains[1]:
            notes.append(
                f"profiles named {a.profile.name!r} differ in dynamic_chain: "
                f"{chains[0]} vs {chains[1]}"
            )
        if attrs.evolve(a.profile, dynamic_chain=chains[1]) != b.profile:
            notes.append(f"profiles named {a.profile.name!r} differ in content (keys or op sets)")
    if a.fingerprint != b.fingerprint:
        notes.append(
            f"planned from different snapshots: {a.fingerprint[:12]} vs {b.fingerprint[:12]}"
        )
    if len(a.deltas) != len(b.deltas):
        notes.append(f"write counts differ: {len(a.deltas)} vs {len(b.deltas)}")
    return PlanDiff(
        only_a,
        only_b,
        changed,
        tuple((ca - cb).elements()),
        tuple((cb - ca).elements()),
        tuple(notes),
    )


def format_diff(d: PlanDiff, name_a: str = "A", name_b: str = "B") -> str:
    """The diff as text; ends with ``plans agree`` or ``plans differ: ...``."""

    def w(x: MetaDelta, shown: str | None = None) -> str:
        value = short_value(x.value) if shown is None else shown
        return f"{value} from {x.source} ({x.rule.value})"

    lines: list[str] = []
    for x in d.only_a:
        lines.append(f"only in {name_a}: {x.target}.{x.key} = {w(x)}")
    for x in d.only_b:
        lines.append(f"only in {name_b}: {x.target}.{x.key} = {w(x)}")
    for c in d.changed:
        assert c.a is not None and c.b is not None
        va, vb = shown_apart(c.a.value, c.b.value, 40)
        lines.append(
            f"differs ({', '.join(c.fields)}): {c.target}.{c.key}: "
            f"{name_a} {w(c.a, va)} | {name_b} {w(c.b, vb)}"
        )
    for name, keys in ((name_a, d.diagnostics_only_a), (name_b, d.diagnostics_only_b)):
        for kind, severity, node, message in keys:
            what = severity if kind == severity else f"{severity} {kind}"
            lines.append(f"diagnostic only in {name}: {what} at {node}: {message}")
    for note in d.notes:
        lines.append(f"note: {note}")
    if d.agree:
        lines.append("plans agree")
    else:
        lines.append(
            f"plans differ: {len(d.only_a)} only in {name_a}, {len(d.only_b)} only in {name_b}, "
            f"{len(d.changed)} changed, "
            f"{len(d.diagnostics_only_a) + len(d.diagnostics_only_b)} diagnostic differences"
        )
    return "\n".join(lines)
