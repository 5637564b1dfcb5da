"""assert_ported given a plan prints the same failure as given the graph when told the graph
(``graph=``), and otherwise says what it leaves out."""

from __future__ import annotations

import pytest

import portmeta
from portmeta.testing import GraphBuilder, assert_ported, static

FAILING = {"out_dq": {"quantization_tag": "P0"}, "dq": {"quantization_tag": "P9"}}


def _graph(tag: str = "P0"):
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu", tag=tag)
    b.annotate(relu, inputs={x: static()}, output=static())
    _oq, odq = b.qdq(relu, names=("out_q", "out_dq"))
    b.output(odq)
    return b.build()


def _failure(*args, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        assert_ported(*args, **kwargs)
    return str(info.value)


def test_a_plan_with_its_graph_fails_exactly_as_the_graph():
    g = _graph()
    from_graph = _failure(g, FAILING)
    assert "why: portmeta.explain(graph, 'out_dq')" in from_graph
    assert _failure(portmeta.plan(g), FAILING, graph=g) == from_graph
    unknown = {"out_dqq": {"quantization_tag": "P0"}}
    assert _failure(portmeta.plan(g), unknown, graph=g) == _failure(g, unknown)
    assert "did you mean 'out_dq'" in _failure(g, unknown)


def test_a_plan_alone_says_what_the_message_leaves_out():
    g = _graph()
    msg = _failure(portmeta.plan(g), FAILING)
    assert "portmeta.explain(graph" not in msg
    assert (
        "why: not shown for 'out_dq': assert_ported was given a plan without its graph; "
        "pass graph=the_graph (or the graph instead of the plan) for portmeta.explain of "
        "those nodes and a check of node names"
    ) in msg
    # the rest of the message is the same
    same = [ln for ln in _failure(g, FAILING).split("\n\n") if not ln.startswith("why:")]
    assert [ln for ln in msg.split("\n\n") if not ln.startswith("why:")] == same
    # nothing is left out when every failing node is written: no note
    assert "why:" not in _failure(portmeta.plan(g), {"dq": {"quantization_tag": "P9"}})


def test_graph_must_be_the_plans_own():
    with pytest.raises(ValueError, match="not the graph this plan was made from"):
        assert_ported(portmeta.plan(_graph()), {}, graph=_graph(tag="other"))
    with pytest.raises(ValueError, match="graph= goes with a plan"):
        assert_ported(_graph(), {}, graph=_graph())
