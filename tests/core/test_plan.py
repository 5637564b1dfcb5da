"""Planning: read-after-write, last write wins, overwrite diagnostics, errors, options."""

from __future__ import annotations

import attrs
import pytest

import portmeta
from portmeta import (
    LEGACY_TORCH_AO,
    TORCHAO,
    OptionError,
    Plan,
    PlanError,
    ProfileError,
    Rule,
    Severity,
    Target,
    final_meta,
    plan,
)
from portmeta.errors import NoChooseQParamsError
from portmeta.testing import GraphBuilder, dynamic, static

from .helpers import QT, state, writes


def _chained_outputs():
    """relu's output q1 is itself annotated: q1 passes on what it received to q2, q2 to q3."""
    b = GraphBuilder()
    x = b.placeholder("x")
    r = b.call("aten.relu.default", x, name="relu", tag="R")
    q1 = b.call(QT, r, name="q1")
    q2 = b.call(QT, q1, name="q2")
    q3 = b.call(QT, q2, name="q3")
    b.annotate(r, output=static())
    b.annotate(q1, output=static())
    b.annotate(q2, output=static())
    b.output(q3)
    return b


def test_read_after_write_passes_on_what_a_node_received():
    p = plan(_chained_outputs().build())
    assert writes(p) == [
        ("q1", "quantization_tag", "R", "relu"),
        ("q2", "quantization_tag", "R", "q1"),
        ("q3", "quantization_tag", "R", "q2"),
    ]
    assert [(d.source, d.origin) for d in p.deltas] == [
        ("relu", "relu"),
        ("q1", "relu"),
        ("q2", "relu"),
    ]


def test_own_meta_of_a_source_is_read_when_nothing_was_written():
    b = _chained_outputs()
    b.set_meta("q1", tag="Q1", stack_trace="own.py:1")
    b.annotate("relu", output=None)
    p = plan(b.build())
    assert writes(p) == [
        ("q2", "stack_trace", "own.py:1", "q1"),
        ("q2", "quantization_tag", "Q1", "q1"),
        ("q3", "stack_trace", "own.py:1", "q2"),
        ("q3", "quantization_tag", "Q1", "q2"),
    ]
    assert {d.origin for d in p.deltas} == {"q1"}


def _shared_dq(tag1="A", tag2="B", dq_tag=None):
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x, dq_meta={} if dq_tag is None else {"quantization_tag": dq_tag})
    r1 = b.call("aten.relu.default", dq, name="r1", tag=tag1)
    r2 = b.call("aten.neg.default", dq, name="r2", tag=tag2)
    b.annotate(r1, inputs={x: static()})
    b.annotate(r2, inputs={x: static()})
    b.output(r1, r2)
    return b


def test_last_write_wins_with_an_overwrite_diagnostic():
    p = plan(_shared_dq().build())
    assert [d.value for d in p.writes_to("dq")] == ["A", "B"]
    assert p.final_state() == {"dq": {"quantization_tag": "B"}}
    (d,) = p.diagnostics
    assert (d.kind, d.severity, d.node, d.rule, d.related) == (
        "overwrite",
        Severity.INFO,
        "dq",
        Rule.STATIC_INPUT,
        ("r1", "r2"),
    )
    assert "'quantization_tag'" in d.message and "'A'" in d.message and "'B'" in d.message


def test_no_overwrite_diagnostic_for_an_equal_value():
    p = plan(_shared_dq("A", "A").build())
    assert len(p.deltas) == 2
    assert p.diagnostics == ()


def test_no_overwrite_diagnostic_when_replacing_recorded_meta():
    p = plan(_shared_dq("A", "A", dq_tag="own").build())
    assert p.final_state() == {"dq": {"quantization_tag": "A"}}
    assert p.diagnostics == ()
    assert final_meta(_shared_dq("A", "A", dq_tag="own").build(), p)["dq"] == {
        "quantization_tag": "A"
    }


