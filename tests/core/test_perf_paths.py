"""The fast paths of issue 12 against the careful ones they stand in for.

* the JSON reader's fast path builds the very records the checked reader builds, and leaves
  every unusual node to it;
* trusted constructors make records equal to the checked constructors';
* ``last_writes`` is the last delta per (node, key), in first-write order;
* ``plan_rows`` gives the deltas of ``plan_writes`` as plain tuples of their fields;
* ``errors="collect"`` drops exactly the writes of the failing annotated nodes (there is no
  rollback to do: a node's rules all run before any of its copies is resolved).
"""

from __future__ import annotations

import attrs
from hypothesis import given, settings

import portmeta
from portmeta import NodeRecord, NodeRef, Opaque, Target
from portmeta.graph import _Reader, graph_from_dict, graph_to_dict
from portmeta.plan import MetaDelta, deltas_of_rows, last_writes, plan_rows, plan_writes
from portmeta.records import Annotation, QInput, QSpec, TargetKind, trusted_constructor
from portmeta.testing import GraphBuilder, dynamic, static
from portmeta.testing.strategies import graphs


def _careful(data: dict) -> list[NodeRecord]:
    reader = _Reader("test")
    return [reader.node(item, i) for i, item in enumerate(data["nodes"])]


@settings(max_examples=40)
@given(graphs(max_blocks=6))
def test_fast_json_reader_builds_the_checked_readers_records(g):
    data = graph_to_dict(g)
    loaded = graph_from_dict(data)
    fast = list(portmeta.records(loaded))
    assert fast == _careful(data) == list(portmeta.records(g))
    reader = _Reader("test")
    for item, rec in zip(data["nodes"], fast, strict=True):
        made = reader.fast_node(item)
        assert made is None or made == rec


def test_fast_json_reader_leaves_unusual_nodes_to_the_checked_reader():
    reader = _Reader("test")
    good = {
        "name": "x",
        "op": "placeholder",
        "target": {"name": "x", "kind": "name"},
        "args": [1.5, {"$node": "y"}, {"$tuple": [1, None]}, {"$opaque": "t", "type": "T"}],
        "kwargs": {},
        "users": [],
        "meta": {"quantization_tag": "T"},
        "annotation": {
            "inputs": [{"node": "y", "qspec": {"kind": "QuantizationSpec", "is_dynamic": True}}],
            "output": None,
        },
    }
    rec = reader.fast_node(good)
    assert rec == reader.node(good, 0)
    assert rec.args == (1.5, NodeRef("y"), (1, None), Opaque("T", "t"))
    unusual = [
        {**good, "op": ""},
        {**good, "name": 3},
        {**good, "target": {"name": "x", "kind": "nope"}},
        {**good, "users": ["a", 1]},
        {**good, "foreign": 1},
        {**good, "meta_owner": 2},
        {**good, "args": [{"$float": "inf"}]},
        {**good, "args": [{"$tuple": [1.5]}]},
        {**good, "meta": {"k": {"$dict": []}}},
        {**good, "annotation": {"inputs": [], "output": None, "malformed": {"error": "E"}}},
        {**good, "annotation": {"inputs": [{"node": "y", "is_node": None}], "output": None}},
        {**good, "annotation": {"inputs": [], "output": {"kind": "Q", "is_dynamic": 1}}},
        {k: v for k, v in good.items() if k != "annotation"},
        [],
    ]
    for item in unusual:
        assert reader.fast_node(item) is None, item


def test_a_malformed_node_still_gets_the_checked_readers_message():
    b = GraphBuilder()
    b.output(b.placeholder("x"))
    data = graph_to_dict(b.build())
    data["nodes"][0]["users"] = ["output", 7]
    try:
        graph_from_dict(data, source="g.json")
    except portmeta.GraphFormatError as exc:
        assert str(exc) == "g.json: node 'x': users must be node names (strings)"
    else:
        raise AssertionError("a bad users list was accepted")


