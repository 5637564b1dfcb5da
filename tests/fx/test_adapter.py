"""from_fx / dump: targets, arguments, users, annotations, odd inputs, JSON round trip."""

from __future__ import annotations

import operator
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from parity import (
    ATEN,
    KEYS,
    QD,
    Hand,
    annotate,
    assert_same_meta,
    dynamic_spec,
    port_keys_state,
    run_both_passes,
    static_model,
    static_spec,
)
from torch.fx.immutable_collections import immutable_dict, immutable_list

import portmeta
from portmeta.errors import CyclicWalkError, MalformedAnnotationError
from portmeta.records import NodeRef, Opaque, QInput, QSpec, Target, TargetKind
from portmeta_fx import PortNodeMetaForQDQ, dump, from_fx
from portmeta_fx.snapshot import arg_of, target_of


def rec(G: Any, name: str) -> portmeta.NodeRecord:
    return portmeta.record(G, name)


# --------------------------------------------------------------------------- targets


def test_target_kinds() -> None:
    g = torch.fx.Graph()
    x = g.placeholder("x")
    packet = g.call_function(torch.ops.torchao.quantize_affine, (x,))
    overload = g.call_function(torch.ops.torchao.quantize_affine.default, (x,))
    getitem = g.call_function(operator.getitem, (x, 0))
    attr = g.get_attr("aten.view.default")
    view = g.call_function(ATEN.view.default, (attr, [4]))
    method = g.call_method("view", (x, 4))
    fn = g.call_function(torch.relu, (x,))
    g.output((packet, overload, getitem, view, method, fn))
    G = from_fx(g)
    assert rec(G, packet.name).target == Target.packet("torchao.quantize_affine")
    assert rec(G, overload.name).target == Target.overload("torchao.quantize_affine.default")
    assert rec(G, packet.name).target != rec(G, overload.name).target
    assert rec(G, getitem.name).target == Target.function("operator.getitem")
    assert rec(G, attr.name).target == Target.named("aten.view.default")
    assert rec(G, attr.name).target != rec(G, view.name).target
    assert rec(G, method.name).target == Target.named("view")
    assert rec(G, fn.name).target == Target.function("torch.relu")
    assert rec(G, "x").target == Target.named("x")
    assert rec(G, "output").target == Target.named("output")
    # the packet is a quantize op of the torchao profile, the overload is not
    assert portmeta.TORCHAO.is_quantize(rec(G, packet.name))
    assert not portmeta.TORCHAO.is_quantize(rec(G, overload.name))
    assert not portmeta.TORCHAO.is_view(rec(G, attr.name))


def test_targets_that_have_no_qualified_name() -> None:
    g = torch.fx.Graph()
    x = g.placeholder("x")

    class Weird:
        __module__ = None  # type: ignore[assignment]

        def __call__(self, *args: Any) -> Any:
            return args

    node = g.create_node("call_function", Weird(), (x,), {}, name="weird")  # type: ignore[arg-type]
    t = target_of(node)
    assert t.kind is TargetKind.CALLABLE
    assert t.name.startswith("<")  # repr fallback
    hop = getattr(torch.ops.higher_order, "cond", None)
    if hop is not None:
        n2 = g.call_function(hop, (x,))
        assert target_of(n2).kind is TargetKind.CALLABLE


# --------------------------------------------------------------------------- args, users


