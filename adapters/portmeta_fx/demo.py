"""``portmeta demo``: quantize upstream's own example model and show what the pass ports.

Run it as ``portmeta demo [--out DIR] [--dynamic]`` (or ``python -m portmeta_fx.demo``):

1. export ``conv -> adaptive avg pool -> hardtanh -> view -> linear`` (the model upstream's
   ``PortNodeMetaForQDQ`` docstring describes) with :func:`torch.export.export`;
2. annotate it with :class:`portmeta_fx.quantizer.DemoQuantizer`, tagged by :class:`TagPartitions`
   (``conv2d_0``, ``adaptive_avg_pool2d_0``, ``linear_0``), calibrate with ``prepare_pt2e``;
3. ``convert_pt2e`` with portmeta's pass swapped in, keeping the snapshot of the converted graph
   right before porting;
4. print the plan (a table and a summary line) and the summary line of ``portmeta check``;
5. convert an identical prepared model (same seeds) with torchao's own pass and compare every
   node's ``stack_trace`` and ``quantization_tag``: exit 1 if they differ;
6. write ``DIR/graph.json`` (snapshot before porting), ``DIR/plan.json``, ``DIR/plan.dot`` and
   ``DIR/plan.svg`` (rendered with Graphviz ``dot``).

Progress goes to stderr, results to stdout. Exit status 0 on success, 1 when portmeta and
torchao disagree, 2 when a file cannot be written or Graphviz is missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", message=".*NumPy.*")
warnings.filterwarnings("ignore", category=DeprecationWarning)
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)

import torch  # noqa: E402
import torch.fx  # noqa: E402

import portmeta  # noqa: E402
from portmeta.check import check, format_findings  # noqa: E402
from portmeta.check import summary as check_summary  # noqa: E402
from portmeta.draw import render, to_dot  # noqa: E402
from portmeta.io import atomic_write_text  # noqa: E402
from portmeta.report import format_diagnostics, format_table, short_value, summary  # noqa: E402

from .passes import patch_convert_pt2e  # noqa: E402
from .quantizer import DemoQuantizer, TagPartitions  # noqa: E402

__all__ = ["DemoModel", "prepared_model", "main"]

KEYS = ("stack_trace", "quantization_tag")
_MISSING = object()


class DemoModel(torch.nn.Module):
    """conv -> adaptive avg pool -> hardtanh -> view -> linear, tiny sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, kernel_size=3)
        self.pool = torch.nn.AdaptiveAvgPool2d((1, 1))
        self.act = torch.nn.Hardtanh()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.pool(x)
        x = self.act(x)
        x = x.view(x.size(0), -1)
        out: torch.Tensor = self.fc(x)
        return out


def _progress(message: str) -> None:
    print(f"portmeta demo: {message}", file=sys.stderr, flush=True)


def prepared_model(
    *, dynamic: bool, seed: int = 0, batches: int = 4, progress: bool = False
) -> torch.fx.GraphModule:
    """Export, annotate and calibrate the demo model; the same seed gives the same model."""
    from torchao.quantization.pt2e.quantize_pt2e import (  # type: ignore[import-untyped,unused-ignore]
        prepare_pt2e,
    )

    torch.manual_seed(seed)
    model = DemoModel().eval()
    example = (torch.randn(2, 3, 8, 8),)
    if progress:
        _progress("exporting conv -> pool -> hardtanh -> view -> linear with torch.export")
    gm = torch.export.export(model, example).module()
    if progress:
        _progress(f"annotating, tagging and calibrating ({batches} batches)")
    quantizer = TagPartitions(DemoQuantizer(dynamic_linear=dynamic))
    prepared: torch.fx.GraphModule = prepare_pt2e(gm, quantizer)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _ in range(batches):
            prepared(torch.randn(2, 3, 8, 8, generator=gen))
    return prepared


def _meta(node: torch.fx.Node, key: str) -> Any:
    return node.meta.get(key, _MISSING)


def _show(value: Any) -> str:
    return "(absent)" if value is _MISSING else short_value(value, 60, trace=False)


