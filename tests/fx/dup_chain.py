"""A small stand-in for ExecuTorch's ``DuplicateDynamicQuantChainPass`` (no executorch needed).

After ``convert_pt2e`` one dynamically quantized input read by several annotated consumers has
one ``choose_qparams -> getitem x2 -> quantize -> dequantize`` chain shared by all of them.
This pass gives every consumer a chain of its own, copying each node with
``Graph.node_copy`` (which copies ``meta``, so every copy keeps the shared chain's values), and
erases the shared chain.

Example
-------
>>> import torch
>>> gm = torch.fx.symbolic_trace(torch.nn.ReLU())
>>> DuplicateDynamicChains()(gm).modified
False
"""

from __future__ import annotations

import operator

import torch
import torch.fx
from torch.fx.passes.infra.pass_base import PassBase, PassResult

__all__ = ["DuplicateDynamicChains"]

# by name: the quantized_decomposed ops exist once torch.ao or torchao has registered them
_CHOOSE = (
    "quantized_decomposed.choose_qparams.tensor",
    "quantized_decomposed.choose_qparams_symmetric.tensor",
)
_QUANTIZE = ("quantized_decomposed.quantize_per_tensor.tensor",)
_DEQUANTIZE = ("quantized_decomposed.dequantize_per_tensor.tensor",)


def _is(node: object, targets: tuple[str, ...]) -> bool:
    return (
        isinstance(node, torch.fx.Node)
        and node.op == "call_function"
        and str(node.target) in targets
    )


def _chain(dq: torch.fx.Node) -> tuple[torch.fx.Node, ...] | None:
    """``(choose_qparams, scale, zero_point, q, dq)`` when ``dq`` ends a dynamic chain."""
    q = dq.args[0]
    if not _is(q, _QUANTIZE):
        return None
    scale, zp = q.args[1], q.args[2]
    for item in (scale, zp):
        if not (isinstance(item, torch.fx.Node) and item.target is operator.getitem):
            return None
    cq = scale.args[0]  # type: ignore[union-attr]
    if not _is(cq, _CHOOSE) or zp.args[0] is not cq:  # type: ignore[union-attr]
        return None
    if len(q.users) != 1 or len(scale.users) != 2 or len(zp.users) != 2 or len(cq.users) != 2:  # type: ignore[union-attr]
        return None
    return (cq, scale, zp, q, dq)  # type: ignore[return-value]


class DuplicateDynamicChains(PassBase):
    """One dynamic quant chain per user of a shared dequantize, each node a ``node_copy``."""

    def call(self, graph_module: torch.fx.GraphModule) -> PassResult:
        graph = graph_module.graph
        modified = False
        for dq in list(graph.nodes):
            if not (_is(dq, _DEQUANTIZE) and len(dq.users) > 1):
                continue
            chain = _chain(dq)
            if chain is None:
                continue
            for user in list(dq.users):
                copies: dict[torch.fx.Node, torch.fx.Node] = {}
                with graph.inserting_before(user):
                    for node in chain:
                        copies[node] = graph.node_copy(node, lambda n, c=copies: c.get(n, n))
                user.replace_input_with(dq, copies[dq])
            for node in reversed(chain):
                graph.erase_node(node)
            modified = True
        if modified:
            graph.lint()
            graph_module.recompile()
        return PassResult(graph_module, modified)
