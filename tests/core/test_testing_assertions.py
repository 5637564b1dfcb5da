"""``portmeta.testing.assert_ported``: semantics and the failure message (no pytest needed)."""

from __future__ import annotations

import pickle
import re

import pytest

import portmeta
from portmeta.errors import NoChooseQParamsError
from portmeta.testing import (
    NOTHING,
    DynamicChain,
    GraphBuilder,
    Nothing,
    assert_ported,
    derived,
    dynamic,
    fixed,
    shared,
    static,
    target,
)

TRACE = 'File "model.py", line 12, in forward'


def conv_relu():
    """The doc's conv -> relu partition (tag conv_relu_0), weight tagged conv.weight."""
    b = GraphBuilder()
    x = b.placeholder("x")
    _, x_dq = b.qdq(x, names=("x_q", "x_dq"))
    w = b.get_attr("conv_weight", tag="conv.weight")
    _, w_dq = b.qdq(w, per_channel=True, names=("w_q", "w_dq"))
    conv = b.call(
        "aten.conv2d.default", x_dq, w_dq, name="conv", tag="conv_relu_0", stack_trace=TRACE
    )
    relu = b.call("aten.relu.default", conv, name="relu", tag="conv_relu_0")
    _, out_dq = b.qdq(relu, names=("out_q", "out_dq"))
    b.annotate(conv, inputs={x: static(), w: static()})
    b.annotate(relu, output=static())
    b.output(out_dq)
    return b.build()


EXPECTED = {
    "x_dq": {"quantization_tag": "conv_relu_0", "stack_trace": TRACE},
    "w_q": {"quantization_tag": "conv.weight", "stack_trace": NOTHING},
    "w_dq": {"quantization_tag": "conv_relu_0"},
    "out_q": {"quantization_tag": "conv_relu_0"},
    "x_q": NOTHING,
    "out_dq": NOTHING,
}


