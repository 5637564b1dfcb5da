"""Records: targets keep kinds apart, specs decide dynamic-ness, records are frozen values
with plain fields, and the factories normalise and check them."""

from __future__ import annotations

import attrs
import pytest

from portmeta import (
    Annotation,
    GraphBuildError,
    Malformed,
    NodeRecord,
    NodeRef,
    Opaque,
    QInput,
    QSpec,
    Target,
    TargetKind,
    build_graph,
)
from portmeta.records import annotation_problem, iter_node_refs, record_problem
from portmeta.testing import derived, dynamic, fixed, shared, static, target


def test_packet_overload_and_name_targets_are_distinct():
    packet = Target.packet("torchao.quantize_affine")
    overload = Target.overload("torchao.quantize_affine.default")
    assert packet != Target.overload("torchao.quantize_affine")
    assert packet != overload
    assert Target.named("aten.view.default") != Target.overload("aten.view.default")
    assert Target.function("operator.getitem") != Target.named("operator.getitem")
    assert str(overload) == "torchao.quantize_affine.default"
    assert Target.of("aten.view.default", "overload") == Target.overload("aten.view.default")
    assert Target.of("aten.view.default", "overload").kind is TargetKind.OVERLOAD
    assert TargetKind("packet") is TargetKind.PACKET
    # equal targets hash alike; a target is a value (no interning to rely on)
    assert Target.named("x") == Target.named("x")
    assert hash(Target.named("x")) == hash(Target.named("x"))
    assert hash(Target.overload("aten.relu.default")) == hash(
        Target.of("aten.relu.default", TargetKind.OVERLOAD)
    )
    assert Target.function("operator.getitem") == Target.function("operator.getitem")


def test_target_of_checks_name_and_kind():
    with pytest.raises(ValueError, match="'nonsense' is not a valid TargetKind"):
        Target.of("x", "nonsense")
    with pytest.raises(TypeError, match="a target's name must be a str, got 3"):
        Target.of(3, "name")
    with pytest.raises(TypeError, match="a target's name must be a str"):
        Target.overload(None)


def test_target_guessing_of_the_builder():
    assert target("aten.view.default").kind is TargetKind.OVERLOAD
    assert target("aten.transpose_").kind is TargetKind.PACKET
    assert target("operator.getitem").kind is TargetKind.CALLABLE
    assert target("weight").kind is TargetKind.NAME
    explicit = Target.named("a.b.c")
    assert target(explicit) is explicit


def test_node_ref_is_not_a_string():
    assert NodeRef("x") != "x"
    assert NodeRef("x") == NodeRef("x")
    # a reference that names no node (here not even a str) is refused by build_graph
    y = NodeRecord.of("y", "call_function", Target.overload("aten.relu.default"), args=[NodeRef(3)])
    with pytest.raises(GraphBuildError, match="node 'y' refers to unknown node 3"):
        build_graph([y])


@pytest.mark.parametrize(
    ("spec", "is_dynamic"),
    [
        (static(), False),
        (dynamic(), True),
        (shared(), False),
        (derived(), False),
        (fixed(), False),
        (QSpec("QuantizationSpec", None), False),
    ],
)
def test_only_is_dynamic_true_is_dynamic(spec, is_dynamic):
    assert spec.dynamic is is_dynamic


def test_spec_kinds_of_the_builder_helpers():
    assert (shared().kind, shared().is_dynamic) == ("SharedQuantizationSpec", None)
    assert (derived().kind, fixed().kind) == (
        "DerivedQuantizationSpec",
        "FixedQParamsQuantizationSpec",
    )


