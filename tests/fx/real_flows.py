"""Real torchao PT2E flows, untagged, for the check's tests (helpers, not tests).

Each flow exports a tiny model (``torch.export.export(..., strict=False).module()``), prepares
it with a real torchao quantizer (no tagging: real quantizers set no ``quantization_tag``),
calibrates once and converts it with portmeta's pass swapped in
(``portmeta_fx.patch_convert_pt2e``), or with torchao's own pass for parity:

``self_attention_xnnpack_dynamic``
    Q/K/V linears reading one input, ``q @ k^T`` -> softmax -> ``@ v``, an output linear;
    torchao's XNNPACK test quantizer, per-channel, *dynamic*.
``cat_block_x86_static`` / ``cat_block_x86_dynamic``
    ``conv_a -> max_pool2d`` and ``conv_b`` (stride 2) read the input, ``torch.cat`` of the
    two, then ``conv_c``; ``X86InductorQuantizer`` with its default config, static, or with
    ``is_dynamic=True`` (``is_qat=False``: torchao 0.18's dynamic, non-QAT config, whose
    activation observer is a ``PlaceholderObserver``).
``residual_mlp_xnnpack_deepcopy``
    Three residual blocks ``x + fc2(relu(fc1(x)))``; XNNPACK per-channel, static, converted
    through ``convert_pt2e(copy.deepcopy(prepared))``: FX copies ``node.meta`` shallowly, so
    the copy's annotations still name the nodes of the *prepared* graph.

:func:`converted` returns ``(converted_gm, passes)`` (the portmeta pass instances that ran:
``passes[0].last_snapshot`` is the snapshot before porting, ``passes[0].last_plan`` the
plan) and :func:`upstream_converted` the same flow converted by torchao's own pass. Both are
cached for the session: treat the graphs as read-only. Every flow is deterministic (seeded
weights and inputs), so node names and findings are stable.

Example
-------
>>> gm, passes = converted("cat_block_x86_static")  # doctest: +SKIP
>>> portmeta.check(passes[0].last_snapshot, keys=["stack_trace"])  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import attrs
import torch
import torch.fx

from portmeta_fx import PortNodeMetaForQDQ, patch_convert_pt2e

__all__ = [
    "FLOWS",
    "CatBlock",
    "Flow",
    "ResidualMLP",
    "SelfAttention",
    "cat_block_x86_dynamic",
    "cat_block_x86_static",
    "converted",
    "residual_mlp_xnnpack_deepcopy",
    "self_attention_xnnpack_dynamic",
    "upstream_converted",
]

# --------------------------------------------------------------------------- models


class SelfAttention(torch.nn.Module):
    """Single-head self-attention: Q/K/V linears on one input, then an output linear."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.q_proj = torch.nn.Linear(dim, dim)
        self.k_proj = torch.nn.Linear(dim, dim)
        self.v_proj = torch.nn.Linear(dim, dim)
        self.out_proj = torch.nn.Linear(dim, dim)
        self.scale = dim**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one line each: a stack trace names its line, and the three must differ
        q = self.q_proj(x)
        k = self.k_proj(x)
        v = self.v_proj(x)
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.out_proj(torch.matmul(attn, v))