def test_args_kwargs_and_users_order() -> None:
    g = torch.fx.Graph()
    x = g.placeholder("x")
    y = g.placeholder("y")
    b = g.call_function(ATEN.add.Tensor, (y, x))
    a = g.call_function(ATEN.mul.Tensor, (x, y), {"z": 1.5, "alpha": y})
    c = g.call_function(torch.cat, ([x, b],), {"dim": 0})
    d = g.call_function(operator.getitem, (c, slice(None, 2)))
    e = g.call_function(operator.getitem, (c, slice(0, b)))
    t = g.call_function(
        ATEN.view.default, (x, immutable_list([2, 2])), immutable_dict({"k": (torch.int8, None)})
    )
    g.output((a, d, e, t))
    G = from_fx(g)
    assert list(G.nodes) == [n.name for n in g.nodes]
    assert portmeta.users(G, "x") == tuple(u.name for u in x.users)
    assert portmeta.users(G, "y") == (b.name, a.name)
    assert rec(G, a.name).args == (NodeRef("x"), NodeRef("y"))
    assert list(rec(G, a.name).kwargs) == [("z", 1.5), ("alpha", NodeRef("y"))]
    assert rec(G, c.name).args == ([NodeRef("x"), NodeRef(b.name)],)
    assert rec(G, d.name).args[1] == {"$slice": (None, 2, None)}
    assert rec(G, e.name).args[1] == {"$slice": (0, NodeRef(b.name), None)}
    t_rec = rec(G, t.name)
    assert t_rec.args == (NodeRef("x"), [2, 2]) and type(t_rec.args[1]) is list
    assert dict(t_rec.kwargs) == {"k": (Opaque("torch.dtype", "torch.int8"), None)}


def test_arg_of_exact_scalar_types() -> None:
    class MyInt(int):
        pass

    assert arg_of(True) is True
    assert isinstance(arg_of(MyInt(3)), Opaque)
    assert arg_of(float("inf")) == float("inf")
    assert arg_of(torch.Size([2, 3])) == (2, 3)
    assert isinstance(arg_of(torch.device("cpu")), Opaque)


def test_meta_presence_not_truthiness() -> None:
    g = torch.fx.Graph()
    x = g.placeholder("x")
    x.meta["stack_trace"] = None
    x.meta["quantization_tag"] = ""
    x.meta["other"] = "not read"
    g.output(x)
    r = rec(from_fx(g), "x")
    assert r.meta_dict() == {"stack_trace": None, "quantization_tag": ""}
    assert rec(from_fx(g, keys=["other"]), "x").meta_dict() == {"other": "not read"}


# --------------------------------------------------------------------------- annotations


def test_annotation_specs_and_order() -> None:
    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    gm = static_model()
    lin = next(n for n in gm.graph.nodes if n.name == "linear")
    ann = lin.meta["quantization_annotation"]
    ann.input_qspec_map[next(iter(ann.input_qspec_map))] = SharedQuantizationSpec(lin)
    ann.output_qspec = dynamic_spec()
    r = rec(from_fx(gm), "linear")
    assert r.annotation is not None
    assert r.annotation.inputs == (
        QInput("x", QSpec("SharedQuantizationSpec", None)),
        QInput("wt", QSpec("QuantizationSpec", False)),
    )
    # upstream never reads an output spec's is_dynamic, so neither does the snapshot
    assert r.annotation.output == QSpec("QuantizationSpec", None)


def test_stale_annotation_inputs() -> None:
    h = Hand()
    x = h.placeholder("x")
    gone = h.call(ATEN.relu.default, x, name="gone")
    _q, dq = h.qdq(x)
    y = h.call(ATEN.relu.default, dq, name="y", tag="Y")
    gm = h.output(y)
    h.g.erase_node(gone)
    # a new node takes the erased node's name: still not the annotated object
    again = h.g.create_node("call_function", ATEN.neg.default, (x,), {}, name="again")
    again.name = "gone"  # FX does not reuse erased names by itself
    annotate(y, {gone: static_spec(), "not a node": static_spec(), x: None})
    gm.recompile()
    snap = from_fx(gm)
    r = rec(snap, "y")
    assert r.annotation is not None
    # the erased node object is kept as a foreign record under a name no FX node can have
    assert r.annotation.inputs == (
        QInput("gone@0", QSpec("QuantizationSpec", False), is_node=True),
        QInput("'not a node'", QSpec("QuantizationSpec", False), is_node=False),
        QInput("x", None, is_node=True),
    )
    assert rec(snap, "gone@0").foreign and not rec(snap, "gone").foreign
    assert list(snap.nodes)[-1] == "gone@0"
    # the stale node and the string key connect to nothing; x has no spec: nothing to port
    before = port_keys_state(gm, KEYS)
    PortNodeMetaForQDQ()(gm)
    assert port_keys_state(gm, KEYS) == before