def test_annotation_keeps_input_order_and_validity():
    ann = Annotation.of({"b": static(), "a": None, "c": dynamic()}, output=None)
    assert [i.node for i in ann.inputs] == ["b", "a", "c"]
    assert ann.inputs[1] == QInput("a", None, True)
    assert type(ann.inputs) is tuple
    assert ann.is_valid
    assert not Annotation.of({}, None).is_valid
    assert Annotation.of({}, static()).is_valid
    # an input whose spec is None still makes the annotation valid (upstream tests emptiness)
    assert Annotation.of({"a": None}, None).is_valid
    # QInput records are kept as given, in order
    inputs = [QInput("w", static(), False), QInput("x", None)]
    assert Annotation.of(inputs).inputs == tuple(inputs)
    bad = Malformed("TypeError", "no len()")
    assert Annotation.of(malformed=bad) == Annotation((), None, bad)
    assert Annotation.of(malformed=bad).is_valid


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (({"x": "static"},), "input 'x': the qspec must be a QSpec or None, got 'static'"),
        (
            ({"x": QSpec("QuantizationSpec", 1)},),
            "input 'x': the qspec's is_dynamic must be True, False or None, got 1",
        ),
        (
            ({"x": QSpec(3)},),
            "input 'x': the qspec's kind must be a str, got 3",
        ),
        (([QInput(1)],), "an annotation's input must name a node (a str), got 1"),
        (
            ([QInput("x", None, 1)],),
            "input 'x': is_node must be True or False, got 1",
        ),
        ((["x"],), "an annotation's inputs must be QInput records, got 'x'"),
        (
            ({}, "static"),
            "an annotation's output must be a QSpec or None, got 'static'",
        ),
        (
            ({}, None, ("TypeError", "no len()")),
            "an annotation's malformed must be Malformed(error, message) or None, "
            "got ('TypeError', 'no len()')",
        ),
        (
            ({}, None, Malformed("TypeError", 3)),
            "an annotation's malformed must be Malformed(error, message) or None, "
            "got Malformed(error='TypeError', message=3)",
        ),
    ],
    ids=[
        "qspec-str",
        "is-dynamic-int",
        "kind-int",
        "input-name-int",
        "is-node-int",
        "input-not-qinput",
        "output-str",
        "malformed-tuple",
        "malformed-message-int",
    ],
)
def test_annotation_of_rejects_bad_fields(args, problem):
    with pytest.raises(TypeError) as info:
        Annotation.of(*args)
    assert str(info.value) == problem


def test_input_names_first_occurrence_order_including_kwargs():
    rec = NodeRecord.of(
        "cat",
        "call_function",
        Target.overload("aten.cat.default"),
        args=([NodeRef("b"), NodeRef("a")], NodeRef("b")),
        kwargs={"out": NodeRef("c"), "alpha": 2},
    )
    assert rec.input_names() == ("b", "a", "c")
    assert dict(rec.kwargs) == {"out": NodeRef("c"), "alpha": 2}
    # as in torch.fx, a node inside a dict key is not an input; one inside a value is
    assert list(iter_node_refs({NodeRef("k"): (NodeRef("v"),)})) == ["v"]


def test_records_are_frozen_and_validated():
    rec = NodeRecord.of("x", "placeholder", Target.named("x"), meta={"quantization_tag": None})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        rec.name = "y"
    with pytest.raises(ValueError, match="node 'x': op must not be empty"):
        NodeRecord.of("x", "", Target.named("x"))
    # any other op string is kept: a node whose op was reassigned by hand is still walked
    assert NodeRecord.of("x", "call_everything", Target.named("x")).op == "call_everything"
    with pytest.raises(TypeError, match="node 'x': target must be a Target, got 'x'"):
        NodeRecord.of("x", "placeholder", "x")
    assert rec.meta_dict() == {"quantization_tag": None}
    assert attrs.evolve(rec, name="y").name == "y"


