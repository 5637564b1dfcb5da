"""Dynamic input rule: choose_qparams, q, dq <- consumer, and every way it fails."""

from __future__ import annotations

import pytest

from portmeta import (
    LEGACY_TORCH_AO,
    TORCHAO,
    GraphBuildError,
    PlanError,
    QInput,
    Rule,
    Target,
    UpstreamInternalError,
    plan,
)
from portmeta.errors import (
    ChooseQParamsUsersError,
    DynamicQuantUsersError,
    NoChooseQParamsError,
    NotANodeInputError,
    NoUserError,
    ScaleWithoutUsersError,
)
from portmeta.rules import find_choose_qparams
from portmeta.testing import GraphBuilder, dynamic, static

from .helpers import CQ, DQT, GETITEM, QT, foreign, state, writes


def _linear(**opts):
    b = GraphBuilder()
    x = b.placeholder("x")
    chain = b.dynamic_qdq(x, **opts)
    lin = b.call("aten.linear.default", chain.dq, name="lin", tag="L", stack_trace="m.py:9")
    b.annotate(lin, inputs={x: dynamic()})
    return b, x, chain, lin


def test_choose_qparams_q_and_dq_receive_the_consumer_meta_in_order():
    b, _x, _chain, lin = _linear()
    b.output(lin)
    p = plan(b.build())
    assert [(d.target, d.key) for d in p.deltas] == [
        ("choose_qparams", "stack_trace"),
        ("choose_qparams", "quantization_tag"),
        ("q", "stack_trace"),
        ("q", "quantization_tag"),
        ("dq", "stack_trace"),
        ("dq", "quantization_tag"),
    ]
    assert {d.value for d in p.deltas} == {"m.py:9", "L"}
    assert p.deltas[0].rule is Rule.DYNAMIC_INPUT
    assert p.deltas[0].path == ("x", "choose_qparams", "zero_point", "q", "dq")


def test_symmetric_choose_qparams_is_found():
    b, _x, _chain, lin = _linear(symmetric=True)
    b.output(lin)
    assert set(state(b)) == {"choose_qparams", "q", "dq"}


def _affine_chain(profile):
    b = GraphBuilder(profile)
    x = b.placeholder("x")
    cq = b.call(Target.packet("torchao.choose_qparams_affine"), x, name="cq")
    s = b.call(GETITEM, cq, 0, name="s")
    z = b.call(GETITEM, cq, 1, name="z")
    q = b.call(QT, x, s, z, name="q")
    dq = b.call(DQT, q, s, z, name="dq")
    lin = b.call("aten.linear.default", dq, name="lin", tag="L")
    b.annotate(lin, inputs={x: dynamic()})
    b.output(lin)
    return b


def test_affine_choose_qparams_packet_differs_between_profiles():
    assert state(_affine_chain(TORCHAO)) == {
        "cq": {"quantization_tag": "L"},
        "q": {"quantization_tag": "L"},
        "dq": {"quantization_tag": "L"},
    }
    with pytest.raises(NoChooseQParamsError):
        plan(_affine_chain(LEGACY_TORCH_AO).build(), LEGACY_TORCH_AO)


def test_no_choose_qparams_is_value_error_naming_the_node():
    b = GraphBuilder()
    x = b.placeholder("x")
    lin = b.call("aten.linear.default", x, name="lin")
    b.annotate(lin, inputs={x: dynamic()})
    b.output(lin)
    with pytest.raises(NoChooseQParamsError) as info:
        plan(b.build())
    assert isinstance(info.value, ValueError)
    assert (info.value.node, info.value.subject) == ("lin", "x")
    assert str(info.value) == (
        "no choose_qparams node is reachable from input 'x' of dynamically quantized node 'lin'"
    )


def test_dynamic_key_that_is_not_a_node_raises_attribute_error():
    b, x, _chain, lin = _linear()
    b.output(lin)
    b.annotate(lin, inputs=[QInput(repr(x), dynamic(), is_node=False)])
    with pytest.raises(
        NotANodeInputError, match="key 'x' of dynamically quantized node 'lin'"
    ) as info:
        plan(b.build())
    assert isinstance(info.value, AttributeError) and not isinstance(info.value, ValueError)
    # statically it connects to nothing: no writes, no error
    b.annotate(lin, inputs=[QInput(repr(x), static(), is_node=False)])
    assert plan(b.build()).deltas == ()