def test_stale_inputs_parity_with_upstream() -> None:
    def build() -> torch.fx.GraphModule:
        h = Hand()
        x = h.placeholder("x")
        gone = h.call(ATEN.relu.default, x, name="gone")
        _q, dq = h.qdq(x)
        y = h.call(ATEN.relu.default, dq, name="y", tag="Y")
        gm = h.output(y)
        h.g.erase_node(gone)
        annotate(y, {gone: static_spec(), "key": static_spec()}, static_spec())
        return gm

    ours_gm, theirs_gm, ours, theirs = run_both_passes(build)
    assert not isinstance(ours, BaseException) and not isinstance(theirs, BaseException)
    assert_same_meta(ours_gm, theirs_gm)


def test_stale_dynamic_input_raises_value_error_like_upstream() -> None:
    def build() -> torch.fx.GraphModule:
        h = Hand()
        x = h.placeholder("x")
        gone = h.call(ATEN.relu.default, x, name="gone")
        d = h.dynamic_qdq(x)
        y = h.call(ATEN.relu.default, d["dq"], name="y", tag="Y")
        gm = h.output(y)
        h.g.erase_node(gone)
        annotate(y, {gone: dynamic_spec()})
        return gm

    _o, _t, ours, theirs = run_both_passes(build)
    assert isinstance(theirs, ValueError) and isinstance(ours, ValueError)


class NoDynamic:
    """A spec class of nobody's: no ``is_dynamic`` attribute (static, like Shared/Derived)."""


class Truthy:
    is_dynamic = 1  # truthy but not ``True``: static upstream


class Dyn:
    is_dynamic = True


@pytest.mark.parametrize("spec_cls", [NoDynamic, Truthy, Dyn])
def test_unknown_qspec_classes(spec_cls: type) -> None:
    def build() -> torch.fx.GraphModule:
        h = Hand()
        x = h.placeholder("x")
        d = h.dynamic_qdq(x)
        _q, sdq = h.qdq(x)
        y = h.call(ATEN.add.Tensor, sdq, d["dq"], name="y", tag="Y", stack_trace="y.py:1")
        annotate(y, {x: spec_cls()}, spec_cls())
        _oq, odq = h.qdq(y)
        return h.output(odq)

    expected = {NoDynamic: None, Truthy: False, Dyn: True}[spec_cls]
    G = from_fx(build())
    ann = rec(G, "y").annotation
    assert ann is not None and ann.inputs[0].qspec == QSpec(spec_cls.__name__, expected)
    ours_gm, theirs_gm, ours, theirs = run_both_passes(build)
    assert not isinstance(theirs, BaseException), theirs
    assert not isinstance(ours, BaseException), ours
    assert_same_meta(ours_gm, theirs_gm)


@pytest.mark.parametrize(
    ("annotation", "error"),
    [
        (object(), AttributeError),  # no input_qspec_map
        (types.SimpleNamespace(input_qspec_map={}), AttributeError),  # no output_qspec
        (types.SimpleNamespace(input_qspec_map=None, output_qspec=None), TypeError),  # no len
        (types.SimpleNamespace(input_qspec_map=[1], output_qspec=None), AttributeError),  # no items
    ],
    ids=["no-map", "no-output", "map-without-len", "map-without-items"],
)
def test_unreadable_annotation_objects_fail_like_upstream(annotation: Any, error: type) -> None:
    """The adapter never crashes on them; planning raises what upstream raises, writing nothing."""

    def build() -> torch.fx.GraphModule:
        h = Hand()
        x = h.placeholder("x")
        _q, dq = h.qdq(x)
        y = h.call(ATEN.relu.default, dq, name="y", tag="Y")
        w = h.call(ATEN.relu.default, y, name="w", tag="W")
        gm = h.output(w)
        annotate(y, {x: static_spec()})  # ported by upstream before it fails on w
        w.meta["quantization_annotation"] = annotation
        return gm

    G = from_fx(build())
    malformed = rec(G, "w").annotation.malformed  # type: ignore[union-attr]
    assert malformed is not None and malformed.error == error.__name__
    ours_gm, theirs_gm, ours, theirs = run_both_passes(build)
    assert type(theirs) is error
    assert isinstance(ours, error) and isinstance(ours, MalformedAnnotationError)
    assert "'w'" in str(ours)
    assert port_keys_state(ours_gm, KEYS) == port_keys_state(build(), KEYS)  # nothing written
    assert port_keys_state(theirs_gm, KEYS) != port_keys_state(build(), KEYS)  # upstream: y's dq


