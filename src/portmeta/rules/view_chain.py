"""Get_attr view-chain rule: a quantize that reads a weight inherits the weight's meta.

::

    get_attr w -> permute -> view -> q      q, view, permute <- w   (chain order: q first)

The walk goes up ``args[0]`` from the quantize through the profile's view ops; only when it
ends at a ``get_attr`` node is anything written. Upstream runs it inside the static input rule,
right before ``dq <- consumer``.

Example
-------
>>> from portmeta import TORCHAO
>>> from portmeta.testing import GraphBuilder
>>> b = GraphBuilder(); w = b.get_attr("w")
>>> t = b.call("aten.permute.default", w, [1, 0], name="t"); q, dq = b.qdq(t)
>>> b.output(dq)
>>> [(c.target, c.source) for c in view_chain(b.build(), TORCHAO, "?", q).copies]
[('q', 'w'), ('t', 'w')]
"""

from __future__ import annotations

from ..errors import CyclicWalkError, MissingArgumentError
from ..profiles import Profile
from ..records import NodeRef
from ..snapshot import Snapshot, record
from .base import EMPTY, Copy, Rule, RuleResult

__all__ = ["view_chain"]


def view_chain(graph: Snapshot, profile: Profile, node: str, q: str) -> RuleResult:
    """Copies ``chain <- get_attr`` for the quantize ``q`` (``node`` names the consumer in errors).

    Returns
    -------
    RuleResult
        One copy per chain node (``q``, then each view op walking up), all from the
        ``get_attr`` node; empty when the chain ends anywhere else.

    Raises
    ------
    MissingArgumentError
        ``q`` or a view op on the chain has no positional args (upstream: ``IndexError``).
    CyclicWalkError
        The chain comes back to a node on it (upstream never returns).
    """
    chain = [q]
    q_rec = record(graph, q)
    if not q_rec.args:
        raise MissingArgumentError(node, q)
    cur = q_rec.args[0]
    is_view = profile.is_view
    while isinstance(cur, NodeRef) and is_view(record(graph, cur.name)):
        if cur.name in chain:
            raise CyclicWalkError(node, cur.name)
        chain.append(cur.name)
        view = record(graph, cur.name)
        if not view.args:
            raise MissingArgumentError(node, view.name)
        cur = view.args[0]
    if not (isinstance(cur, NodeRef) and record(graph, cur.name).op == "get_attr"):
        return EMPTY
    source = cur.name
    path = (source, *chain[::-1])
    return RuleResult(tuple(Copy(n, source, Rule.GET_ATTR_CHAIN, path) for n in chain))