def test_stale_dynamic_input_raises_no_choose_qparams():
    b, _x, _chain, lin = _linear()
    b.output(lin)
    ghost = foreign(b)  # an erased node the annotation still names
    b.annotate(lin, inputs={ghost: dynamic()}, check_inputs=False)
    with pytest.raises(NoChooseQParamsError, match="input 'ghost@0'"):
        plan(b.build())


def test_an_annotation_input_that_is_no_node_of_the_snapshot_is_refused():
    b, _x, _chain, lin = _linear()
    b.output(lin)
    b.annotate(lin, inputs={"ghost": dynamic()}, check_inputs=False)
    with pytest.raises(
        GraphBuildError, match="node 'lin': annotation input 'ghost' is not a node of the graph"
    ):
        b.build()


def test_scale_is_the_last_user_and_q_the_first_user_of_it():
    b, _x, chain, lin = _linear()
    b.output(lin)
    # default users of choose_qparams: [scale, zero_point] -> "scale" is zero_point;
    # zero_point's users are [q, dq]; reversing them makes dq "the q" and lin "the dq"
    b.reorder_users(chain.zero_point, [chain.dq, chain.q])
    p = plan(b.build())
    assert list(p.final_state()) == ["choose_qparams", "dq", "lin"]
    assert p.deltas[0].path == ("x", "choose_qparams", "zero_point", "dq", "lin")


def test_scale_pick_follows_reordered_choose_qparams_users():
    b, _x, chain, lin = _linear()
    b.output(lin)
    b.reorder_users(chain.choose_qparams, [chain.zero_point, chain.scale])
    b.reorder_users(chain.scale, [chain.dq, chain.q])
    assert list(state(b)) == ["choose_qparams", "dq", "lin"]
    b.reorder_users(chain.scale, [chain.q, chain.dq])
    assert list(state(b)) == ["choose_qparams", "q", "dq"]


def test_dynamic_dq_can_be_the_output_node():
    b = GraphBuilder()
    x = b.placeholder("x")
    cq = b.call(CQ, x, name="cq")
    s = b.call(GETITEM, cq, 0, name="s")
    z = b.call(GETITEM, cq, 1, name="z")
    q = b.call(QT, x, s, z, name="q")
    lin = b.call("aten.linear.default", x, name="lin", tag="L")
    b.annotate(lin, inputs={x: dynamic()})
    b.output(lin, q)
    p = plan(b.build())
    assert p.final_state() == {
        "cq": {"quantization_tag": "L"},
        "q": {"quantization_tag": "L"},
        "output": {"quantization_tag": "L"},
    }


def test_dynamic_q_with_two_users_is_internal_error():
    b = GraphBuilder()
    x = b.placeholder("x")
    chain = b.dynamic_qdq(x)
    lin = b.call("aten.linear.default", chain.dq, name="lin", tag="L")
    b.annotate(lin, inputs={x: dynamic()})
    b.output(lin, chain.q)  # q has two users: dq, output
    with pytest.raises(DynamicQuantUsersError, match="found 2"):
        plan(b.build())


def test_choose_qparams_with_three_users_is_internal_error():
    b, _x, chain, lin = _linear()
    extra = b.call(GETITEM, chain.choose_qparams, 2, name="extra")
    b.output(lin, extra)
    with pytest.raises(ChooseQParamsUsersError) as info:
        plan(b.build())
    assert isinstance(info.value, UpstreamInternalError)
    assert not isinstance(info.value, ValueError)
    assert (info.value.node, info.value.subject) == ("lin", "choose_qparams")
    assert "found 3" in str(info.value) and "'choose_qparams'" in str(info.value)


