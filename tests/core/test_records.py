"""Records: targets keep kinds apart, specs decide dynamic-ness, records are frozen values."""

from __future__ import annotations

import attrs
import pytest

from portmeta import Annotation, NodeRecord, NodeRef, Opaque, QInput, QSpec, Target, TargetKind
from portmeta.records import iter_node_refs
from portmeta.testing import derived, dynamic, fixed, shared, static, target


def test_packet_overload_and_name_targets_are_distinct():
    packet = Target.packet("torchao.quantize_affine")
    overload = Target.overload("torchao.quantize_affine.default")
    assert packet != Target.overload("torchao.quantize_affine")
    assert packet != overload
    assert Target.named("aten.view.default") != Target.overload("aten.view.default")
    assert Target.function("operator.getitem") != Target.named("operator.getitem")
    assert str(overload) == "torchao.quantize_affine.default"
    assert Target("aten.view.default", "overload") == Target.overload("aten.view.default")
    assert TargetKind("packet") is TargetKind.PACKET


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
    with pytest.raises(TypeError):
        NodeRef(3)


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
    ann = Annotation({"b": static(), "a": None, "c": dynamic()}, output=None)
    assert [i.node for i in ann.inputs] == ["b", "a", "c"]
    assert ann.inputs[1] == QInput("a", None, True)
    assert ann.is_valid
    assert not Annotation({}, None).is_valid
    assert Annotation({}, static()).is_valid
    # an input whose spec is None still makes the annotation valid (upstream tests emptiness)
    assert Annotation({"a": None}, None).is_valid


def test_input_names_first_occurrence_order_including_kwargs():
    rec = NodeRecord(
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
    rec = NodeRecord("x", "placeholder", Target.named("x"), meta={"quantization_tag": None})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        rec.name = "y"
    with pytest.raises(ValueError):
        NodeRecord("x", "", Target.named("x"))
    # any other op string is kept: a node whose op was reassigned by hand is still walked
    assert NodeRecord("x", "call_everything", Target.named("x")).op == "call_everything"
    with pytest.raises(TypeError):
        NodeRecord("x", "placeholder", "x")
    assert rec.meta_dict() == {"quantization_tag": None}
    assert attrs.evolve(rec, name="y").name == "y"


def test_opaque_equality_by_type_and_text():
    assert Opaque("torch.dtype", "torch.int8") == Opaque("torch.dtype", "torch.int8")
    assert Opaque("torch.dtype", "torch.int8") != Opaque("torch.dtype", "torch.uint8")