def test_empty_duck_typed_annotation_is_ignored() -> None:
    h = Hand()
    x = h.placeholder("x")
    y = h.call(ATEN.relu.default, x, name="y", tag="Y")
    gm = h.output(y)
    y.meta["quantization_annotation"] = types.SimpleNamespace(input_qspec_map={}, output_qspec=None)
    assert rec(from_fx(gm), "y").annotation == portmeta.Annotation((), None)
    assert PortNodeMetaForQDQ().plan(gm).deltas == ()


def test_duck_typed_annotation_parity() -> None:
    def build() -> torch.fx.GraphModule:
        h = Hand()
        x = h.placeholder("x")
        _q, dq = h.qdq(x)
        y = h.call(ATEN.relu.default, dq, name="y", tag="Y")
        y.meta["quantization_annotation"] = types.SimpleNamespace(
            input_qspec_map={x: static_spec()}, output_qspec=static_spec()
        )
        _oq, odq = h.qdq(y)
        return h.output(odq)

    ours_gm, theirs_gm, _ours, _theirs = run_both_passes(build)
    assert_same_meta(ours_gm, theirs_gm)
    assert port_keys_state(ours_gm, KEYS)["dequantize_per_tensor_default"] == {
        "quantization_tag": "Y"
    }


def test_non_node_args_where_nodes_expected() -> None:
    h = Hand()
    x = h.placeholder("x")
    dq = h.call(QD.dequantize_per_tensor.default, 1.0, 0.1, 0, -128, 127, torch.int8, name="dq")
    v = h.call(ATEN.view.default, [3], name="v")
    q = h.call(QD.quantize_per_tensor.default, v, 0.1, 0, -128, 127, torch.int8, name="q")
    y = h.call(ATEN.add.Tensor, x, dq, name="y", tag="Y")
    gm = h.output(y, q)
    G = from_fx(gm)
    assert rec(G, "dq").args[0] == 1.0
    assert rec(G, "v").args == ([3],)
    # nothing annotated: planning is empty, no crash
    assert portmeta.plan(G).deltas == ()


# --------------------------------------------------------------------------- JSON


def test_dump_load_round_trip(tmp_path: Path) -> None:
    gm = static_model()
    path = tmp_path / "g.json"
    dump(gm, path)
    loaded = portmeta.load_graph(path)
    G = from_fx(gm)
    assert portmeta.fingerprint(loaded) == portmeta.fingerprint(G)
    assert list(loaded.nodes) == list(G.nodes)
    for name in G.nodes:
        assert rec(loaded, name) == rec(G, name)
    assert portmeta.plan(loaded).deltas == portmeta.plan(G).deltas
    dump(gm, tmp_path / "k.json", keys=["quantization_tag"])
    assert portmeta.load_graph(tmp_path / "k.json").graph["meta_keys"] == ("quantization_tag",)


def test_snapshot_is_frozen_and_does_not_touch_the_graph() -> None:
    gm = static_model()
    before = port_keys_state(gm, [*KEYS, "quantization_annotation"])
    G = from_fx(gm)
    assert port_keys_state(gm, [*KEYS, "quantization_annotation"]) == before
    with pytest.raises(Exception):  # noqa: B017 - networkx raises NetworkXError
        G.add_node("new")


