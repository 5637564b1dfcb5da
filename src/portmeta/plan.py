"""The metadata-delta plan: what the upstream pass would write, as plain data.

:func:`plan` walks the annotated nodes in graph order, asks the rules for copies, and resolves
each copy against a running view of the metadata exactly as the in-place upstream pass would:
a key is copied when it is *present* on the source at that moment (a ``None`` value is copied),
a source that received a key earlier passes on what it received, and a later write to the same
node and key wins. The resulting :class:`Plan` holds the ordered writes, the diagnostics and the
fingerprint of the snapshot it came from.

Example
-------
>>> from portmeta import plan
>>> from portmeta.testing import GraphBuilder, static
>>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
>>> y = b.call("aten.relu.default", dq, name="relu", tag="P0", stack_trace="m.py:3")
>>> b.annotate(y, inputs={x: static()}); b.output(y)
>>> p = plan(b.build())
>>> [(d.target, d.key, d.value) for d in p.deltas]
[('dq', 'stack_trace', 'm.py:3'), ('dq', 'quantization_tag', 'P0')]
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Literal

import attrs

from . import codec
from ._text import short_value, shown_apart
from .errors import (
    GraphFormatError,
    MalformedAnnotationError,
    OptionError,
    PlanError,
    ProfileError,
)
from .fingerprint import FINGERPRINT_SCHEME, fingerprint, is_fingerprint
from .io import GRAPH_FORMAT, json_error, read_json
from .profiles import PROFILES, TORCHAO, Profile, get_profile
from .rules import (
    Copy,
    Diagnostic,
    Rule,
    RuleResult,
    Severity,
    dynamic_input,
    static_input,
    static_output,
)
from .snapshot import Snapshot, annotated_nodes, meta_keys, record, records

__all__ = [
    "PLAN_FORMAT",
    "PLAN_SCHEMA_VERSION",
    "MetaDelta",
    "Plan",
    "plan",
    "plan_writes",
    "final_meta",
    "last_writes",
    "same_value",
]

PLAN_FORMAT = "portmeta.plan"
#: Version 2 names the profile (version 1, which wrote it out in full, came with fingerprints
#: of an older scheme, so its plans are refused like theirs).
PLAN_SCHEMA_VERSION = 2


@attrs.frozen
class MetaDelta:
    """One metadata write: ``target.meta[key] = value``, copied from ``source``.

    Attributes
    ----------
    target, key, value:
        The write. ``value`` is the very object the source held at that moment.
    source:
        The node copied from.
    origin:
        The node whose own metadata the value first came from (differs from ``source`` when
        the source had itself received the key from an earlier write).
    rule:
        The rule that asked for the copy.
    anchor:
        The annotated node whose annotation triggered the rule.
    path:
        The nodes that justify the write, in data-flow order.

    Example
    -------
    >>> d = MetaDelta("dq", "quantization_tag", "P0", "relu", "relu", Rule.STATIC_INPUT, "relu", ("x", "q", "dq", "relu"))
    >>> d.rule.value, d.path[-1]
    ('static_input', 'relu')
    """

    target: str
    key: str
    value: Any = attrs.field(eq=attrs.cmp_using(eq=lambda a, b: same_value(a, b)))
    source: str
    origin: str
    rule: Rule
    anchor: str
    path: tuple[str, ...]


@attrs.frozen
class Plan:
    """The plain-data result of :func:`plan`.

    Attributes
    ----------
    deltas:
        Every write, in the order upstream performs them.
    diagnostics:
        Warnings, overwrites and (with ``errors="collect"``) errors.
    fingerprint:
        Fingerprint of the snapshot the plan was computed from (:func:`portmeta.fingerprint`);
        ``apply_plan`` refuses a graph whose snapshot differs, and the CLI notes it.
    profile:
        The profile used.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x"))
    >>> p = plan(b.build()); p.deltas, p.final_state()
    ((), {})
    """

    deltas: tuple[MetaDelta, ...]
    diagnostics: tuple[Diagnostic, ...]
    fingerprint: str
    profile: Profile

    # -- views ----------------------------------------------------------------------------
    def final_state(self) -> dict[str, dict[str, Any]]:
        """The value each written (node, key) holds after the plan: the last write wins.

        Nodes appear in order of their first write; keys in order of their first write.
        """
        state: dict[str, dict[str, Any]] = {}
        for (target, key), d in last_writes(self.deltas).items():
            state.setdefault(target, {})[key] = d.value
        return state

    def last_writes(self) -> dict[tuple[str, str], MetaDelta]:
        """The last write of every written ``(node, key)``: see :func:`last_writes`.

        Example
        -------
        >>> from portmeta.testing import GraphBuilder
        >>> b = GraphBuilder(); b.output(b.placeholder("x"))
        >>> plan(b.build()).last_writes()
        {}
        """
        return last_writes(self.deltas)

    def writes_to(self, node: str) -> tuple[MetaDelta, ...]:
        """The deltas whose target is ``node``, in order."""
        return tuple(d for d in self.deltas if d.target == node)

    def writes_from(self, node: str) -> tuple[MetaDelta, ...]:
        """The deltas copied from ``node``, in order."""
        return tuple(d for d in self.deltas if d.source == node)

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """The error diagnostics (only with ``errors="collect"``)."""
        return tuple(d for d in self.diagnostics if d.severity is Severity.ERROR)

    def counts(self) -> dict[str, int]:
        """Writes per rule (every rule listed, in rule order) and diagnostics per kind.

        Example
        -------
        >>> from portmeta.testing import GraphBuilder
        >>> b = GraphBuilder(); b.output(b.placeholder("x"))
        >>> plan(b.build()).counts()["static_input"]
        0
        """
        by_rule = Counter(d.rule for d in self.deltas)
        out = {rule.value: by_rule.get(rule, 0) for rule in Rule}
        out.update(Counter(f"diag:{d.kind}" for d in self.diagnostics))
        return out

    # -- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (values through :mod:`portmeta.codec`).

        The profile is written by name when it is a built-in one (:data:`portmeta.PROFILES`),
        else as the built-in it differs least from plus the fields that differ
        (``{"base": "torchao", "name": ..., "keys": [...]}``).

        Example
        -------
        >>> from portmeta import TORCHAO
        >>> from portmeta.testing import GraphBuilder
        >>> b = GraphBuilder(); b.output(b.placeholder("x")); g = b.build()
        >>> plan(g).to_dict()["profile"]
        'torchao'
        >>> plan(g, TORCHAO.extend(name="mine", keys=["custom"])).to_dict()["profile"]
        {'base': 'torchao', 'name': 'mine', 'keys': ['stack_trace', 'quantization_tag', 'custom']}
        """
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_SCHEMA_VERSION,
            "fingerprint": self.fingerprint,
            "profile": _profile_to_data(self.profile),
            "deltas": [
                {
                    "target": d.target,
                    "key": d.key,
                    "value": codec.encode(d.value),
                    "source": d.source,
                    "origin": d.origin,
                    "rule": d.rule.value,
                    "anchor": d.anchor,
                    "path": list(d.path),
                }
                for d in self.deltas
            ],
            "diagnostics": [
                {
                    "kind": d.kind,
                    "severity": d.severity.value,
                    "node": d.node,
                    "message": d.message,
                    "rule": None if d.rule is None else d.rule.value,
                    "related": list(d.related),
                    "error_class": d.error_class,
                }
                for d in self.diagnostics
            ],
        }

    def to_json(self, *, indent: int | None = 1) -> str:
        """The plan as a JSON document; values that are not JSON types are tagged reprs.

        Example
        -------
        >>> from portmeta.testing import GraphBuilder
        >>> b = GraphBuilder(); b.output(b.placeholder("x"))
        >>> p = plan(b.build()); Plan.from_json(p.to_json()) == p
        True
        """
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> Plan:
        """Inverse of :meth:`to_dict`; raises :class:`GraphFormatError` on malformed data.

        Reads schema version 2 with a fingerprint of the current scheme; a plan saved by an
        older portmeta (schema version 1, or a fingerprint of another scheme) is refused with a
        message saying to plan again.
        """

        def fail(problem: str) -> GraphFormatError:
            return GraphFormatError(problem, source)

        if not isinstance(data, dict):
            raise fail("expected a JSON object at the top level")
        if data.get("format") != PLAN_FORMAT:
            hint = (
                f" (make one with `portmeta plan {source or 'GRAPH.json'} -o PLAN.json`)"
                if data.get("format") == GRAPH_FORMAT
                else ""
            )
            raise fail(
                f"not a portmeta plan file (format is {data.get('format')!r}, expected "
                f"{PLAN_FORMAT!r}){hint}"
            )
        again = f"plan again (`portmeta plan GRAPH.json -o {source or 'PLAN.json'}`)"
        version = data.get("version")
        if version == 1:
            raise fail(f"a plan of schema version 1, saved by an older portmeta; {again}")
        if type(version) is not int or version != PLAN_SCHEMA_VERSION:
            raise fail(
                f"unsupported plan schema version {version!r} "
                f"(this portmeta reads version {PLAN_SCHEMA_VERSION})"
            )
        found = data.get("fingerprint")
        if not is_fingerprint(found):
            raise fail(
                f"the plan's fingerprint {short_value(found, 24, trace=False)} is not of scheme "
                f"{FINGERPRINT_SCHEME} (a plan saved by an older portmeta); {again}"
            )
        try:
            profile = _profile_from_data(data["profile"])
            deltas = [
                MetaDelta(
                    target=_str(d["target"]),
                    key=_str(d["key"]),
                    value=codec.decode(d["value"]),
                    source=_str(d["source"]),
                    origin=_str(d["origin"]),
                    rule=Rule(d["rule"]),
                    anchor=_str(d["anchor"]),
                    path=tuple(_str(n) for n in d["path"]),
                )
                for d in data["deltas"]
            ]
            diagnostics = [
                Diagnostic.of(
                    kind=_str(d["kind"]),
                    severity=Severity(d["severity"]),
                    node=_str(d["node"]),
                    message=_str(d["message"]),
                    rule=None if d["rule"] is None else Rule(d["rule"]),
                    related=tuple(_str(n) for n in d["related"]),
                    error_class=None if d["error_class"] is None else _str(d["error_class"]),
                )
                for d in data["diagnostics"]
            ]
            return cls(tuple(deltas), tuple(diagnostics), str(found), profile)
        except ProfileError as exc:
            raise fail(str(exc)) from None
        except KeyError as exc:
            raise fail(f"missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise fail(f"malformed plan: {exc}") from None
        except RecursionError:
            raise fail("data is nested too deeply") from None

    @classmethod
    def from_json(cls, text: str, *, source: str | None = None) -> Plan:
        """Inverse of :meth:`to_json`; raises :class:`GraphFormatError` on malformed input."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GraphFormatError(json_error(exc), source) from None
        except RecursionError:
            raise GraphFormatError("JSON is nested too deeply", source) from None
        return cls.from_dict(data, source=source)

    @classmethod
    def load(cls, path: str) -> Plan:
        """Read a plan file written from :meth:`to_json`."""
        return cls.from_dict(read_json(path), source=str(path))


def _profile_to_data(profile: Profile) -> str | dict[str, Any]:
    """A built-in profile's name, or the nearest built-in and the fields that differ."""
    for name, builtin in PROFILES.items():
        if builtin == profile:
            return name
    fields = profile.to_dict()
    diffs = []
    for name, builtin in PROFILES.items():
        base = builtin.to_dict()
        diffs.append({"base": name, **{k: v for k, v in fields.items() if base.get(k) != v}})
    return min(diffs, key=len)  # the first built-in on a tie


def _profile_from_data(data: Any) -> Profile:
    """Inverse of :func:`_profile_to_data`; raises :class:`ProfileError` on malformed data."""
    if isinstance(data, str):
        return get_profile(data)
    if not isinstance(data, dict) or not isinstance(data.get("base"), str):
        raise ProfileError(
            f"malformed profile data: expected a built-in profile's name or an object with "
            f"'base' and the fields that differ, got {data!r}"
        )
    fields = get_profile(data["base"]).to_dict()
    unknown = sorted(set(data) - set(fields) - {"base"})
    if unknown:
        raise ProfileError(f"malformed profile data: unknown fields {unknown!r}")
    fields.update((k, v) for k, v in data.items() if k != "base")
    return Profile.from_dict(fields)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def last_writes(
    deltas: Iterable[MetaDelta], owner: Callable[[str], str] | None = None
) -> dict[tuple[str, str], MetaDelta]:
    """The last of ``deltas`` for every ``(node, key)`` they write: the write that stays.

    Pairs are in order of their first write. ``owner`` maps a target to the node whose meta
    dict it writes (nodes sharing one dict, see ``NodeRecord.meta_owner``, then count as one
    node); without it every target is its own node.

    Example
    -------
    >>> a = MetaDelta("dq", "quantization_tag", "A", "x", "x", Rule.STATIC_INPUT, "x", ())
    >>> b = MetaDelta("q", "quantization_tag", "B", "y", "y", Rule.STATIC_OUTPUT, "y", ())
    >>> c = MetaDelta("dq", "quantization_tag", "C", "z", "z", Rule.STATIC_INPUT, "z", ())
    >>> {pair: d.value for pair, d in last_writes([a, b, c]).items()}
    {('dq', 'quantization_tag'): 'C', ('q', 'quantization_tag'): 'B'}
    >>> {pair: d.value for pair, d in last_writes([a, b, c], owner=lambda n: "dq").items()}
    {('dq', 'quantization_tag'): 'C'}
    """
    last: dict[tuple[str, str], MetaDelta] = {}
    if owner is None:
        for d in deltas:
            last[(d.target, d.key)] = d
    else:
        for d in deltas:
            last[(owner(d.target), d.key)] = d
    return last


def same_value(a: Any, b: Any) -> bool:
    """Equality of metadata values that never raises and never trusts a non-bool ``==``.

    ``a is b`` is enough; otherwise ``a == b`` must return a real ``True`` (arrays and tensors
    compare unequal). Two float NaNs count as the same value, so a plan equals its JSON
    round trip.

    Example
    -------
    >>> same_value(float("nan"), float("nan")), same_value([1], [1]), same_value(1, "1")
    (True, True, False)
    """
    if a is b:
        return True
    if type(a) is float and type(b) is float and math.isnan(a) and math.isnan(b):
        return True
    try:
        result = a == b
    except Exception:
        return False
    return result if isinstance(result, bool) else False


# --------------------------------------------------------------------------- planning

#: A cell of the running metadata view: (value, origin, written by the plan).
_Cell = tuple[Any, str, bool]


def _rules_for(graph: Snapshot, profile: Profile, node: str) -> list[RuleResult]:
    """The rule results for one annotated node, in upstream's order.

    A list, not a generator: a rule may raise :class:`~portmeta.errors.ScaleWithoutUsersError`,
    a ``StopIteration`` subclass, which a generator would turn into ``RuntimeError``. Every
    rule of the node runs before any of its copies is resolved, so a node whose rules fail
    leaves nothing to undo.
    """
    ann = record(graph, node).annotation
    if ann is None:
        return []
    if ann.malformed is not None:
        raise MalformedAnnotationError.of(node, ann.malformed.error, ann.malformed.message)
    results = []
    for inp in ann.inputs:  # an annotation without inputs or output spec is ignored: no rules
        if inp.qspec is None:
            continue
        rule = dynamic_input if inp.qspec.dynamic else static_input
        results.append(rule(graph, profile, node, inp.node, is_node=inp.is_node))
    if ann.output is not None:
        results.append(static_output(graph, profile, node))
    return results


class _Resolver:
    """The running view of metadata: each node's recorded values overlaid by the writes so far.

    Nodes that share a meta dict (``meta_owner``) share one view. A cell is ``(value, origin, written)``; a copy becomes one :class:`MetaDelta` per profile
    key present on its source.
    """

    def __init__(self, graph: Snapshot, profile: Profile) -> None:
        self.graph = graph
        self.keys = profile.keys
        self.views: dict[str, dict[str, _Cell]] = {}
        self.deltas: list[MetaDelta] = []
        self.diagnostics: list[Diagnostic] = []

    def view(self, name: str) -> dict[str, _Cell]:
        """The cells of ``name``: those of every node sharing its meta dict, made on first use
        from its recorded values (the first node of a sharing group asked for is their
        origin)."""
        cells = self.views.get(name)
        if cells is None:
            rec = record(self.graph, name)
            owner = rec.meta_owner
            cells = None if owner is None else self.views.get(owner)
            if cells is None:
                cells = {key: (value, name, False) for key, value in rec.meta if key in self.keys}
            self.views[name] = cells
            if owner is not None:
                self.views[owner] = cells
        return cells

    def resolve(self, copies: tuple[Copy, ...], anchor: str) -> None:
        """Append the writes of ``copies`` (in order) and any overwrite they make."""
        for copy in copies:
            src = self.view(copy.source)
            if not src:
                continue
            dst = self.view(copy.target)
            for key in self.keys:
                cell = src.get(key)
                if cell is None:
                    continue
                value, origin, _ = cell
                self.deltas.append(
                    MetaDelta(
                        target=copy.target,
                        key=key,
                        value=value,
                        source=copy.source,
                        origin=origin,
                        rule=copy.rule,
                        anchor=anchor,
                        path=copy.path,
                    )
                )
                previous = dst.get(key)
                dst[key] = (value, origin, True)
                if previous is not None and previous[2] and not same_value(previous[0], value):
                    self.diagnostics.append(_overwrite(copy, key, previous, cell))


def _overwrite(copy: Copy, key: str, previous: _Cell, cell: _Cell) -> Diagnostic:
    was, now = shown_apart(previous[0], cell[0])
    return Diagnostic(
        "overwrite",
        Severity.INFO,
        copy.target,
        f"{copy.rule.value} write from {copy.source!r} replaces {key!r} on {copy.target!r} "
        f"({was} from {previous[1]!r} becomes {now} from {cell[1]!r})",
        copy.rule,
        (previous[1], cell[1]),
    )


def plan(
    graph: Snapshot,
    profile: Profile = TORCHAO,
    errors: Literal["raise", "collect"] = "raise",
) -> Plan:
    """Compute the metadata writes the upstream pass would perform on ``graph``.

    Parameters
    ----------
    graph:
        A snapshot (:func:`portmeta.build_graph`, :func:`portmeta.load_graph`,
        ``portmeta_fx.from_fx`` or :class:`portmeta.testing.GraphBuilder`).
    profile:
        Op sets and keys; :data:`portmeta.TORCHAO` by default.
    errors:
        ``"raise"`` stops at the first annotated node where upstream raises, raising the
        matching :class:`~portmeta.errors.PlanError`. ``"collect"`` records an ``error``
        diagnostic instead, drops every write of that annotated node, and goes on.

    Returns
    -------
    Plan
        :func:`plan_writes`' writes and diagnostics, with the snapshot's fingerprint.

    Raises
    ------
    PlanError
        (``errors="raise"``) where upstream raises; see :mod:`portmeta.errors`.
    ProfileError
        The snapshot did not record a key the profile copies.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder, dynamic
    >>> b = GraphBuilder(); x = b.placeholder("x")
    >>> y = b.call("aten.linear.default", x, name="lin"); b.annotate(y, inputs={x: dynamic()})
    >>> b.output(y); g = b.build()
    >>> plan(g)
    Traceback (most recent call last):
    ...
    portmeta.errors.NoChooseQParamsError: no choose_qparams node is reachable from input 'x' of dynamically quantized node 'lin'
    >>> [d.kind for d in plan(g, errors="collect").diagnostics]
    ['error']
    """
    deltas, diagnostics = plan_writes(graph, profile, errors)
    return Plan(deltas, diagnostics, fingerprint(graph), profile)


def plan_writes(
    graph: Snapshot,
    profile: Profile = TORCHAO,
    errors: Literal["raise", "collect"] = "raise",
) -> tuple[tuple[MetaDelta, ...], tuple[Diagnostic, ...]]:
    """The planner: the writes and diagnostics of :func:`plan`, without the fingerprint.

    For callers that write the plan at once and so never check it against the graph later
    (the drop-in pass, which hashes the snapshot only if someone asks for its ``last_plan``);
    arguments and errors as for :func:`plan`.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x"))
    >>> plan_writes(b.build())
    ((), ())
    """
    if errors not in ("raise", "collect"):
        raise OptionError(f"errors must be 'raise' or 'collect', got {errors!r}")
    recorded = meta_keys(graph)
    if recorded is not None:
        missing = [k for k in profile.keys if k not in recorded]
        if missing:
            raise ProfileError(
                f"profile {profile.name!r} copies keys {missing!r} that the snapshot did not "
                f"record (it recorded {list(recorded)!r}); take the snapshot with those keys"
            )
    resolver = _Resolver(graph, profile)
    diagnostics = resolver.diagnostics
    for node in annotated_nodes(graph):
        try:
            results = _rules_for(graph, profile, node)
        except PlanError as exc:
            if errors == "raise":
                raise
            # nothing of this node was resolved yet: dropping its writes is not writing them
            diagnostics.append(
                Diagnostic(
                    "error",
                    Severity.ERROR,
                    node,
                    str(exc),
                    None,
                    (exc.subject,),
                    type(exc).__name__,
                )
            )
            continue
        for result in results:
            diagnostics.extend(result.diagnostics)
            resolver.resolve(result.copies, node)
    return tuple(resolver.deltas), tuple(diagnostics)


def final_meta(graph: Snapshot, p: Plan | Iterable[MetaDelta]) -> dict[str, dict[str, Any]]:
    """Every node's recorded metadata after a plan's writes: ``{node: {key: value}}``.

    ``p`` is a :class:`Plan` or its writes.

    Nodes are in graph order; a node's keys are its recorded keys, then keys the plan added.
    Nodes that share a meta dict (``meta_owner``) show each other's writes, as in place.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); x = b.placeholder("x", tag="T"); b.output(x)
    >>> g = b.build(); final_meta(g, plan(g))["x"]
    {'quantization_tag': 'T'}
    """
    recs = {rec.name: rec for rec in records(graph)}
    out = {name: rec.meta_dict() for name, rec in recs.items()}
    deltas = p.deltas if isinstance(p, Plan) else p
    for (owner, key), d in last_writes(deltas, lambda t: recs[t].meta_owner or t).items():
        out[owner][key] = d.value
    for name, rec in recs.items():
        if rec.meta_owner is not None:
            out[name] = dict(out[rec.meta_owner])
    return out
