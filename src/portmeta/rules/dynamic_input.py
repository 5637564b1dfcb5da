"""Dynamic input rule: the choose_qparams / quantize / dequantize chain inherits the consumer's meta.

For an annotated node ``node`` whose input ``x`` has a spec with ``is_dynamic is True``::

    x -> choose_qparams -> getitem(scale) -> q -> dq -> node
                        \\-> getitem(zero_point) -/
    choose_qparams, q, dq <- node

* ``choose_qparams``: the first choose_qparams op a breadth-first walk finds, starting at the
  users of ``x`` (in users order, ``x`` itself not examined, output nodes neither examined nor
  expanded). Upstream keeps no visited set and can take exponential time on diamond-shaped
  graphs; this walk keeps one and finds the same node.
* its non-sym-size users must be exactly two; ``scale`` is the **last** of them;
* ``q`` is the **first** user of ``scale`` (sym-size nodes included);
* ``q`` must have one non-sym-size user, which is ``dq`` whatever it is.

With ``profile.dynamic_chain == "feeding"`` only the first step changes: ``choose_qparams`` is
the one of the chain that feeds ``node`` (:func:`feeding_choose_qparams`: the dequantize among
its arguments, that dequantize's quantize of ``x``, the choose_qparams its scale and zero point
come from); the rest, errors included, is upstream's. A consumer that reads no such chain gets
the search, and an info diagnostic ``dynamic_search`` says so.

Example
-------
>>> from portmeta import TORCHAO
>>> from portmeta.testing import GraphBuilder, dynamic
>>> b = GraphBuilder(); x = b.placeholder("x")
>>> chain = b.dynamic_qdq(x); y = b.call("aten.linear.default", chain.dq, name="lin")
>>> b.annotate(y, inputs={x: dynamic()}); b.output(y)
>>> [c.target for c in dynamic_input(b.build(), TORCHAO, "lin", "x").copies]
['choose_qparams', 'q', 'dq']
"""

from __future__ import annotations

from collections import deque

from ..errors import (
    ChooseQParamsUsersError,
    DynamicQuantUsersError,
    NoChooseQParamsError,
    NotANodeInputError,
    NoUserError,
    ScaleWithoutUsersError,
)
from ..profiles import Profile
from ..records import NodeRef, iter_node_refs
from ..snapshot import Snapshot, record
from .base import Copy, Diagnostic, Rule, RuleResult, Severity, non_sym_users

__all__ = ["dynamic_input", "find_choose_qparams", "feeding_choose_qparams"]


def find_choose_qparams(
    graph: Snapshot, profile: Profile, input_node: str
) -> tuple[str, ...] | None:
    """Breadth-first search for the choose_qparams node of a dynamic input.

    Returns
    -------
    tuple of str or None
        The path ``(input_node, ..., choose_qparams)`` to the first match, or ``None``.

    Example
    -------
    >>> from portmeta import TORCHAO
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); x = b.placeholder("x"); c = b.dynamic_qdq(x); b.output(c.dq)
    >>> find_choose_qparams(b.build(), TORCHAO, "x")
    ('x', 'choose_qparams')
    """
    if input_node not in graph:
        return None
    parent = dict.fromkeys(record(graph, input_node).users, input_node)
    queue = deque(parent)
    is_choose_qparams = profile.is_choose_qparams
    while queue:
        name = queue.popleft()
        rec = record(graph, name)
        if rec.op == "output":
            continue
        if is_choose_qparams(rec):
            path = [name]
            while path[-1] != input_node:
                path.append(parent[path[-1]])
            return tuple(reversed(path))
        for user in rec.users:
            if user not in parent:
                parent[user] = name
                queue.append(user)
    return None


