"""Parity on real PT2E flows: portmeta's pass vs torchao's, node for node.

Each case exports a small model once (module-level cache), then prepares / calibrates / converts
two copies with the same quantizer (wrapped by ``TaggingQuantizer`` so that annotated nodes
and the weights they read carry ``quantization_tag`` and sometimes a ``None`` stack trace),
converting one with ``patch_convert_pt2e`` and one with plain ``convert_pt2e``, for
``fold_quantize`` False and True. The final ``stack_trace`` / ``quantization_tag`` of every
node must agree (presence, value and object sharing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
import torch
from parity import assert_same_meta, quantize_pair
from torch.export import Dim
from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, Quantizer
from torchao.quantization.pt2e.quantizer.composable_quantizer import ComposableQuantizer
from torchao.quantization.pt2e.quantizer.embedding_quantizer import EmbeddingQuantizer
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)
from torchao.testing.pt2e._xnnpack_quantizer import (
    XNNPACKQuantizer,
    get_symmetric_quantization_config,
)

import portmeta

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

# --------------------------------------------------------------------------- models


class ConvNet(torch.nn.Module):
    """conv/relu, residual add, maxpool, cat, pool, flatten, linear: static patterns galore."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(3, 4, 1)
        self.linear = torch.nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv1(x))
        b = self.conv2(a) + a
        c = torch.cat([torch.nn.functional.max_pool2d(b, 2), self.conv3(x)[:, :, ::2, ::2]], 1)
        d = torch.nn.functional.adaptive_avg_pool2d(c, 1).flatten(1)
        return self.linear(d)


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.fc2 = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class SymConv(torch.nn.Module):
    """Batch-dynamic: ``view(x.shape[0], -1)`` makes ``sym_size`` nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3)
        self.linear = torch.nn.Linear(18, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = y.view(y.shape[0], -1)
        return self.linear(y) + y.shape[0]


class ViewWeights(torch.nn.Module):
    """Weights reach matmul through view ops: t / transpose / permute / view / squeeze."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(6, 8))
        self.w2 = torch.nn.Parameter(torch.randn(6, 6))
        self.w3 = torch.nn.Parameter(torch.randn(2, 3, 6))
        self.w4 = torch.nn.Parameter(torch.randn(1, 6, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.w1.t()
        y = y @ self.w2.transpose(0, 1)
        y = y @ self.w2.permute(1, 0)
        y = y @ self.w3.view(6, 6)
        return y @ self.w4.squeeze(0)


class Embed(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(10, 8)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.fc(self.emb(idx))


# --------------------------------------------------------------------------- quantizers


class WeightViewQuantizer(Quantizer):
    """Annotate every matmul / mm: both inputs and the output, static per-tensor."""

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        config = get_symmetric_quantization_config()
        act = config.input_activation
        for n in model.graph.nodes:
            if n.op == "call_function" and n.target in (
                torch.ops.aten.matmul.default,
                torch.ops.aten.mm.default,
            ):
                n.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={a: act for a in n.args if isinstance(a, torch.fx.Node)},
                    output_qspec=config.output_activation,
                    _annotated=True,
                )
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        pass


class AffineLinearQuantizer(Quantizer):  # type: ignore[misc]
    """Annotates linear with torchao's *affine* observers, so convert inserts the
    ``torchao.quantize_affine`` / ``dequantize_affine`` (and, dynamic, ``choose_qparams_affine``)
    packets as targets: per-token activations, per-channel weights."""

    def __init__(self, dynamic: bool = False) -> None:
        super().__init__()
        self.dynamic = dynamic

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        from torchao.quantization.granularity import PerAxis, PerToken
        from torchao.quantization.pt2e._affine_quantization import (
            AffineQuantizedMinMaxObserver,
            AffineQuantizedPlaceholderObserver,
        )
        from torchao.quantization.pt2e.quantizer import QuantizationSpec
        from torchao.quantization.quant_primitives import MappingType

        def spec(granularity: Any, dynamic: bool) -> QuantizationSpec:
            # a dynamic spec needs the placeholder observer, which converts to
            # choose_qparams_affine -> getitem -> quantize_affine -> dequantize_affine
            observer = (
                AffineQuantizedPlaceholderObserver if dynamic else AffineQuantizedMinMaxObserver
            )
            return QuantizationSpec(
                dtype=torch.int8,
                observer_or_fake_quant_ctr=observer.with_args(
                    mapping_type=MappingType.ASYMMETRIC,
                    target_dtype=torch.int8,
                    granularity=granularity,
                    eps=torch.finfo(torch.float32).eps,
                    scale_dtype=torch.float32,
                    zero_point_dtype=torch.int8,
                    is_dynamic=dynamic,
                ),
                is_dynamic=dynamic,
            )

        for n in model.graph.nodes:
            if n.op == "call_function" and n.target == torch.ops.aten.linear.default:
                x, w = n.args[0], n.args[1]
                n.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={x: spec(PerToken(), self.dynamic), w: spec(PerAxis(0), False)},
                    output_qspec=None if self.dynamic else spec(PerToken(), False),
                    _annotated=True,
                )
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        pass


def x86_static() -> Quantizer:
    return X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())


