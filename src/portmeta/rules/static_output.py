"""Static output rule: the quantize after an annotated output inherits the producer's meta.

::

    node -> q -> dq         q <- node

The quantize is the **last** non-sym-size user. More or fewer than one such user is upstream's
first warning (planning goes on); a last user that is not a quantize op is the second warning
(nothing written). An annotated node with no users at all is skipped by torchao; the legacy
profile has no such guard and fails like upstream (``IndexError``).

Example
-------
>>> from portmeta import TORCHAO
>>> from portmeta.testing import GraphBuilder, static
>>> b = GraphBuilder(); x = b.placeholder("x"); y = b.call("aten.relu.default", x, name="relu")
>>> q, dq = b.qdq(y); b.annotate(y, output=static()); b.output(dq)
>>> [(c.target, c.source) for c in static_output(b.build(), TORCHAO, "relu").copies]
[('q', 'relu')]
"""

from __future__ import annotations

from ..errors import NoUserError
from ..profiles import Profile
from ..snapshot import Snapshot, record
from .base import (
    EMPTY,
    Copy,
    Diagnostic,
    Rule,
    RuleResult,
    Severity,
    non_sym_users,
)

__all__ = ["static_output"]


def static_output(graph: Snapshot, profile: Profile, node: str) -> RuleResult:
    """Copy ``q <- node`` for an annotated node with an output spec.

    Raises
    ------
    NoUserError
        Every user is a sym-size node, or (legacy profile) there is no user at all
        (upstream: ``IndexError``).
    """
    if not record(graph, node).users and profile.skip_output_without_users:
        return EMPTY
    kept = non_sym_users(graph, profile, node)
    diagnostics: list[Diagnostic] = []
    if len(kept) != 1:
        diagnostics.append(
            Diagnostic(
                "user_count",
                Severity.WARNING,
                node,
                f"annotated output {node!r} should have a single non-sym-size user, "
                f"has {len(kept)}: {list(kept)!r}",
                Rule.STATIC_OUTPUT,
                kept,
            )
        )
    if not kept:
        raise NoUserError(node, node, "output")
    q = kept[-1]
    if not profile.is_quantize(record(graph, q)):
        q_rec = record(graph, q)
        diagnostics.append(
            Diagnostic(
                "not_quantize",
                Severity.WARNING,
                node,
                f"the user {q!r} of annotated output {node!r} should be a quantize op, "
                f"found {q_rec.op} {q_rec.target}",
                Rule.STATIC_OUTPUT,
                (q,),
            )
        )
        return RuleResult((), tuple(diagnostics))
    return RuleResult((Copy(q, node, Rule.STATIC_OUTPUT, (node, q)),), tuple(diagnostics))
