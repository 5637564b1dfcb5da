"""``portmeta_fx.TagPartitions`` on real torchao quantizers: what it tags, and where tags end up.

The wrapper must tag every annotated node (an annotation with input specs or an output spec)
and the get_attr nodes it reads, nothing else, the same way on every run, without touching a
tag already set; after ``convert_pt2e`` the tags are on the quantize / dequantize /
choose_qparams nodes, the same with portmeta's pass and with torchao's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from parity import assert_same_meta
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer import Quantizer
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)
from torchao.testing.pt2e._xnnpack_quantizer import (
    XNNPACKQuantizer,
    get_symmetric_quantization_config,
)

import portmeta_fx
from portmeta_fx import TagPartitions, patch_convert_pt2e, tag_partitions
from portmeta_fx import quantizer as quantizer_module

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

TAG = "quantization_tag"
ANNOTATION = "quantization_annotation"


class Net(torch.nn.Module):
    """conv+relu and conv, concatenated, pooled; linear+relu with a residual add; linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = torch.nn.Conv2d(3, 4, 3)
        self.conv_b = torch.nn.Conv2d(3, 4, 3)
        self.fc1 = torch.nn.Linear(8, 8)
        self.fc2 = torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv_a(x))
        b = self.conv_b(x)
        y = F.adaptive_avg_pool2d(torch.cat([a, b], 1), 1).flatten(1)
        y = torch.relu(self.fc1(y)) + y
        out: torch.Tensor = self.fc2(y)
        return out


INPUTS = (torch.randn(2, 3, 8, 8),)


def xnnpack(dynamic: bool) -> Quantizer:
    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    return XNNPACKQuantizer().set_global(config)


def x86(dynamic: bool) -> Quantizer:
    config = get_default_x86_inductor_quantization_config(is_dynamic=dynamic)
    return X86InductorQuantizer().set_global(config)


QUANTIZERS: dict[str, Callable[[], Quantizer]] = {
    "xnnpack_static": lambda: xnnpack(False),
    "xnnpack_dynamic": lambda: xnnpack(True),
    "x86_static": lambda: x86(False),
    "x86_dynamic": lambda: x86(True),
}

#: The partitions each quantizer makes of :class:`Net` with the default tags.
EXPECTED = {
    "xnnpack_static": {
        "conv2d_0": ["conv2d", "conv_a_weight", "conv_a_bias"],
        "relu_0": ["relu"],
        "conv2d_1": ["conv2d_1", "conv_b_weight", "conv_b_bias"],
        "linear_0": ["linear", "fc1_weight", "fc1_bias"],
        "relu_1": ["relu_1"],
        "add_0": ["add"],
        "linear_1": ["linear_1", "fc2_weight", "fc2_bias"],
    },
    "xnnpack_dynamic": {
        "linear_0": ["linear", "fc1_weight", "fc1_bias"],
        "linear_1": ["linear_1", "fc2_weight", "fc2_bias"],
    },
}
_X86 = {
    "conv2d_0": ["conv2d", "conv_a_weight", "conv_a_bias"],
    "conv2d_1": ["conv2d_1", "conv_b_weight", "conv_b_bias"],
    "linear_0": ["linear", "fc1_weight", "fc1_bias"],
    "linear_1": ["linear_1", "fc2_weight", "fc2_bias"],
}
EXPECTED["x86_static"] = EXPECTED["x86_dynamic"] = _X86

_EXPORTED: list[torch.fx.GraphModule] = []


def exported() -> torch.fx.GraphModule:
    """A fresh copy of :class:`Net` exported once (seeded weights)."""
    if not _EXPORTED:
        torch.manual_seed(0)
        _EXPORTED.append(torch.export.export(Net().eval(), INPUTS, strict=False).module())
    return copy.deepcopy(_EXPORTED[0])


