"""Benchmarks: portmeta's drop-in pass against torchao 0.18.0's PortNodeMetaForQDQ.

Both passes run in this process on identical graphs; every figure is the median of repeated
runs (``time.perf_counter``). The passes are idempotent on a graph (re-running writes the same
values), so each repeat runs on the same converted graph.

Run with ``make bench`` (or ``python bench/run.py [--quick]``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

with contextlib.redirect_stderr(io.StringIO()):  # torchao's harmless "Failed to load" lines
    import torch
    import torchao.quantization.pt2e.quantize_pt2e as qpt2e
    from torch.fx.passes.infra.pass_base import PassBase, PassResult
    from torchao.quantization.pt2e.quantizer.port_metadata_pass import (
        PortNodeMetaForQDQ as Upstream,
    )
    from torchao.testing.pt2e._xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

import portmeta
from portmeta_fx import PortNodeMetaForQDQ as Ours
from portmeta_fx import apply_plan, from_fx

# --------------------------------------------------------------------------- timing


def median_seconds(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --------------------------------------------------------------------------- graphs


class _NoPort(PassBase):
    def call(self, graph_module: torch.fx.GraphModule) -> PassResult:
        return PassResult(graph_module, False)


@contextlib.contextmanager
def _without_porting() -> Iterator[None]:
    saved = qpt2e.PortNodeMetaForQDQ
    qpt2e.PortNodeMetaForQDQ = _NoPort  # type: ignore[misc]
    try:
        yield
    finally:
        qpt2e.PortNodeMetaForQDQ = saved  # type: ignore[misc]


def _tag(gm: torch.fx.GraphModule) -> None:
    for i, node in enumerate(gm.graph.nodes):
        if "quantization_annotation" in node.meta:
            node.meta["quantization_tag"] = f"{node.target}_{i}"


def converted(
    model: torch.nn.Module, example: tuple[Any, ...], dynamic: bool = False
) -> torch.fx.GraphModule:
    """Export, prepare with the XNNPACK test quantizer, tag, calibrate, convert without porting."""
    torch.manual_seed(0)
    gm = torch.export.export(model.eval(), example).module()
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    )
    prepared = qpt2e.prepare_pt2e(gm, quantizer)
    _tag(prepared)
    prepared(*example)
    with _without_porting():
        return qpt2e.convert_pt2e(prepared, fold_quantize=False)


class Demo(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.act = torch.nn.Hardtanh()
        self.linear = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.pool(self.conv(x)))
        return self.linear(y.view(y.shape[0], -1))


def mlp(depth: int, width: int = 32) -> torch.nn.Module:
    layers: list[torch.nn.Module] = []
    for _ in range(depth):
        layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers)


def synthetic_chain(blocks: int) -> torch.fx.GraphModule:
    """``blocks`` x (q -> dq -> relu [annotated]) built directly with torch.fx."""
    from torchao.quantization.pt2e.observer import HistogramObserver
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, QuantizationSpec

    spec = QuantizationSpec(dtype=torch.int8, observer_or_fake_quant_ctr=HistogramObserver)
    qd = torch.ops.quantized_decomposed
    g = torch.fx.Graph()
    x = g.placeholder("x")
    for i in range(blocks):
        q = g.call_function(qd.quantize_per_tensor.default, (x, 0.1, 0, -128, 127, torch.int8))
        dq = g.call_function(qd.dequantize_per_tensor.default, (q, 0.1, 0, -128, 127, torch.int8))
        y = g.call_function(torch.ops.aten.relu.default, (dq,))
        y.meta["stack_trace"] = f'File "model.py", line {i}'
        y.meta["quantization_tag"] = f"relu_{i}"
        y.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={x: spec}, output_qspec=spec
        )
        x = y
    g.output((x,))
    return torch.fx.GraphModule(torch.nn.Module(), g)


def diamond_lattice(depth: int) -> torch.fx.GraphModule:
    """A dynamic input whose choose_qparams sits behind ``depth`` diamonds (2**depth paths)."""
    from torchao.quantization.pt2e.observer import PlaceholderObserver
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, QuantizationSpec

    spec = QuantizationSpec(
        dtype=torch.int8, observer_or_fake_quant_ctr=PlaceholderObserver, is_dynamic=True
    )
    qd = torch.ops.quantized_decomposed
    aten = torch.ops.aten
    g = torch.fx.Graph()
    x = g.placeholder("x")
    cur = x
    for _ in range(depth):
        a = g.call_function(aten.relu.default, (cur,))
        b = g.call_function(aten.neg.default, (cur,))
        cur = g.call_function(aten.add.Tensor, (a, b))
    cq = g.call_function(qd.choose_qparams.tensor, (cur, -128, 127, 1e-5, torch.int8))
    import operator

    scale = g.call_function(operator.getitem, (cq, 0))
    zp = g.call_function(operator.getitem, (cq, 1))
    q = g.call_function(qd.quantize_per_tensor.tensor, (cur, scale, zp, -128, 127, torch.int8))
    dq = g.call_function(qd.dequantize_per_tensor.tensor, (q, scale, zp, -128, 127, torch.int8))
    lin = g.call_function(aten.relu.default, (dq,))
    lin.meta["quantization_tag"] = "dyn"
    lin.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map={x: spec})
    g.output((lin,))
    return torch.fx.GraphModule(torch.nn.Module(), g)


# --------------------------------------------------------------------------- cases


def run(quick: bool) -> None:
    repeat = 5 if quick else 21
    print(f"torch {torch.__version__}, portmeta {portmeta.__version__}; median of {repeat} runs\n")
    example = (torch.randn(2, 3, 16, 16),)
    cases: list[tuple[str, Callable[[], torch.fx.GraphModule]]] = [
        ("demo conv/pool/linear, static", lambda: converted(Demo(), example)),
        ("demo conv/pool/linear, dynamic linear", lambda: converted(Demo(), example, True)),
        ("MLP 16 x (linear, relu), static", lambda: converted(mlp(16), (torch.randn(4, 32),))),
    ]
    for blocks in (100,) if quick else (100, 1000, 4000):
        cases.append((f"synthetic {blocks} x (q, dq, relu)", lambda b=blocks: synthetic_chain(b)))

    print(
        "| graph | nodes | torchao pass | portmeta pass | ratio | snapshot | plan |"
        " apply (checked) | same meta |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, fresh in cases:
        with contextlib.redirect_stderr(io.StringIO()):
            gm, twin = fresh(), fresh()
        print(_measure_row(name, gm, twin, repeat))

    print("\nDynamic search behind d diamonds (upstream keeps no visited set):\n")
    print("| d | nodes | torchao pass | portmeta pass | portmeta speed-up |")
    print("|---:|---:|---:|---:|---:|")
    for depth in (4, 8, 12) if quick else (4, 8, 12, 14, 16):
        print(_diamond_row(depth, 3 if depth >= 14 else repeat))


def _measure_row(
    name: str, gm: torch.fx.GraphModule, twin: torch.fx.GraphModule, repeat: int
) -> str:
    same = _same_result(gm, twin)
    t_up = median_seconds(lambda: Upstream().call(gm), repeat)
    t_ours = median_seconds(lambda: Ours().call(gm), repeat)
    t_snap = median_seconds(lambda: from_fx(gm), repeat)
    snap = from_fx(gm)
    t_plan = median_seconds(lambda: portmeta.plan(snap), repeat)
    p = portmeta.plan(snap)
    t_apply = median_seconds(lambda: apply_plan(p, gm), repeat)
    return (
        f"| {name} | {len(gm.graph.nodes)} | {_ms(t_up)} | {_ms(t_ours)} | "
        f"{t_ours / t_up:.1f}x | {_ms(t_snap)} | {_ms(t_plan)} | {_ms(t_apply)} | {same} |"
    )


def _diamond_row(depth: int, repeat: int) -> str:
    gm, twin = diamond_lattice(depth), diamond_lattice(depth)
    if not _same_result(gm, twin):
        raise AssertionError(f"portmeta and torchao disagree on the depth-{depth} lattice")
    t_up = median_seconds(lambda: Upstream().call(gm), repeat)
    t_ours = median_seconds(lambda: Ours().call(gm), repeat)
    return (
        f"| {depth} | {len(gm.graph.nodes)} | {_ms(t_up)} | {_ms(t_ours)} | {t_up / t_ours:.1f}x |"
    )


def _same_result(a: torch.fx.GraphModule, b: torch.fx.GraphModule) -> bool:
    """Run upstream on ``a`` and portmeta on its identical twin ``b``; same meta afterwards?"""
    Upstream().call(a)
    Ours().call(b)
    keys = ("stack_trace", "quantization_tag")

    def state(gm: torch.fx.GraphModule) -> list[tuple[str, str, Any]]:
        return [(n.name, k, n.meta.get(k, "<absent>")) for n in gm.graph.nodes for k in keys]

    return state(a) == state(b)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    args = parser.parse_args(argv)
    run(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
