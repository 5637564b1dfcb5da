"""Small helpers shared by the core tests (never imports torch)."""

from __future__ import annotations

from typing import Any

import portmeta
from portmeta.records import Target

Q = "quantized_decomposed.quantize_per_tensor.default"
DQ = "quantized_decomposed.dequantize_per_tensor.default"
QT = "quantized_decomposed.quantize_per_tensor.tensor"
DQT = "quantized_decomposed.dequantize_per_tensor.tensor"
CQ = "quantized_decomposed.choose_qparams.tensor"
CQ_SYM = "quantized_decomposed.choose_qparams_symmetric.tensor"
GETITEM = Target.function("operator.getitem")
QARGS = (0.1, 0, -128, 127)


def state(builder: Any, profile: portmeta.Profile = portmeta.TORCHAO) -> dict[str, Any]:
    """Build, plan and return the plan's final state."""
    return portmeta.plan(builder.build(), profile).final_state()


def writes(p: portmeta.Plan) -> list[tuple[str, str, Any, str]]:
    """``(target, key, value, source)`` of every delta, in order."""
    return [(d.target, d.key, d.value, d.source) for d in p.deltas]


def foreign(builder: Any, name: str = "ghost@0", op: str = "placeholder") -> str:
    """Add a *foreign* node (no node of the graph's own, as ``portmeta_fx`` records a node of
    another graph or an erased node that an annotation still names) and return its name.

    Add it after the graph's own nodes, output included, as the FX reader orders them. An
    annotation input must name a node of the snapshot (``build_graph`` refuses a name it does
    not hold): a test of an annotation that names an erased node names this one.
    """
    return builder.add(op, Target.named(name.split("@")[0]), name=name, foreign=True)