@pytest.mark.parametrize("use_packet", [True, False], ids=["packet", "overload"])
def test_affine_packet_vs_overload_parity(use_packet: bool) -> None:
    """torchao inserts affine ops with the *packet* as target; only the packet is recognised."""

    def build() -> torch.fx.GraphModule:
        qa, dqa = torch.ops.torchao.quantize_affine, torch.ops.torchao.dequantize_affine
        if not use_packet:
            qa, dqa = qa.default, dqa.default
        h = Hand()
        x = h.placeholder("x")
        w = h.get_attr("w", tag="W", stack_trace="w.py:1")
        wv = h.call(ATEN.view.default, w, [4, 4], name="wv")
        wq = h.call(qa, wv, [1, 4], 0.1, 0, torch.int8, name="wq")
        wdq = h.call(dqa, wq, [1, 4], 0.1, 0, torch.int8, name="wdq")
        y = h.call(ATEN.linear.default, x, wdq, name="y", tag="Y", stack_trace="y.py:1")
        annotate(y, {wv: static_spec(), x: static_spec()}, static_spec())
        oq = h.call(qa, y, [1, 4], 0.1, 0, torch.int8, name="oq")
        return h.output(oq)

    ours_gm, theirs_gm, ours, theirs = run_both_passes(build)
    assert not isinstance(ours, BaseException) and not isinstance(theirs, BaseException)
    assert_same_meta(ours_gm, theirs_gm)
    tagged = {n for n, m in port_keys_state(ours_gm, KEYS).items() if "quantization_tag" in m}
    if use_packet:
        assert {"wv", "wq", "wdq", "oq"} <= tagged
    else:
        assert tagged == {"w", "y"}


def _two_graphs() -> tuple[torch.fx.GraphModule, torch.fx.GraphModule]:
    """``gm``'s linear is annotated with a dynamic input that lives in ``other``'s graph."""
    other = Hand()
    w = other.placeholder("x")
    chain = other.dynamic_qdq(w)
    other_gm = other.output(other.call(ATEN.relu.default, chain["dq"], name="use"))
    h = Hand()
    x = h.placeholder("x")
    lin = h.call(ATEN.relu.default, x, name="lin", tag="LIN", stack_trace="m.py:1")
    gm = h.output(lin)
    annotate(lin, {w: dynamic_spec()})
    return gm, other_gm


def test_foreign_dynamic_input_writes_where_upstream_writes() -> None:
    """Upstream's search follows the other graph's users and writes into that graph."""
    from torchao.quantization.pt2e.quantizer.port_metadata_pass import (
        PortNodeMetaForQDQ as Upstream,
    )

    ours_gm, ours_other = _two_graphs()
    theirs_gm, theirs_other = _two_graphs()
    snap = from_fx(ours_gm)
    foreign = [n for n in snap.nodes if rec(snap, n).foreign]
    assert foreign and all("@" in n for n in foreign)
    plan = portmeta.plan(snap)
    assert [d.target for d in plan.deltas if d.key == "quantization_tag"] == [
        "choose_qparams_tensor@0",
        "quantize_per_tensor_tensor@0",
        "dequantize_per_tensor_tensor@0",
    ]
    PortNodeMetaForQDQ()(ours_gm)
    Upstream()(theirs_gm)
    assert port_keys_state(ours_gm, KEYS) == port_keys_state(theirs_gm, KEYS)
    assert port_keys_state(ours_other, KEYS) == port_keys_state(theirs_other, KEYS)
    tagged = port_keys_state(theirs_other, KEYS).items()
    written = {n for n, meta in tagged if meta.get("quantization_tag") == "LIN"}
    assert written == {
        "choose_qparams_tensor",
        "quantize_per_tensor_tensor",
        "dequantize_per_tensor_tensor",
    }


def _shared_meta_model() -> torch.fx.GraphModule:
    """The weight shares its meta dict with an annotated consumer's dequantize (as a pass doing
    ``new.meta = old.meta`` leaves it): upstream's write to one shows on the other."""
    h = Hand()
    x = h.placeholder("x")
    _q, dq = h.qdq(x)
    relu = h.call(ATEN.relu.default, dq, name="relu", tag="T", stack_trace="s")
    w = h.get_attr("w")
    _wq, wdq = h.qdq(w)
    lin = h.call(ATEN.linear.default, relu, wdq, name="lin", tag="L")
    gm = h.output(lin)
    w.meta = dq.meta  # shared dict
    annotate(relu, {x: static_spec()})
    annotate(lin, {w: static_spec()})
    return gm