def ported_from(node: torch.fx.Node) -> bool:
    """What the pass ports from: an annotation with input specs or an output spec."""
    annotation = node.meta.get(ANNOTATION)
    return annotation is not None and (
        len(annotation.input_qspec_map) > 0 or annotation.output_qspec is not None
    )


def tags(gm: torch.fx.GraphModule) -> dict[str, Any]:
    return {n.name: n.meta[TAG] for n in gm.graph.nodes if TAG in n.meta}


def prepare(name: str, **kwargs: Any) -> tuple[torch.fx.GraphModule, TagPartitions]:
    wrapper = TagPartitions(QUANTIZERS[name](), **kwargs)
    return prepare_pt2e(exported(), wrapper), wrapper


def annotate(name: str, **kwargs: Any) -> tuple[torch.fx.GraphModule, TagPartitions]:
    """The graph as the wrapper leaves it (``prepare_pt2e`` then puts observers between the
    annotated nodes and their inputs)."""
    wrapper = TagPartitions(QUANTIZERS[name](), **kwargs)
    gm = wrapper.transform_for_annotation(exported())
    return wrapper.annotate(gm), wrapper


def is_qdq(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and node.target in portmeta_qdq_ops()


def portmeta_qdq_ops() -> set[Any]:
    qd = torch.ops.quantized_decomposed
    return {
        qd.quantize_per_tensor.default,
        qd.quantize_per_tensor.tensor,
        qd.dequantize_per_tensor.default,
        qd.dequantize_per_tensor.tensor,
        qd.quantize_per_channel.default,
        qd.dequantize_per_channel.default,
        qd.choose_qparams.tensor,
    }


# --------------------------------------------------------------------------- what gets tagged


@pytest.mark.parametrize("name", list(QUANTIZERS))
def test_every_annotated_node_and_its_weights_and_nothing_else(name: str) -> None:
    annotated, wrapper = annotate(name)
    assert wrapper.partitions == EXPECTED[name]
    found = tags(annotated)
    expected: dict[str, str] = {}
    for n in annotated.graph.nodes:
        if ported_from(n):
            expected[n.name] = found.get(n.name, "<untagged>")
            for arg in n.all_input_nodes:
                if arg.op == "get_attr":
                    expected.setdefault(arg.name, expected[n.name])
    assert found == expected
    # torchao's empty "handled" annotations (XNNPACK marks the weights) are no partitions
    handled = [n.name for n in annotated.graph.nodes if ANNOTATION in n.meta and not ported_from(n)]
    assert bool(handled) == name.startswith("xnnpack")
    assert len({found[n.name] for n in annotated.graph.nodes if ported_from(n)}) == len(
        EXPECTED[name]
    )
    # prepare_pt2e keeps them
    prepared, _ = prepare(name)
    assert tags(prepared) == found


@pytest.mark.parametrize("name", list(QUANTIZERS))
def test_deterministic_across_runs(name: str) -> None:
    first, a = prepare(name)
    second, b = prepare(name)
    assert tags(first) == tags(second) and a.partitions == b.partitions
    assert list(tags(first)) == [n.name for n in first.graph.nodes if TAG in n.meta]


class PreTagging(Quantizer):  # type: ignore[misc]
    """A quantizer that tags some nodes itself after the real one annotated."""

    def __init__(self, inner: Quantizer, preset: dict[str, str]) -> None:
        super().__init__()
        self.inner = inner
        self.preset = preset

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        self.inner.annotate(model)
        for n in model.graph.nodes:
            if n.name in self.preset:
                n.meta[TAG] = self.preset[n.name]
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        self.inner.validate(model)


def test_keeps_existing_tags() -> None:
    preset = {"linear": "mine", "fc2_bias": "bias of my own", "conv2d_1": "linear_0"}
    inner = PreTagging(xnnpack(False), preset)
    wrapper = TagPartitions(inner)
    prepared = prepare_pt2e(exported(), wrapper)
    found = tags(prepared)
    for node, tag in preset.items():
        assert found[node] == tag
    assert found["fc1_weight"] == found["fc1_bias"] == "mine"  # the node's tag, kept
    assert found["linear_1"] == found["fc2_weight"] == "linear_1"  # "linear_0" is taken
    assert found["conv_b_weight"] == "linear_0"
    assert not any("linear" in names for names in wrapper.partitions.values())
    assert found["conv2d"] == "conv2d_0"


def test_custom_tag_function() -> None:
    """One partition for an op and the ReLU after it; the convolutions left untagged."""
    seen: list[str] = []

    def fused(node: torch.fx.Node) -> str | None:
        seen.append(node.name)
        source = node.args[0] if node.target == torch.ops.aten.relu.default else node
        assert isinstance(source, torch.fx.Node)
        if source.target == torch.ops.aten.conv2d.default:
            return None
        return f"group_{source.name}"

    prepared, wrapper = prepare("xnnpack_static", tag=fused)
    assert seen == ["conv2d", "relu", "conv2d_1", "linear", "relu_1", "add", "linear_1"]
    assert wrapper.partitions == {
        "group_linear": ["linear", "fc1_weight", "fc1_bias", "relu_1"],
        "group_add": ["add"],
        "group_linear_1": ["linear_1", "fc2_weight", "fc2_bias"],
    }
    found = tags(prepared)
    for untagged in ("conv2d", "relu", "conv2d_1", "conv_a_weight", "conv_b_bias"):
        assert untagged not in found


def test_tag_function_must_return_a_string() -> None:
    with pytest.raises(TypeError, match="tag\\('conv2d'\\) returned 3"):
        prepare("xnnpack_static", tag=lambda node: 3)


def test_weights_read_through_view_ops() -> None:
    """A weight the pass reaches through a permute (its get_attr chain) gets the node's tag."""
    g = torch.fx.Graph()
    x, w, unread = g.placeholder("x"), g.get_attr("w"), g.get_attr("unread")
    wt = g.call_function(torch.ops.aten.permute.default, (w, [1, 0]))
    lin = g.create_node("call_function", torch.ops.aten.linear.default, (x, wt), name="linear")
    g.output((lin, unread))
    spec = get_symmetric_quantization_config().input_activation
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    lin.meta[ANNOTATION] = QuantizationAnnotation(input_qspec_map={x: spec, wt: spec})
    assert tag_partitions(g) == {"linear_0": ["linear", "w"]}
    assert TAG not in wt.meta and TAG not in unread.meta


def test_delegates_to_the_wrapped_quantizer() -> None:
    calls: list[str] = []

    class Spy(Quantizer):  # type: ignore[misc]
        def transform_for_annotation(self, model: torch.fx.GraphModule) -> Any:
            calls.append("transform")
            return model

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            calls.append("annotate")
            return model

        def validate(self, model: torch.fx.GraphModule) -> None:
            calls.append("validate")

        def prepare_obs_or_fq_callback(self, model: Any, edge_or_node_to_obs_or_fq: Any) -> None:
            calls.append("callback")

    prepared = prepare_pt2e(exported(), TagPartitions(Spy()))
    assert calls == ["transform", "annotate", "validate", "callback"]
    assert tags(prepared) == {}


def test_exported_lazily_from_portmeta_fx() -> None:
    assert portmeta_fx.TagPartitions is quantizer_module.TagPartitions
    assert "TagPartitions" in dir(portmeta_fx) and "TagPartitions" not in portmeta_fx.__all__
    with pytest.raises(AttributeError):
        _ = portmeta_fx.NoSuchName


# --------------------------------------------------------------------------- after convert


@pytest.mark.parametrize("fold", [False, True], ids=["nofold", "fold"])
@pytest.mark.parametrize("name", list(QUANTIZERS))
def test_tags_reach_the_qdq_nodes_the_same_with_both_passes(name: str, fold: bool) -> None:
    converted = []
    for ours in (True, False):
        prepared, wrapper = prepare(name)
        with torch.no_grad():
            prepared(*INPUTS)
        if ours:
            with patch_convert_pt2e() as created:
                converted.append(convert_pt2e(prepared, fold_quantize=fold))
            assert len(created) == 1
        else:
            converted.append(convert_pt2e(prepared, fold_quantize=fold))
    assert_same_meta(converted[0], converted[1])
    qdq_tags = {n.meta[TAG] for n in converted[0].graph.nodes if is_qdq(n) and TAG in n.meta}
    # every partition's tag is on some quantize / dequantize / choose_qparams node, and no
    # other tag is
    assert qdq_tags == set(wrapper.partitions)


def test_the_docs_example_runs_as_written() -> None:
    """docs/check.md's "Tagging partitions" snippets, on the model its comments describe."""
    import re
    from collections import OrderedDict
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "check.md").read_text(encoding="utf-8")
    section = doc.split("\n## Tagging partitions\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert len(blocks) == 2
    torch.manual_seed(0)
    layers = OrderedDict(fc1=torch.nn.Linear(4, 4), act=torch.nn.ReLU(), fc2=torch.nn.Linear(4, 2))
    namespace: dict[str, Any] = {"model": torch.nn.Sequential(layers).eval()}
    namespace["example"] = (torch.randn(1, 4),)
    exec(compile(blocks[0], "docs/check.md", "exec"), namespace)
    shown = re.search(r"quantizer\.partitions +# (\{.*), \.\.\.\}", blocks[0])
    assert shown is not None
    partitions = namespace["quantizer"].partitions
    assert repr(partitions).startswith(shown.group(1))
    assert tags(namespace["converted"]) and namespace["passes"][0].last_findings == ()
    exec(compile(blocks[1], "docs/check.md", "exec"), namespace)
    grouped = prepare_pt2e(
        torch.export.export(namespace["model"], namespace["example"]).module(),
        namespace["quantizer"],
    )
    assert set(tags(grouped).values()) == {"linear_part", "linear_1_part"}


# --------------------------------------------------------------------------- loop bodies


class LinearThenScan(torch.nn.Module):
    """A linear at the top level, then a scan whose combine_fn runs another linear."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Linear(4, 4)
        self.inner = torch.nn.Linear(4, 4)

    def forward(self, xs: torch.Tensor) -> Any:
        from torch._higher_order_ops.scan import scan

        def combine(carry: torch.Tensor, x: torch.Tensor) -> Any:
            y = self.inner(carry + x)
            return y, y.clone()

        return scan(combine, torch.zeros(4), self.first(xs))


def test_a_loop_body_goes_on_with_the_models_tags() -> None:
    torch.manual_seed(0)
    exported = torch.export.export(
        LinearThenScan().eval(), (torch.randn(3, 4),), strict=False
    ).module()
    config = get_symmetric_quantization_config(is_per_channel=True)
    wrapper = TagPartitions(XNNPACKQuantizer().set_global(config))
    prepared = prepare_pt2e(copy.deepcopy(exported), wrapper)
    body = "scan_combine_graph_0"
    assert wrapper.partitions == {
        "linear_0": ["linear", "first_weight", "first_bias"],
        "add_0": [f"{body}:add"],
        "linear_1": [f"{body}:linear"],  # the body reads its weights as inputs
    }
    graphs = portmeta_fx.subgraph_modules(prepared)
    tags = {
        name: {n.meta[TAG] for n in g.graph.nodes if TAG in n.meta} for name, g in graphs.items()
    }
    assert tags == {"": {"linear_0"}, body: {"add_0", "linear_1"}}
    # the same wrapper on another model starts again
    again = prepare_pt2e(copy.deepcopy(exported), wrapper)
    assert list(wrapper.partitions) == ["linear_0", "add_0", "linear_1"]
    assert again is not prepared