def failure(*args, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        assert_ported(*args, **kwargs)
    return str(info.value)


def test_the_old_testing_module_names_still_import():
    assert GraphBuilder.__module__ == "portmeta.testing._builder"
    assert isinstance(target("aten.relu.default"), portmeta.Target)
    assert {static().kind, dynamic().is_dynamic, shared().kind, derived().kind, fixed().kind}
    assert DynamicChain("cq", "s", "z", "q", "dq").dq == "dq"


def test_passing_expectations_return_the_plan():
    g = conv_relu()
    p = assert_ported(g, EXPECTED)
    assert p == portmeta.plan(g)
    assert assert_ported(p, EXPECTED) is p  # a plan is accepted as it is


def test_a_wrong_value_names_node_key_both_values_rule_and_source():
    msg = failure(conv_relu(), {"x_dq": {"quantization_tag": "conv_relu_1"}, "x_q": NOTHING})
    assert msg.splitlines()[0] == "assert_ported: 1 of 2 expectations failed"
    block = msg.split("\n\n")[1].splitlines()
    assert block == [
        "x_dq.quantization_tag",
        "    expected  'conv_relu_1'",
        "    planned   'conv_relu_0'  by rule static_input from 'conv' "
        "(annotated node 'conv'; path x -> x_q -> x_dq -> conv)",
    ]
    assert msg.splitlines()[-1] == "plan: profile 'torchao', 6 writes to 4 nodes, 0 diagnostics"


def test_a_missing_write_says_nothing_was_planned_and_explains_why():
    msg = failure(conv_relu(), {"out_dq": {"quantization_tag": "conv_relu_0"}})
    assert "    expected  'conv_relu_0'" in msg
    assert "    planned   nothing (the plan writes no 'quantization_tag' on 'out_dq')" in msg
    assert "why: portmeta.explain(graph, 'out_dq')" in msg
    assert "quantization_tag: not written: its user 'output' is not annotated" in msg


def test_nothing_on_a_node_lists_every_key_written_there():
    msg = failure(conv_relu(), {"x_dq": NOTHING})
    # a stack trace shows as its own frame, as the plan table shows it
    assert "x_dq\n    expected  nothing\n    planned   stack_trace = model.py:12 in" in msg
    assert "              quantization_tag = 'conv_relu_0'  by rule static_input" in msg


def test_nothing_for_a_key():
    assert_ported(conv_relu(), {"w_q": {"stack_trace": NOTHING}})
    msg = failure(conv_relu(), {"w_q": {"quantization_tag": NOTHING}})
    assert "w_q.quantization_tag\n    expected  nothing\n    planned   'conv.weight'" in msg
    assert "by rule get_attr_chain from 'conv_weight'" in msg


def test_none_is_a_value_not_absence():
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu", tag=None)  # present, value None
    b.annotate(relu, inputs={x: static()})
    b.output(relu)
    g = b.build()
    assert_ported(g, {"dq": {"quantization_tag": None, "stack_trace": NOTHING}})
    msg = failure(g, {"dq": {"quantization_tag": NOTHING}})
    assert "planned   None  by rule static_input" in msg
    msg = failure(g, {"dq": {"stack_trace": None}})
    assert "expected  None\n    planned   nothing" in msg


def test_values_compare_like_the_core_nan_and_tuples():
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu", tag=float("nan"), stack_trace=("a", 1))
    b.annotate(relu, inputs={x: static()})
    b.output(relu)
    assert_ported(b.build(), {"dq": {"quantization_tag": float("nan"), "stack_trace": ("a", 1)}})
    assert "expected  ['a', 1]" in failure(b.build(), {"dq": {"stack_trace": ["a", 1]}})


def test_keys_not_listed_are_not_checked_unless_strict():
    g = conv_relu()
    assert_ported(g, {"x_dq": {"quantization_tag": "conv_relu_0"}})
    msg = failure(g, {"x_dq": {"quantization_tag": "conv_relu_0"}}, strict=True)
    assert "x_dq.stack_trace\n    expected  no write (strict: not listed in expected)" in msg
    assert "w_q.quantization_tag\n    expected  no write (strict" in msg
    assert "assert_ported: 5 of 6 expectations failed" in msg


def test_strict_with_keys_pins_down_every_tag_and_ignores_other_keys():
    tags = {
        "x_dq": {"quantization_tag": "conv_relu_0"},
        "w_q": {"quantization_tag": "conv.weight"},
        "w_dq": {"quantization_tag": "conv_relu_0"},
        "out_q": {"quantization_tag": "conv_relu_0"},
    }
    assert_ported(conv_relu(), tags, strict=True, keys=["quantization_tag"])
    assert_ported(conv_relu(), {**EXPECTED, "w_dq": {**tags["w_dq"], "stack_trace": TRACE}})
    msg = failure(conv_relu(), EXPECTED, strict=True)
    assert msg.startswith("assert_ported: 1 of 9 expectations failed\n\nw_dq.stack_trace\n")
    less = {k: v for k, v in tags.items() if k != "w_dq"}
    msg = failure(conv_relu(), less, strict=True, keys=["quantization_tag"])
    assert "w_dq.quantization_tag\n    expected  no write" in msg and "stack_trace" not in msg
    # NOTHING on a node looks only at the keys in scope
    assert_ported(conv_relu(), {"w_q": NOTHING}, keys=["stack_trace"])
    with pytest.raises(TypeError, match="not the string"):
        assert_ported(conv_relu(), {}, keys="quantization_tag")


def test_an_unknown_node_is_named_with_suggestions():
    msg = failure(conv_relu(), {"x_dqq": {"quantization_tag": "conv_relu_0"}})
    assert "x_dqq\n    the graph has no node named 'x_dqq' (did you mean 'x_dq'" in msg


def test_a_key_the_profile_does_not_port_is_reported():
    msg = failure(conv_relu(), {"x_dq": {"tag": "conv_relu_0"}})
    assert "'tag' is not a key the profile 'torchao' ports" in msg
    assert "(it ports 'stack_trace', 'quantization_tag')" in msg


def test_overwrites_show_earlier_writes_and_the_diagnostics():
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    first = b.call("aten.relu.default", dq, name="first", tag="A")
    second = b.call("aten.sigmoid.default", dq, name="second", tag="B")
    b.annotate(first, inputs={x: static()})
    b.annotate(second, inputs={x: shared()})
    b.output(first, second)
    msg = failure(b.build(), {"dq": {"quantization_tag": "A"}})
    assert "    planned   'B'  by rule static_input from 'second'" in msg
    assert "(last of 2 writes; earlier:" in msg
    assert "'A' by rule static_input from 'first'" in msg
    assert "plan: profile 'torchao', 2 writes to 1 node, 1 diagnostic:" in msg
    assert re.search(r"    info overwrite at 'dq' \(static_input\): .*'A'.*'B'", msg)


def test_a_plan_alone_is_checked_and_shows_where_a_passed_on_value_came_from():
    d = portmeta.MetaDelta(
        "q_1",
        "quantization_tag",
        "T",
        "dq",
        "conv",
        portmeta.Rule.STATIC_OUTPUT,
        "dq",
        ("dq", "q_1"),
    )
    p = portmeta.Plan((d,), (), "v3:" + "0" * 64, portmeta.TORCHAO)
    assert_ported(p, {"q_1": {"quantization_tag": "T"}, "not_in_the_plan": NOTHING})
    msg = failure(p, {"q_1": {"quantization_tag": "S"}})
    assert (
        "planned   'T'  by rule static_output from 'dq' "
        "(annotated node 'dq'; path dq -> q_1, value first from 'conv')"
    ) in msg
    assert "why:" not in msg  # no graph to explain with


def test_long_values_are_cut_in_the_middle():
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu", stack_trace="a" * 1000 + "END")
    b.annotate(relu, inputs={x: static()})
    b.output(relu)
    msg = failure(b.build(), {"dq": {"stack_trace": "b"}})
    line = next(ln for ln in msg.splitlines() if ln.startswith("    planned"))
    assert "a...a" in line and "END'" in line and len(line) < 500


def test_a_graph_that_cannot_be_planned_raises_the_plan_error():
    b = GraphBuilder()
    x = b.placeholder("x")
    y = b.call("aten.linear.default", x, name="lin")
    b.annotate(y, inputs={x: dynamic()})
    b.output(y)
    with pytest.raises(NoChooseQParamsError):
        assert_ported(b.build(), {})


def test_profile_is_used_for_a_graph():
    g = conv_relu()
    mine = portmeta.TORCHAO.extend(keys=("custom",))
    with pytest.raises(portmeta.ProfileError):  # the builder recorded whatever meta it had
        assert_ported(portmeta.build_graph(portmeta.records(g), meta_keys=("x",)), {})
    assert assert_ported(g, EXPECTED, profile=mine).profile is mine


@pytest.mark.parametrize(
    ("expected", "match"),
    [
        ([("x_dq", {})], "expected must map node names"),
        ({1: NOTHING}, "must be node names"),
        ({"x_dq": "conv_relu_0"}, r"expected\['x_dq'\] must be a mapping of key -> value"),
        ({"x_dq": {1: "a"}}, "must map key names"),
    ],
)
def test_malformed_expectations_are_type_errors(expected, match):
    with pytest.raises(TypeError, match=match):
        assert_ported(conv_relu(), expected)


def test_only_plans_and_graphs_are_accepted():
    with pytest.raises(TypeError, match="takes a Plan or a snapshot graph, got dict"):
        assert_ported({}, {})


def test_nothing_is_a_singleton_that_survives_pickling():
    assert Nothing() is NOTHING
    assert pickle.loads(pickle.dumps(NOTHING)) is NOTHING
    assert repr(NOTHING) == "NOTHING" and not NOTHING
