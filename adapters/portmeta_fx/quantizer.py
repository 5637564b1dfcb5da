"""A small tagging quantizer for torchao's PT2E flow (used by the demo and the tests).

:class:`TaggingQuantizer` annotates like a backend would: static int8 ``conv2d``,
``adaptive_avg_pool2d`` and ``linear`` (per-tensor affine activations, per-channel symmetric
weights, float bias), the pool's output sharing its input's observer
(``SharedQuantizationSpec``). With ``dynamic_linear=True`` the linear's activation input is
quantized dynamically (``is_dynamic=True``, choose_qparams at run time) and its output is left
in float. Like a backend that delegates partitions, it tags every annotated partition: the
annotated node and its weight / bias ``get_attr`` nodes get ``node.meta["quantization_tag"]``
(``conv2d_0``, ``adaptive_avg_pool2d_0``, ``linear_0``...). The PT2E ``convert`` then ports
those tags (and stack traces) onto the quantize / dequantize nodes it inserts, which is what
``PortNodeMetaForQDQ`` (and portmeta) is about.

Example
-------
>>> import torch
>>> from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
>>> m = torch.nn.Sequential(torch.nn.Linear(4, 2)).eval()
>>> gm = torch.export.export(m, (torch.randn(1, 4),)).module()
>>> prepared = prepare_pt2e(gm, TaggingQuantizer())
>>> sorted(n.meta["quantization_tag"] for n in prepared.graph.nodes if "quantization_tag" in n.meta)
['linear_0', 'linear_0', 'linear_0']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
import torch.fx
from torchao.quantization.pt2e import (  # type: ignore[import-untyped]
    MinMaxObserver,
    PerChannelMinMaxObserver,
    PlaceholderObserver,
)
from torchao.quantization.pt2e.quantizer import (  # type: ignore[import-untyped]
    QuantizationAnnotation,
    QuantizationSpec,
    Quantizer,
    SharedQuantizationSpec,
)

from .snapshot import Q_ANNOTATION_KEY

__all__ = [
    "TAG_KEY",
    "TaggingQuantizer",
    "static_activation_spec",
    "dynamic_activation_spec",
    "weight_spec",
]

#: The metadata key backends tag partitions with (one of the keys the pass ports).
TAG_KEY = "quantization_tag"


aten = torch.ops.aten


def static_activation_spec() -> QuantizationSpec:
    """Static per-tensor affine int8, observed with a min/max observer during calibration."""
    return QuantizationSpec(
        dtype=torch.int8,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_affine,
        is_dynamic=False,
        observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12),
    )


def dynamic_activation_spec() -> QuantizationSpec:
    """Dynamic per-tensor affine int8: choose_qparams computes scale/zero point at run time."""
    return QuantizationSpec(
        dtype=torch.int8,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_affine,
        is_dynamic=True,
        observer_or_fake_quant_ctr=PlaceholderObserver.with_args(is_dynamic=True),
    )


def weight_spec() -> QuantizationSpec:
    """Per-output-channel symmetric int8 weights."""
    return QuantizationSpec(
        dtype=torch.int8,
        quant_min=-127,
        quant_max=127,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
        is_dynamic=False,
        observer_or_fake_quant_ctr=PerChannelMinMaxObserver.with_args(eps=2**-12),
    )


class TaggingQuantizer(Quantizer):  # type: ignore[misc]
    """Annotate conv2d / adaptive_avg_pool2d / linear and tag each annotated partition.

    Parameters
    ----------
    dynamic_linear:
        Quantize the linear's activation input dynamically (and leave its output float).
    tag:
        Whether to set ``quantization_tag`` on each partition (on by default).

    Attributes
    ----------
    partitions:
        After :meth:`annotate`: ``{tag: [node names]}`` of the partitions tagged.
    """

    def __init__(self, *, dynamic_linear: bool = False, tag: bool = True) -> None:
        super().__init__()
        self.dynamic_linear = dynamic_linear
        self.tag = tag
        self.partitions: dict[str, list[str]] = {}

    # -- helpers ----------------------------------------------------------------------------
    def _tag(self, kind: str, counter: Counter[str], nodes: list[torch.fx.Node]) -> None:
        name = f"{kind}_{counter[kind]}"
        counter[kind] += 1
        self.partitions[name] = [n.name for n in nodes]
        if self.tag:
            for n in nodes:
                n.meta[TAG_KEY] = name

    @staticmethod
    def _params(node: torch.fx.Node) -> list[torch.fx.Node]:
        return [a for a in node.args[1:3] if isinstance(a, torch.fx.Node) and a.op == "get_attr"]

    @staticmethod
    def _mark(node: torch.fx.Node, annotation: QuantizationAnnotation) -> None:
        annotation._annotated = True
        node.meta[Q_ANNOTATION_KEY] = annotation

    # -- the patterns -----------------------------------------------------------------------
    def _conv_or_linear(self, node: torch.fx.Node, dynamic: bool) -> None:
        act, weight = node.args[0], node.args[1]
        assert isinstance(act, torch.fx.Node) and isinstance(weight, torch.fx.Node)
        act_spec = dynamic_activation_spec() if dynamic else static_activation_spec()
        self._mark(
            node,
            QuantizationAnnotation(
                input_qspec_map={act: act_spec, weight: weight_spec()},
                output_qspec=None if dynamic else static_activation_spec(),
            ),
        )

    def _pool(self, node: torch.fx.Node) -> None:
        act = node.args[0]
        assert isinstance(act, torch.fx.Node)
        self._mark(
            node,
            QuantizationAnnotation(
                input_qspec_map={act: static_activation_spec()},
                output_qspec=SharedQuantizationSpec((act, node)),
            ),
        )

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        """Annotate (and tag) the supported ops of ``model`` in place; returns ``model``."""
        counter: Counter[str] = Counter()
        self.partitions = {}
        handlers: dict[object, tuple[str, Callable[[torch.fx.Node], None]]] = {
            aten.conv2d.default: ("conv2d", lambda n: self._conv_or_linear(n, False)),
            aten.adaptive_avg_pool2d.default: ("adaptive_avg_pool2d", self._pool),
            aten.linear.default: (
                "linear",
                lambda n: self._conv_or_linear(n, self.dynamic_linear),
            ),
        }
        for node in model.graph.nodes:
            if node.op != "call_function" or node.target not in handlers:
                continue
            ann = node.meta.get(Q_ANNOTATION_KEY)
            if ann is not None and getattr(ann, "_annotated", False):
                continue
            kind, handle = handlers[node.target]
            handle(node)
            self._tag(kind, counter, [node, *self._params(node)])
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        """Nothing to check: every annotation this quantizer makes is supported."""