def x86_dynamic() -> Quantizer:
    return X86InductorQuantizer().set_global(
        get_default_x86_inductor_quantization_config(is_dynamic=True)
    )


def xnn(per_channel: bool = True, dynamic: bool = False) -> Callable[[], Quantizer]:
    def make() -> Quantizer:
        return XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=dynamic)
        )

    return make


def embedding_composable() -> Quantizer:
    return ComposableQuantizer([EmbeddingQuantizer(), xnn(True, True)()])


# --------------------------------------------------------------------------- cases


@attrs.frozen
class Case:
    model: Callable[[], torch.nn.Module]
    inputs: Callable[[], tuple[Any, ...]]
    quantizer: Callable[[], Any]
    dynamic_shapes: Any = None


def _img(n: int = 2) -> tuple[Any, ...]:
    return (torch.randn(n, 3, 8, 8),)


CASES: dict[str, Case] = {
    "x86_static_convnet": Case(ConvNet, _img, x86_static),
    "x86_dynamic_mlp": Case(MLP, lambda: (torch.randn(3, 8),), x86_dynamic),
    "x86_static_mlp": Case(MLP, lambda: (torch.randn(3, 8),), x86_static),
    "xnn_static_convnet": Case(ConvNet, _img, xnn(True)),
    "xnn_static_per_tensor_convnet": Case(ConvNet, _img, xnn(False)),
    "xnn_dynamic_mlp": Case(MLP, lambda: (torch.randn(3, 8),), xnn(True, True)),
    "xnn_static_symint": Case(
        SymConv,
        lambda: (torch.randn(3, 3, 5, 5),),
        xnn(True),
        ({0: Dim("batch", min=2, max=64)},),
    ),
    "xnn_dynamic_symint": Case(
        SymConv,
        lambda: (torch.randn(3, 3, 5, 5),),
        xnn(True, True),
        ({0: Dim("batch", min=2, max=64)},),
    ),
    "x86_static_symint": Case(
        SymConv,
        lambda: (torch.randn(3, 3, 5, 5),),
        x86_static,
        ({0: Dim("batch", min=2, max=64)},),
    ),
    "weights_through_views": Case(ViewWeights, lambda: (torch.randn(4, 8),), WeightViewQuantizer),
    "affine_static_mlp": Case(MLP, lambda: (torch.randn(3, 8),), AffineLinearQuantizer),
    "affine_dynamic_mlp": Case(
        MLP, lambda: (torch.randn(3, 8),), lambda: AffineLinearQuantizer(dynamic=True)
    ),
    "embedding": Case(Embed, lambda: (torch.randint(0, 10, (2, 5)),), EmbeddingQuantizer),
    "embedding_composable": Case(
        Embed, lambda: (torch.randint(0, 10, (2, 5)),), embedding_composable
    ),
}

_EXPORTS: dict[str, tuple[torch.fx.GraphModule, tuple[Any, ...]]] = {}


def _export(name: str) -> tuple[torch.fx.GraphModule, tuple[Any, ...]]:
    if name not in _EXPORTS:
        case = CASES[name]
        torch.manual_seed(0)
        model = case.model().eval()
        inputs = case.inputs()
        ep = torch.export.export(model, inputs, dynamic_shapes=case.dynamic_shapes, strict=False)
        _EXPORTS[name] = (ep.module(), inputs)
    return _EXPORTS[name]


#: ``dynamic_chain="feeding"``: every consumer of these flows has a chain of its own (convert
#: shares none), so the option must change nothing.
FEEDING = attrs.evolve(portmeta.TORCHAO, dynamic_chain="feeding")