class CatBlock(torch.nn.Module):
    """``cat([max_pool2d(conv_a(x)), conv_b(x)]) -> conv_c``: the cat's inputs are in a list."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.conv_b = torch.nn.Conv2d(3, 4, 1, stride=2)
        self.conv_c = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.max_pool2d(self.conv_a(x), 2)
        return self.conv_c(torch.cat([pooled, self.conv_b(x)], 1))


class ResidualMLP(torch.nn.Module):
    """``blocks`` residual blocks ``x + fc2(relu(fc1(x)))``."""

    def __init__(self, blocks: int = 3, dim: int = 8, hidden: int = 16) -> None:
        super().__init__()
        self.fc1 = torch.nn.ModuleList(torch.nn.Linear(dim, hidden) for _ in range(blocks))
        self.fc2 = torch.nn.ModuleList(torch.nn.Linear(hidden, dim) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fc1, fc2 in zip(self.fc1, self.fc2, strict=True):
            x = x + fc2(torch.relu(fc1(x)))
        return x


# --------------------------------------------------------------------------- quantizers


def _xnnpack(*, dynamic: bool) -> Any:
    from torchao.testing.pt2e._xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    return XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    )


def _x86(*, dynamic: bool) -> Any:
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    return X86InductorQuantizer().set_global(
        get_default_x86_inductor_quantization_config(is_qat=False, is_dynamic=dynamic)
    )


# --------------------------------------------------------------------------- flows


@attrs.frozen
class Flow:
    """A model, its example inputs, a quantizer factory, and whether ``convert_pt2e`` gets a
    deep copy of the prepared model."""

    model: Callable[[], torch.nn.Module]
    inputs: Callable[[], tuple[Any, ...]]
    quantizer: Callable[[], Any]
    deepcopy_prepared: bool = False


FLOWS: dict[str, Flow] = {
    "self_attention_xnnpack_dynamic": Flow(
        SelfAttention, lambda: (torch.randn(1, 4, 8),), lambda: _xnnpack(dynamic=True)
    ),
    "cat_block_x86_static": Flow(
        CatBlock, lambda: (torch.randn(1, 3, 8, 8),), lambda: _x86(dynamic=False)
    ),
    "cat_block_x86_dynamic": Flow(
        CatBlock, lambda: (torch.randn(1, 3, 8, 8),), lambda: _x86(dynamic=True)
    ),
    "residual_mlp_xnnpack_deepcopy": Flow(
        ResidualMLP,
        lambda: (torch.randn(3, 8),),
        lambda: _xnnpack(dynamic=False),
        deepcopy_prepared=True,
    ),
}


_PREPARED: list[torch.fx.GraphModule] = []


@functools.cache
def _exported(name: str) -> tuple[torch.fx.GraphModule, tuple[Any, ...]]:
    flow = FLOWS[name]
    torch.manual_seed(0)
    model = flow.model().eval()
    inputs = flow.inputs()
    return torch.export.export(model, inputs, strict=False).module(), inputs


def _run(name: str, ours: bool) -> tuple[torch.fx.GraphModule, list[PortNodeMetaForQDQ]]:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    flow = FLOWS[name]
    exported, inputs = _exported(name)
    prepared = prepare_pt2e(copy.deepcopy(exported), flow.quantizer())
    with torch.no_grad():
        prepared(*inputs)
    model = prepared
    if flow.deepcopy_prepared:
        _PREPARED.append(prepared)  # the copy's annotations name its nodes: keep it alive
        model = copy.deepcopy(prepared)
    if not ours:
        return convert_pt2e(model), []
    with patch_convert_pt2e() as passes:
        gm = convert_pt2e(model)
    return gm, list(passes)


@functools.cache
def converted(name: str) -> tuple[torch.fx.GraphModule, list[PortNodeMetaForQDQ]]:
    """Flow ``name`` (a key of :data:`FLOWS`) converted with portmeta's pass: ``(gm, passes)``.

    Cached for the session; do not change the graph.
    """
    return _run(name, ours=True)


@functools.cache
def upstream_converted(name: str) -> torch.fx.GraphModule:
    """Flow ``name`` converted with torchao's own ``PortNodeMetaForQDQ`` (cached; read-only)."""
    return _run(name, ours=False)[0]


def self_attention_xnnpack_dynamic() -> tuple[torch.fx.GraphModule, list[PortNodeMetaForQDQ]]:
    """Q/K/V/out linears through XNNPACK, per-channel, dynamic: ``(converted_gm, passes)``."""
    return converted("self_attention_xnnpack_dynamic")


def cat_block_x86_static() -> tuple[torch.fx.GraphModule, list[PortNodeMetaForQDQ]]:
    """conv -> maxpool -> cat -> conv through X86Inductor, static: ``(converted_gm, passes)``."""
    return converted("cat_block_x86_static")


def cat_block_x86_dynamic() -> tuple[torch.fx.GraphModule, list[PortNodeMetaForQDQ]]:
    """The cat block through X86Inductor, dynamic: ``(converted_gm, passes)``."""
    return converted("cat_block_x86_dynamic")


def residual_mlp_xnnpack_deepcopy() -> tuple[torch.fx.GraphModule, list[PortNodeMetaForQDQ]]:
    """Residual MLP through XNNPACK per-channel static, ``convert_pt2e(copy.deepcopy(prepared))``:
    ``(converted_gm, passes)``."""
    return converted("residual_mlp_xnnpack_deepcopy")