def test_nodes_sharing_a_meta_dict_see_each_others_writes() -> None:
    snap = from_fx(_shared_meta_model())
    assert rec(snap, "w").meta_owner == "dequantize_per_tensor_default"
    ours_gm, theirs_gm, ours, theirs = run_both_passes(_shared_meta_model)
    assert not isinstance(theirs, BaseException) and not isinstance(ours, BaseException)
    assert_same_meta(ours_gm, theirs_gm)
    # the weight's quantize got what relu had written into the shared dict
    q = next(n for n in theirs_gm.graph.nodes if n.name == "quantize_per_tensor_default_1")
    assert q.meta["quantization_tag"] == "T"


def test_node_used_as_a_dict_key_is_not_an_input() -> None:
    """FX registers users through dict values only; the snapshot must agree."""
    g = torch.fx.Graph()
    x = g.placeholder("x")
    y = g.placeholder("y")
    call = g.call_function(operator.getitem, ({x: y}, x))
    g.output((call,))
    gm = torch.fx.GraphModule(torch.nn.Module(), g)
    assert list(x.users) == [call]
    r = rec(from_fx(gm), call.name)
    assert r.args[0] == {Opaque("torch.fx.Node", "<node x>"): NodeRef("y")}


def test_hand_renamed_duplicate_names_stay_distinct() -> None:
    ours_gm, theirs_gm, ours, theirs = run_both_passes(_renamed_twins)
    assert not isinstance(theirs, BaseException) and not isinstance(ours, BaseException)
    snap_names = list(from_fx(_renamed_twins()).nodes)
    assert snap_names[:5] == ["x", "quantize_per_tensor_default", "dup", "dup+", "relu"]

    def by_position(gm: torch.fx.GraphModule) -> list[Any]:
        return [[n.meta.get(k, "<absent>") for k in KEYS] for n in gm.graph.nodes]

    assert by_position(ours_gm) == by_position(theirs_gm)
    assert by_position(theirs_gm)[2] == ["<absent>", "Y"]  # the renamed dq got relu's tag


def _renamed_twins() -> torch.fx.GraphModule:
    h = Hand()
    x = h.placeholder("x")
    _q, dq = h.qdq(x)
    other = h.call(ATEN.neg.default, dq, name="other", tag="N")
    y = h.call(ATEN.relu.default, dq, name="relu", tag="Y")
    gm = h.output(y, other)
    annotate(y, {x: static_spec()})
    dq.name = "dup"
    other.name = "dup"  # FX never does this itself; a hand edit can
    return gm


def test_self_referential_meta_value_is_kept_opaque() -> None:
    h = Hand()
    x = h.placeholder("x")
    _q, dq = h.qdq(x)
    loop: list[Any] = []
    loop.append(loop)
    y = h.call(ATEN.relu.default, dq, name="y", tag=loop)
    gm = h.output(y)
    annotate(y, {x: static_spec()})
    PortNodeMetaForQDQ()(gm)
    assert (
        next(n for n in gm.graph.nodes if n.name == "dequantize_per_tensor_default").meta[
            "quantization_tag"
        ]
        is loop
    )


