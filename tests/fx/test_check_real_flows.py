"""``portmeta.check`` on real, untagged torchao flows (``real_flows``): what holds today.

Real quantizers set no ``quantization_tag``, so these flows carry ``stack_trace`` only. Each
flow's converted graph is checked against torchao's own pass (same ``stack_trace`` /
``quantization_tag`` on every node), and ``portmeta.check(snapshot, keys=["stack_trace"])`` on
the snapshot before porting finds the holes each flow really has; the converted graph is read
alongside to show that each finding is a real hole. The deep-copy flow's annotations name
the prepared graph's nodes, and its dequantize nodes end without values.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from parity import KEYS, assert_same_meta
from real_flows import (
    FLOWS,
    cat_block_x86_dynamic,
    cat_block_x86_static,
    converted,
    residual_mlp_xnnpack_deepcopy,
    self_attention_xnnpack_dynamic,
    upstream_converted,
)

import portmeta
from portmeta.check import compared_keys, summary
from portmeta_fx import from_fx

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def _snapshot_and_plan(passes: list[Any]) -> tuple[portmeta.Snapshot, portmeta.Plan]:
    (p,) = passes
    assert p.last_snapshot is not None and p.last_plan is not None
    return p.last_snapshot, p.last_plan


def _holes(passes: list[Any]) -> set[tuple[str, str, str, str]]:
    snapshot, _ = _snapshot_and_plan(passes)
    found = portmeta.check(snapshot, keys=["stack_trace"])
    return {(f.kind, f.node, f.anchor, f.cause) for f in found}


def _nodes(gm: torch.fx.GraphModule) -> dict[str, torch.fx.Node]:
    return {n.name: n for n in gm.graph.nodes}


def _is_dequantize(rec: portmeta.NodeRecord) -> bool:
    return rec.op == "call_function" and "dequantize" in str(rec.target)


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("name", list(FLOWS))
def test_portmeta_and_torchao_leave_the_same_meta(name: str) -> None:
    gm, passes = converted(name)
    _, plan = _snapshot_and_plan(passes)
    assert plan.deltas, f"{name}: nothing ported"
    assert_same_meta(gm, upstream_converted(name))


@pytest.mark.parametrize("name", list(FLOWS))
def test_real_quantizers_set_no_tags(name: str) -> None:
    """The premise of these flows: no node carries a quantization_tag, before or after."""
    gm, passes = converted(name)
    snapshot, plan = _snapshot_and_plan(passes)
    assert not any("quantization_tag" in n.meta for n in gm.graph.nodes)
    assert not any(
        "quantization_tag" in meta for meta in portmeta.final_meta(snapshot, plan).values()
    )
    assert {d.key for d in plan.deltas} == {"stack_trace"}


# --------------------------------------------------------------------------- the holes


def test_self_attention_qkv_share_one_dynamic_chain() -> None:
    """Q/K/V linears read ``x`` through ONE choose_qparams -> quantize -> dequantize chain
    (``convert_pt2e`` inserts one per observed input); each linear's dynamic input rule writes
    the whole chain and the last, ``linear_2`` (v_proj), wins: the chain carries v_proj's stack
    trace, so the q_proj and k_proj partitions have none of their own. The out_proj linear
    (``linear_3``) has its own chain and is fine."""
    gm, passes = self_attention_xnnpack_dynamic()
    assert _holes(passes) == {
        ("unported_input", "dequantize_per_tensor_tensor", "linear", "shared"),
        ("unported_input", "dequantize_per_tensor_tensor", "linear_1", "shared"),
    }
    nodes = _nodes(gm)
    chain = ["choose_qparams_tensor", "quantize_per_tensor_tensor", "dequantize_per_tensor_tensor"]
    assert nodes["choose_qparams_tensor"].args[0] is nodes["x"]
    assert nodes["quantize_per_tensor_tensor"].args[0] is nodes["x"]
    dq = nodes["dequantize_per_tensor_tensor"]
    assert {u.name for u in dq.users} == {"linear", "linear_1", "linear_2"}
    traces = {name: nodes[name].meta["stack_trace"] for name in ("linear", "linear_1", "linear_2")}
    assert len(set(traces.values())) == 3  # one line per projection: three partitions
    for name in chain:
        assert nodes[name].meta["stack_trace"] == traces["linear_2"], name
    for name in ("choose_qparams_tensor_1", "quantize_per_tensor_tensor_1"):
        assert nodes[name].meta["stack_trace"] == nodes["linear_3"].meta["stack_trace"]


def test_cat_block_static_cat_inputs_inside_a_list() -> None:
    """X86Inductor annotates ``cat`` with ``{max_pool2d: static spec, conv2d_1: shared spec}``;
    its dequantize nodes are inside the list argument ``cat([dq_2, dq_3], 1)``, and the static
    input rule searches only the top-level positional arguments: both stay without the cat's
    stack trace."""
    gm, passes = cat_block_x86_static()
    assert _holes(passes) == {
        ("unported_input", "dequantize_per_tensor_default_2", "cat", "container"),
        ("unported_input", "dequantize_per_tensor_default_3", "cat", "container"),
    }
    snapshot, _ = _snapshot_and_plan(passes)
    inputs = portmeta.record(snapshot, "cat").annotation.inputs  # type: ignore[union-attr]
    assert [(i.node, None if i.qspec is None else i.qspec.kind) for i in inputs] == [
        ("max_pool2d", "QuantizationSpec"),
        ("conv2d_1", "SharedQuantizationSpec"),
    ]
    cat = _nodes(gm)["cat"]
    listed = cat.args[0]
    assert isinstance(listed, list | tuple)
    assert [a.name for a in listed] == [
        "dequantize_per_tensor_default_2",
        "dequantize_per_tensor_default_3",
    ]
    assert "stack_trace" in cat.meta
    for dq in listed:
        assert not any(k in dq.meta for k in KEYS), dq.name


def test_cat_block_dynamic_shared_chain_and_list_argument() -> None:
    """Dynamic X86Inductor: conv2d (conv_a) and conv2d_1 (conv_b) read ``x`` through one
    dynamic chain, whose last write (conv2d_1's) wins, so conv2d's input chain carries conv_b's
    stack trace (``shared``). The cat's first input, ``max_pool2d``, is dynamic: the dynamic
    rule searches from ``max_pool2d``'s users and writes its chain, list or not. The second,
    ``conv2d_1``, has a ``SharedQuantizationSpec`` (static to upstream), and the static rule
    does not look inside the list: ``dequantize_per_tensor_tensor_3`` (and the quantize and
    choose_qparams above it) get nothing (``container``)."""
    gm, passes = cat_block_x86_dynamic()
    assert _holes(passes) == {
        ("unported_input", "dequantize_per_tensor_tensor", "conv2d", "shared"),
        ("unported_input", "dequantize_per_tensor_tensor_3", "cat", "container"),
    }
    snapshot, _ = _snapshot_and_plan(passes)
    inputs = portmeta.record(snapshot, "cat").annotation.inputs  # type: ignore[union-attr]
    assert [(i.node, None if i.qspec is None else i.qspec.kind) for i in inputs] == [
        ("max_pool2d", "QuantizationSpec"),
        ("conv2d_1", "SharedQuantizationSpec"),
    ]
    assert inputs[0].qspec is not None and inputs[0].qspec.is_dynamic
    nodes = _nodes(gm)
    assert {u.name for u in nodes["dequantize_per_tensor_tensor"].users} == {"conv2d", "conv2d_1"}
    conv_a, conv_b = nodes["conv2d"].meta["stack_trace"], nodes["conv2d_1"].meta["stack_trace"]
    assert conv_a != conv_b
    for name in (
        "choose_qparams_tensor",
        "quantize_per_tensor_tensor",
        "dequantize_per_tensor_tensor",
    ):
        assert nodes[name].meta["stack_trace"] == conv_b, name
    cat = nodes["cat"]
    assert [a.name for a in cat.args[0]] == [
        "dequantize_per_tensor_tensor_2",
        "dequantize_per_tensor_tensor_3",
    ]
    for name in (
        "choose_qparams_tensor_2",
        "quantize_per_tensor_tensor_2",
        "dequantize_per_tensor_tensor_2",
    ):
        assert nodes[name].meta["stack_trace"] == cat.meta["stack_trace"], name
    for name in (
        "choose_qparams_tensor_3",
        "quantize_per_tensor_tensor_3",
        "dequantize_per_tensor_tensor_3",
    ):
        assert not any(k in nodes[name].meta for k in KEYS), name


# --------------------------------------------------------------------------- the deep copy

#: The annotated nodes of the deep-copied residual MLP and the inputs their annotations name:
#: the *prepared* graph's nodes (snapshot names ``<name>@0``), not the converted graph's.
DEEPCOPY_ANNOTATION_INPUTS = {
    "linear": ("x@0", "fc1_0_weight@0", "fc1_0_bias@0"),
    "linear_1": ("relu@0", "fc2_0_weight@0", "fc2_0_bias@0"),
    "add": ("x@0", "linear_1@0"),
    "linear_2": ("add@0", "fc1_1_weight@0", "fc1_1_bias@0"),
    "linear_3": ("relu_1@0", "fc2_1_weight@0", "fc2_1_bias@0"),
    "add_1": ("add@0", "linear_3@0"),
    "linear_4": ("add_1@0", "fc1_2_weight@0", "fc1_2_bias@0"),
    "linear_5": ("relu_2@0", "fc2_2_weight@0", "fc2_2_bias@0"),
    "add_2": ("add_1@0", "linear_5@0"),
}

#: Every dequantize node that feeds an annotated node, and the annotated node it feeds: none
#: gets a value (the input rules find no dequantize connected to a foreign input).
DEEPCOPY_DEQUANTIZE_WITHOUT_VALUES = {
    "dequantize_per_tensor_default_10": "linear",
    "dequantize_per_channel_default": "linear",
    "dequantize_per_tensor_default_1": "linear_1",
    "dequantize_per_channel_default_3": "linear_1",
    "dequantize_per_tensor_default_11": "add",
    "dequantize_per_tensor_default_2": "add",
    "dequantize_per_tensor_default_12": "linear_2",
    "dequantize_per_channel_default_1": "linear_2",
    "dequantize_per_tensor_default_4": "linear_3",
    "dequantize_per_channel_default_4": "linear_3",
    "dequantize_per_tensor_default_13": "add_1",
    "dequantize_per_tensor_default_5": "add_1",
    "dequantize_per_tensor_default_14": "linear_4",
    "dequantize_per_channel_default_2": "linear_4",
    "dequantize_per_tensor_default_7": "linear_5",
    "dequantize_per_channel_default_5": "linear_5",
    "dequantize_per_tensor_default_15": "add_2",
    "dequantize_per_tensor_default_8": "add_2",
}


def test_deepcopy_annotations_name_foreign_nodes() -> None:
    """FX deep-copies ``node.meta`` shallowly: the copy's annotations are the prepared model's
    objects, keyed by the prepared graph's nodes. The snapshot records those nodes as foreign
    records named ``<name>@0`` (one other graph)."""
    gm, passes = residual_mlp_xnnpack_deepcopy()
    snapshot, _ = _snapshot_and_plan(passes)
    named = {}
    for name in portmeta.annotated_nodes(snapshot):
        ann = portmeta.record(snapshot, name).annotation
        assert ann is not None
        if ann.inputs:  # XNNPACK also marks the weights, with empty annotations
            named[name] = tuple(i.node for i in ann.inputs)
    assert named == DEEPCOPY_ANNOTATION_INPUTS
    for inputs in named.values():
        for foreign in inputs:
            assert "@" in foreign and portmeta.record(snapshot, foreign).foreign, foreign
    # the same seen from FX: every annotation input is a node of one other graph
    graphs = set()
    for n in gm.graph.nodes:
        ann = n.meta.get("quantization_annotation")
        if ann is not None and n.name in DEEPCOPY_ANNOTATION_INPUTS:
            for key in ann.input_qspec_map:
                assert key.graph is not gm.graph
                graphs.add(id(key.graph))
    assert len(graphs) == 1


def test_deepcopy_dequantize_nodes_end_without_values() -> None:
    """No input of an annotated node is ported (only the nine output quantize nodes are, by
    the output rule, which reads the annotated node's users): every dequantize feeding an
    annotated node ends without a stack trace, in portmeta's plan and in the converted graph
    (torchao's pass too: see the parity test)."""
    gm, passes = residual_mlp_xnnpack_deepcopy()
    snapshot, plan = _snapshot_and_plan(passes)
    feeding = {}
    for name in portmeta.annotated_nodes(snapshot):
        for arg in portmeta.record(snapshot, name).input_names():
            if _is_dequantize(portmeta.record(snapshot, arg)):
                assert arg not in feeding, arg
                feeding[arg] = name
    assert feeding == DEEPCOPY_DEQUANTIZE_WITHOUT_VALUES
    final = portmeta.final_meta(snapshot, plan)
    nodes = _nodes(gm)
    for dq, anchor in DEEPCOPY_DEQUANTIZE_WITHOUT_VALUES.items():
        assert final[dq] == {}, dq
        assert not any(k in nodes[dq].meta for k in KEYS), dq
        assert "stack_trace" in nodes[anchor].meta, anchor  # the anchor had one to give
    assert {d.rule.value for d in plan.deltas} == {"static_output"}
    assert len({d.target for d in plan.deltas}) == 9


# --------------------------------------------------------------------------- the default check

#: What the default check (no keys=) names on each flow: every node of each hole, with its
#: kind, annotated node and cause. The flows carry no tags, so stack_trace is compared.
DEFAULT_HOLES = {
    "self_attention_xnnpack_dynamic": {
        # Q/K/V share one dynamic chain: its three nodes end with linear_2's stack trace
        ("unported_input", "dequantize_per_tensor_tensor", "linear", "shared"): {
            "quantize_per_tensor_tensor",
            "choose_qparams_tensor",
        },
        ("unported_input", "dequantize_per_tensor_tensor", "linear_1", "shared"): {
            "quantize_per_tensor_tensor",
            "choose_qparams_tensor",
        },
    },
    "cat_block_x86_static": {
        ("unported_input", "dequantize_per_tensor_default_2", "cat", "container"): set(),
        ("unported_input", "dequantize_per_tensor_default_3", "cat", "container"): set(),
    },
    "cat_block_x86_dynamic": {
        ("unported_input", "dequantize_per_tensor_tensor", "conv2d", "shared"): {
            "quantize_per_tensor_tensor",
            "choose_qparams_tensor",
        },
        # cat's second input shares the first's spec (static) over a choose_qparams chain no
        # rule writes: the choose_qparams, the quantize and the dequantize are one hole
        ("unported_input", "dequantize_per_tensor_tensor_3", "cat", "container"): {
            "quantize_per_tensor_tensor_3",
            "choose_qparams_tensor_3",
        },
    },
}


@pytest.mark.parametrize("name", list(DEFAULT_HOLES))
def test_the_default_check_names_every_node_of_each_hole(name: str) -> None:
    gm, passes = converted(name)
    snapshot, plan = _snapshot_and_plan(passes)
    found = portmeta.check(snapshot)
    got = {(f.kind, f.node, f.anchor, f.cause): f for f in found}
    assert set(got) == set(DEFAULT_HOLES[name])
    for key, others in DEFAULT_HOLES[name].items():
        f = got[key]
        assert f.keys == ("stack_trace",)
        assert others <= set(f.related), (key, f.related)
        for node in others:
            assert repr(node) in f.message
        assert f.remedy and f.docs == f"docs/check.md#{f.cause}"
    text = summary(found, snapshot)
    assert f"compared stack_trace on {compared_keys(snapshot)['stack_trace']} (" in text
    # the same findings from the converted graph (the values it really holds)
    after = portmeta.check(from_fx(gm), ported=True)
    assert {(f.kind, f.node, f.anchor, f.cause) for f in after} == set(got)
    assert portmeta.check(snapshot, plan=plan) == found


def test_the_default_check_names_the_deep_copys_stale_annotations() -> None:
    _, passes = residual_mlp_xnnpack_deepcopy()
    snapshot, _ = _snapshot_and_plan(passes)
    found = portmeta.check(snapshot)
    assert found and {(f.kind, f.cause) for f in found} == {("stale_annotation", "deep_copy")}
    # every dequantize feeding an annotated node is named, with the node it feeds
    assert {(f.node, f.anchor) for f in found} == set(DEEPCOPY_DEQUANTIZE_WITHOUT_VALUES.items())
    for f in found:
        assert "a node of another graph" in f.message and "@0" in f.message
        assert "deep-copied between prepare_pt2e and convert_pt2e" in f.message
    # explain says the same for one of them
    f = found[0]
    text = portmeta.explain(snapshot, f.node)
    assert "a node of another graph" in text
    assert "convert the prepared model itself" in text
    # the summary counts the graph's own nodes and the annotated nodes as the pass sees them
    own = sum(1 for r in portmeta.records(snapshot) if not r.foreign)
    assert summary(found, snapshot).startswith(
        f"{len(found)} findings in {own} nodes, 12 annotated;"
    )
