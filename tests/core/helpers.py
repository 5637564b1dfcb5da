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