def test_value_is_the_very_object_of_the_source():
    tag = ["conv", 0]
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    r = b.call("aten.relu.default", dq, name="relu", tag=tag)
    b.annotate(r, inputs={x: static()})
    b.output(r)
    p = plan(b.build())
    assert p.deltas[0].value is portmeta.record(b.build(), "relu").meta_dict()["quantization_tag"]


def test_absent_key_is_not_copied_none_and_empty_are():
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    _q2, dq2 = b.qdq(x)
    r = b.call("aten.add.Tensor", dq, dq2, name="add", stack_trace=None)
    b.annotate(r, inputs={x: static()})
    b.output(r)
    assert state(b) == {"dq": {"stack_trace": None}}
    b.set_meta(r, tag="")
    assert state(b) == {"dq": {"stack_trace": None, "quantization_tag": ""}}


def test_derived_profile_ports_extra_keys_in_profile_order():
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    r = b.call(
        "aten.relu.default",
        dq,
        name="relu",
        tag="T",
        meta={"custom": {"k": 1}, "nn_module_stack": {"m": ("mod", "M")}, "other": 5},
    )
    b.annotate(r, inputs={x: static()})
    b.output(r)
    mine = TORCHAO.extend(name="et", keys=("nn_module_stack", "custom"))
    p = plan(b.build(), mine)
    assert [(d.key, d.value) for d in p.deltas] == [
        ("quantization_tag", "T"),
        ("nn_module_stack", {"m": ("mod", "M")}),
        ("custom", {"k": 1}),
    ]
    assert plan(b.build()).final_state() == {"dq": {"quantization_tag": "T"}}
    assert all(d.key in mine.keys for d in p.deltas)


def test_profile_error_when_snapshot_lacks_a_profile_key():
    b = GraphBuilder()
    b.output(b.placeholder("x"))
    with pytest.raises(ProfileError, match=r"\['quantization_tag'\]"):
        plan(b.build(meta_keys=["stack_trace"]))
    g = b.build(meta_keys=["stack_trace", "quantization_tag"])
    assert plan(g).deltas == ()
    mine = TORCHAO.extend(keys=("nn_module_stack",))
    with pytest.raises(ProfileError, match="nn_module_stack"):
        plan(g, mine)
    assert plan(b.build(meta_keys=None), mine).deltas == ()


@pytest.mark.parametrize("errors", ["ignore", "RAISE", None])
def test_bad_errors_option(errors):
    b = GraphBuilder()
    b.output(b.placeholder("x"))
    with pytest.raises(OptionError, match="errors must be 'raise' or 'collect'") as info:
        plan(b.build(), errors=errors)
    assert isinstance(info.value, ValueError)


def test_invalid_annotation_is_skipped():
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    r = b.call("aten.relu.default", dq, name="relu", tag="T")
    b.annotate(r)  # no inputs, no output
    b.output(r)
    g = b.build()
    assert portmeta.annotated_nodes(g) == ("relu",)
    p = plan(g, LEGACY_TORCH_AO)
    assert (p.deltas, p.diagnostics) == ((), ())


def _collect_graph():
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    a = b.call("aten.relu.default", dq, name="a", tag="A")
    # b: a good static input first (writes dq), then a dynamic input that fails
    bb = b.call("aten.add.Tensor", dq, a, name="b", tag="B")
    # c after b: also reads the shared dq
    c = b.call("aten.neg.default", dq, name="c", tag="C")
    b.annotate(a, inputs={x: static()})
    b.annotate(bb, inputs={x: static(), a: dynamic()})
    b.annotate(c, inputs={x: static()})
    b.output(bb, c)
    return b.build()


