"""``node.users`` order, edited by hand, decides what upstream writes; the snapshot must keep it.

FX appends a user when a node starts using another, so ``node.users`` is usually graph order;
passes that rewrite arguments, or code that edits the dict, make it differ. Upstream's output
rule takes the *last* user, its dynamic rule the *last* choose_qparams user and the *first*
user of that one. Each graph below gets a users order that differs from graph order, and the
drop-in pass must leave what torchao's pass leaves (a snapshot that records users in graph
order fails every case). A user in another graph keeps its place in that order too.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from parity import (
    ATEN,
    KEYS,
    QD,
    Hand,
    annotate,
    assert_same_meta,
    dynamic_spec,
    port_keys_state,
    run_both_passes,
    static_spec,
)
from torchao.quantization.pt2e.quantizer.port_metadata_pass import (
    PortNodeMetaForQDQ as Upstream,
)

import portmeta
from portmeta_fx import from_fx
from portmeta_fx.snapshot import snapshot_nodes


def _reorder(node: torch.fx.Node, names: list[str]) -> None:
    """Give ``node.users`` the order ``names`` (a permutation of its users)."""
    by_name = {u.name: u for u in node.users}
    assert sorted(by_name) == sorted(names)
    node.users = {by_name[n]: None for n in names}


def _graph_order(node: torch.fx.Node) -> list[str]:
    order = {n: i for i, n in enumerate(node.graph.nodes)}
    return [u.name for u in sorted(node.users, key=order.__getitem__)]


def output_rule() -> torch.fx.GraphModule:
    """linear's users in graph order: its quantize, then relu; edited: relu, then the quantize.

    The output rule takes the last user: the quantize in the edited order (written), relu in
    graph order (nothing written, a warning).
    """
    h = Hand()
    x = h.placeholder("x")
    _, xdq = h.qdq(x)
    lin = h.call(ATEN.linear.default, xdq, xdq, name="linear", tag="L", stack_trace="m.py:3")
    annotate(lin, {x: static_spec()}, static_spec())
    q = h.call(QD.quantize_per_tensor.default, lin, 0.1, 0, -128, 127, torch.int8, name="out_q")
    relu = h.call(ATEN.relu.default, lin, name="relu")
    gm = h.output(q, relu)
    _reorder(lin, ["relu", "out_q"])
    return gm


def dynamic_scale() -> torch.fx.GraphModule:
    """The zero point (choose_qparams' last user) used by dq first, then by q.

    Upstream takes the first user of that last user as the dynamic quantize: here the dq, and
    then the dq's user (the linear) as "the dequantize".
    """
    h = Hand()
    x = h.placeholder("x")
    chain = h.dynamic_qdq(x)
    lin = h.call(ATEN.linear.default, chain["dq"], name="linear", tag="D", stack_trace="m.py:9")
    annotate(lin, {x: dynamic_spec()})
    gm = h.output(lin)
    _reorder(chain["zp"], [chain["dq"].name, chain["q"].name])
    return gm


def choose_qparams_users() -> torch.fx.GraphModule:
    """choose_qparams' users swapped: the scale getitem becomes the last, so its first user."""
    h = Hand()
    x = h.placeholder("x")
    chain = h.dynamic_qdq(x)
    lin = h.call(ATEN.linear.default, chain["dq"], name="linear", tag="D", stack_trace="m.py:9")
    annotate(lin, {x: dynamic_spec()})
    gm = h.output(lin)
    _reorder(chain["scale"], [chain["dq"].name, chain["q"].name])
    _reorder(chain["cq"], [chain["zp"].name, chain["scale"].name])
    return gm


CASES: dict[str, Callable[[], torch.fx.GraphModule]] = {
    "output_rule": output_rule,
    "dynamic_scale": dynamic_scale,
    "choose_qparams_users": choose_qparams_users,
}


@pytest.mark.parametrize("name", list(CASES))
def test_hand_edited_users_order_is_followed_as_torchao_does(name: str) -> None:
    build = CASES[name]
    gm = build()
    edited = [n for n in gm.graph.nodes if [u.name for u in n.users] != _graph_order(n)]
    assert edited, "the case must have a users order that is not graph order"
    ours, theirs, our_outcome, their_outcome = run_both_passes(build)
    assert not isinstance(their_outcome, BaseException), their_outcome
    assert not isinstance(our_outcome, BaseException), our_outcome
    assert_same_meta(ours, theirs)
    # and the order matters: with the users put back in graph order torchao writes otherwise
    plain = build()
    for n in plain.graph.nodes:
        _reorder(n, _graph_order(n))
    Upstream().call(plain)
    assert port_keys_state(plain, KEYS) != port_keys_state(theirs, KEYS)


def test_a_user_in_another_graph_keeps_its_place_in_users_order() -> None:
    """``x`` gains a user in another graph (``f``) before its own user ``y``: the snapshot lists
    both in FX's order, ``f`` under its foreign name, and records ``f`` after the own nodes."""
    g = torch.fx.Graph()
    x = g.placeholder("x")
    h = torch.fx.Graph()
    f = h.call_function(torch.relu, (x,))
    y = g.create_node("call_function", torch.relu, (x,), name="y")
    g.output(y)
    assert list(x.users) == [f, y]  # FX's own order: f first

    snap = from_fx(g)
    names = {node: name for name, node in snapshot_nodes(g).items()}
    foreign = f"{f.name}@0"
    assert names[f] == foreign
    assert portmeta.record(snap, "x").users == tuple(names[u] for u in x.users)
    assert portmeta.record(snap, "x").users == ("relu@0", "y")
    assert portmeta.users(snap, "x") == ("relu@0", "y")
    assert list(snap.successors("x")) == ["relu@0", "y"]
    assert list(snap) == ["x", "y", "output", "relu@0"]
    assert portmeta.record(snap, foreign).foreign
    assert not portmeta.record(snap, "y").foreign
