"""Cases the suite did not pin down before "one way through" (hand-made mutants survived them).

Each is a ten-line hand-built graph planned without torch; the FX twins of the first and third
live in tests/fx (test_users_order.py, test_dropin.py).
"""

from __future__ import annotations

import pytest

import portmeta
from portmeta.errors import NoChooseQParamsError
from portmeta.rules import dynamic_input, find_choose_qparams
from portmeta.testing import GraphBuilder, dynamic, static


def test_dynamic_search_does_not_examine_its_own_input():
    # upstream's breadth-first search starts from the input's *users*: an annotation whose
    # dynamic input is the choose_qparams node itself finds none (ValueError upstream)
    b = GraphBuilder()
    x = b.placeholder("x")
    chain = b.dynamic_qdq(x)
    y = b.call("aten.linear.default", chain.dq, name="lin", tag="L")
    b.annotate(y, inputs={chain.choose_qparams: dynamic()}, check_inputs=False)
    b.output(y)
    g = b.build()
    assert find_choose_qparams(g, portmeta.TORCHAO, chain.choose_qparams) is None
    with pytest.raises(NoChooseQParamsError) as err:
        dynamic_input(g, portmeta.TORCHAO, "lin", chain.choose_qparams)
    assert (err.value.node, err.value.subject) == ("lin", chain.choose_qparams)
    with pytest.raises(NoChooseQParamsError):
        portmeta.plan(g)
    # from the real input the same chain is found
    assert find_choose_qparams(g, portmeta.TORCHAO, x) == (x, chain.choose_qparams)


def test_read_after_write_through_an_overwritten_origin():
    # x -> q1 -> dq1 (output spec) -> q2 (output spec) -> q3, and relu(dq1) reading x
    # statically. In graph order: dq1's output rule writes dq1's values onto q2 (its last
    # user); relu's input rule then overwrites dq1 itself with relu's; q2's output rule passes
    # on what q2 holds, so q3 gets dq1's values as they were, not what dq1 holds by then.
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq1 = b.qdq(x, names=("q1", "dq1"))
    b.set_meta(dq1, tag="T_dq1", stack_trace="m.py:1")
    r = b.call("aten.relu.default", dq1, name="relu", tag="T_relu", stack_trace="m.py:2")
    quantize = "quantized_decomposed.quantize_per_tensor.default"
    qargs = (0.1, 0, -128, 127)
    q2 = b.call(quantize, dq1, *qargs, name="q2", tag="T_q2", stack_trace="m.py:3")
    q3 = b.call(quantize, q2, *qargs, name="q3")
    b.annotate(dq1, output=static(), check_inputs=False)
    b.annotate(r, inputs={x: static()})
    b.annotate(q2, output=static(), check_inputs=False)
    b.output(r, q3)
    p = portmeta.plan(b.build())
    final = p.final_state()
    assert final["dq1"] == {"stack_trace": "m.py:2", "quantization_tag": "T_relu"}
    assert final["q2"] == {"stack_trace": "m.py:1", "quantization_tag": "T_dq1"}
    assert final["q3"] == {"stack_trace": "m.py:1", "quantization_tag": "T_dq1"}
    (last,) = [d for d in p.writes_to("q3") if d.key == "quantization_tag"]
    assert (last.source, last.origin, last.value) == ("q2", "dq1", "T_dq1")