def test_node_record_of_normalises_lists_and_mappings():
    rec = NodeRecord.of(
        "y",
        "call_function",
        Target.overload("aten.add.Tensor"),
        args=[NodeRef("x"), [1, 2]],
        kwargs={"alpha": 2},
        users=["out"],
        meta={"stack_trace": "m.py:1", 1: "int key", "quantization_tag": "T"},
    )
    assert rec.args == (NodeRef("x"), [1, 2])  # the outer sequence only: values are kept
    assert rec.kwargs == (("alpha", 2),)
    assert rec.users == ("out",)
    # keys become strings, as in JSON; a repeated key keeps its last value in its first place
    assert rec.meta == (("stack_trace", "m.py:1"), ("1", "int key"), ("quantization_tag", "T"))
    again = NodeRecord.of(
        "y", "placeholder", Target.named("y"), meta=[("k", 1), ("j", 0), ("k", 2)]
    )
    assert again.meta == (("k", 2), ("j", 0))
    assert record_problem(rec) is None and record_problem(again) is None
    # the constructor stores what it is given, and record_problem says what is wrong
    raw = NodeRecord("y", "placeholder", Target.named("y"), users=["out"])
    assert raw.users == ["out"]
    assert record_problem(raw) == "node 'y': users must be a tuple of node names, got ['out']"


@pytest.mark.parametrize(
    ("fields", "error", "problem"),
    [
        ({"name": 3}, TypeError, "NodeRecord name must be a str, got 3"),
        ({"op": None}, TypeError, "node 'n': op must be a str, got None"),
        ({"op": ""}, ValueError, "node 'n': op must not be empty"),
        (
            {"target": "aten.relu.default"},
            TypeError,
            "node 'n': target must be a Target, got 'aten.relu.default'",
        ),
        (
            {"target": Target("aten.relu.default", "overload")},
            TypeError,
            "node 'n': target must be a Target, got Target(name='aten.relu.default', kind='overload')",
        ),
        (
            {"users": ["a", 1]},
            TypeError,
            "node 'n': users must be a tuple of node names, got ('a', 1)",
        ),
        ({"foreign": 1}, TypeError, "node 'n': foreign must be True or False, got 1"),
        ({"meta_owner": 3}, TypeError, "node 'n': meta_owner must be a node name or None, got 3"),
        (
            {"annotation": {"x": None}},
            TypeError,
            "node 'n': an annotation must be an Annotation or None, got {'x': None}",
        ),
        (
            {"annotation": Annotation((QInput("x", "static"),))},
            TypeError,
            "node 'n': input 'x': the qspec must be a QSpec or None, got 'static'",
        ),
    ],
    ids=[
        "name-int",
        "op-none",
        "op-empty",
        "target-str",
        "target-kind-str",
        "users-int",
        "foreign-int",
        "owner-int",
        "annotation-dict",
        "annotation-bad-qspec",
    ],
)
def test_node_record_of_rejects_bad_field_types_naming_the_node(fields, error, problem):
    given = {"name": "n", "op": "call_function", "target": Target.overload("aten.relu.default")}
    given.update(fields)
    with pytest.raises(error) as info:
        NodeRecord.of(given.pop("name"), given.pop("op"), given.pop("target"), **given)
    assert str(info.value) == problem


@pytest.mark.parametrize(
    "fields",
    [{"kwargs": [("a", 1, 2)]}, {"meta": [1]}, {"args": 5}, {"users": 3}],
    ids=["kwargs-triple", "meta-int-item", "args-int", "users-int"],
)
def test_node_record_of_names_the_node_for_fields_it_cannot_normalise(fields):
    with pytest.raises((TypeError, ValueError)) as info:
        NodeRecord.of("n", "call_function", Target.overload("aten.relu.default"), **fields)
    assert str(info.value).startswith(f"node 'n': {next(iter(fields))} ")


def test_annotation_problem_names_nothing_for_valid_annotations():
    assert annotation_problem(Annotation()) is None
    assert annotation_problem(Annotation.of({"x": static()}, static())) is None
    assert (
        annotation_problem({"x": None})
        == "an annotation must be an Annotation or None, got {'x': None}"
    )


def test_opaque_equality_by_type_and_text():
    assert Opaque("torch.dtype", "torch.int8") == Opaque("torch.dtype", "torch.int8")
    assert Opaque("torch.dtype", "torch.int8") != Opaque("torch.dtype", "torch.uint8")