def test_collect_drops_every_write_of_the_failing_node_and_goes_on():
    g = _collect_graph()
    p = plan(g, errors="collect")
    assert [(d.target, d.value, d.anchor) for d in p.deltas] == [
        ("dq", "A", "a"),
        ("dq", "C", "c"),
    ]
    kinds = [d.kind for d in p.diagnostics]
    assert kinds == ["error", "overwrite"]
    err = p.errors[0]
    assert (err.severity, err.node, err.error_class, err.related, err.rule) == (
        Severity.ERROR,
        "b",
        "NoChooseQParamsError",
        ("a",),
        None,
    )
    with pytest.raises(PlanError) as info:
        plan(g)
    assert err.message == str(info.value)
    # the overwrite is A -> C: b's rolled-back write B is not seen
    assert p.diagnostics[1].related == ("a", "c")


def test_raise_stops_at_the_first_failing_node():
    with pytest.raises(NoChooseQParamsError) as info:
        plan(_collect_graph())
    assert info.value.node == "b"


def test_plan_views_and_counts():
    g = _collect_graph()
    p = plan(g, errors="collect")
    assert p.fingerprint == portmeta.fingerprint(g)
    assert p.profile is TORCHAO
    assert [d.target for d in p.writes_from("c")] == ["dq"]
    assert p.writes_to("a") == ()
    counts = p.counts()
    assert counts == {
        "static_input": 2,
        "static_output": 0,
        "get_attr_chain": 0,
        "dynamic_input": 0,
        "diag:error": 1,
        "diag:overwrite": 1,
    }


def test_final_meta_overlays_recorded_meta():
    b = GraphBuilder()
    x = b.placeholder("x", stack_trace="in.py")
    _q, dq = b.qdq(x, dq_meta={"stack_trace": "dq.py", "other": 1})
    r = b.call("aten.relu.default", dq, name="relu", tag="T")
    b.annotate(r, inputs={x: static()})
    b.output(r)
    g = b.build()
    fm = final_meta(g, plan(g))
    assert list(fm) == ["x", "q", "dq", "relu", "output"]
    assert fm["dq"] == {"stack_trace": "dq.py", "other": 1, "quantization_tag": "T"}
    assert fm["x"] == {"stack_trace": "in.py"}
    assert fm["q"] == {}


def test_conv_relu_partition_end_to_end():
    b = GraphBuilder()
    x = b.placeholder("x")
    _xq, xdq = b.qdq(x)
    w = b.get_attr("conv_weight", tag="conv.weight")
    wq, wdq = b.qdq(w, per_channel=True)
    conv = b.call("aten.conv2d.default", xdq, wdq, name="conv", tag="conv_relu_0")
    relu = b.call("aten.relu.default", conv, name="relu", tag="conv_relu_0")
    oq, odq = b.qdq(relu)
    b.annotate(conv, inputs={x: static(), w: static()})
    b.annotate(relu, output=static())
    b.output(odq)
    g = b.build()
    for profile in (TORCHAO, LEGACY_TORCH_AO):
        p = plan(g, profile)
        assert p.final_state() == {
            xdq: {"quantization_tag": "conv_relu_0"},
            wq: {"quantization_tag": "conv.weight"},
            wdq: {"quantization_tag": "conv_relu_0"},
            oq: {"quantization_tag": "conv_relu_0"},
        }
        assert [d.rule for d in p.deltas] == [
            Rule.STATIC_INPUT,
            Rule.GET_ATTR_CHAIN,
            Rule.STATIC_INPUT,
            Rule.STATIC_OUTPUT,
        ]


def test_zero_user_output_differs_between_profiles():
    b = GraphBuilder()
    x = b.placeholder("x")
    r = b.call("aten.relu.default", x, name="relu", tag="T")
    b.annotate(r, output=static())
    b.output(x)
    g = b.build()
    assert plan(g).diagnostics == ()
    assert [d.error_class for d in plan(g, LEGACY_TORCH_AO, errors="collect").errors] == [
        "NoUserError"
    ]


def test_plan_is_a_frozen_value():
    b = GraphBuilder()
    b.output(b.placeholder("x"))
    p = plan(b.build())
    assert p == plan(b.build())
    assert isinstance(p, Plan)
    with pytest.raises(AttributeError):
        p.deltas = ()