def test_annotation_map_raising_other_errors_keeps_their_class() -> None:
    class Exploding(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            raise KeyError("boom")

    h = Hand()
    x = h.placeholder("x")
    y = h.call(ATEN.relu.default, x, name="y")
    gm = h.output(y)
    y.meta["quantization_annotation"] = types.SimpleNamespace(
        input_qspec_map=Exploding({x: None}), output_qspec=None
    )
    with pytest.raises(KeyError) as info:
        PortNodeMetaForQDQ()(gm)
    assert isinstance(info.value, MalformedAnnotationError)


def _odd_but_legal(kind: str) -> torch.fx.GraphModule:
    """A ported q/dq pair plus one FX oddity that upstream walks past."""
    h = Hand()
    x = h.placeholder("x")
    _q, dq = h.qdq(x)
    y = h.call(ATEN.relu.default, dq, name="y", tag="Y", stack_trace="s")
    z = h.call(ATEN.neg.default, y, name="z")
    gm = h.output(z)
    annotate(y, {x: static_spec()})
    if kind == "tuple-key":  # FX registers no user through a dict key, even inside a tuple
        z.kwargs = {"k": {(x, 1): 2}}
    elif kind == "slice-of-tuple":  # FX does look inside slices
        z.args = (y, slice((x,), None))
    elif kind == "cycle-off-path":
        w = h.g.call_function(ATEN.neg.default, (z,))
        w2 = h.g.call_function(ATEN.neg.default, (w,))
        w.args = (w2,)  # w <-> w2, nowhere near a rule's walk
    elif kind == "self-loop":
        z.args = (y, z)
    elif kind == "custom-op":
        z.op = "call_custom"
    elif kind == "raising-repr-target":

        class NoRepr:
            __qualname__ = "<local>"

            def __call__(self, *a: Any) -> None: ...

            def __repr__(self) -> str:
                raise RuntimeError("no repr")

        z.target = NoRepr()
    return gm


@pytest.mark.parametrize(
    "kind",
    [
        "tuple-key",
        "slice-of-tuple",
        "cycle-off-path",
        "self-loop",
        "custom-op",
        "raising-repr-target",
    ],
)
def test_odd_but_legal_fx_graphs_port_like_upstream(kind: str) -> None:
    ours_gm, theirs_gm, ours, theirs = run_both_passes(lambda: _odd_but_legal(kind))
    assert not isinstance(theirs, BaseException), theirs
    assert not isinstance(ours, BaseException), ours
    assert_same_meta(ours_gm, theirs_gm)
    assert port_keys_state(ours_gm, KEYS)["dequantize_per_tensor_default"] == {
        "stack_trace": "s",
        "quantization_tag": "Y",
    }


def test_a_cycle_on_the_walk_is_reported_where_upstream_never_returns() -> None:
    h = Hand()
    x = h.placeholder("x")
    q, dq = h.qdq(x)
    y = h.call(ATEN.relu.default, dq, name="y", tag="Y")
    gm = h.output(y)
    annotate(y, {x: static_spec()})
    q.args = (dq, *q.args[1:])  # q <-> dq: upstream's connectivity walk loops forever
    with pytest.raises(CyclicWalkError, match="came back to node") as info:
        PortNodeMetaForQDQ()(gm)
    assert info.value.node == "y"
    assert "quantization_tag" not in dq.meta


def test_read_fx_is_from_fx_and_snapshot_nodes_in_one_walk() -> None:
    from portmeta_fx.snapshot import read_fx, snapshot_nodes

    gm = static_model()
    other = torch.fx.Graph()
    ghost = other.placeholder("ghost")
    first = next(iter(gm.graph.nodes))
    ann = next(n for n in gm.graph.nodes if "quantization_annotation" in n.meta)
    ann.meta["quantization_annotation"].input_qspec_map[ghost] = None  # a foreign node
    snap, nodes = read_fx(gm, portmeta.TORCHAO)
    assert nodes == snapshot_nodes(gm)
    assert list(snap) == list(nodes)
    assert "ghost@0" in snap and portmeta.record(snap, "ghost@0").foreign
    assert nodes[first.name] is first
    assert portmeta.fingerprint(snap) == portmeta.fingerprint(from_fx(gm))


def test_equal_but_distinct_callable_targets_keep_their_own_names() -> None:
    class F:
        def __init__(self, name: str) -> None:
            self.__name__ = self.__qualname__ = name
            self.__module__ = "ops"

        def __call__(self, x: Any) -> Any:
            return x

        def __eq__(self, other: object) -> bool:
            return isinstance(other, F)

        def __hash__(self) -> int:
            return 0

    g = torch.fx.Graph()
    x = g.placeholder("x")
    a = g.call_function(F("a"), (x,))
    b = g.call_function(F("b"), (a,))
    g.output(b)
    snap = from_fx(g)
    assert [portmeta.record(snap, n).target.name for n in ("a", "b")] == ["ops.a", "ops.b"]
