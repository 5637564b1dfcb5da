"""build_graph validation, the frozen snapshot, users order, annotated index, fingerprint."""

from __future__ import annotations

import hashlib
import json

import attrs
import networkx as nx
import pytest

import portmeta
from portmeta import Annotation, GraphBuildError, NodeRecord, NodeRef, QInput, Target, build_graph
from portmeta.errors import CyclicWalkError
from portmeta.snapshot import meta_keys
from portmeta.testing import GraphBuilder, static

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


def test_a_raw_record_with_a_dict_meta_is_rejected_pointing_to_the_factory():
    x = NodeRecord("x", "placeholder", Target.named("x"), meta={"quantization_tag": "T"})
    assert x.meta == {"quantization_tag": "T"}  # the constructor stores what it is given
    with pytest.raises(GraphBuildError) as info:
        build_graph([x])
    assert str(info.value) == (
        "node 'x': meta must be a tuple of (key, value) pairs, each key once, got {'quantization_tag': 'T'}; "
        "build records with NodeRecord.of(...)"
    )
    kwargs = NodeRecord("x", "placeholder", Target.named("x"), kwargs={"dim": 1})
    with pytest.raises(
        GraphBuildError, match=r"node 'x': kwargs must be a tuple of .*NodeRecord\.of"
    ):
        build_graph([kwargs])
    # the factory makes the same record valid
    g = build_graph(
        [NodeRecord.of("x", "placeholder", Target.named("x"), meta={"quantization_tag": "T"})]
    )
    assert portmeta.record(g, "x").meta == (("quantization_tag", "T"),)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"args": [NodeRef("x")]}, "node 'y': args must be a tuple, got [NodeRef(name='x')]"),
        ({"users": ["out"]}, "node 'y': users must be a tuple of node names, got ['out']"),
        (
            {"target": "aten.relu.default"},
            "node 'y': target must be a Target, got 'aten.relu.default'",
        ),
        ({"op": ""}, "node 'y': op must not be empty"),
        ({"foreign": 1}, "node 'y': foreign must be True or False, got 1"),
        ({"meta_owner": 3}, "node 'y': meta_owner must be a node name or None, got 3"),
        (
            {"annotation": {"x": None}},
            "node 'y': an annotation must be an Annotation or None, got {'x': None}",
        ),
        (
            {"annotation": Annotation({"x": None})},
            "node 'y': an annotation's inputs must be a tuple, got {'x': None}",
        ),
    ],
    ids=[
        "args-list",
        "users-list",
        "target-str",
        "op-empty",
        "foreign-int",
        "owner-int",
        "annotation-dict",
        "annotation-inputs-dict",
    ],
)
def test_build_graph_checks_every_records_field_types(change, problem):
    x = NodeRecord.of("x", "placeholder", Target.named("x"), users=["y"])
    y = NodeRecord.of(
        "y", "call_function", Target.overload("aten.relu.default"), args=[NodeRef("x")]
    )
    with pytest.raises(GraphBuildError) as info:
        build_graph([x, attrs.evolve(y, **change)])
    assert str(info.value) == problem


def test_an_annotation_input_that_is_no_node_of_the_graph_is_rejected():
    x = NodeRecord.of("x", "placeholder", Target.named("x"), users=["y"])

    def y(inputs):
        return NodeRecord.of(
            "y",
            "call_function",
            Target.overload("aten.relu.default"),
            args=[NodeRef("x")],
            annotation=Annotation.of(inputs),
        )

    with pytest.raises(GraphBuildError) as info:
        build_graph([x, y({"x": static(), "ghost": static()})])
    assert str(info.value) == (
        "node 'y': annotation input 'ghost' is not a node of the graph; name one of its nodes "
        "(a node of another graph is recorded as a foreign node)"
    )
    # a key that is no FX node (is_node=False) needs no node; a node of another graph is
    # recorded as a foreign node, one of the snapshot's nodes
    assert build_graph([x, y([QInput("x", static()), QInput("ghost", static(), False)])])
    ghost = NodeRecord.of("ghost", "placeholder", Target.named("ghost"), foreign=True)
    g = build_graph([x, y({"x": static(), "ghost": static()}), ghost])
    assert portmeta.annotated_nodes(g) == ("y",)
    # check=False trusts its producer (from_fx): not checked there
    assert len(build_graph([x, y({"ghost": static()})], check=False)) == 2


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
    r = b.call(Target.of("aten.relu.default", kind), dq, name="relu", tag=tag)
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
    assert fp.startswith("v3:") and len(fp) == 67
    assert int(fp[3:], 16) >= 0


