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
from ..profiles import Profile
from ..snapshot import Snapshot, record

__all__ = [
    "Rule",
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


@attrs.frozen
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
    rule: Rule
    path: tuple[str, ...]


@attrs.frozen
class Diagnostic:
    """Something planning noticed, as data.

    ``kind`` is one of ``user_count`` and ``not_quantize`` (upstream's two warnings, which
    upstream logs at a level that hides them), ``overwrite`` (a write replaced a different value
    an earlier write had put on the same node and key), ``dynamic_search`` (info: under
    ``dynamic_chain="feeding"`` a consumer reads no dynamic chain of its input, so the search
    chose the chain) and ``error`` (a rule failed with ``errors="collect"``; ``error_class``
    names the portmeta exception).

    Example
    -------
    >>> d = Diagnostic("user_count", Severity.WARNING, "conv", "conv has 2 users", Rule.STATIC_OUTPUT)
    >>> d.severity.value
    'warning'
    """

    kind: str
    severity: Severity
    node: str
    message: str
    rule: Rule | None = None
    related: tuple[str, ...] = ()
    error_class: str | None = None

    @classmethod
    def of(
        cls,
        kind: str,
        severity: Severity | str,
        node: str,
        message: str,
        rule: Rule | str | None = None,
        related: Iterable[str] = (),
        error_class: str | None = None,
    ) -> Diagnostic:
        """A diagnostic from plain values (enum values as strings, any iterable of names).

        Example
        -------
        >>> Diagnostic.of("user_count", "warning", "conv", "...", "static_output", ["a"]).rule
        <Rule.STATIC_OUTPUT: 'static_output'>
        """
        return cls(
            kind,
            Severity(severity),
            node,
            message,
            None if rule is None else Rule(rule),
            tuple(related),
            error_class,
        )


@attrs.frozen
class RuleResult:
    """The copies a rule asks for, in order, and its diagnostics.

    Example
    -------
    >>> EMPTY.copies, EMPTY.diagnostics
    ((), ())
    """

    copies: tuple[Copy, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()

    def __add__(self, other: RuleResult) -> RuleResult:
        return RuleResult(self.copies + other.copies, self.diagnostics + other.diagnostics)


EMPTY = RuleResult()


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
    if name not in graph:
        return ()
    is_sym_size = profile.is_sym_size
    return tuple(u for u in record(graph, name).users if not is_sym_size(record(graph, u)))


def show(value: Any) -> str:
    """A short text for a constant found where a node was expected."""
    return short_value(value, 60, trace=False)