def test_trusted_constructors_make_equal_records():
    target = Target.overload("aten.relu.default")
    ann = Annotation({"x": QSpec("QuantizationSpec", False)}, QSpec("QuantizationSpec"))
    fields = ("r", "call_function", target, (NodeRef("x"), 1), (("k", 2),), ("o",))
    rest = ((("quantization_tag", "T"),), ann, False, None)
    made = trusted_constructor(NodeRecord)(*fields, *rest)
    assert made == NodeRecord(*fields, *rest)
    assert type(made) is NodeRecord and hash(made) == hash(NodeRecord(*fields, *rest))
    assert trusted_constructor(QInput)("x", None, True) == QInput("x")
    named = Target.named("w")
    assert named == Target("w", TargetKind.NAME) and hash(named) == hash(Target("w", "name"))
    try:
        attrs.evolve(made, name=3)
    except TypeError:
        pass  # the public constructor still checks
    else:
        raise AssertionError("the checked constructor accepted a non-str name")


@settings(max_examples=30)
@given(graphs(max_blocks=6))
def test_last_writes_is_the_last_delta_per_node_and_key(g):
    p = portmeta.plan(g, errors="collect")
    naive: dict[tuple[str, str], MetaDelta] = {}
    order: list[tuple[str, str]] = []
    for d in p.deltas:
        if (d.target, d.key) not in naive:
            order.append((d.target, d.key))
        naive[(d.target, d.key)] = d
    last = p.last_writes()
    assert list(last) == order
    assert all(last[k] is naive[k] for k in order)
    assert last == last_writes(p.deltas)
    assert p.final_state() == {
        t: {k: d.value for (t2, k), d in last.items() if t2 == t} for t, _ in last
    }


def test_collect_drops_exactly_the_failing_nodes_writes():
    # a dequantize shared by two consumers: the second, dynamically annotated, fails after the
    # first has written; its own writes go and the first's stay, as if it were not annotated
    def graph(annotate_failing: bool) -> portmeta.graph.Snapshot:
        b = GraphBuilder()
        x = b.placeholder("x")
        _q, dq = b.qdq(x)
        a = b.call("aten.relu.default", dq, name="a", tag="A", stack_trace="m.py:1")
        c = b.call("aten.neg.default", dq, name="c", tag="C", stack_trace="m.py:2")
        b.annotate(a, inputs={x: static()}, output=static())
        if annotate_failing:
            # a is not an input of c: its dynamic search finds no choose_qparams, so c fails
            b.annotate(c, inputs={x: static(), a: dynamic()}, check_inputs=False)
        _q2, dq2 = b.qdq(a)
        b.output(dq2, c)
        return b.build()

    collected = portmeta.plan(graph(True), errors="collect")
    assert [e.node for e in collected.errors] == ["c"]
    writes, _ = plan_writes(graph(False))
    assert collected.deltas == writes


def test_trusted_constructor_mutable_twin_and_descriptor_fallback():
    # the records are declared without a __weakref__ slot, so their trusted constructors take
    # the mutable-twin path; a class with one takes the descriptor path; both give real,
    # frozen instances equal to the checked constructor's
    @attrs.frozen(slots=True)
    class WithWeakref:
        a: int
        b: str

    for cls, values in ((NodeRef, ("x",)), (WithWeakref, (1, "b"))):
        made = trusted_constructor(cls)(*values)
        assert type(made) is cls and made == cls(*values) and hash(made) == hash(cls(*values))
        try:
            made.__setattr__(attrs.fields(cls)[0].name, values[0])
        except attrs.exceptions.FrozenInstanceError:
            pass
        else:
            raise AssertionError(f"a trusted {cls.__name__} was mutable")
    assert "twin" in trusted_constructor(NodeRecord).__globals__
    assert "twin" not in trusted_constructor(WithWeakref).__globals__
    cached = trusted_constructor(Target)("aten.relu.default", TargetKind.OVERLOAD)
    assert hash(cached) == hash(Target.overload("aten.relu.default"))


@settings(max_examples=40)
@given(graphs(max_blocks=6))
def test_plan_rows_are_the_fields_of_plan_writes_deltas(g):
    rows, row_diagnostics = plan_rows(g, errors="collect")
    deltas, diagnostics = plan_writes(g, errors="collect")
    assert row_diagnostics == diagnostics
    assert deltas_of_rows(rows) == deltas
    assert [tuple(getattr(d, f.name) for f in attrs.fields(MetaDelta)) for d in deltas] == [
        tuple(r) for r in rows
    ]
    assert all(type(r) is tuple for r in rows)
