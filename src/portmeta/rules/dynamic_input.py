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
from ..snapshot import Snapshot, record
from .base import Copy, Rule, RuleResult, non_sym_users

__all__ = ["dynamic_input", "find_choose_qparams"]


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
    found = find_choose_qparams(graph, profile, input_node)
    if found is None:
        raise NoChooseQParamsError(node, input_node)
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
        (),
    )
