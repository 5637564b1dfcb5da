"""Benchmarks: portmeta against torchao 0.18.0's PortNodeMetaForQDQ, and how portmeta scales.

Everything but the CLI runs in this one process. Every time is the median of ``--repeat`` runs
(``time.perf_counter``, 7 by default, the garbage collector off while timing, as ``timeit``
does) and every ratio
compares medians measured here, on the same graph objects; on the real graphs the steps
compared are timed in turns, one run of each per round. Four parts:

1. Real converted graphs: a residual MLP of 100 and of 200 blocks (linear, relu, linear, add)
   through ``prepare_pt2e`` with the XNNPACK test quantizer (per-channel, static and dynamic),
   calibrated, ``convert_pt2e(fold_quantize=False)`` with porting switched off. torchao's pass,
   the floor (the cheapest full read of the graph into plain tuples), ``from_fx``, planning,
   the fingerprint, ``apply_plan`` and portmeta's drop-in pass are timed separately; before
   every timed run the graph's metadata is put back to its unported state. Both passes are
   checked to leave the same metadata on every node.
2. The adversarial graph: D diamonds (relu and neg of one node, then add) in front of the
   choose_qparams of a dynamically annotated node. Upstream's search keeps no visited set.
3. Scaling: synthetic quantized graphs of 10k, 100k and 1M nodes from
   ``portmeta.testing.GraphBuilder``: planning time per 1k nodes and snapshot memory per node
   (``tracemalloc``: what building the snapshot allocates and keeps).
4. A saved graph: 20,000 annotated linears (120,002 nodes) written with ``dump_graph`` to a
   temporary folder; ``json.load`` and ``load_graph`` of the file, and ``portmeta plan FILE``
   and ``portmeta explain FILE NODE`` end to end as new processes (medians of 3).

``make bench`` runs it all and writes ``bench/results/latest.json`` and the plot
``docs/img/scaling.svg``; ``--quick`` is a smaller run for trying changes, ``--profile``
prints where the drop-in pass spends its time (cProfile) on the static residual graph.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import gc
import io
import json
import operator
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

with contextlib.redirect_stderr(io.StringIO()):  # torchao's harmless "Failed to load" lines
    import torch
    import torchao
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
from portmeta import record
from portmeta.plan import plan_writes
from portmeta.testing import GraphBuilder, dynamic, static
from portmeta_fx import PortNodeMetaForQDQ as Ours
from portmeta_fx import apply_plan, from_fx

ROOT = Path(__file__).resolve().parents[1]
KEYS = portmeta.TORCHAO.keys

# --------------------------------------------------------------------------- timing


def _timed_once(fn: Callable[[Any], Any], setup: Callable[[], Any], collector: bool) -> float:
    """Wall time of one ``fn(setup())`` (``setup`` not timed), the collector off unless asked.

    As ``timeit`` does, the cyclic garbage collector is off while a run is timed (unless
    ``collector``), so that no run pays for a collection of the whole heap that the garbage of
    earlier runs or of the benchmark itself triggers; it runs between the timed runs.
    """
    arg = setup()
    if not collector:
        gc.disable()
    try:
        start = time.perf_counter()
        fn(arg)
        return time.perf_counter() - start
    finally:
        gc.enable()


def median_seconds(
    fn: Callable[[Any], Any],
    repeat: int,
    setup: Callable[[], Any] = lambda: None,
    *,
    collector: bool = False,
) -> float:
    """Median of ``repeat`` :func:`_timed_once` runs of ``fn(setup())``, after one warm-up."""
    fn(setup())  # warm-up
    return statistics.median(_timed_once(fn, setup, collector) for _ in range(repeat))


def medians_together(
    cases: dict[str, tuple[Callable[[Any], Any], Callable[[], Any], bool]], repeat: int
) -> dict[str, float]:
    """:func:`median_seconds` of several ``(fn, setup, collector)`` cases, run in turns.

    Round ``i`` times every case once, so a burst of load on the machine falls on all of
    them alike and the ratios between their medians stay meaningful on a busy machine.
    """
    for fn, setup, _ in cases.values():
        fn(setup())  # warm-up
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, (fn, setup, collector) in cases.items():
            times[name].append(_timed_once(fn, setup, collector))
    return {name: statistics.median(t) for name, t in times.items()}


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


# --------------------------------------------------------------------------- real graphs


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


class ResidualMLP(torch.nn.Module):
    """``blocks`` x (linear, relu, linear, add)."""

    def __init__(self, blocks: int, width: int = 16) -> None:
        super().__init__()
        self.up = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(blocks))
        self.down = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for up, down in zip(self.up, self.down, strict=True):
            x = x + down(torch.relu(up(x)))
        return x


def converted(blocks: int, dynamic: bool) -> torch.fx.GraphModule:
    """Export, prepare (XNNPACK, per-channel), tag, calibrate, convert without porting."""
    torch.manual_seed(0)
    example = (torch.randn(2, 16),)
    with contextlib.redirect_stderr(io.StringIO()):
        gm = torch.export.export(ResidualMLP(blocks).eval(), example).module()
        quantizer = XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
        )
        prepared = qpt2e.prepare_pt2e(gm, quantizer)
        for i, node in enumerate(prepared.graph.nodes):
            if "quantization_annotation" in node.meta:
                node.meta["quantization_tag"] = f"{node.target}_{i}"
        prepared(*example)
        with _without_porting():
            return qpt2e.convert_pt2e(prepared, fold_quantize=False)


def _meta_state(gm: torch.fx.GraphModule) -> list[tuple[torch.fx.Node, dict[str, Any]]]:
    return [(n, {k: n.meta[k] for k in KEYS if k in n.meta}) for n in gm.graph.nodes]


def _restore(state: list[tuple[torch.fx.Node, dict[str, Any]]]) -> None:
    for node, saved in state:
        for key in KEYS:
            if key in saved:
                node.meta[key] = saved[key]
            else:
                node.meta.pop(key, None)


def _compare(gm: torch.fx.GraphModule, state: list[tuple[torch.fx.Node, dict[str, Any]]]) -> int:
    """Run both passes from the unported state; return how many nodes were compared."""
    _restore(state)
    Upstream().call(gm)
    theirs = _meta_state(gm)
    _restore(state)
    Ours().call(gm)
    ours = _meta_state(gm)
    _restore(state)
    for (node, a), (_, b) in zip(theirs, ours, strict=True):
        if a.keys() != b.keys() or any(a[k] is not b[k] and a[k] != b[k] for k in a):
            raise AssertionError(f"portmeta and torchao disagree on node {node.name}")
    return len(theirs)


def floor_read(gm: torch.fx.GraphModule) -> list[tuple[Any, ...]]:
    """The cheapest full read of a graph: plain tuples, no records, no checks, no adjacency.

    Per node: name, op, target (the object), arguments with node references replaced by names
    (torch.fx's own ``map_arg``, in C), user names, the ported keys present, the raw annotation.
    """
    keys = KEYS
    name = operator.attrgetter("name")
    map_arg = torch.fx.node.map_arg
    out = []
    for node in gm.graph.nodes:
        meta = node.meta
        out.append(
            (
                node.name,
                node.op,
                node.target,
                map_arg(node.args, name),
                map_arg(node.kwargs, name),
                tuple(map(name, node.users)),
                tuple([(k, meta[k]) for k in keys if k in meta]),
                meta.get("quantization_annotation"),
            )
        )
    return out


def real_graph_rows(blocks: list[int], repeat: int) -> list[dict[str, Any]]:
    return [real_graph_row(b, dyn, repeat) for b in blocks for dyn in (False, True)]


def real_graph_row(blocks: int, dyn: bool, repeat: int) -> dict[str, Any]:
    gm = converted(blocks, dyn)
    state = _meta_state(gm)
    compared = _compare(gm, state)
    reset = lambda: _restore(state)  # noqa: E731
    snap = from_fx(gm)
    writes = plan_writes(snap)[0]
    p = portmeta.plan(snap)  # computes the fingerprint, which snap keeps
    none = lambda: None  # noqa: E731
    row: dict[str, Any] = {
        "graph": f"residual MLP {blocks} blocks, XNNPACK {'dynamic' if dyn else 'static'}",
        "nodes": len(gm.graph.nodes),
        "annotated": len(portmeta.annotated_nodes(snap)),
        "writes": len(writes),
        "same_meta_nodes": compared,
    }
    cases = {
        "torchao_pass": (lambda _: Upstream().call(gm), reset, False),
        "floor": (lambda _: floor_read(gm), none, False),
        "from_fx": (lambda _: from_fx(gm), reset, False),
        "plan_writes": (lambda _: plan_writes(snap), none, False),
        "plan_known_fingerprint": (lambda _: portmeta.plan(snap), none, False),
        "fingerprint": (lambda _: _fresh_fingerprint(snap), none, False),
        "plan": (portmeta.plan, lambda: from_fx(gm), False),
        "apply_plan": (lambda _: apply_plan(p, gm), reset, False),
        "dropin_pass": (lambda _: Ours().call(gm), reset, False),
        "torchao_pass_collector_on": (lambda _: Upstream().call(gm), reset, True),
        "dropin_pass_collector_on": (lambda _: Ours().call(gm), reset, True),
    }
    row.update(medians_together(cases, repeat))
    reset()  # the unported graph, as every snapshot above was taken of
    row["snapshot_bytes_per_node"] = snapshot_bytes(lambda: from_fx(gm)) / len(snap)
    return row


def _fresh_fingerprint(snap: Any) -> str:
    """The fingerprint computed anew (a snapshot keeps the one computed first)."""
    snap.graph.pop("fingerprint", None)
    return portmeta.fingerprint(snap)


def print_real(rows: list[dict[str, Any]]) -> None:
    print("\n## Real converted graphs\n")
    print(
        "| graph | nodes | annotated | writes | torchao pass | floor | from_fx | plan_writes |"
        " plan(), fingerprint known | fingerprint | plan() | apply_plan | drop-in pass |"
        " snapshot B/node |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['graph']} | {r['nodes']} | {r['annotated']} | {r['writes']} |"
            f" {ms(r['torchao_pass'])} | {ms(r['floor'])} | {ms(r['from_fx'])} |"
            f" {ms(r['plan_writes'])} | {ms(r['plan_known_fingerprint'])} |"
            f" {ms(r['fingerprint'])} | {ms(r['plan'])} | {ms(r['apply_plan'])} |"
            f" {ms(r['dropin_pass'])} | {r['snapshot_bytes_per_node']:.0f} |"
        )
    print("\nRatios to torchao's pass (target in brackets):\n")
    print(
        "| graph | drop-in pass [<= 6x] | plan_writes [<= 2x] |"
        " plan(), fingerprint known [<= 2x] | from_fx + plan() + apply_plan |"
        " fingerprint per node | drop-in pass, collector on | same meta |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        up = r["torchao_pass"]
        print(
            f"| {r['graph']} | {ratio(r['dropin_pass'], up)} | {ratio(r['plan_writes'], up)} |"
            f" {ratio(r['plan_known_fingerprint'], up)} |"
            f" {ratio(r['from_fx'] + r['plan'] + r['apply_plan'], up)} |"
            f" {r['fingerprint'] / r['nodes'] * 1e6:.2f} us |"
            f" {ratio(r['dropin_pass_collector_on'], r['torchao_pass_collector_on'])} |"
            f" all {r['same_meta_nodes']} nodes |"
        )
    print(
        "\nThe floor: the cheapest full read of the graph into plain tuples (see floor_read), as"
        " a multiple of it:\n"
    )
    print("| graph | floor | torchao pass | from_fx (the snapshot) | drop-in pass |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        f = r["floor"]
        print(
            f"| {r['graph']} | {ms(f)} | {ratio(r['torchao_pass'], f)} |"
            f" {ratio(r['from_fx'], f)} | {ratio(r['dropin_pass'], f)} |"
        )


# --------------------------------------------------------------------------- diamonds


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
    scale = g.call_function(operator.getitem, (cq, 0))
    zp = g.call_function(operator.getitem, (cq, 1))
    q = g.call_function(qd.quantize_per_tensor.tensor, (cur, scale, zp, -128, 127, torch.int8))
    dq = g.call_function(qd.dequantize_per_tensor.tensor, (q, scale, zp, -128, 127, torch.int8))
    lin = g.call_function(aten.relu.default, (dq,))
    lin.meta["quantization_tag"] = "dyn"
    lin.meta["stack_trace"] = 'File "model.py", line 1'
    lin.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map={x: spec})
    g.output((lin,))
    return torch.fx.GraphModule(torch.nn.Module(), g)


def diamond_rows(depths: list[int], ours_only: list[int], repeat: int) -> list[dict[str, Any]]:
    return [diamond_row(d, d in depths, repeat) for d in depths + ours_only]


def diamond_row(depth: int, with_upstream: bool, repeat: int) -> dict[str, Any]:
    gm = diamond_lattice(depth)
    state = _meta_state(gm)
    reset = lambda: _restore(state)  # noqa: E731
    snap = from_fx(gm)
    row: dict[str, Any] = {"d": depth, "nodes": len(gm.graph.nodes)}
    # timed one after the other, not in turns: a run of torchao's pass here takes up to a
    # second and would leave portmeta's sub-millisecond runs a cold cache every time
    if with_upstream:
        _compare(gm, state)
        row["torchao_pass"] = median_seconds(lambda _: Upstream().call(gm), repeat, reset)
    row["dropin_pass"] = median_seconds(lambda _: Ours().call(gm), repeat, reset)
    row["plan_writes"] = median_seconds(lambda _: plan_writes(snap), repeat)
    return row


def print_diamonds(rows: list[dict[str, Any]]) -> None:
    print("\n## Diamonds in front of a dynamic input's choose_qparams\n")
    print(
        "| D | nodes | torchao pass | portmeta drop-in pass | portmeta plan_writes |"
        " speed-up, pass [D=18: >= 300x; D=400: pass <= 10 ms] | speed-up, plan_writes |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        up = r.get("torchao_pass")
        upstream = ms(up) if up else "not run"
        vs_pass = f"{up / r['dropin_pass']:.0f}x" if up else "-"
        vs_plan = f"{up / r['plan_writes']:.0f}x" if up else "-"
        print(
            f"| {r['d']} | {r['nodes']} | {upstream} | {ms(r['dropin_pass'])} |"
            f" {ms(r['plan_writes'])} | {vs_pass} | {vs_plan} |"
        )


# --------------------------------------------------------------------------- scaling


def synthetic(nodes: int) -> GraphBuilder:
    """About ``nodes`` nodes of quantized linears: static blocks, and every fourth dynamic.

    A static block: weight (``get_attr``, behind a ``permute`` every other block) -> q -> dq;
    activation dq; linear annotated with both inputs and its output; q -> dq after it. A
    dynamic block quantizes the activation with a choose_qparams chain instead.
    """
    b = GraphBuilder()
    x = b.placeholder("x")
    _, cur = b.qdq(x)
    # The annotations name ``w`` even where the linear reads ``permute(w)``: the rules then
    # skip that weight's chain. The builder refuses that unless told (check_inputs=False); it
    # is kept so that the workload stays the one docs/performance.md's figures measured.
    i = 0
    while len(b) < nodes - 1:
        w = b.get_attr(f"w{i}", tag=f"w{i}")
        src = b.call("aten.permute.default", w, [1, 0], name="permute") if i % 2 else w
        _, wdq = b.qdq(src, per_channel=True)
        if i % 4 == 3:
            chain = b.dynamic_qdq(x)
            lin = b.call("aten.linear.default", chain.dq, wdq, name="linear", tag=f"lin{i}")
            b.annotate(lin, inputs={x: dynamic(), w: static()}, check_inputs=False)
            cur = lin
        else:
            lin = b.call(
                "aten.linear.default",
                cur,
                wdq,
                name="linear",
                tag=f"lin{i}",
                stack_trace=f'File "model.py", line {i}, in forward',
            )
            b.annotate(lin, inputs={x: static(), w: static()}, output=static(), check_inputs=False)
            _, cur = b.qdq(lin)
        x = lin
        i += 1
    b.output(cur)
    return b


def snapshot_bytes(build: Callable[[], Any]) -> float:
    """Bytes allocated while ``build()`` runs and still held by its result alone.

    Everything ``build`` makes and drops (a builder, say) is freed before the count, so what
    the result shares with it (argument tuples, names, annotations) counts, and the rest not.
    """
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del result
    return float(after - before)


def scaling_rows(sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        rows.append(scaling_row(size, repeat))
        gc.collect()
    return rows


def scaling_row(size: int, repeat: int) -> dict[str, Any]:
    builder = synthetic(size)
    t0 = time.perf_counter()
    snap = builder.build()
    build_s = time.perf_counter() - t0
    n = len(snap)
    row = {
        "nodes": n,
        "annotated": len(portmeta.annotated_nodes(snap)),
        "repeat": repeat,
        "build_graph_once": build_s,
        "plan_writes": median_seconds(lambda _: plan_writes(snap), repeat),
        "fingerprint": median_seconds(lambda _: _fresh_fingerprint(snap), repeat),
    }
    snap = builder = None  # free both before measuring what a snapshot holds on its own
    row["snapshot_bytes_per_node"] = snapshot_bytes(lambda: synthetic(size).build()) / n
    return row


def print_scaling(rows: list[dict[str, Any]]) -> None:
    print("\n## Scaling: synthetic graphs from portmeta.testing.GraphBuilder\n")
    print(
        "| nodes | annotated | build (checked, once) | plan_writes | plan_writes per 1k nodes |"
        " fingerprint per 1k nodes | snapshot B/node [<= 1536] |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        k = r["nodes"] / 1000
        print(
            f"| {r['nodes']} | {r['annotated']} | {r['build_graph_once']:.2f} s |"
            f" {ms(r['plan_writes'])} | {ms(r['plan_writes'] / k)} | {ms(r['fingerprint'] / k)} |"
            f" {r['snapshot_bytes_per_node']:.0f} |"
        )
    per_k = [r["plan_writes"] / r["nodes"] for r in rows]
    print(
        f"\nplan_writes per node, largest / smallest over these sizes: "
        f"{max(per_k) / min(per_k):.2f} [flat: <= 1.5]"
    )


def plot_scaling(rows: list[dict[str, Any]], path: Path) -> None:
    """A log-log SVG of time against node count (plain SVG: no plotting dependency)."""
    import math

    series = [("plan_writes", "#1f77b4"), ("fingerprint", "#ff7f0e")]
    xs = [r["nodes"] for r in rows]
    ys = [r[key] * 1e3 for r in rows for key, _ in series]
    x0, x1 = math.log10(min(xs)) - 0.2, math.log10(max(xs)) + 0.2
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    w, h, left, bottom, top, right = 560, 360, 70, 50, 30, 150

    def px(x: float) -> float:
        return left + (math.log10(x) - x0) / (x1 - x0) * (w - left - right)

    def py(y: float) -> float:
        return h - bottom - (math.log10(y) - y0) / (y1 - y0) * (h - bottom - top)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2 - 60}" y="18" font-size="14">time against node count</text>',
    ]
    for e in range(y0, y1 + 1):
        y = py(10**e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{10**e:g} ms</text>')
    for x in xs:
        out.append(f'<text x="{px(x):.1f}" y="{h - bottom + 18}" text-anchor="middle">{x:,}</text>')
    out.append(
        f'<text x="{(left + w - right) / 2:.1f}" y="{h - 10}" text-anchor="middle">'
        "nodes (log scale)</text>"
    )
    out.append(
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>'
    )
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>')
    for i, (key, color) in enumerate(series):
        pts = " ".join(f"{px(r['nodes']):.1f},{py(r[key] * 1e3):.1f}" for r in rows)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for r in rows:
            out.append(
                f'<circle cx="{px(r["nodes"]):.1f}" cy="{py(r[key] * 1e3):.1f}" r="3" '
                f'fill="{color}"/>'
            )
        ly = top + 20 + 20 * i
        out.append(
            f'<line x1="{w - right + 10}" y1="{ly}" x2="{w - right + 30}" y2="{ly}" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        out.append(f'<text x="{w - right + 35}" y="{ly + 4}">{key}</text>')
    # a slope-1 guide through the first plan_writes point: linear growth runs parallel to it
    first = rows[0]
    k = first["plan_writes"] * 1e3 / first["nodes"]
    a, b = xs[0], xs[-1]
    out.append(
        f'<line x1="{px(a):.1f}" y1="{py(k * a):.1f}" x2="{px(b):.1f}" y2="{py(k * b):.1f}" '
        'stroke="#999" stroke-dasharray="4 4"/>'
    )
    ly = top + 60
    out.append(
        f'<line x1="{w - right + 10}" y1="{ly}" x2="{w - right + 30}" y2="{ly}" '
        'stroke="#999" stroke-dasharray="4 4"/>'
    )
    out.append(f'<text x="{w - right + 35}" y="{ly + 4}">linear</text>')
    out.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- saved graphs


def saved_graph(linears: int) -> GraphBuilder:
    """``linears`` x (activation q/dq, weight get_attr -> q/dq, linear annotated): 6 nodes each."""
    b = GraphBuilder()
    cur = b.placeholder("x")
    for i in range(linears):
        _, dq = b.qdq(cur)
        w = b.get_attr(f"w{i}", tag=f"w{i}")
        _, wdq = b.qdq(w, per_channel=True)
        lin = b.call(
            "aten.linear.default",
            dq,
            wdq,
            name="linear",
            tag=f"lin{i}",
            stack_trace=f'File "model.py", line {i}, in forward',
        )
        b.annotate(lin, inputs={cur: static(), w: static()}, output=static())
        cur = lin
    b.output(cur)
    return b


def _json_load(path: Path) -> Any:
    with open(path, "rb") as handle:
        return json.load(handle)


def _cli(*args: str) -> float:
    """Seconds the ``portmeta`` command takes end to end (a new process; output discarded)."""
    command = [str(Path(sys.executable).with_name("portmeta")), *args]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def saved_graph_row(linears: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "graph.json"
        graph = saved_graph(linears).build()
        portmeta.dump_graph(graph, path)
        node = portmeta.annotated_nodes(graph)[len(portmeta.annotated_nodes(graph)) // 2]
        explained = record(graph, node).args[0].name  # the activation dq of a middle linear
        del graph
        row: dict[str, Any] = {
            "nodes": len(portmeta.load_graph(path)),
            "megabytes": path.stat().st_size / 1e6,
            "explained": explained,
            "json_load": median_seconds(lambda _: _json_load(path), repeat),
            "load_graph": median_seconds(lambda _: portmeta.load_graph(path), repeat),
            "cli_plan": statistics.median(_cli("plan", str(path)) for _ in range(repeat)),
            "cli_explain": statistics.median(
                _cli("explain", str(path), explained) for _ in range(repeat)
            ),
        }
    return row


def print_saved(row: dict[str, Any]) -> None:
    print("\n## A saved graph: load_graph and the CLI\n")
    print(
        f"{row['nodes']} nodes from GraphBuilder ({row['megabytes']:.1f} MB graph.json); "
        f"`portmeta explain` asks about {row['explained']!r}.\n"
    )
    print(
        "| json.load | load_graph | load_graph / json.load [<= 3.5x] |"
        " portmeta plan FILE [<= 4 s] | portmeta explain FILE NODE [<= 4 s] |"
    )
    print("|---:|---:|---:|---:|---:|")
    print(
        f"| {row['json_load']:.2f} s | {row['load_graph']:.2f} s |"
        f" {ratio(row['load_graph'], row['json_load'])} | {row['cli_plan']:.2f} s |"
        f" {row['cli_explain']:.2f} s |"
    )


# --------------------------------------------------------------------------- main


def profile_dropin(blocks: int) -> None:
    gm = converted(blocks, False)
    state = _meta_state(gm)
    prof = cProfile.Profile()
    for _ in range(5):
        _restore(state)
        prof.enable()
        Ours().call(gm)
        prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller graphs, fewer repeats")
    parser.add_argument("--repeat", type=int, default=None, help="runs per median (default 7)")
    parser.add_argument("--profile", action="store_true", help="cProfile the drop-in pass")
    parser.add_argument("--no-plot", action="store_true", help="do not write the SVG plot")
    args = parser.parse_args(argv)
    if args.profile:
        profile_dropin(20 if args.quick else 200)
        return 0
    blocks = [20] if args.quick else [100, 200]
    repeat = args.repeat or (3 if args.quick else 7)
    # the real graphs' steps take milliseconds, so they get more rounds: with 7, a burst of
    # load on a shared machine moved the dynamic drop-in's ratio from 4.7x to 5.2x between
    # two runs of the same code
    real_repeat = args.repeat or (3 if args.quick else 15)
    sizes = [10_000, 30_000] if args.quick else [10_000, 100_000, 1_000_000]
    depths, ours_only = ([8, 12], [100]) if args.quick else ([12, 16, 18], [400])
    print(
        f"# portmeta benchmark, {datetime.date.today()}\n\n"
        f"python {platform.python_version()}, torch {torch.__version__}, torchao "
        f"{torchao.__version__}, portmeta {portmeta.__version__}; {os.cpu_count()} cores; "
        f"median of {real_repeat} runs on the real graphs, {repeat} elsewhere; command: "
        f"python bench/run.py {' '.join(argv or sys.argv[1:])}"
    )
    results: dict[str, Any] = {"repeat": repeat, "real_repeat": real_repeat}
    results["cores"] = os.cpu_count()
    results["real"] = real = real_graph_rows(blocks, real_repeat)
    print_real(real)
    results["diamonds"] = diamonds = diamond_rows(depths, ours_only, repeat)
    print_diamonds(diamonds)
    results["scaling"] = scaling = scaling_rows(sizes, repeat)
    print_scaling(scaling)
    results["saved"] = saved = saved_graph_row(2_000 if args.quick else 20_000, 3)
    print_saved(saved)
    out = ROOT / "bench" / "results" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    if not args.no_plot:
        plot_scaling(scaling, ROOT / "docs" / "img" / "scaling.svg")
        print("\nwrote bench/results/latest.json and docs/img/scaling.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