def test_string_target_spelled_like_an_operator_is_not_a_quantize():
    b = GraphBuilder()
    x = b.placeholder("x")
    r = b.call("aten.relu.default", x, name="relu", tag="T")
    fake_q = b.call(Target.named(QT), r, name="fake_q")  # a name, not the operator
    b.annotate(r, output=static())
    b.output(fake_q)
    p = plan(b.build())
    assert p.deltas == ()
    assert [(d.kind, d.related) for d in p.diagnostics] == [("not_quantize", ("fake_q",))]
    b.annotate(fake_q, output=None)
    real = GraphBuilder()
    rx = real.placeholder("x")
    rr = real.call("aten.relu.default", rx, name="relu", tag="T")
    real.annotate(rr, output=static())
    real.output(real.call(QT, rr, name="q"))
    assert state(real) == {"q": {"quantization_tag": "T"}}


@pytest.mark.parametrize(
    ("error", "cls"),
    [("AttributeError", AttributeError), ("TypeError", TypeError)],
)
def test_malformed_annotation_raises_upstreams_builtin(error, cls):
    from portmeta import Annotation, Malformed, graph_from_dict, graph_to_dict
    from portmeta.errors import MalformedAnnotationError
    from portmeta.testing import GraphBuilder, static

    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    y = b.call("aten.relu.default", dq, name="y", tag="Y")
    z = b.call("aten.relu.default", y, name="z")
    b.output(z)
    b.annotate(y, inputs={x: static()})
    b.set_annotation(z, Annotation(malformed=Malformed(error, "cannot read it")))
    g = b.build()
    assert graph_from_dict(graph_to_dict(g)).nodes["z"]["record"] == g.nodes["z"]["record"]
    with pytest.raises(
        MalformedAnnotationError, match="annotation of node 'z' cannot be read"
    ) as info:
        plan(g)
    assert isinstance(info.value, cls)
    collected = plan(g, errors="collect")
    assert [d.target for d in collected.deltas] == ["dq"]  # y's writes survive
    assert [(d.node, d.error_class) for d in collected.errors] == [("z", f"Annotation{error}")]


def test_nodes_sharing_a_meta_dict_pass_on_each_others_writes():
    """``w.meta is dq.meta``: relu's write to dq is what w then gives its quantize."""
    from portmeta import final_meta, graph_from_dict, graph_to_dict
    from portmeta.testing import GraphBuilder, static

    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu", tag="T")
    w = b.get_attr("w", tag="W-own")
    wq, wdq = b.qdq(w)
    lin = b.call("aten.linear.default", relu, wdq, name="lin")
    b.output(lin)
    b.share_meta(w, dq)
    b.annotate(relu, inputs={x: static()})
    b.annotate(lin, inputs={w: static()})
    g = b.build()
    assert graph_from_dict(graph_to_dict(g)).nodes[w]["record"].meta_owner == dq
    p = plan(g)
    assert [(d.target, d.value, d.source) for d in p.deltas] == [
        (dq, "T", relu),
        (wq, "T", w),  # w reads the shared dict, which relu's write just filled
    ]
    final = final_meta(g, p)
    assert final[w] == final[dq] == {"quantization_tag": "T"}


def test_meta_owner_must_be_a_known_first_node():
    from portmeta import GraphBuildError, build_graph
    from portmeta.testing import GraphBuilder

    b = GraphBuilder()
    a = b.placeholder("a")
    c = b.placeholder("c")
    b.output(a, c)
    recs = b.records()
    with pytest.raises(GraphBuildError, match="'a' shares the meta of unknown node 'zz'"):
        build_graph([attrs.evolve(recs[0], meta_owner="zz"), *recs[1:]])
    chained = [
        recs[0],
        attrs.evolve(recs[1], meta_owner="a"),
        attrs.evolve(recs[2], meta_owner="c"),
    ]
    with pytest.raises(GraphBuildError, match="itself shares another node's meta"):
        build_graph(chained)
