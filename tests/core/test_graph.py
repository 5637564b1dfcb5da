"""build_graph validation, the frozen snapshot, users order, annotated index, fingerprint."""

from __future__ import annotations

import attrs
import networkx as nx
import pytest
from hypothesis import given, settings

import portmeta
from portmeta import GraphBuildError, NodeRecord, NodeRef, Target, build_graph
from portmeta.testing import GraphBuilder, static
from portmeta.testing.strategies import graphs

from .helpers import DQ, Q


def _x_out(**out_kwargs):
    x = NodeRecord("x", "placeholder", Target.named("x"), users=("out",))
    out = NodeRecord("out", "output", Target.named("output"), args=((NodeRef("x"),),), **out_kwargs)
    return x, out


def test_valid_records_build_a_frozen_graph():
    g = build_graph(_x_out())
    assert list(g.nodes) == ["x", "out"]
    assert nx.is_frozen(g)
    with pytest.raises(nx.NetworkXError):
        g.add_node("y")
    assert portmeta.record(g, "x").op == "placeholder"
    assert [r.name for r in portmeta.records(g)] == ["x", "out"]


def test_duplicate_name_is_rejected():
    x, out = _x_out()
    with pytest.raises(GraphBuildError, match="duplicate node name 'x'"):
        build_graph([x, x, out])


def test_reference_to_unknown_node_is_rejected():
    x, _ = _x_out()
    out = NodeRecord("out", "output", Target.named("output"), args=((NodeRef("ghost"),),))
    with pytest.raises(GraphBuildError, match="node 'out' refers to unknown node 'ghost'"):
        build_graph([x, out])


def test_unknown_user_is_rejected():
    x = NodeRecord("x", "placeholder", Target.named("x"), users=("y",))
    with pytest.raises(GraphBuildError, match="node 'x' lists unknown user 'y'"):
        build_graph([x])


def test_users_disagreeing_with_args_are_rejected():
    x = NodeRecord("x", "placeholder", Target.named("x"), users=())
    out = NodeRecord("out", "output", Target.named("output"), args=((NodeRef("x"),),))
    with pytest.raises(GraphBuildError, match="users of node 'x' disagree"):
        build_graph([x, out])


def test_user_listed_twice_is_rejected():
    x = NodeRecord("x", "placeholder", Target.named("x"), users=("out", "out"))
    out = NodeRecord("out", "output", Target.named("output"), args=((NodeRef("x"),),))
    with pytest.raises(GraphBuildError, match="lists a user twice"):
        build_graph([x, out])


def test_cycle_is_rejected():
    a = NodeRecord(
        "a", "call_function", Target.overload("aten.relu.default"), (NodeRef("b"),), users=("b",)
    )
    b = NodeRecord(
        "b", "call_function", Target.overload("aten.relu.default"), (NodeRef("a"),), users=("a",)
    )
    with pytest.raises(GraphBuildError, match="cycle"):
        build_graph([a, b])


def test_non_record_is_rejected():
    with pytest.raises(GraphBuildError, match="expected NodeRecord, got dict"):
        build_graph([{"name": "x"}])


def test_users_order_is_the_records_order_not_graph_order():
    b = GraphBuilder()
    x = b.placeholder("x")
    r1 = b.call("aten.relu.default", x, name="r1")
    r2 = b.call("aten.relu.default", x, name="r2")
    b.output(r1, r2)
    assert portmeta.users(b.build(), x) == ("r1", "r2")
    b.reorder_users(x, [r2, r1])
    g = b.build()
    assert portmeta.users(g, x) == ("r2", "r1")
    assert list(g.successors(x)) == ["r2", "r1"]
    assert portmeta.users(g, "nope") == ()


def test_reorder_users_must_be_a_permutation():
    b = GraphBuilder()
    x = b.placeholder("x")
    b.call("aten.relu.default", x, name="r1")
    with pytest.raises(GraphBuildError, match="permutation"):
        b.reorder_users(x, ["r1", "r1"])


def test_builder_makes_names_unique_and_refuses_unknown_refs():
    b = GraphBuilder()
    x = b.placeholder("x")
    assert b.qdq(x) == ("q", "dq")
    assert b.qdq(x) == ("q_1", "dq_1")
    assert b.call("aten.relu.default", x) == "relu"
    with pytest.raises(GraphBuildError, match="unknown node 'ghost'"):
        b.add("call_function", "aten.relu.default", (NodeRef("ghost"),))


def test_annotated_index_in_graph_order():
    b = GraphBuilder()
    x = b.placeholder("x")
    r2 = b.call("aten.relu.default", x, name="late")
    r1 = b.call("aten.relu.default", r2, name="early")
    b.annotate(r1, output=static())
    b.annotate(r2, inputs={x: static()})
    b.output(r1)
    assert portmeta.annotated_nodes(b.build()) == ("late", "early")