@pytest.mark.parametrize(
    ("op", "node_op", "filtered"),
    [
        ("aten.sym_size.default", "call_function", True),
        ("aten.sym_size.default", "call_method", False),
        ("aten.sym_numel.default", "call_method", True),
        (Target.packet("aten.sym_numel"), "call_module", True),
        (Target.packet("aten.sym_size"), "call_method", True),
        ("aten.sym_size.int", "call_function", False),
    ],
    ids=[
        "sym_size.default-call_function",
        "sym_size.default-call_method",
        "sym_numel.default-any-op",
        "sym_numel-packet-any-op",
        "sym_size-packet-any-op",
        "sym_size.int-not-filtered",
    ],
)
def test_sym_size_users_of_choose_qparams(op, node_op, filtered):
    b, _x, chain, lin = _linear()
    s = b.add(node_op, op, (b._ref(chain.choose_qparams), 0), name="sym")
    b.output(lin, s)
    if filtered:
        assert set(state(b)) == {"choose_qparams", "q", "dq"}
    else:
        with pytest.raises(ChooseQParamsUsersError, match="found 3"):
            plan(b.build())


def test_sym_size_user_of_the_dynamic_q_is_filtered_but_sym_size_int_is_not():
    b, _x, chain, lin = _linear()
    s = b.sym_size(chain.q, op="aten.sym_size.default", name="s")
    b.output(lin, s)
    assert set(state(b)) == {"choose_qparams", "q", "dq"}
    b2, _x2, chain2, lin2 = _linear()
    s2 = b2.sym_size(chain2.q, name="s")  # aten.sym_size.int
    b2.output(lin2, s2)
    with pytest.raises(DynamicQuantUsersError) as info:
        plan(b2.build())
    assert isinstance(info.value, UpstreamInternalError)
    assert (info.value.node, info.value.subject) == ("lin", "q")
    assert "found 2" in str(info.value)


def test_dynamic_q_with_only_sym_size_users_is_no_user_error():
    b = GraphBuilder()
    x = b.placeholder("x")
    cq = b.call(CQ, x, name="cq")
    s = b.call(GETITEM, cq, 0, name="s")
    z = b.call(GETITEM, cq, 1, name="z")
    q = b.call(QT, x, s, z, name="q")
    size = b.sym_size(q, op="aten.sym_size.default", name="size")
    lin = b.call("aten.linear.default", x, size, name="lin")
    b.annotate(lin, inputs={x: dynamic()})
    b.output(lin)
    with pytest.raises(NoUserError) as info:
        plan(b.build())
    assert isinstance(info.value, IndexError)
    assert (info.value.node, info.value.subject) == ("lin", "q")


def _scale_without_users():
    b = GraphBuilder()
    x = b.placeholder("x")
    cq = b.call(CQ, x, name="cq")
    s0 = b.call(GETITEM, cq, 0, name="s0")
    b.call(GETITEM, cq, 1, name="s1")  # the last user: no users of its own
    q = b.call(QT, x, s0, name="q")
    dq = b.call(DQT, q, s0, name="dq")
    lin = b.call("aten.linear.default", dq, name="lin", tag="L")
    b.annotate(lin, inputs={x: dynamic()})
    b.output(lin)
    return b.build()


def test_scale_without_users_rule_raises_stop_iteration_subclass():
    from portmeta.rules import dynamic_input

    with pytest.raises(ScaleWithoutUsersError) as info:
        dynamic_input(_scale_without_users(), TORCHAO, "lin", "x")
    assert isinstance(info.value, StopIteration)
    assert (info.value.node, info.value.subject) == ("lin", "s1")


def test_plan_raises_scale_without_users_error():
    with pytest.raises(ScaleWithoutUsersError) as info:
        plan(_scale_without_users())
    assert isinstance(info.value, StopIteration)


def test_collect_records_scale_without_users_error():
    p = plan(_scale_without_users(), errors="collect")
    assert [(d.kind, d.error_class) for d in p.diagnostics] == [("error", "ScaleWithoutUsersError")]


def test_bfs_skips_output_nodes_even_with_a_choose_qparams_target():
    b, x, chain, lin = _linear()
    fake = b.add("output", CQ, (b._ref(x),), name="fake_out")
    b.reorder_users(x, [fake, chain.choose_qparams, chain.q])
    b.output(lin)
    g = b.build()
    assert find_choose_qparams(g, TORCHAO, x) == ("x", "choose_qparams")