@pytest.mark.parametrize("chain", ["search", "feeding"])
@pytest.mark.parametrize("fold", [False, True], ids=["nofold", "fold"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity(name: str, fold: bool, chain: str) -> None:
    exported, inputs = _export(name)
    profile = FEEDING if chain == "feeding" else portmeta.TORCHAO
    ours, theirs, passes = quantize_pair(
        torch.nn.Module(),
        inputs,
        CASES[name].quantizer,
        fold_quantize=fold,
        exported=exported,
        profile=profile,
    )
    assert_same_meta(ours, theirs)
    (p,) = passes
    assert p.last_plan is not None
    assert p.last_plan.profile == profile
    # the flows really port something: every case has at least one write
    assert p.last_plan.deltas, f"{name}: nothing ported"
    assert not p.last_plan.errors
    # every dynamic consumer reads its own chain: "feeding" never falls back to the search
    assert not [d for d in p.last_plan.diagnostics if d.kind == "dynamic_search"]
    # a clean flow stays clean under the check's default (tags where there are tags)
    assert p.last_snapshot is not None
    assert portmeta.check(p.last_snapshot, plan=p.last_plan) == ()


@pytest.mark.parametrize("name", ["affine_static_mlp", "affine_dynamic_mlp"])
def test_affine_flows_port_onto_packet_targets(name: str) -> None:
    """The affine cases really go through torchao's packets (not overloads) and get tags."""
    exported, inputs = _export(name)
    ours, _theirs, _ = quantize_pair(
        torch.nn.Module(), inputs, CASES[name].quantizer, fold_quantize=False, exported=exported
    )
    aff = {
        torch.ops.torchao.quantize_affine,
        torch.ops.torchao.dequantize_affine,
        torch.ops.torchao.choose_qparams_affine,
    }
    tagged = [n for n in ours.graph.nodes if n.target in aff and "quantization_tag" in n.meta]
    assert any(n.target is torch.ops.torchao.dequantize_affine for n in tagged)
    if name == "affine_dynamic_mlp":
        assert any(n.target is torch.ops.torchao.choose_qparams_affine for n in tagged)


def test_symint_graphs_have_sym_size_nodes() -> None:
    exported, _ = _export("xnn_static_symint")
    assert any(
        n.op == "call_function" and "sym_size" in str(n.target) for n in exported.graph.nodes
    )


def test_view_weights_reach_get_attr() -> None:
    """The get_attr view-chain rule fires on every viewed weight (q and the view ops)."""
    exported, inputs = _export("weights_through_views")
    _ours, _theirs, passes = quantize_pair(
        torch.nn.Module(), inputs, WeightViewQuantizer, fold_quantize=False, exported=exported
    )
    plan = passes[0].last_plan
    assert plan is not None
    chain_targets = {d.target for d in plan.deltas if d.rule.value == "get_attr_chain"}
    kinds = {t.split("_")[0] for t in chain_targets}
    assert {"permute", "transpose", "view", "squeeze", "quantize"} <= kinds, chain_targets


@pytest.mark.parametrize("name", ["xnn_static_convnet", "xnn_dynamic_mlp"])
def test_converting_a_deepcopy_of_a_prepared_model(name: str) -> None:
    """FX copies ``node.meta`` shallowly, so a deep-copied prepared model's annotations still
    name the *original* graph's nodes: every annotated input is stale. Upstream then ports no
    input (static) or fails to find choose_qparams (dynamic, ``ValueError``); so does portmeta."""
    import copy

    from parity import TaggingQuantizer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from portmeta_fx import patch_convert_pt2e

    exported, inputs = _export(name)
    prepared = prepare_pt2e(copy.deepcopy(exported), TaggingQuantizer(CASES[name].quantizer()))
    prepared(*inputs)
    outcomes: list[Any] = []
    for ours in (True, False):
        m = copy.deepcopy(prepared)
        try:
            if ours:
                with patch_convert_pt2e():
                    m = convert_pt2e(m, fold_quantize=False)
            else:
                m = convert_pt2e(m, fold_quantize=False)
            outcomes.append(m)
        except Exception as exc:  # PassManager wraps the pass's exception
            outcomes.append(exc)
    if name.startswith("xnn_dynamic"):
        causes = [o.__cause__ for o in outcomes]
        assert all(isinstance(c, ValueError) for c in causes), causes
    else:
        assert_same_meta(outcomes[0], outcomes[1])