def compare(ours: torch.fx.GraphModule, theirs: torch.fx.GraphModule) -> tuple[int, list[str]]:
    """Compare every node's ported keys; returns (nodes compared, differences)."""
    a = {n.name: n for n in ours.graph.nodes}
    b = {n.name: n for n in theirs.graph.nodes}
    problems = []
    if list(a) != list(b):
        problems.append(
            f"node lists differ: only portmeta {sorted(set(a) - set(b))}, "
            f"only torchao {sorted(set(b) - set(a))}"
        )
    for name in a:
        if name not in b:
            continue
        for key in KEYS:
            va, vb = _meta(a[name], key), _meta(b[name], key)
            if va is _MISSING and vb is _MISSING:
                continue
            if va is _MISSING or vb is _MISSING or va != vb:
                problems.append(f"{name}.{key}: portmeta {_show(va)} vs torchao {_show(vb)}")
    return len(a), problems


def _print_check(snapshot: Any, plan: portmeta.Plan) -> None:
    """The summary line of :func:`portmeta.check` (and the findings, if there are any)."""
    found = check(snapshot, plan=plan)
    if found:
        print(format_findings(found))
    print(f"portmeta check: {check_summary(found, snapshot, plan.profile)}")


def run(out: Path, dynamic: bool) -> int:
    """The demo; returns the exit status."""
    from torchao.quantization.pt2e.quantize_pt2e import (  # type: ignore[import-untyped,unused-ignore]
        convert_pt2e,
    )

    mode = "dynamic linear input" if dynamic else "static"
    started = time.perf_counter()
    _progress(f"mode: {mode}")
    prepared_ours = prepared_model(dynamic=dynamic, progress=True)
    _progress("preparing an identical model (same seeds) for torchao's own pass")
    prepared_theirs = prepared_model(dynamic=dynamic)

    _progress("converting with portmeta's PortNodeMetaForQDQ swapped in")
    with patch_convert_pt2e() as created:
        ours = convert_pt2e(prepared_ours)
    if len(created) != 1 or created[0].last_snapshot is None or created[0].last_plan is None:
        _progress(f"error: expected convert_pt2e to run portmeta's pass once, ran {len(created)}")
        return 1
    snapshot, plan = created[0].last_snapshot, created[0].last_plan

    _progress("converting an identical model with torchao's own pass")
    theirs = convert_pt2e(prepared_theirs)

    print(f"portmeta demo ({mode}): conv -> adaptive avg pool -> hardtanh -> view -> linear")
    print()
    print(format_table(snapshot, plan))
    diags = format_diagnostics(plan)
    if diags:
        print()
        print(diags)
    print()
    print(summary(snapshot, plan))
    _print_check(snapshot, plan)

    count, problems = compare(ours, theirs)
    if problems:
        print(f"check: portmeta and torchao DISAGREE on {len(problems)} node keys:")
        for line in problems:
            print(f"  {line}")
    else:
        print(
            f"check: portmeta and torchao's own pass agree on stack_trace and quantization_tag "
            f"of all {count} nodes of the converted graph"
        )

    _progress(f"writing {out}/graph.json, plan.json, plan.dot and rendering plan.svg")
    try:
        out.mkdir(parents=True, exist_ok=True)
        portmeta.dump_graph(snapshot, out / "graph.json")
        atomic_write_text(out / "plan.json", plan.to_json() + "\n")
        dot_text = to_dot(
            snapshot,
            plan,
            title=f"portmeta demo ({mode}): {len(plan.deltas)} metadata writes by "
            "PortNodeMetaForQDQ",
        )
        atomic_write_text(out / "plan.dot", dot_text)
        atomic_write_text(out / "plan.svg", render(dot_text, "svg"))
    except (OSError, portmeta.PortmetaError) as exc:
        where = f"{exc.filename}: " if isinstance(exc, OSError) and exc.filename else ""
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"portmeta demo: error: {where}{detail}", file=sys.stderr)
        return 2
    for name in ("graph.json", "plan.json", "plan.dot", "plan.svg"):
        print(f"wrote {out / name}")
    _progress(f"done in {time.perf_counter() - started:.1f} s")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="portmeta demo",
        description="Quantize a tiny conv/pool/linear model with torchao's PT2E flow and "
        "portmeta's pass, print the plan, check it against torchao's own pass, and write "
        "graph.json, plan.json, plan.dot and plan.svg.",
    )
    parser.add_argument("--out", default="portmeta-out", metavar="DIR")
    parser.add_argument("--dynamic", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"portmeta demo: error: {out}: exists and is not a directory", file=sys.stderr)
        return 2
    return run(out, args.dynamic)


if __name__ == "__main__":
    sys.exit(main())