def _recipe(tag="T", order=None, meta_keys=None, kind="overload", with_annotation=True):
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    r = b.call(Target("aten.relu.default", kind), dq, name="relu", tag=tag)
    r2 = b.call("aten.neg.default", dq, name="neg")
    if with_annotation:
        b.annotate(r, inputs={x: static()})
    if order:
        b.reorder_users(dq, order)
    b.output(r, r2)
    return b.build(meta_keys=meta_keys)


def test_fingerprint_is_stable_across_rebuilds():
    fp = portmeta.fingerprint(_recipe())
    assert fp == portmeta.fingerprint(_recipe())
    assert fp.startswith("v2:") and len(fp) == 67
    assert int(fp[3:], 16) >= 0


def test_fingerprints_of_both_schemes_are_pinned():
    # a change of either value breaks every plan saved with that scheme: the v2 value is what
    # this version computes, the v1 value what portmeta computed before v2 (8365d90)
    from portmeta.graph import fingerprint_v1

    g = _recipe()
    assert portmeta.fingerprint(g) == (
        "v2:a7e755f78af683246c926b911bb7c24c8ec01e504360bcc097be02a24267c2ad"
    )
    assert fingerprint_v1(g) == "88cc28bbe404f6dd10cedf6d5eddb639d19c2bf9d4c850b158144842c09a4796"


@pytest.mark.parametrize(
    "changed",
    [
        {"tag": "U"},
        {"tag": None},
        {"order": ["neg", "relu"]},
        {"meta_keys": ["stack_trace", "quantization_tag"]},
        {"kind": "packet"},
        {"with_annotation": False},
    ],
    ids=["meta-value", "meta-none", "users-order", "meta-keys", "target-kind", "annotation"],
)
def test_fingerprint_is_sensitive(changed):
    assert portmeta.fingerprint(_recipe(**changed)) != portmeta.fingerprint(_recipe())


def test_meta_keys_recorded_on_the_graph():
    from portmeta.graph import meta_keys

    assert meta_keys(_recipe()) is None
    assert meta_keys(_recipe(meta_keys=["stack_trace", "quantization_tag"])) == (
        "stack_trace",
        "quantization_tag",
    )


def test_quantize_helper_targets_are_the_profile_overloads():
    b = GraphBuilder()
    q, dq = b.qdq(b.placeholder("x"))
    b.output(dq)
    g = b.build()
    assert portmeta.record(g, q).target == Target.overload(Q)
    assert portmeta.record(g, dq).target == Target.overload(DQ)


def test_foreign_records_are_kept_but_never_annotated_nodes():
    from portmeta import graph_from_dict, graph_to_dict, plan
    from portmeta.testing import GraphBuilder, dynamic, static

    b = GraphBuilder()
    x = b.placeholder("x")
    lin = b.call("aten.relu.default", x, name="lin", tag="LIN")
    b.output(lin)
    # a node of another graph that an annotation names, with its own dynamic chain
    w = b.add("placeholder", "x", name="x@0", foreign=True)
    chain = b.dynamic_qdq(w)
    b.annotate(chain.dq, inputs={w: static()})  # annotations of foreign nodes are never visited
    b.set_meta(chain.dq, tag="FOREIGN")
    b.annotate(lin, inputs={w: dynamic()}, check_inputs=False)  # a stale annotation
    foreign = {w, chain.choose_qparams, chain.scale, chain.zero_point, chain.q, chain.dq}
    g = build_graph(
        [attrs.evolve(r, foreign=r.name in foreign) for r in b.records()],
        meta_keys=None,
    )
    assert g.graph["annotated"] == ("lin",)
    assert [n for n in g.nodes if g.nodes[n]["record"].foreign] == [
        "x@0",
        "choose_qparams",
        "scale",
        "zero_point",
        "q",
        "dq",
    ]
    data = graph_to_dict(g)
    assert [n.get("foreign", False) for n in data["nodes"]][-6:] == [True] * 6
    assert "foreign" not in data["nodes"][0]
    again = graph_from_dict(data)
    assert list(again.nodes(data="record")) == list(g.nodes(data="record"))
    p = plan(g)
    assert [(d.target, d.value) for d in p.deltas] == [
        ("choose_qparams", "LIN"),
        ("q", "LIN"),
        ("dq", "LIN"),
    ]


def test_foreign_field_must_be_boolean():
    import pytest

    from portmeta import GraphFormatError, graph_from_dict, graph_to_dict
    from portmeta.testing import GraphBuilder

    b = GraphBuilder()
    b.output(b.placeholder("x"))
    data = graph_to_dict(b.build())
    data["nodes"][0]["foreign"] = "yes"
    with pytest.raises(GraphFormatError, match="'foreign' must be a boolean"):
        graph_from_dict(data, source="g.json")


