"""A converted-like FX graph built with torch alone: no torchao import anywhere in this file.

``torch.ops.quantized_decomposed`` is registered by ``torch.ao.quantization.fx._decomposed``
(still in torch 2.13, which no longer has ``torch.ao.quantization.pt2e``); annotations are
plain stand-ins with the two attributes the pass reads (``input_qspec_map``,
``output_qspec``), and specs carry ``is_dynamic`` (or, like a shared spec, do not).
``test_without_torchao.py`` runs the drop-in pass on it in a process where torchao cannot be
imported, and torchao's own pass on it in this one.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.ao.quantization.fx._decomposed  # registers torch.ops.quantized_decomposed
import torch.fx

QD = torch.ops.quantized_decomposed
ATEN = torch.ops.aten
KEYS = ("stack_trace", "quantization_tag")


class Spec:
    """Stands in for a ``QuantizationSpec``: only ``is_dynamic`` is read."""

    def __init__(self, is_dynamic: bool = False) -> None:
        self.is_dynamic = is_dynamic


class SharedSpec:
    """Stands in for a ``SharedQuantizationSpec``: no ``is_dynamic`` at all (static)."""


class Annotation:
    """Stands in for a ``QuantizationAnnotation``."""

    def __init__(self, input_qspec_map: dict[Any, Any], output_qspec: Any = None) -> None:
        self.input_qspec_map = input_qspec_map
        self.output_qspec = output_qspec


def build() -> torch.fx.GraphModule:
    """x -> q/dq -> linear(w through permute) -> q/dq -> relu -> q/dq -> dynamic linear -> out.

    ``linear`` (tag L) and ``relu`` (tag R) are static; ``dyn`` (tag D) quantizes its
    activation dynamically (choose_qparams -> getitem scale / zero_point -> q -> dq); the
    weights ``w`` (tag W) and ``w2`` (tag W2) are read through q/dq, ``w`` behind a permute.
    """
    g = torch.fx.Graph()
    root = torch.nn.Module()
    root.register_buffer("w", torch.randn(4, 4))
    root.register_buffer("w2", torch.randn(4, 4))

    def call(target: Any, *args: Any, name: str, **meta: Any) -> torch.fx.Node:
        node = g.create_node("call_function", target, args, {}, name=name)
        node.meta.update(meta)
        return node

    def qdq(src: torch.fx.Node, name: str) -> tuple[torch.fx.Node, torch.fx.Node]:
        q = call(
            QD.quantize_per_tensor.default, src, 0.1, 0, -128, 127, torch.int8, name=f"{name}_q"
        )
        dq = call(
            QD.dequantize_per_tensor.default, q, 0.1, 0, -128, 127, torch.int8, name=f"{name}_dq"
        )
        return q, dq

    x = g.placeholder("x")
    x.meta["stack_trace"] = "x.py:1"
    w = g.get_attr("w")
    w.meta.update(quantization_tag="W", stack_trace="w.py:1")
    w2 = g.get_attr("w2")
    w2.meta["quantization_tag"] = "W2"
    _, x_dq = qdq(x, "x")
    wt = call(ATEN.permute.default, w, [1, 0], name="wt")
    _, wt_dq = qdq(wt, "wt")
    linear = call(
        ATEN.linear.default, x_dq, wt_dq, name="linear", quantization_tag="L", stack_trace="m.py:3"
    )
    linear.meta["quantization_annotation"] = Annotation({x: Spec(), wt: Spec()}, Spec())
    _, lin_dq = qdq(linear, "linear")
    relu = call(ATEN.relu.default, lin_dq, name="relu", quantization_tag="R", stack_trace=None)
    relu.meta["quantization_annotation"] = Annotation({linear: SharedSpec()}, SharedSpec())
    _, relu_dq = qdq(relu, "relu")
    cq = call(QD.choose_qparams.tensor, relu_dq, -128, 127, 1e-5, torch.int8, name="cq")
    scale = call(operator.getitem, cq, 0, name="scale")
    zp = call(operator.getitem, cq, 1, name="zp")
    dyn_q = call(
        QD.quantize_per_tensor.tensor, relu_dq, scale, zp, -128, 127, torch.int8, name="dyn_q"
    )
    dyn_dq = call(
        QD.dequantize_per_tensor.tensor, dyn_q, scale, zp, -128, 127, torch.int8, name="dyn_dq"
    )
    _, w2_dq = qdq(w2, "w2")
    dyn = call(ATEN.linear.default, dyn_dq, w2_dq, name="dyn", quantization_tag="D")
    dyn.meta["stack_trace"] = "m.py:9"
    dyn.meta["quantization_annotation"] = Annotation(
        {relu: Spec(is_dynamic=True), w2: Spec()}, None
    )
    g.output(dyn)
    return torch.fx.GraphModule(root, g)


def state(gm: torch.fx.GraphModule) -> dict[str, dict[str, Any]]:
    """Every node's ported keys that are present: ``{node: {key: value}}``, graph order."""
    return {n.name: {k: n.meta[k] for k in KEYS if k in n.meta} for n in gm.graph.nodes}