def test_bfs_does_not_expand_output_nodes():
    b = GraphBuilder()
    x = b.placeholder("x")
    fake = b.add("output", "output", (b._ref(x),), name="fake_out")  # an output with a user
    behind_output = b.dynamic_qdq(fake)  # reachable only through the output node
    relu = b.call("aten.relu.default", x, name="relu")
    behind_relu = b.dynamic_qdq(relu)
    lin = b.call("aten.linear.default", behind_relu.dq, behind_output.dq, name="lin", tag="L")
    b.annotate(lin, inputs={x: dynamic()}, check_inputs=False)  # found through relu
    b.output(lin)
    g = b.build()
    assert find_choose_qparams(g, TORCHAO, x) == ("x", "relu", behind_relu.choose_qparams)
    assert list(plan(g).final_state()) == [
        behind_relu.choose_qparams,
        behind_relu.q,
        behind_relu.dq,
    ]


def test_bfs_finds_the_shallowest_choose_qparams_first():
    b = GraphBuilder()
    x = b.placeholder("x")
    relu = b.call("aten.relu.default", x, name="relu")
    deep = b.dynamic_qdq(relu)  # choose_qparams at depth 2 through the first user
    near = b.dynamic_qdq(x)  # choose_qparams_1 at depth 1 through a later user
    lin = b.call("aten.linear.default", near.dq, deep.dq, name="lin", tag="L")
    b.annotate(lin, inputs={x: dynamic()})
    b.output(lin)
    g = b.build()
    assert find_choose_qparams(g, TORCHAO, x) == ("x", near.choose_qparams)
    assert list(plan(g).final_state()) == [near.choose_qparams, near.q, near.dq]


def test_bfs_at_equal_depth_follows_users_order():
    b = GraphBuilder()
    x = b.placeholder("x")
    first = b.dynamic_qdq(x)
    second = b.dynamic_qdq(x)
    lin = b.call("aten.linear.default", first.dq, second.dq, name="lin", tag="L")
    b.annotate(lin, inputs={x: dynamic()})
    b.output(lin)
    assert find_choose_qparams(b.build(), TORCHAO, x) == ("x", first.choose_qparams)
    b.reorder_users(x, [second.choose_qparams, first.choose_qparams, first.q, second.q])
    assert find_choose_qparams(b.build(), TORCHAO, x) == ("x", second.choose_qparams)


def test_bfs_on_a_deep_diamond_lattice_completes():
    depth = 60  # a BFS without a visited set would queue 2**60 paths
    b = GraphBuilder()
    x = b.placeholder("x")
    left, right = x, x
    for i in range(depth):
        a = b.call("aten.add.Tensor", left, right, name=f"a{i}")
        m = b.call("aten.mul.Tensor", left, right, name=f"m{i}")
        left, right = a, m
    top = b.call("aten.add.Tensor", left, right, name="top")
    chain = b.dynamic_qdq(top)
    lin = b.call("aten.linear.default", chain.dq, name="lin", tag="L")
    b.annotate(lin, inputs={x: dynamic()}, check_inputs=False)  # x is far above
    b.output(lin)
    g = b.build()
    path = find_choose_qparams(g, TORCHAO, x)
    assert path is not None and path[-1] == chain.choose_qparams
    assert len(path) == depth + 3
    assert set(plan(g).final_state()) == {chain.choose_qparams, chain.q, chain.dq}


def test_dynamic_errors_are_plan_errors_with_upstream_classes():
    assert NoChooseQParamsError.upstream_class == "ValueError"
    assert ChooseQParamsUsersError.upstream_class == "InternalError"
    assert DynamicQuantUsersError.upstream_class == "InternalError"
    assert ScaleWithoutUsersError.upstream_class == "StopIteration"
    assert NoUserError.upstream_class == "IndexError"
    for cls in (NoChooseQParamsError, ChooseQParamsUsersError, ScaleWithoutUsersError):
        assert issubclass(cls, PlanError)


def test_dynamic_writes_are_from_the_consumer_even_through_writes():
    b, _x, _chain, lin = _linear()
    b.output(lin)
    assert writes(plan(b.build()))[-1] == ("dq", "quantization_tag", "L", "lin")
