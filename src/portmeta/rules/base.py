"""What every rule returns: the copies it asks for and the diagnostics it raises.

A rule decides *which* node receives metadata *from which* node; it never reads metadata
values. :func:`portmeta.plan` turns each :class:`Copy` into one
:class:`~portmeta.plan.MetaDelta` per profile key present on the source at that moment, which
is where read-after-write and last-write-wins live.

Example
-------
>>> c = Copy(target="dq", source="conv", rule=Rule.STATIC_INPUT, path=("x", "q", "dq", "conv"))
>>> RuleResult((c,)).copies[0].rule.value
'static_input'
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import attrs

from .._text import short_value
from ..graph import Snapshot
from ..profiles import Profile
from ..records import names, trusted_constructor

__all__ = [
    "Rule",
    "as_rule",
    "Severity",
    "Copy",
    "Diagnostic",
    "RuleResult",
    "EMPTY",
    "non_sym_users",
    "show",
]


class Rule(str, enum.Enum):
    """The four porting rules.

    Example
    -------
    >>> Rule("get_attr_chain").name
    'GET_ATTR_CHAIN'
    """

    STATIC_INPUT = "static_input"
    STATIC_OUTPUT = "static_output"
    GET_ATTR_CHAIN = "get_attr_chain"
    DYNAMIC_INPUT = "dynamic_input"


class Severity(str, enum.Enum):
    """How serious a diagnostic is.

    Example
    -------
    >>> Severity.ERROR.value
    'error'
    """

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def as_rule(value: Rule | str) -> Rule:
    """Converter: a :class:`Rule` or its value to a :class:`Rule` (a rule passes through)."""
    return value if type(value) is Rule else Rule(value)


@attrs.frozen(slots=True, weakref_slot=False)
class Copy:
    """One ``copy(target <- source)`` a rule asks for.

    ``path`` holds the nodes that justify it, in data-flow order (for a dequantize:
    input, quantize, dequantize, consumer).

    Example
    -------
    >>> Copy("q", "conv", Rule.STATIC_OUTPUT, ("conv", "q")).target
    'q'
    """

    target: str
    source: str
    rule: Rule = attrs.field(converter=as_rule)
    path: tuple[str, ...] = attrs.field(converter=names)


@attrs.frozen(slots=True, weakref_slot=False)
class Diagnostic:
    """Something planning noticed, as data.

    ``kind`` is one of ``user_count`` and ``not_quantize`` (upstream's two warnings, which
    upstream logs at a level that hides them), ``overwrite`` (a write replaced a different value
    an earlier write had put on the same node and key) and ``error`` (a rule failed with
    ``errors="collect"``; ``error_class`` names the portmeta exception).

    Example
    -------
    >>> d = Diagnostic("user_count", Severity.WARNING, "conv", "conv has 2 users", Rule.STATIC_OUTPUT)
    >>> d.severity.value
    'warning'
    """

    kind: str
    severity: Severity = attrs.field(converter=Severity)
    node: str
    message: str
    rule: Rule | None = attrs.field(default=None, converter=attrs.converters.optional(Rule))
    related: tuple[str, ...] = attrs.field(default=(), converter=names)
    error_class: str | None = None


def _copies(value: Iterable[Copy]) -> tuple[Copy, ...]:
    return value if type(value) is tuple else tuple(value)


def _diagnostics(value: Iterable[Diagnostic]) -> tuple[Diagnostic, ...]:
    return value if type(value) is tuple else tuple(value)


@attrs.frozen(slots=True, weakref_slot=False)
class RuleResult:
    """The copies a rule asks for, in order, and its diagnostics.

    Example
    -------
    >>> EMPTY.copies, EMPTY.diagnostics
    ((), ())
    """

    copies: tuple[Copy, ...] = attrs.field(default=(), converter=_copies)
    diagnostics: tuple[Diagnostic, ...] = attrs.field(default=(), converter=_diagnostics)

    def __add__(self, other: RuleResult) -> RuleResult:
        return RuleResult(self.copies + other.copies, self.diagnostics + other.diagnostics)


EMPTY = RuleResult()

#: Constructors for rules, which pass a :class:`Rule` and tuples as they are (no converters).
new_copy = trusted_constructor(Copy)
new_result = trusted_constructor(RuleResult)


def non_sym_users(graph: Snapshot, profile: Profile, name: str) -> tuple[str, ...]:
    """Users of ``name`` in users order, without the profile's sym-size nodes.

    Example
    -------
    >>> from portmeta import TORCHAO
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); x = b.placeholder("x")
    >>> s = b.call("aten.sym_size.int", x, 0, name="s"); b.output(x, s)
    >>> non_sym_users(b.build(), TORCHAO, "x")   # the .int overload is not filtered
    ('s', 'output')
    """
    nodes = graph._node  # type: ignore[attr-defined]
    if name not in nodes:
        return ()
    is_sym_size = profile.is_sym_size
    return tuple([u for u in nodes[name]["record"].users if not is_sym_size(nodes[u]["record"])])


def show(value: Any) -> str:
    """A short text for a constant found where a node was expected."""
    return short_value(value, 60, trace=False)
