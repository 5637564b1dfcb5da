"""Static input rule: the dequantize feeding an annotated input inherits the consumer's meta.

For an annotated node ``node`` and a static input ``x``::

    x -> q -> dq -> node        dq <- node          (and, when q reads a weight,
                                                      q and its view ops <- get_attr)

Quirks kept from upstream: only *top-level* positional args of ``node`` are searched (a
dequantize passed as a keyword, or inside a list such as ``cat``'s, is never found); the first
dequantize arg *connected* to ``x`` wins; with no quantize directly above it nothing is written,
not even to the dequantize.

Example
-------
>>> from portmeta import TORCHAO
>>> from portmeta.testing import GraphBuilder, static
>>> b = GraphBuilder(); x = b.placeholder("x")
>>> q, dq = b.qdq(x); y = b.call("aten.relu.default", dq, name="relu")
>>> b.annotate(y, inputs={x: static()}); b.output(y)
>>> [(c.target, c.source) for c in static_input(b.build(), TORCHAO, "relu", "x").copies]
[('dq', 'relu')]
"""

from __future__ import annotations

from ..errors import CyclicWalkError, MissingArgumentError, NonNodeQuantArgError
from ..profiles import Profile
from ..records import NodeRef
from ..snapshot import Snapshot, record
from .base import EMPTY, Copy, Rule, RuleResult, show
from .view_chain import view_chain

__all__ = ["static_input", "walk_to_producer", "walk_to_producer_lenient"]


def walk_to_producer(graph: Snapshot, profile: Profile, node: str, start: str) -> tuple[str, ...]:
    """Follow ``args[0]`` from ``start`` while the target is a quant-workflow op.

    Returns the nodes visited, ``start`` first; the last one is the producer the walk ends at.
    Only the target is checked, not ``op`` (as upstream's ``_is_connected``).

    Raises
    ------
    NonNodeQuantArgError
        A workflow op's ``args[0]`` is a constant (upstream: ``ValueError``).
    MissingArgumentError
        A workflow op has no positional args (upstream: ``IndexError``).
    CyclicWalkError
        The walk comes back to a node it passed (upstream never returns).
    """
    return _walk(graph, profile, node, start, strict=True)


def walk_to_producer_lenient(graph: Snapshot, profile: Profile, start: str) -> tuple[str, ...]:
    """:func:`walk_to_producer` that never raises: it stops where that one would raise.

    For readers of the graph (``portmeta.check``) that reason about where the rule's walk goes
    without running the rule; the last node is where the walk stopped.

    Example
    -------
    >>> from portmeta import TORCHAO
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x); b.output(dq)
    >>> walk_to_producer_lenient(b.build(), TORCHAO, dq)
    ('dq', 'q', 'x')
    """
    return _walk(graph, profile, start, start, strict=False)


def _walk(
    graph: Snapshot, profile: Profile, node: str, start: str, *, strict: bool
) -> tuple[str, ...]:
    walked = [start]
    cur = record(graph, start)
    is_workflow_op = profile.is_workflow_op
    while is_workflow_op(cur):
        args = cur.args
        if not args:
            if strict:
                raise MissingArgumentError(node, cur.name)
            break
        first = args[0]
        if not isinstance(first, NodeRef):
            if strict:
                raise NonNodeQuantArgError(node, cur.name, show(first))
            break
        name = first.name
        if name in walked:
            if strict:
                raise CyclicWalkError(node, name)
            break
        if not strict and name not in graph:
            break
        cur = record(graph, name)
        walked.append(name)
    return tuple(walked)


def static_input(
    graph: Snapshot, profile: Profile, node: str, input_node: str, *, is_node: bool = True
) -> RuleResult:
    """Copies for one static input of an annotated node.

    Parameters
    ----------
    graph, profile:
        The snapshot and the profile.
    node:
        The annotated (consumer) node.
    input_node:
        The annotated input's name; ``is_node=False`` (or a name not in the graph) marks an input
        that is not the graph's node any more, which nothing connects to.

    Returns
    -------
    RuleResult
        The get_attr view-chain copies (if the quantize reads a weight), then ``dq <- node``.

    Raises
    ------
    NonNodeQuantArgError, MissingArgumentError
        From the connectivity walk (see :func:`walk_to_producer`).
    """
    for arg in record(graph, node).args:
        if not isinstance(arg, NodeRef) or not profile.is_dequantize(record(graph, arg.name)):
            continue
        walked = _walk(graph, profile, node, arg.name, strict=True)
        if is_node and walked[-1] == input_node:
            break
    else:
        return EMPTY
    dq, q = walked[0], walked[1]
    if not profile.is_quantize(record(graph, q)):
        return EMPTY
    path = (*walked[::-1], node)
    chain = view_chain(graph, profile, node, q)
    return RuleResult((*chain.copies, Copy(dq, node, Rule.STATIC_INPUT, path)), ())
