"""apply_plan / Undo: staleness, exact undo, idempotence, no half-written graphs."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
import torch
from parity import KEYS, assert_same_meta, identity_signature, port_keys_state, static_model
from torchao.quantization.pt2e.quantizer.port_metadata_pass import (
    PortNodeMetaForQDQ as Upstream,
)

import portmeta
from portmeta.fingerprint import is_fingerprint
from portmeta_fx import PortNodeMetaForQDQ, Undo, UndoEntry, apply_plan, from_fx


def _state(gm: torch.fx.GraphModule) -> tuple[Any, Any]:
    """Metadata values and object identities of every ported key, to compare before/after."""
    return port_keys_state(gm, KEYS), identity_signature(gm, KEYS)


def _ids(gm: torch.fx.GraphModule) -> dict[tuple[str, str], int]:
    return {(n.name, k): id(n.meta[k]) for n in gm.graph.nodes for k in KEYS if k in n.meta}


class RaisingMeta(dict):  # type: ignore[type-arg]
    """A meta dict that refuses to store one key."""

    def __init__(self, data: dict[str, Any], refuse: str) -> None:
        super().__init__(data)
        self.refuse = refuse

    def __setitem__(self, key: str, value: Any) -> None:
        if key == self.refuse:
            raise RuntimeError(f"refusing to store {key!r}")
        super().__setitem__(key, value)


def test_apply_matches_upstream_and_plan() -> None:
    gm, ref = static_model(), static_model()
    p = portmeta.plan(from_fx(gm))
    undo = apply_plan(p, gm)
    Upstream()(ref)
    assert_same_meta(gm, ref)
    for node, keys in p.final_state().items():
        for key, value in keys.items():
            assert next(n for n in gm.graph.nodes if n.name == node).meta[key] == value
    assert len(undo) == len({(d.target, d.key) for d in p.deltas})


def test_values_are_the_source_objects() -> None:
    gm = static_model()
    nodes = {n.name: n for n in gm.graph.nodes}
    p = portmeta.plan(from_fx(gm))
    origins = {(d.target, d.key): id(nodes[d.origin].meta[d.key]) for d in p.deltas}
    apply_plan(p, gm)
    for (target, key), ident in origins.items():
        assert id(nodes[target].meta[key]) == ident


def test_stale_plan_is_refused_and_nothing_written() -> None:
    gm = static_model()
    p = portmeta.plan(from_fx(gm))
    relu = next(n for n in gm.graph.nodes if n.name == "relu")
    relu.meta["quantization_tag"] = "changed"
    before = _state(gm)
    with pytest.raises(portmeta.StalePlanError) as info:
        apply_plan(p, gm)
    assert p.fingerprint in str(info.value)
    assert portmeta.fingerprint(from_fx(gm)) in str(info.value)
    assert _state(gm) == before


def test_stale_plan_names_missing_nodes() -> None:
    gm = static_model()
    p = portmeta.plan(from_fx(gm))
    out = next(n for n in gm.graph.nodes if n.op == "output")
    last_dq = out.args[0]
    out.args = (last_dq.args[0],)
    gm.graph.erase_node(last_dq)
    with pytest.raises(portmeta.StalePlanError):
        apply_plan(p, gm)
    # a plan whose nodes are gone names them
    gm2 = static_model()
    p2 = portmeta.plan(from_fx(gm2))
    relu_q = next(n for n in gm2.graph.nodes if n.name == "quantize_per_tensor_default_3")
    dq = next(iter(relu_q.users))
    dq.replace_input_with(relu_q, relu_q.args[0])
    gm2.graph.erase_node(relu_q)
    with pytest.raises(portmeta.StalePlanError, match="quantize_per_tensor_default_3"):
        apply_plan(p2, gm2)


def test_other_profile_keys_are_part_of_the_fingerprint() -> None:
    gm = static_model()
    p = portmeta.plan(
        from_fx(gm, keys=["quantization_tag"]), portmeta_profile(["quantization_tag"])
    )
    # changing a key the plan does not read does not make it stale
    next(n for n in gm.graph.nodes if n.name == "relu").meta["stack_trace"] = "other"
    apply_plan(p, gm)


def portmeta_profile(keys: list[str]) -> portmeta.Profile:
    import attrs

    return attrs.evolve(portmeta.TORCHAO, keys=tuple(keys))


def test_undo_restores_exactly_including_absent_keys() -> None:
    gm = static_model()
    q = next(n for n in gm.graph.nodes if n.name == "quantize_per_tensor_default_2")
    q.meta["stack_trace"] = "present before"
    before, ids_before = _state(gm), _ids(gm)
    p = portmeta.plan(from_fx(gm))
    undo = apply_plan(p, gm)
    assert any(not e.had_value for e in undo.entries)
    assert UndoEntry(q.name, "stack_trace", True, "present before") in undo.entries
    assert _state(gm) != before
    undo.restore(gm)
    assert _state(gm) == before
    assert _ids(gm) == ids_before
    # restoring twice is harmless
    undo.restore(gm)
    assert _ids(gm) == ids_before


def test_undo_restores_overwritten_values() -> None:
    gm = static_model()
    dq = next(n for n in gm.graph.nodes if n.name == "dequantize_per_tensor_default")
    old = "old tag"
    dq.meta["quantization_tag"] = old
    undo = apply_plan(portmeta.plan(from_fx(gm)), gm)
    assert dq.meta["quantization_tag"] == "L"
    entry = next(e for e in undo.entries if e.node == dq.name and e.key == "quantization_tag")
    assert entry == UndoEntry(dq.name, "quantization_tag", True, old)
    undo.restore(gm)
    assert dq.meta["quantization_tag"] is old


def test_undo_is_plain_data() -> None:
    undo = Undo((UndoEntry("n", "quantization_tag", False, None),))
    assert undo.entries == (UndoEntry("n", "quantization_tag", False, None),)
    assert type(undo.entries) is tuple and len(undo) == 1
    assert undo == Undo((UndoEntry("n", "quantization_tag", False, None),))
    with pytest.raises(AttributeError):
        undo.entries = ()  # type: ignore[misc]
    gm = static_model()
    with pytest.raises(portmeta.UnknownNodeError):
        undo.restore(gm)


def test_apply_twice_is_idempotent() -> None:
    gm = static_model()
    p = portmeta.plan(from_fx(gm))
    first = apply_plan(p, gm)
    after, ids_after = _state(gm), _ids(gm)
    second = apply_plan(p, gm)
    assert second.entries == ()
    assert _state(gm) == after and _ids(gm) == ids_after
    # undoing the first application brings back the original graph, which accepts the plan
    first.restore(gm)
    assert portmeta.fingerprint(from_fx(gm)) == p.fingerprint
    apply_plan(p, gm)
    assert _state(gm) == after


def test_applied_then_changed_is_stale() -> None:
    gm = static_model()
    p = portmeta.plan(from_fx(gm))
    apply_plan(p, gm)
    next(n for n in gm.graph.nodes if n.name == "x").meta["quantization_tag"] = "new"
    with pytest.raises(portmeta.StalePlanError):
        apply_plan(p, gm)


@pytest.mark.parametrize(
    "victim", ["dequantize_per_tensor_default_2", "quantize_per_tensor_default_3"]
)
def test_failure_half_way_restores_everything(victim: str) -> None:
    gm = static_model()
    p = portmeta.plan(from_fx(gm))
    assert p.deltas[-1].target == "quantize_per_tensor_default_3"
    node = next(n for n in gm.graph.nodes if n.name == victim)
    node.meta = RaisingMeta(dict(node.meta), "quantization_tag")
    before, ids_before = _state(gm), _ids(gm)
    with pytest.raises(RuntimeError, match="refusing"):
        apply_plan(p, gm)
    assert _state(gm) == before
    assert _ids(gm) == ids_before


def test_pass_failure_half_way_restores_everything() -> None:
    gm = static_model()
    node = next(n for n in gm.graph.nodes if n.name == "quantize_per_tensor_default_3")
    node.meta = RaisingMeta(dict(node.meta), "stack_trace")
    before = _state(gm)
    with pytest.raises(RuntimeError, match="refusing"):
        PortNodeMetaForQDQ()(gm)
    assert _state(gm) == before


def test_plan_of_a_saved_graph_applies_to_the_live_graph(tmp_path: Any) -> None:
    """dump -> (torch-free) load_graph -> plan -> JSON -> apply onto the live graph module."""
    from portmeta_fx import dump

    gm, ref = static_model(), static_model()
    # a metadata key whose value is not a JSON type: it must fingerprint the same either way
    keys = (*KEYS, "nn_module_stack")
    for n in gm.graph.nodes:
        n.meta["nn_module_stack"] = {"L__self__": ("", torch.nn.Module)}
    dump(gm, tmp_path / "g.json", keys=keys)
    profile = portmeta.TORCHAO.extend(keys=["nn_module_stack"])
    saved = portmeta.load_graph(tmp_path / "g.json")
    p = portmeta.Plan.from_json(portmeta.plan(saved, profile).to_json())
    assert p.fingerprint == portmeta.fingerprint(from_fx(gm, profile))
    apply_plan(p, gm)
    Upstream()(ref)
    assert_same_meta(gm, ref)


def test_the_applied_record_is_what_a_new_snapshot_reads() -> None:
    # after writing, apply_plan records the fingerprint of the graph as it then is; it must
    # equal the fingerprint of a snapshot taken afterwards
    from portmeta_fx.apply import _applied, _plan_key

    gm = static_model()
    p = portmeta.plan(from_fx(gm))
    apply_plan(p, gm)
    assert _applied[gm][_plan_key(p)] == portmeta.fingerprint(from_fx(gm))


def test_the_applied_record_follows_shared_meta_dicts() -> None:
    from portmeta_fx.apply import _applied, _plan_key

    gm = static_model()
    nodes = {n.name: n for n in gm.graph.nodes}
    # a node that shares the meta dict of a node the plan writes to sees the writes too
    twin = gm.graph.call_function(torch.ops.aten.relu.default, (nodes["x"],))
    target = portmeta.plan(from_fx(gm)).deltas[0].target
    twin.meta = nodes[target].meta
    p = portmeta.plan(from_fx(gm))
    apply_plan(p, gm)
    assert _applied[gm][_plan_key(p)] == portmeta.fingerprint(from_fx(gm))
    assert apply_plan(p, gm).entries == ()


# --------------------------------------------------------------------------- fingerprint schemes

#: Fingerprints of the schemes before v3, as plans saved by older portmeta versions hold them.
OLD_FINGERPRINTS = {"v1": "0123456789abcdef" * 4, "v2": "v2:" + "0123456789abcdef" * 4}


@pytest.mark.parametrize("scheme", list(OLD_FINGERPRINTS))
def test_a_plan_saved_with_an_older_fingerprint_is_refused_saying_plan_again(
    scheme: str, tmp_path: Any
) -> None:
    gm = static_model()
    before, ids_before = _state(gm), _ids(gm)
    p = portmeta.plan(from_fx(gm))
    assert is_fingerprint(p.fingerprint) and p.fingerprint.startswith("v3:")
    data = p.to_dict()
    data["fingerprint"] = OLD_FINGERPRINTS[scheme]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    for load in (
        lambda: portmeta.Plan.from_dict(data),
        lambda: portmeta.Plan.from_json(json.dumps(data)),
        lambda: portmeta.Plan.load(str(path)),
    ):
        with pytest.raises(portmeta.GraphFormatError, match="plan again") as info:
            load()
        message = str(info.value)
        assert "\n" not in message
        assert "v3" in message
    # the same plan with its v3 fingerprint loads and applies
    assert portmeta.Plan.from_dict(p.to_dict()) == p
    assert _state(gm) == before and _ids(gm) == ids_before


@pytest.mark.parametrize("scheme", list(OLD_FINGERPRINTS))
def test_a_plan_object_carrying_an_older_fingerprint_is_stale_and_writes_nothing(
    scheme: str,
) -> None:
    gm = static_model()
    old = attrs.evolve(portmeta.plan(from_fx(gm)), fingerprint=OLD_FINGERPRINTS[scheme])
    before, ids_before = _state(gm), _ids(gm)
    with pytest.raises(portmeta.StalePlanError, match=old.fingerprint):
        apply_plan(old, gm)
    assert _state(gm) == before and _ids(gm) == ids_before


def test_a_live_snapshot_with_odd_values_fingerprints_like_its_saved_graph(tmp_path: Any) -> None:
    from portmeta_fx import dump

    class Tag(str):
        pass

    gm = static_model()
    nodes = {n.name: n for n in gm.graph.nodes}
    nan_user = gm.graph.call_function(torch.ops.aten.add.Tensor, (nodes["x"], -float("nan")))
    nan_user.meta["quantization_tag"] = Tag("T")
    nodes["x"].meta["nn_module_stack"] = {"L__self__": ("", torch.nn.Module), "n": float("nan")}
    profile = portmeta.TORCHAO.extend(keys=["nn_module_stack"])
    dump(gm, tmp_path / "g.json", profile)
    live, saved = from_fx(gm, profile), portmeta.load_graph(tmp_path / "g.json")
    assert portmeta.fingerprint(live) == portmeta.fingerprint(saved)
    assert portmeta.plan(saved, profile).fingerprint == portmeta.plan(live, profile).fingerprint