def feeding_choose_qparams(
    graph: Snapshot, profile: Profile, node: str, input_node: str
) -> tuple[str, ...] | None:
    """The choose_qparams of the dynamic chain of ``input_node`` that feeds ``node``.

    Looks at ``node``'s top-level positional arguments, then its top-level keyword values, in
    order, for a dequantize op whose ``args[0]`` is a quantize op whose ``args[0]`` is
    ``input_node``; that quantize must read its other arguments (scale, zero point, ...) from
    exactly one choose_qparams op, directly or through one node (the ``getitem``). The first
    such dequantize wins.

    Returns
    -------
    tuple of str or None
        ``(input_node, choose_qparams, dq)``, or ``None`` when ``node`` reads no such chain.

    Example
    -------
    >>> from portmeta import TORCHAO
    >>> from portmeta.testing import GraphBuilder, dynamic
    >>> b = GraphBuilder(); x = b.placeholder("x")
    >>> c1 = b.dynamic_qdq(x); c2 = b.dynamic_qdq(x)
    >>> a = b.call("aten.linear.default", c1.dq, name="a")
    >>> k = b.call("aten.linear.default", c2.dq, name="k"); b.output(a, k); g = b.build()
    >>> feeding_choose_qparams(g, TORCHAO, "k", "x")[1], find_choose_qparams(g, TORCHAO, "x")[-1]
    ('choose_qparams_1', 'choose_qparams')
    """
    if node not in graph or input_node not in graph:
        return None
    rec = record(graph, node)
    candidates = [a.name for a in rec.args if isinstance(a, NodeRef)]
    candidates += [v.name for _, v in rec.kwargs if isinstance(v, NodeRef)]
    for dq in candidates:
        dq_rec = record(graph, dq)
        if not profile.is_dequantize(dq_rec) or not dq_rec.args:
            continue
        above = dq_rec.args[0]
        if not isinstance(above, NodeRef):
            continue
        q_rec = record(graph, above.name)
        if not profile.is_quantize(q_rec) or not q_rec.args:
            continue
        if q_rec.args[0] != NodeRef(input_node):
            continue
        found = _qparams_source(graph, profile, q_rec.args[1:], [v for _, v in q_rec.kwargs])
        if found is not None:
            return (input_node, found, dq)
    return None


def _qparams_source(graph: Snapshot, profile: Profile, *values: object) -> str | None:
    """The one choose_qparams the node references in ``values`` come from, directly or through
    their ``args[0]``; ``None`` when none or several."""
    found: set[str] = set()
    for name in iter_node_refs(values):
        rec = record(graph, name)
        if profile.is_choose_qparams(rec):
            found.add(name)
        elif (
            rec.args
            and isinstance(rec.args[0], NodeRef)
            and profile.is_choose_qparams(record(graph, rec.args[0].name))
        ):
            found.add(rec.args[0].name)
    return found.pop() if len(found) == 1 else None


def dynamic_input(
    graph: Snapshot, profile: Profile, node: str, input_node: str, *, is_node: bool = True
) -> RuleResult:
    """Copies ``choose_qparams, q, dq <- node`` for one dynamic input.

    Raises
    ------
    NotANodeInputError
        The annotation's key is not a node (upstream: ``AttributeError``).
    NoChooseQParamsError
        No choose_qparams op is reachable (upstream: ``ValueError``).
    ChooseQParamsUsersError
        It does not have exactly two non-sym-size users (upstream: ``InternalError``).
    ScaleWithoutUsersError
        The scale node has no users (upstream: ``StopIteration``).
    DynamicQuantUsersError
        The quantize has more than one non-sym-size user (upstream: ``InternalError``).
    NoUserError
        The quantize has no non-sym-size user (upstream: ``IndexError``).
    """
    if not is_node:
        raise NotANodeInputError(node, input_node)
    diagnostics: tuple[Diagnostic, ...] = ()
    found = None
    if profile.dynamic_chain == "feeding":
        feeding = feeding_choose_qparams(graph, profile, node, input_node)
        if feeding is not None:
            found = feeding[:2]
    if found is None:
        found = find_choose_qparams(graph, profile, input_node)
        if found is None:
            raise NoChooseQParamsError(node, input_node)
        if profile.dynamic_chain == "feeding":
            diagnostics = (_searched(node, input_node, found[-1]),)
    cq = found[-1]
    cq_users = non_sym_users(graph, profile, cq)
    if len(cq_users) != 2:
        raise ChooseQParamsUsersError(node, cq, len(cq_users))
    scale = cq_users[-1]
    scale_users = record(graph, scale).users
    if not scale_users:
        raise ScaleWithoutUsersError(node, scale)
    q = scale_users[0]
    q_users = non_sym_users(graph, profile, q)
    if len(q_users) > 1:
        raise DynamicQuantUsersError(node, q, len(q_users))
    if not q_users:
        raise NoUserError(node, q, "dynamic input")
    dq = q_users[0]
    path = (*found, scale, q, dq)
    rule = Rule.DYNAMIC_INPUT
    return RuleResult(
        (
            Copy(cq, node, rule, path),
            Copy(q, node, rule, path),
            Copy(dq, node, rule, path),
        ),
        diagnostics,
    )


def _searched(node: str, input_node: str, cq: str) -> Diagnostic:
    return Diagnostic(
        "dynamic_search",
        Severity.INFO,
        node,
        f"{node!r} reads no dequantize of a dynamic chain of input {input_node!r}; "
        f"dynamic_chain='feeding' falls back to the search, which found {cq!r}",
        Rule.DYNAMIC_INPUT,
        (input_node, cq),
    )