def test_cycles_are_refused_unless_allowed_and_walks_stop_on_them():
    from portmeta import CyclicWalkError, plan

    b = GraphBuilder()
    x = b.placeholder("x")
    q, dq = b.qdq(x)
    y = b.call("aten.relu.default", dq, name="y", tag="Y")
    b.output(y)
    b.annotate(y, inputs={x: static()})
    recs = {r.name: r for r in b.records()}
    # q reads dq instead of x: q <-> dq
    recs[q] = attrs.evolve(recs[q], args=(NodeRef(dq), *recs[q].args[1:]))
    recs[x] = attrs.evolve(recs[x], users=())
    recs[dq] = attrs.evolve(recs[dq], users=(y, q))
    with pytest.raises(GraphBuildError, match="cycle"):
        build_graph(recs.values())
    g = build_graph(recs.values(), allow_cycles=True)
    with pytest.raises(CyclicWalkError, match="came back to node 'dq'") as info:
        plan(g)
    assert isinstance(info.value, RuntimeError) and info.value.node == "y"


def _check_outcome(check, recs):
    try:
        return ("ok", check(list(recs)))
    except GraphBuildError as exc:
        return ("error", str(exc))


def _layout(g):
    """Everything of a snapshot's networkx dicts, in their orders."""
    return (
        list(g._node.items()),
        [(u, list(d)) for u, d in g._succ.items()],
        [(u, list(d)) for u, d in g._pred.items()],
        g.graph,
    )


def test_in_order_assembly_agrees_with_the_careful_check():
    from portmeta.graph import _assemble, _assemble_in_order, _check_records_carefully

    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    a = b.call("aten.relu.default", dq, name="a")
    c = b.call("aten.add.Tensor", a, dq, name="c")
    d = b.call("aten.mul.Tensor", c, c, name="d")  # one reference twice
    b.output(d)
    recs = list(portmeta.records(b.build()))
    by_name = {r.name: r for r in recs}
    swapped_users = attrs.evolve(by_name["dq"], users=tuple(reversed(by_name["dq"].users)))
    cases = {
        "in order": recs,
        "reversed": list(reversed(recs)),
        "users in another order": [swapped_users if r.name == "dq" else r for r in recs],
        "a user missing": [
            attrs.evolve(r, users=r.users[:1]) if r.name == "dq" else r for r in recs
        ],
        "a user twice": [
            attrs.evolve(r, users=(*r.users, r.users[0])) if r.name == "dq" else r for r in recs
        ],
        "an earlier user": [attrs.evolve(r, users=("x",)) if r.name == "d" else r for r in recs],
        "a reference to a later node": [
            attrs.evolve(r, args=(NodeRef("d"),)) if r.name == "a" else r for r in recs
        ],
        "an extra user of a node referenced twice": [
            attrs.evolve(r, users=(*r.users, "d")) if r.name == "dq" else r for r in recs
        ],
        "duplicate": [*recs, recs[0]],
        "not a record": [*recs, "x"],
        "shared meta": [attrs.evolve(r, meta_owner="x") if r.name == "a" else r for r in recs],
        "shared meta of a later node": [
            attrs.evolve(r, meta_owner="d") if r.name == "a" else r for r in recs
        ],
        "shared meta of itself": [
            attrs.evolve(r, meta_owner="a") if r.name == "a" else r for r in recs
        ],
        "shared meta of a sharer": [
            attrs.evolve(r, meta_owner="a" if r.name == "c" else "x") if r.name in ("a", "c") else r
            for r in recs
        ],
    }
    for label, case in cases.items():
        careful = _check_outcome(_check_records_carefully, case)
        fast = _assemble_in_order(list(case), None)
        if careful[0] == "error":
            assert fast is None, label
        elif fast is not None:  # the same snapshot as assembled after the careful check
            assert _layout(fast) == _layout(_assemble(list(case), None)), label
    # only records in order (no cycle possible) are assembled there; the rest go to networkx
    assert _assemble_in_order(recs, None) is not None
    assert _assemble_in_order(list(reversed(recs)), None) is None
    assert build_graph(reversed(recs)).number_of_nodes() == len(recs)


@settings(max_examples=40)
@given(graphs(max_blocks=6))
def test_in_order_assembly_equals_the_careful_path_on_random_graphs(g):
    from portmeta.graph import _assemble, _assemble_in_order

    recs = list(portmeta.records(g))
    fast = _assemble_in_order(recs, None)
    assert fast is not None
    assert _layout(fast) == _layout(_assemble(recs, None))
