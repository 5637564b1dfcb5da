"""The capture recipe of docs/testing-without-torch.md, for real: save the graph the port pass
sees during ``convert_pt2e``, then check torch-free that it plans to what torchao's pass wrote.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from parity import KEYS, TaggingQuantizer, port_keys_state
from torchao.quantization.pt2e import quantize_pt2e
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.testing.pt2e._xnnpack_quantizer import (
    XNNPACKQuantizer,
    get_symmetric_quantization_config,
)

import portmeta
import portmeta_fx
from portmeta.testing import NOTHING, assert_ported


class ConvRelu(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


INPUTS = (torch.randn(1, 3, 8, 8),)


@pytest.fixture(scope="module")
def exported() -> torch.fx.GraphModule:
    torch.manual_seed(0)
    return torch.export.export(ConvRelu().eval(), INPUTS, strict=False).module()


def prepared(exported: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """prepare_pt2e with a tagging XNNPACK quantizer, then calibration."""
    quantizer = TaggingQuantizer(
        XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    )
    m = prepare_pt2e(copy.deepcopy(exported), quantizer)
    with torch.no_grad():
        m(*INPUTS)
    return m


def test_dump_inside_torchaos_pass_plans_to_what_the_pass_wrote(
    exported: torch.fx.GraphModule, tmp_path: Path
) -> None:
    path = tmp_path / "conv_relu_graph.json"
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    class DumpBeforePorting(quantize_pt2e.PortNodeMetaForQDQ):  # type: ignore[misc]
        def call(self, graph_module: torch.fx.GraphModule) -> Any:
            portmeta_fx.dump(graph_module, path)  # the graph the pass sees
            before = port_keys_state(graph_module, KEYS)
            result = super().call(graph_module)  # torchao's own pass ports as usual
            seen.append((before, port_keys_state(graph_module, KEYS)))
            return result

    with mock.patch.object(quantize_pt2e, "PortNodeMetaForQDQ", DumpBeforePorting):
        converted = convert_pt2e(prepared(exported), fold_quantize=True)
    assert quantize_pt2e.PortNodeMetaForQDQ is not DumpBeforePorting
    (before, after) = seen[-1]

    # torch-free from here on: the saved file is the graph before porting...
    saved = portmeta.load_graph(path)
    assert {r.name: r.meta_dict() for r in portmeta.records(saved)} == before
    # ...and its plan leaves exactly the metadata torchao's pass left, node for node
    plan = portmeta.plan(saved)
    assert portmeta.final_meta(saved, plan) == after
    counts = plan.counts()
    assert counts["static_input"] > 0 and counts["get_attr_chain"] > 0
    assert counts["static_output"] > 0 and not plan.diagnostics
    # the doc's torch-free test style on the real names
    conv = next(r for r in portmeta.records(saved) if r.target.name == "aten.conv2d.default")
    x_dq, w_dq = (arg.name for arg in conv.args[:2])
    w_q = portmeta.record(saved, w_dq).args[0].name
    x_q = portmeta.record(saved, x_dq).args[0].name
    tag = conv.meta_dict()["quantization_tag"]
    assert_ported(
        saved,
        {
            x_dq: {"quantization_tag": tag},
            w_dq: {"quantization_tag": tag},
            w_q: {
                "quantization_tag": portmeta.record(saved, "conv_weight").meta_dict()[
                    "quantization_tag"
                ]
            },
            x_q: NOTHING,
        },
    )
    # why not dump after convert_pt2e: the pass has run, and fold_quantize=True folded the
    # weight's quantize into a constant
    folded = {n.name: n.op for n in converted.graph.nodes}
    assert portmeta.record(saved, w_q).op == "call_function" and folded[w_q] == "get_attr"
    assert "conv_weight" in saved and "conv_weight" not in folded


def test_last_snapshot_of_the_patched_convert_is_the_same_graph(
    exported: torch.fx.GraphModule, tmp_path: Path
) -> None:
    path = tmp_path / "via_torchao.json"

    class DumpBeforePorting(quantize_pt2e.PortNodeMetaForQDQ):  # type: ignore[misc]
        def call(self, graph_module: torch.fx.GraphModule) -> Any:
            portmeta_fx.dump(graph_module, path)
            return super().call(graph_module)

    with mock.patch.object(quantize_pt2e, "PortNodeMetaForQDQ", DumpBeforePorting):
        theirs = convert_pt2e(prepared(exported), fold_quantize=False)

    with portmeta_fx.patch_convert_pt2e() as passes:
        ours = convert_pt2e(prepared(exported), fold_quantize=False)
    portmeta.dump_graph(passes[-1].last_snapshot, tmp_path / "via_portmeta.json")

    a = portmeta.load_graph(path)
    b = portmeta.load_graph(tmp_path / "via_portmeta.json")
    assert portmeta.graph_to_dict(a) == portmeta.graph_to_dict(b)
    assert portmeta.plan(a) == portmeta.plan(b)
    assert port_keys_state(ours, KEYS) == port_keys_state(theirs, KEYS)
