"""``portmeta.check``: where the porting rules leave a partition's q/dq nodes without its values.

Backends find "the quantized pattern" of a partition by the ``quantization_tag`` (and
``stack_trace``) on the quantize / dequantize / choose_qparams nodes around it. The upstream
pass leaves some of those nodes with nothing, or with another partition's values, and tells
nobody. :func:`check` finds them, as :class:`Finding` records:

``unported_input``
    A dequantize that feeds an annotated node through an input the annotation quantizes ends
    without that node's values (the cause says why: a chain shared by several annotated
    consumers where the last write won, a keyword or list argument, not the first dequantize of
    that input, no quantize above it, a dynamic search that reached another chain, ...).
``unported_output``
    The quantize right after an annotated node with an output spec ends without its values.
``foreign_write``
    A node ends with a value written for an annotated node whose q/dq chain it is not on (a
    dynamic search reached another consumer's chain).

The check reasons from the annotations and the graph structure: which dequantize feeds which
annotated node through which quantized input, which quantize follows which annotated output,
which choose_qparams chain a dynamic dequantize hangs from. It compares those expectations with
the *final* values and takes causes and anchors from the plan, whose rules are structural. For
a snapshot taken before porting (the pass's ``last_snapshot``) the final values are the
snapshot's overlaid with the plan's writes; for one taken after (``portmeta_fx.from_fx`` of
the converted model, maybe edited by later passes), ``ported=True`` takes the snapshot's values
as final. The two give the same findings (docs/check.md says where they are defined apart).
It never changes the writes.

A quantize carrying its producer's values and the dequantize after it carrying its consumer's
is how the pass splits a q/dq pair between two partitions: that is not a finding. An annotated
node with none of the profile's keys has nothing to port and gives no finding. By default a
finding needs a :data:`PARTITION_KEY` difference (``keys=`` chooses the keys compared).

Example
-------
>>> import portmeta
>>> from portmeta.testing import GraphBuilder, static
>>> b = GraphBuilder(); x = b.placeholder("x"); y = b.placeholder("y")
>>> _, dq = b.qdq(x); _, dq_1 = b.qdq(y)
>>> cat = b.call("aten.cat.default", [dq, dq_1], 1, name="cat", tag="cat_0")
>>> b.annotate(cat, inputs={x: static(), y: static()}); b.output(cat)
>>> for f in portmeta.check(b.build()):
...     print(f.kind, f.node, f.anchor, f.cause)
unported_input dq cat container
unported_input dq_1 cat container
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from .errors import GraphFormatError, OptionError, UnknownNodeError
from .fingerprint import require_plan_of
from .io import read_json
from .plan import MetaDelta, Plan, final_meta, plan_writes, same_value
from .profiles import TORCHAO, Profile
from .records import NodeRef
from .report import short_value
from .rules import Diagnostic, Rule, Severity, non_sym_users
from .rules.static_input import walk_to_producer_lenient
from .snapshot import Snapshot, annotated_nodes, own_nodes, record
from .structure import Feed, Structure, structure

__all__ = [
    "FINDINGS_FORMAT",
    "FINDINGS_SCHEMA_VERSION",
    "KINDS",
    "CAUSES",
    "REMEDIES",
    "deciding_keys",
    "compared_keys",
    "PARTITION_KEY",
    "Finding",
    "check",
    "check_writes",
    "findings_to_dict",
    "findings_from_dict",
    "findings_to_json",
    "findings_from_json",
    "load_findings",
    "format_findings",
    "summary",
    "unmatched_writes",
]

FINDINGS_FORMAT = "portmeta.findings"
FINDINGS_SCHEMA_VERSION = 1

#: The key backends find a partition by. By default a finding needs a difference on it when the
#: profile copies it (a ``stack_trace`` that differs within one partition is noise to them).
PARTITION_KEY = "quantization_tag"

#: The kinds of finding, in the order they are reported for one node.
KINDS: tuple[str, ...] = ("unported_input", "unported_output", "foreign_write", "stale_annotation")

#: Every cause a finding can give, with what it means.
CAUSES: dict[str, str] = {
    "shared": "the node is on the q/dq chain of several annotated consumers; each writes it "
    "and the last write wins",
    "overwritten": "a later write for another annotated node replaced the values",
    "keyword": "the dequantize is a keyword argument; the static input rule searches only "
    "top-level positional arguments",
    "container": "the dequantize is inside a list or tuple argument; the static input rule "
    "searches only top-level positional arguments",
    "not_first": "an earlier positional argument dequantizes the same input and is the one written",
    "no_quantize": "args[0] of the dequantize is not a quantize op, so nothing is written",
    "walk_past": "the connectivity walk goes on past the input (itself a quant-workflow op), "
    "so the dequantize never counts as connected to it",
    "search_elsewhere": "the dynamic search from the input reaches another choose_qparams "
    "first and writes that chain",
    "search_reached": "the dynamic search for another annotated node reached this chain first",
    "not_last_user": "the output rule takes the annotated node's last non-sym-size user, which "
    "is not this quantize",
    "planning_error": "the rules of the annotated node fail, so none of its writes are made",
    "anchor_changed": "the annotated node's own values were changed by a later write (to it, "
    "or to a node sharing its meta dict) after its writes copied them",
    "unexplained": "no rule of this graph explains the values (a pass after porting may have "
    "copied them)",
    "deep_copy": "the annotation names a node of another graph (a copy.deepcopy of the "
    "prepared model before convert_pt2e keeps annotations that point at the original graph), "
    "so no rule reaches the node",
}

#: What to do about each cause, in one sentence; docs/check.md has a section per cause
#: (its anchor is the cause's name, see :attr:`Finding.docs`).
REMEDIES: dict[str, str] = {
    "shared": "give each consumer its own chain (a pass that duplicates the shared chain per "
    "consumer), then port again; for dynamic chains with dynamic_chain='feeding'",
    "overwritten": "keep the two partitions' chains apart, or tag the node after convert_pt2e",
    "keyword": "pass the dequantized input positionally, or tag the dequantize after convert_pt2e",
    "container": "tag the dequantize nodes inside the list after convert_pt2e (the rule never "
    "looks into lists), or have the backend accept them untagged",
    "not_first": "read the input once, or tag the later dequantize after convert_pt2e",
    "no_quantize": "put a quantize op directly above the dequantize, or tag it after convert_pt2e",
    "walk_past": "annotate the node the walk ends at as the input, or tag the dequantize after "
    "convert_pt2e",
    "search_elsewhere": "port again with dynamic_chain='feeding', which writes the chain that "
    "feeds each consumer",
    "search_reached": "duplicate the shared dynamic chain per consumer, then port again with "
    "dynamic_chain='feeding'",
    "not_last_user": "make the quantize the annotated node's last user, or tag it after "
    "convert_pt2e",
    "planning_error": "fix the error planning reports for the annotated node (portmeta plan "
    "shows it), then port again",
    "anchor_changed": "port before the pass that changes the annotated node's values, or port "
    "again after it",
    "unexplained": "run portmeta explain on the node to see what the rules do for it",
    "deep_copy": "convert the prepared model itself, or prepare the copy again: annotations "
    "must name nodes of the graph being converted",
}

#: Where docs/check.md explains the causes (each has a section; its anchor is the cause).
DOCS = "docs/check.md"


def _keys(value: Iterable[str]) -> tuple[str, ...]:
    return value if type(value) is tuple else tuple(value)


def _kind(_: Any, attribute: Any, value: str) -> None:
    if value not in KINDS:
        raise ValueError(f"Finding kind must be one of {list(KINDS)!r}, got {value!r}")


def _cause(_: Any, attribute: Any, value: str) -> None:
    if value not in CAUSES:
        raise ValueError(f"Finding cause must be one of {list(CAUSES)!r}, got {value!r}")


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen(slots=True)
class Finding:
    """One place where the pass leaves a partition's q/dq node without its values.

    Attributes
    ----------
    kind:
        One of :data:`KINDS`.
    node:
        The quantize, dequantize or choose_qparams node concerned.
    anchor:
        The annotated node concerned (whose values are missing; for ``foreign_write``, whose
        values the node carries), or ``None``.
    keys:
        The ported keys involved (missing or different; for ``foreign_write``, the keys whose
        last write was for ``anchor``), in profile order.
    cause:
        Why, as one of :data:`CAUSES`.
    message:
        One line naming the nodes and the cause.
    related:
        Other nodes the message names (the quantized input, other consumers, the chain's
        owners...), without ``node`` and ``anchor``.

    Example
    -------
    >>> f = Finding("unported_input", "dq_1", "add", ("quantization_tag",), "not_first", "...")
    >>> Finding.from_dict(f.to_dict()) == f
    True
    """

    kind: str = attrs.field(validator=_kind)
    node: str
    anchor: str | None
    keys: tuple[str, ...] = attrs.field(converter=_keys)
    cause: str = attrs.field(validator=_cause)
    message: str
    related: tuple[str, ...] = attrs.field(default=(), converter=_names)

    @property
    def remedy(self) -> str:
        """What to do about it, in one sentence (:data:`REMEDIES`)."""
        return REMEDIES[self.cause]

    @property
    def docs(self) -> str:
        """Where the cause is explained: ``docs/check.md#<cause>``."""
        return f"{DOCS}#{self.cause}"

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data (``remedy`` and ``docs`` follow from the cause)."""
        return {
            "kind": self.kind,
            "node": self.node,
            "anchor": self.anchor,
            "keys": list(self.keys),
            "cause": self.cause,
            "message": self.message,
            "related": list(self.related),
            "remedy": self.remedy,
            "docs": self.docs,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Finding:
        """Inverse of :meth:`to_dict`; raises ``TypeError``/``KeyError``/``ValueError`` on bad data."""
        if not isinstance(data, dict):
            raise TypeError(f"a finding must be a JSON object, got {type(data).__name__}")
        anchor = data["anchor"]
        return cls(
            kind=_str(data["kind"]),
            node=_str(data["node"]),
            anchor=None if anchor is None else _str(anchor),
            keys=tuple(_str(k) for k in _list(data["keys"])),
            cause=_str(data["cause"]),
            message=_str(data["message"]),
            related=tuple(_str(n) for n in _list(data.get("related", []))),
        )


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- the check


class _State:
    """Final values and write history, per meta dict (nodes sharing one count as one).

    ``ported=False``: the final values are the snapshot's with the writes over them (a
    snapshot taken before porting). ``ported=True``: the snapshot's values are final (taken
    after porting, maybe edited by later passes); the writes only give the history (causes).
    """

    def __init__(
        self,
        graph: Snapshot,
        profile: Profile,
        deltas: Sequence[MetaDelta],
        diagnostics: Sequence[Diagnostic],
        *,
        ported: bool,
        keys: Iterable[str] | None,
    ) -> None:
        self.graph = graph
        self.profile = profile
        self.ported = ported
        #: The keys compared, and those a finding must differ on when ``keys=`` chose them.
        self.keys, self.chosen = _compared_keys(profile, keys)
        known = set(graph)
        for d in deltas:
            if d.anchor not in known:  # annotated nodes outlive porting: another graph's plan
                raise UnknownNodeError(d.anchor, "the graph (the plan names it as annotated)")
        kept = [d for d in deltas if d.target in known and d.source in known]
        self.deltas = kept
        self.writes: dict[tuple[str, str], list[MetaDelta]] = {}
        for d in kept:
            self.writes.setdefault((self.owner(d.target), d.key), []).append(d)
        self.final = final_meta(graph, () if ported else kept)
        self.errors: dict[str, Diagnostic] = {}
        for diag in diagnostics:
            if diag.severity is Severity.ERROR:
                self.errors.setdefault(diag.node, diag)

    def owner(self, name: str) -> str:
        return record(self.graph, name).meta_owner or name

    def values(self, name: str) -> dict[str, Any]:
        """The final values of the compared keys on ``name`` (present keys only)."""
        own = self.final[name]
        return {k: own[k] for k in self.keys if k in own}

    def required(self, anchor: str) -> frozenset[str]:
        """The keys a finding for ``anchor`` must differ on (see :func:`deciding_keys`)."""
        return deciding_keys(self.values(anchor), self.chosen)

    def differ(self, anchor: str, have: dict[str, Any]) -> list[str]:
        """The compared keys on which ``have`` lacks ``anchor``'s values, or ``[]`` when none
        of them decides for ``anchor`` (a difference on the others alone is not a finding)."""
        want = self.values(anchor)
        keys = [k for k, v in want.items() if k not in have or not same_value(have[k], v)]
        return keys if self.required(anchor).intersection(keys) else []

    def history(self, name: str, keys: Iterable[str]) -> list[MetaDelta]:
        """The writes to ``name`` on ``keys``, in write order."""
        owner = self.owner(name)
        found = [d for k in keys for d in self.writes.get((owner, k), [])]
        order = {id(d): i for i, d in enumerate(self.deltas)} if len(found) > 1 else {}
        return sorted(found, key=lambda d: order.get(id(d), 0))


def deciding_keys(values: dict[str, Any], chosen: frozenset[str] | None = None) -> frozenset[str]:
    """The keys a difference must be on to count, for an annotated node carrying ``values``.

    ``chosen`` (the check's ``keys=``): those. Otherwise what the node carries decides: its
    :data:`PARTITION_KEY` when it has one (a ``stack_trace`` that differs within one
    partition is noise to a backend), else every key it carries (``stack_trace`` on the graphs
    of real quantizers, which set no tag); none when it carries none.

    Example
    -------
    >>> sorted(deciding_keys({"stack_trace": "m.py:1", "quantization_tag": "P0"}))
    ['quantization_tag']
    >>> sorted(deciding_keys({"stack_trace": "m.py:1"})), sorted(deciding_keys({}))
    (['stack_trace'], [])
    """
    if chosen is not None:
        return chosen
    if PARTITION_KEY in values:
        return frozenset({PARTITION_KEY})
    return frozenset(values)


def _compared_keys(
    profile: Profile, keys: Iterable[str] | None
) -> tuple[tuple[str, ...], frozenset[str] | None]:
    if keys is None:
        return profile.keys, None
    if isinstance(keys, str):
        raise OptionError(f"keys must be a collection of key names, not the string {keys!r}")
    chosen = tuple(dict.fromkeys(keys))
    unknown = [k for k in chosen if k not in profile.keys]
    if unknown or not chosen:
        raise OptionError(
            f"keys must be some of the profile's keys {list(profile.keys)!r}, got {list(chosen)!r}"
        )
    ordered = tuple(k for k in profile.keys if k in chosen)
    return ordered, frozenset(ordered)


def unmatched_writes(graph: Snapshot, deltas: Iterable[MetaDelta]) -> tuple[MetaDelta, ...]:
    """The writes whose target or source ``graph`` lacks (the check skips them).

    A snapshot taken after ``convert_pt2e(fold_quantize=True)`` lacks the weight quantize nodes
    the pass wrote before folding them: checked with the plan of the snapshot before porting,
    those writes are skipped.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x")); g = b.build()
    >>> d = MetaDelta("gone", "quantization_tag", "t", "x", "x", "static_input", "x", ())
    >>> [w.target for w in unmatched_writes(g, [d])]
    ['gone']
    """
    return tuple(d for d in deltas if d.target not in graph or d.source not in graph)


def _q(names_: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names_)


def _has(state: _State, node: str, keys: Sequence[str]) -> str:
    """What ``node`` holds instead of ``anchor``'s values, in a few words."""
    have = state.values(node)
    parts = []
    for k in keys:
        parts.append(f"{k} {short_value(have[k], 30)}" if k in have else f"no {k}")
    return ", ".join(parts)


@attrs.frozen(slots=True)
class _Cause:
    """Why: a cause of :data:`CAUSES`, the words, and the other nodes the words name."""

    cause: str
    text: str
    related: tuple[str, ...] = ()


_UNEXPLAINED = _Cause(
    "unexplained",
    "no rule of this graph explains its values (a pass after porting may have copied them "
    "onto it); portmeta's explain shows what the rules do for it",
)


class _Checker:
    def __init__(self, state: _State, quantized: Structure) -> None:
        self.state = state
        self.graph = state.graph
        self.profile = state.profile
        self.feeds = quantized.feeds
        self.roles = quantized.roles
        self.outputs = [(o.anchor, o.q) for o in quantized.outputs if not o.dynamic]
        self.owners: dict[str, list[str]] = {}  # chain node -> annotated nodes owning it
        for name, anchors in quantized.owners.items():
            for anchor in anchors:
                self._own(name, anchor)
        for d in state.deltas:
            # A static input write targets an argument of its annotated node: on its chain even
            # when the input it quantizes is gone (a weight convert_pt2e folded after porting).
            if (
                d.rule is Rule.STATIC_INPUT
                and NodeRef(d.target) in record(self.graph, d.anchor).args
            ):
                self._own(d.target, d.anchor)

    def _own(self, node: str, anchor: str) -> None:
        owners = self.owners.setdefault(self.state.owner(node), [])
        if anchor not in owners:
            owners.append(anchor)

    def owners_of(self, node: str) -> list[str]:
        return self.owners.get(self.state.owner(node), [])

    # -- causes ---------------------------------------------------------------------------
    def _error(self, anchor: str) -> _Cause | None:
        diag = self.state.errors.get(anchor)
        if diag is None:
            return None
        cls = f"{diag.error_class}: " if diag.error_class else ""
        return _Cause(
            "planning_error",
            f"the rules of {anchor!r} fail ({cls}{diag.message}), so none of its writes are made",
        )

    def _overwritten(self, node: str, anchor: str, keys: Sequence[str]) -> _Cause | None:
        writes = self.state.history(node, keys)
        if not any(d.anchor == anchor for d in writes):
            return None
        last = writes[-1]
        if last.anchor == anchor:
            return None
        other = last.anchor
        owners = self.owners_of(node)
        if other in owners:
            return _Cause(
                "shared",
                f"it is on the q/dq chain of {len(owners)} annotated consumers ({_q(owners)}); "
                f"each writes it and the last write, for {other!r}, won",
                tuple(owners),
            )
        if last.rule is Rule.DYNAMIC_INPUT:
            how = f"the dynamic search from input {last.path[0]!r} of {other!r} reached this chain too"
            related: tuple[str, ...] = (last.path[0], other)
        else:
            how, related = f"a later {last.rule.value} write for {other!r}", (other,)
        return _Cause("overwritten", f"{how} and wrote it last", related)

    def _stale(self, feed: Feed) -> _Cause | None:
        if feed.named is None:
            return None
        return _Cause(
            "deep_copy",
            f"the annotation of {feed.anchor!r} names {feed.named!r}, a node of another graph, "
            f"not {feed.input!r}, so no rule reaches its q/dq nodes (was the prepared model "
            "deep-copied between prepare_pt2e and convert_pt2e?)",
            (feed.named,),
        )

    def _anchor_changed(self, anchor: str, keys: Sequence[str]) -> _Cause | None:
        writes = self.state.history(anchor, keys)
        if not writes:
            return None
        last = writes[-1]
        where = "it" if last.target == anchor else f"{last.target!r} (they share one meta dict)"
        return _Cause(
            "anchor_changed",
            f"a later {last.rule.value} write for {last.anchor!r} changed the values of "
            f"{anchor!r} itself, through {where}, after its own writes copied them",
            (last.target, last.anchor),
        )

    def _static_cause(self, feed: Feed) -> _Cause:
        a = feed.anchor
        if feed.place == "keyword":
            return _Cause(
                "keyword",
                f"it reaches {a!r} as a keyword argument; the static input rule searches only "
                "top-level positional arguments",
            )
        if feed.place == "container":
            return _Cause(
                "container",
                f"it reaches {a!r} inside a list or tuple argument; the static input rule "
                "searches only top-level positional arguments",
            )
        full = walk_to_producer_lenient(self.graph, self.profile, feed.dq)
        if len(full) > len(feed.walk):
            return _Cause(
                "walk_past",
                f"the connectivity walk from it goes on through {feed.input!r} (a quant-workflow "
                f"op) up to {full[-1]!r}, so it never counts as connected to input {feed.input!r}",
                (full[-1],),
            )
        for arg in record(self.graph, a).args:
            if not isinstance(arg, NodeRef):
                continue
            if arg.name == feed.dq:
                break
            if not self.profile.is_dequantize(record(self.graph, arg.name)):
                continue
            if walk_to_producer_lenient(self.graph, self.profile, arg.name)[-1] == feed.input:
                return _Cause(
                    "not_first",
                    f"an earlier positional argument {arg.name!r} of {a!r} also dequantizes "
                    f"{feed.input!r} and is the one written",
                    (arg.name,),
                )
        above = feed.walk[1]
        if not self.profile.is_quantize(record(self.graph, above)):
            return _Cause(
                "no_quantize",
                f"args[0] of it ({above!r}) is not a quantize op, so the static input rule of "
                f"{a!r} writes nothing",
                (above,),
            )
        return _UNEXPLAINED

    def _dynamic_cause(self, feed: Feed, nodes: Sequence[str]) -> _Cause:
        a = feed.anchor
        mine = [
            d
            for d in self.state.deltas
            if d.anchor == a and d.rule is Rule.DYNAMIC_INPUT and d.path[:1] == (feed.input,)
        ]
        if mine and not any(d.target in nodes for d in mine):
            cq = mine[0].target
            owners = [o for o in self.owners_of(cq) if o != a]
            where = f"the chain of {_q(owners)}" if owners else "no annotated node's chain"
            return _Cause(
                "search_elsewhere",
                f"the dynamic search from input {feed.input!r} of {a!r} reaches choose_qparams "
                f"{cq!r} first (on {where}) and writes that chain, not this one",
                (cq, *owners),
            )
        return _UNEXPLAINED

    # -- findings -------------------------------------------------------------------------
    def unported_inputs(self) -> list[Finding]:
        out = []
        for feed in self.feeds:
            want = self.state.values(feed.anchor)
            if not want:
                continue
            # the chain's quantize and choose_qparams, when it has a choose_qparams: the dynamic
            # rule writes them; under a static spec over such a chain (X86Inductor shares a
            # dynamic input's qparams) no rule does, and without values they are the same hole
            qparams_chain = [
                n for n in feed.chain if self.roles.get(n) in ("quantize", "choose_qparams")
            ]
            nodes = [feed.dq, *qparams_chain] if feed.dynamic else [feed.dq]
            lacking = {n: self.state.differ(feed.anchor, self.state.values(n)) for n in nodes}
            lacking = {n: ks for n, ks in lacking.items() if ks}
            if not lacking:
                continue
            has_qparams = "choose_qparams" in map(self.roles.get, qparams_chain)
            if not feed.dynamic and feed.dq in lacking and has_qparams:
                for n in qparams_chain:
                    keys_n = self.state.differ(feed.anchor, self.state.values(n))
                    if keys_n:
                        lacking.setdefault(n, keys_n)
            first = next(iter(lacking))
            keys = [k for k in self.profile.keys if any(k in ks for ks in lacking.values())]
            cause = (
                self._error(feed.anchor)
                or self._stale(feed)
                or self._overwritten(first, feed.anchor, keys)
                or self._anchor_changed(feed.anchor, keys)
                or (
                    self._dynamic_cause(feed, list(lacking))
                    if feed.dynamic
                    else self._static_cause(feed)
                )
            )
            what = "dynamically quantized" if feed.dynamic else "quantized"
            if feed.dq in lacking:
                also = [n for n in lacking if n != feed.dq]
                tail = f" (so do {_q(also)} on its chain)" if also else ""
                head = (
                    f"{feed.dq!r} feeds {feed.anchor!r} through its {what} input {feed.input!r} "
                    f"but ends without its {', '.join(keys)} "
                    f"(it has {_has(self.state, feed.dq, keys)}){tail}"
                )
            else:
                also = list(lacking)
                head = (
                    f"{feed.dq!r} feeds {feed.anchor!r} through its {what} input {feed.input!r}; "
                    f"{_q(also)} on its chain end{'s' if len(also) == 1 else ''} without its "
                    f"{', '.join(keys)} (has {_has(self.state, first, keys)})"
                )
            out.append(
                Finding(
                    "stale_annotation" if cause.cause == "deep_copy" else "unported_input",
                    feed.dq,
                    feed.anchor,
                    keys,
                    cause.cause,
                    f"{head}: {cause.text}",
                    _unique([feed.input, *also, *cause.related], feed.dq, feed.anchor),
                )
            )
        return out

    def unported_outputs(self) -> list[Finding]:
        out = []
        for anchor, q in self.outputs:
            keys = self.state.differ(anchor, self.state.values(q))
            if not keys:
                continue
            cause = (
                self._error(anchor)
                or self._overwritten(q, anchor, keys)
                or self._anchor_changed(anchor, keys)
            )
            if cause is None:
                kept = non_sym_users(self.graph, self.profile, anchor)
                if kept and kept[-1] != q:
                    last = kept[-1]
                    lrec = record(self.graph, last)
                    note = ""
                    if not self.profile.is_quantize(lrec):
                        note = ", which is not a quantize op (upstream's hidden warning)"
                    if lrec.target.name.startswith("aten.sym_"):
                        note += f"; {lrec.target.name} is not filtered as a sym-size user"
                    cause = _Cause(
                        "not_last_user",
                        f"the output rule of {anchor!r} takes its last non-sym-size user, "
                        f"{last!r}{note}",
                        (last,),
                    )
                else:
                    cause = _UNEXPLAINED
            message = (
                f"{q!r} quantizes the output of {anchor!r} but ends without its "
                f"{', '.join(keys)} (it has {_has(self.state, q, keys)}): {cause.text}"
            )
            out.append(
                Finding(
                    "unported_output",
                    q,
                    anchor,
                    keys,
                    cause.cause,
                    message,
                    _unique(cause.related, q, anchor),
                )
            )
        return out

    def foreign_writes(self) -> list[Finding]:
        state = self.state
        found: dict[tuple[str, str], list[MetaDelta]] = {}
        for (_, key), writes in state.writes.items():
            last = writes[-1]
            if key not in state.keys or last.anchor in self.owners_of(last.target):
                continue
            have = state.final[last.target]
            if key not in have:
                continue
            if state.ported and not same_value(have[key], state.final[last.anchor].get(key)):
                continue  # values set after porting, not the ones this write made
            owners = self.owners_of(last.target)
            if any(same_value(have[key], state.final[o].get(key)) for o in owners):
                continue  # carries the value of an annotated node it belongs to
            found.setdefault((last.target, last.anchor), []).append(last)
        out = []
        for (node, anchor), lasts in found.items():
            if not any(d.key in state.required(anchor) for d in lasts):
                continue
            keys = [k for k in self.profile.keys if any(d.key == k for d in lasts)]
            d = lasts[0]
            owners = self.owners_of(node)
            on = (
                f"it is on the chain of {_q(owners)}"
                if owners
                else "it is on no annotated node's chain"
            )
            if d.rule is Rule.DYNAMIC_INPUT:
                cause = "search_reached"
                why = f"the dynamic search from input {d.path[0]!r} of {anchor!r} reached it first"
            else:
                cause = "unexplained"
                why = f"a {d.rule.value} write (path {' -> '.join(d.path)})"
            message = (
                f"{node!r} ends with the {', '.join(keys)} of {anchor!r}, whose q/dq chain it is "
                f"not on ({on}): {why}"
            )
            out.append(
                Finding(
                    "foreign_write",
                    node,
                    anchor,
                    keys,
                    cause,
                    message,
                    _unique([d.path[0], *owners], node, anchor),
                )
            )
        return out


def _unique(items: Iterable[str], *skip: str) -> tuple[str, ...]:
    return tuple(n for n in dict.fromkeys(items) if n not in skip)


def check_writes(
    graph: Snapshot,
    deltas: Sequence[MetaDelta],
    diagnostics: Sequence[Diagnostic] = (),
    profile: Profile = TORCHAO,
    *,
    ported: bool = False,
    keys: Iterable[str] | None = None,
) -> tuple[Finding, ...]:
    """:func:`check` for writes already planned (what :func:`portmeta.plan.plan_writes` returns).

    For callers that hold the writes without a :class:`~portmeta.Plan` (the drop-in pass).
    ``ported`` and ``keys`` are as for :func:`check`.

    Example
    -------
    >>> from portmeta.plan import plan_writes
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x")); g = b.build()
    >>> check_writes(g, *plan_writes(g))
    ()
    """
    state = _State(graph, profile, deltas, diagnostics, ported=ported, keys=keys)
    c = _Checker(state, structure(graph, profile))
    findings = c.unported_inputs() + c.unported_outputs() + c.foreign_writes()
    position = {name: i for i, name in enumerate(graph.nodes)}
    rank = {k: i for i, k in enumerate(KINDS)}

    def order(f: Finding) -> tuple[int, int, int]:
        anchor = -1 if f.anchor is None else position.get(f.anchor, -1)
        return position.get(f.node, len(position)), rank[f.kind], anchor

    return tuple(sorted(findings, key=order))


def check(
    graph: Snapshot,
    profile: Profile = TORCHAO,
    plan: Plan | None = None,
    *,
    ported: bool = False,
    keys: Iterable[str] | None = None,
) -> tuple[Finding, ...]:
    """Find where the pass leaves a partition's q/dq nodes without its values, or with another's.

    Parameters
    ----------
    graph:
        A snapshot taken before porting (``PortNodeMetaForQDQ.last_snapshot``, a
        :class:`~portmeta.testing.GraphBuilder` graph), or, with ``ported=True``, one taken
        after it (``portmeta_fx.from_fx`` of the converted model, maybe edited by later passes).
    profile:
        The profile to plan with when ``plan`` is not given (with ``errors="collect"``: an
        annotated node whose rules fail gives ``planning_error`` findings instead of raising).
    plan:
        A plan of ``graph`` (with ``ported=True``: of the same graph before porting) to take
        the writes from instead; its profile is used. Writes to or from nodes ``graph`` lacks (weight
        quantize nodes ``convert_pt2e`` folded after porting) are skipped
        (:func:`unmatched_writes` lists them).
    ported:
        ``False`` (default): the final values are the snapshot's with the plan's writes over
        them. ``True``: the snapshot's values are final, as a converted model holds them; the
        plan only gives the causes, and a ``foreign_write`` needs the node to still hold the
        value that write copied. A graph whose chains a later pass split and re-tagged is then
        clean once the tags are right.
    keys:
        The profile keys to compare. ``None`` (default): all of them, but a finding needs a
        difference on :data:`PARTITION_KEY` when the profile copies it (a ``stack_trace`` that
        differs within one partition alone is not reported). Given: a difference on any of
        them is a finding.

    Returns
    -------
    tuple of Finding
        Ordered by node (graph order), then kind (:data:`KINDS`), then anchor. Empty when the
        partitions' q/dq nodes carry their annotated nodes' values.

    Raises
    ------
    ProfileError
        The snapshot did not record a key the profile copies.
    OptionError
        ``keys`` names a key the profile does not copy, or none.
    StalePlanError
        ``plan`` was not made from ``graph`` (their fingerprints differ), unless ``ported``.
    UnknownNodeError
        ``plan`` names an annotated node the graph does not have (it is another graph's plan).

    Example
    -------
    >>> from portmeta.testing import GraphBuilder, static
    >>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
    >>> y = b.call("aten.relu.default", dq, name="relu", tag="relu_0")
    >>> b.annotate(y, inputs={x: static()}); b.output(y)
    >>> check(b.build())
    ()
    >>> check(b.build(), ported=True, keys=["quantization_tag"])[0].cause
    'unexplained'
    """
    if plan is not None:
        if not ported:
            require_plan_of(graph, plan.fingerprint, "checking")
        return check_writes(
            graph, plan.deltas, plan.diagnostics, plan.profile, ported=ported, keys=keys
        )
    deltas, diagnostics = plan_writes(graph, profile, errors="collect")
    return check_writes(graph, deltas, diagnostics, profile, ported=ported, keys=keys)


# --------------------------------------------------------------------------- JSON and text


def findings_to_dict(findings: Iterable[Finding]) -> dict[str, Any]:
    """Findings as a JSON-ready document (format, version, counts per kind, findings)."""
    found = tuple(findings)
    counts = Counter(f.kind for f in found)
    return {
        "format": FINDINGS_FORMAT,
        "version": FINDINGS_SCHEMA_VERSION,
        "counts": {k: counts.get(k, 0) for k in KINDS},
        "findings": [f.to_dict() for f in found],
    }


def findings_from_dict(data: Any, *, source: str | None = None) -> tuple[Finding, ...]:
    """Inverse of :func:`findings_to_dict`; raises :class:`GraphFormatError` on bad data."""

    def fail(problem: str) -> GraphFormatError:
        return GraphFormatError(problem, source)

    if not isinstance(data, dict):
        raise fail("expected a JSON object at the top level")
    if data.get("format") != FINDINGS_FORMAT:
        raise fail(
            f"not a portmeta findings file (format is {data.get('format')!r}, "
            f"expected {FINDINGS_FORMAT!r})"
        )
    version = data.get("version")
    if type(version) is not int or version != FINDINGS_SCHEMA_VERSION:
        raise fail(
            f"unsupported findings schema version {version!r} "
            f"(this portmeta reads version {FINDINGS_SCHEMA_VERSION})"
        )
    try:
        return tuple(Finding.from_dict(f) for f in _list(data["findings"]))
    except KeyError as exc:
        raise fail(f"missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise fail(f"malformed finding: {exc}") from None


def findings_to_json(findings: Iterable[Finding], *, indent: int | None = 1) -> str:
    """Findings as a JSON document.

    Example
    -------
    >>> f = Finding("foreign_write", "cq", "lin_b", ["quantization_tag"], "search_reached", "...")
    >>> findings_from_json(findings_to_json([f])) == (f,)
    True
    """
    return json.dumps(findings_to_dict(findings), indent=indent)


def findings_from_json(text: str, *, source: str | None = None) -> tuple[Finding, ...]:
    """Inverse of :func:`findings_to_json`; raises :class:`GraphFormatError` on bad input."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GraphFormatError(f"not valid JSON: {exc.msg}", source) from None
    return findings_from_dict(data, source=source)


def load_findings(path: str) -> tuple[Finding, ...]:
    """Read a findings file written from :func:`findings_to_json` (``portmeta check --format json``)."""
    return findings_from_dict(read_json(path), source=str(path))


def format_findings(findings: Sequence[Finding]) -> str:
    """A table (node, kind, anchor, cause, keys), then each finding's message on its own line.

    Example
    -------
    >>> f = Finding("unported_input", "dq_1", "add", ["quantization_tag"], "not_first", "'dq_1' ...")
    >>> print(format_findings([f]))
    node  kind            anchor  cause      keys
    ----  --------------  ------  ---------  ----------------
    dq_1  unported_input  add     not_first  quantization_tag
    <BLANKLINE>
    1. 'dq_1' ...
    """
    if not findings:
        return "(no findings)"
    rows = [(f.node, f.kind, f.anchor or "-", f.cause, ",".join(f.keys)) for f in findings]
    headers = ("node", "kind", "anchor", "cause", "keys")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("")
    for i, f in enumerate(findings, 1):
        lines += [f"{i}. {f.message}", f"   to fix: {f.remedy} ({f.docs})"]
    return "\n".join(lines)


def compared_keys(
    graph: Snapshot, profile: Profile = TORCHAO, keys: Iterable[str] | None = None
) -> dict[str, int]:
    """What the check compares: for each key, on how many annotated nodes it decides.

    Annotated nodes are counted as the pass sees them (an annotation with input or output
    specs; not the empty ones quantizers leave on weights and biases). A node carrying none of
    the keys counts under ``""`` (nothing to compare for it). See :func:`deciding_keys`.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder, static
    >>> b = GraphBuilder(); x = b.placeholder("x"); _, dq = b.qdq(x)
    >>> y = b.call("aten.relu.default", dq, name="relu", stack_trace="m.py:3")
    >>> b.annotate(y, inputs={x: static()}); b.output(y)
    >>> compared_keys(b.build())
    {'stack_trace': 1}
    """
    profile_keys, chosen = _compared_keys(profile, keys)
    out: dict[str, int] = {}
    for name in annotated_nodes(graph, include_ignored=False):
        rec = record(graph, name)
        values = {k: v for k, v in rec.meta if k in profile_keys}
        deciding = [k for k in profile_keys if k in deciding_keys(values, chosen) and k in values]
        label = ",".join(deciding)
        out[label] = out.get(label, 0) + 1
    return out


def summary(
    findings: Sequence[Finding],
    graph: Snapshot | None = None,
    profile: Profile = TORCHAO,
    keys: Iterable[str] | None = None,
) -> str:
    """One line: the findings per kind and, given the graph, its own nodes, its annotated
    nodes (as the pass sees them) and what was compared on how many of them.

    A check that could compare nothing says so: it found nothing because there was nothing to
    find with.

    Example
    -------
    >>> summary(())
    'no findings (unported_input 0, unported_output 0, foreign_write 0, stale_annotation 0)'
    >>> from portmeta.testing import GraphBuilder, static
    >>> b = GraphBuilder(); x = b.placeholder("x"); _, dq = b.qdq(x)
    >>> y = b.call("aten.relu.default", dq, name="relu"); b.annotate(y, inputs={x: static()})
    >>> b.output(y); print(summary((), b.build()))
    nothing compared in 5 nodes, 1 annotated: no annotated node carries quantization_tag or stack_trace (unported_input 0, unported_output 0, foreign_write 0, stale_annotation 0)
    """
    counts = Counter(f.kind for f in findings)
    per_kind = ", ".join(f"{k} {counts.get(k, 0)}" for k in KINDS)
    n = len(findings)
    head = "no findings" if not n else f"{n} finding{'s' if n != 1 else ''}"
    if graph is None:
        return f"{head} ({per_kind})"
    compared = compared_keys(graph, profile, keys)
    annotated = sum(compared.values())
    own = len(own_nodes(graph))
    where = f"in {own} nodes, {annotated} annotated"
    done = {label: k for label, k in compared.items() if label}
    if not done:
        names = " or ".join(_compared_keys(profile, keys)[0][::-1])
        none = "no annotated node" if annotated else "no node is annotated, so none"
        return f"nothing compared {where}: {none} carries {names} ({per_kind})"
    parts = [f"{label} on {k}" for label, k in done.items()]
    if "" in compared:
        parts.append(f"nothing on {compared['']} (no ported key)")
    return f"{head} {where}; compared {', '.join(parts)} ({per_kind})"
