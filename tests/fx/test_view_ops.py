"""Every view op of upstream's get_attr chain, one graph each, both profiles against torchao.

The op list is read from torchao's own pass (the list literal inside
``_port_metadata_for_input_quant_nodes``), not copied: if a profile loses a view op, or
torchao gains one, a case here fails.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

import pytest
import torch
from parity import ATEN, Hand, annotate, assert_same_meta, static_spec
from torchao.quantization.pt2e.quantizer import port_metadata_pass as upstream

import portmeta
from portmeta_fx import PortNodeMetaForQDQ


def _upstream_view_ops() -> list[Any]:
    """The op objects in the ``in [...]`` test of upstream's get_attr chain walk."""
    tree = ast.parse(inspect.getsource(upstream._port_metadata_for_input_quant_nodes))
    lists = [
        node.comparators[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and isinstance(node.ops[0], ast.In)
        and isinstance(node.comparators[0], ast.List)
    ]
    assert len(lists) == 1, "upstream's view-op test changed shape"
    ops = []
    for item in lists[0].elts:
        obj: Any = torch
        for part in ast.unparse(item).split(".")[1:]:
            obj = getattr(obj, part)
        ops.append(obj)
    return ops


VIEW_OPS = _upstream_view_ops()


def _weight_through(op: Any) -> torch.fx.GraphModule:
    """w -> op -> q -> dq -> linear(x's dq, it), linear annotated; w and linear tagged."""
    h = Hand()
    x = h.placeholder("x")
    w = h.get_attr("w", tag="W", stack_trace="w.py:1")
    _, xdq = h.qdq(x)
    view = h.call(op, w, [1, 0], name="view")
    _, wdq = h.qdq(view)
    lin = h.call(ATEN.linear.default, xdq, wdq, name="linear", tag="L", stack_trace="m.py:3")
    annotate(lin, {x: static_spec(), view: static_spec()})
    return h.output(lin)


def test_upstream_list_is_what_the_profiles_hold() -> None:
    names = {str(op) for op in VIEW_OPS}
    assert len(names) == 11
    assert {t.name for t in portmeta.TORCHAO.view_ops} == names
    assert {t.name for t in portmeta.LEGACY_TORCH_AO.view_ops} == names | {"aten.transpose.Dimname"}


@pytest.mark.parametrize(
    "profile", [portmeta.TORCHAO, portmeta.LEGACY_TORCH_AO], ids=["torchao", "legacy"]
)
@pytest.mark.parametrize("op", VIEW_OPS, ids=str)
def test_each_view_op_passes_the_weight_metadata_on(op: Any, profile: portmeta.Profile) -> None:
    ours, theirs = _weight_through(op), _weight_through(op)
    PortNodeMetaForQDQ(profile=profile).call(ours)
    upstream.PortNodeMetaForQDQ().call(theirs)
    assert_same_meta(ours, theirs)
    nodes = {n.name: n for n in ours.graph.nodes}
    q = nodes["view"].next  # the quantize of the view
    for name in ("view", q.name):
        assert nodes[name].meta["quantization_tag"] == "W", name


def test_dimname_transpose_is_a_view_op_of_the_legacy_profile_only() -> None:
    from portmeta.testing import GraphBuilder, static

    def graph() -> portmeta.Snapshot:
        b = GraphBuilder()
        x = b.placeholder("x")
        _, xdq = b.qdq(x)
        w = b.get_attr("w", tag="W")
        view = b.view(w, "aten.transpose.Dimname", "a", "b", name="view")
        _, wdq = b.qdq(view)
        lin = b.call("aten.linear.default", xdq, wdq, name="linear", tag="L")
        b.annotate(lin, inputs={x: static(), view: static()})
        b.output(lin)
        return b.build()

    legacy = portmeta.plan(graph(), portmeta.LEGACY_TORCH_AO).final_state()
    torchao = portmeta.plan(graph(), portmeta.TORCHAO).final_state()
    assert legacy["view"] == {"quantization_tag": "W"}
    assert "view" not in torchao