def test_the_fingerprint_is_pinned_and_is_the_sha256_of_the_compact_json_form():
    # a change of the value breaks every plan saved with scheme v3
    g = _recipe()
    assert portmeta.fingerprint(g) == (
        "v3:80bbd32761658a1cfff9812e7e910c3213f2d1a897905705b61d6861dcc3cb96"
    )
    text = json.dumps(portmeta.graph_to_dict(g), separators=(",", ":"), ensure_ascii=True)
    assert portmeta.fingerprint(g) == "v3:" + hashlib.sha256(text.encode()).hexdigest()


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
    from portmeta import plan

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


def _layout(g):
    """Everything of a snapshot's networkx dicts, in their orders."""
    return (
        list(g.nodes(data=True)),
        [(u, list(g.succ[u])) for u in g],
        [(u, list(g.pred[u])) for u in g],
        g.graph,
    )


def _networkx_built(recs):
    """The snapshot of valid ``recs`` as networkx builds it from nodes and users."""
    ref = nx.DiGraph()
    ref.add_nodes_from((r.name, {"record": r}) for r in recs)
    ref.add_edges_from((r.name, u) for r in recs for u in r.users)
    ref.graph.update(annotated=(), meta_keys=None)
    return ref


def test_build_graph_refuses_bad_records_or_assembles_them_as_networkx_does():
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
    ok = None
    cases = {
        "in order": (recs, ok),
        "reversed": (list(reversed(recs)), ok),
        "users in another order": ([swapped_users if r.name == "dq" else r for r in recs], ok),
        "a user missing": (
            [attrs.evolve(r, users=r.users[:1]) if r.name == "dq" else r for r in recs],
            "users of node 'dq' disagree with the arguments that reference it: "
            "users ['a'], referenced by ['a', 'c']",
        ),
        "a user twice": (
            [attrs.evolve(r, users=(*r.users, r.users[0])) if r.name == "dq" else r for r in recs],
            "node 'dq' lists a user twice: ['a', 'c', 'a']",
        ),
        "an earlier user": (
            [attrs.evolve(r, users=("x",)) if r.name == "d" else r for r in recs],
            "users of node 'd' disagree with the arguments that reference it: "
            "users ['x'], referenced by ['output']",
        ),
        "a reference to a later node": (
            [attrs.evolve(r, args=(NodeRef("d"),)) if r.name == "a" else r for r in recs],
            "users of node 'dq' disagree with the arguments that reference it: "
            "users ['a', 'c'], referenced by ['c']",
        ),
        "an extra user of a node referenced twice": (
            [attrs.evolve(r, users=(*r.users, "d")) if r.name == "dq" else r for r in recs],
            "users of node 'dq' disagree with the arguments that reference it: "
            "users ['a', 'c', 'd'], referenced by ['a', 'c']",
        ),
        "duplicate": ([*recs, recs[0]], "duplicate node name 'x'"),
        "not a record": ([*recs, "x"], "expected NodeRecord, got str"),
        "shared meta": (
            [attrs.evolve(r, meta_owner="x") if r.name == "a" else r for r in recs],
            ok,
        ),
        "shared meta of a later node": (
            [attrs.evolve(r, meta_owner="d") if r.name == "a" else r for r in recs],
            ok,
        ),
        "shared meta of itself": (
            [attrs.evolve(r, meta_owner="a") if r.name == "a" else r for r in recs],
            "node 'a' shares the meta of unknown node 'a'",
        ),
        "shared meta of a sharer": (
            [
                attrs.evolve(r, meta_owner="a" if r.name == "c" else "x")
                if r.name in ("a", "c")
                else r
                for r in recs
            ],
            "node 'c' shares the meta of 'a', which itself shares another node's meta; "
            "name the first node of the group",
        ),
    }
    for label, (case, problem) in cases.items():
        if problem is None:
            assert _layout(build_graph(case)) == _layout(_networkx_built(case)), label
        else:
            with pytest.raises(GraphBuildError) as info:
                build_graph(case)
            assert str(info.value) == problem, label
