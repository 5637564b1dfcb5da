"""``portmeta demo``: torchao's PT2E flow with portmeta's pass, end to end (needs torch)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchao") is None:
    pytest.skip("needs torch and torchao", allow_module_level=True)

import portmeta

SVG = "{http://www.w3.org/2000/svg}svg"
FILES = ("graph.json", "plan.json", "plan.dot", "plan.svg")


def portmeta_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portmeta.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module", params=["static", "dynamic"])
def demo_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, subprocess.CompletedProcess[str], float]:
    out = tmp_path_factory.mktemp(f"demo-{request.param}") / "out"
    extra = ["--dynamic"] if request.param == "dynamic" else []
    started = time.perf_counter()
    r = portmeta_cli("demo", "--out", str(out), *extra)
    return request.param, out, r, time.perf_counter() - started


def test_demo_succeeds_and_agrees(
    demo_run: tuple[str, Path, subprocess.CompletedProcess[str], float],
) -> None:
    mode, out, r, seconds = demo_run
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert seconds < 60, f"demo took {seconds:.1f} s"
    lines = r.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["target", "op"])
    assert lines[header].split() == ["target", "op", "key", "value", "source", "rule"]
    assert "agree" in r.stdout and "DISAGREE" not in r.stdout
    summary = next(line for line in lines if " annotated; " in line)
    assert "3 annotated" in summary
    # progress on stderr for the slow steps
    for word in ("exporting", "calibrating", "converting", "rendering"):
        assert word in r.stderr
    for name in FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    plan = portmeta.Plan.load(str(out / "plan.json"))
    rows = lines[header + 2 : header + 2 + len(plan.deltas)]
    assert [row.split()[0] for row in rows] == [d.target for d in plan.deltas]
    counts = plan.counts()
    assert counts["static_input"] > 0 and counts["get_attr_chain"] == 2
    if mode == "dynamic":
        assert counts["dynamic_input"] == 6
        assert "choose_qparams" in r.stdout
    else:
        assert counts["dynamic_input"] == 0 and counts["static_output"] == 6


def test_demo_svg(demo_run: tuple[str, Path, subprocess.CompletedProcess[str], float]) -> None:
    _, out, r, _ = demo_run
    assert r.returncode == 0, r.stderr
    data = (out / "plan.svg").read_bytes()
    root = ET.fromstring(data)
    assert root.tag == SVG
    text = data.decode("utf-8")
    plan = portmeta.Plan.load(str(out / "plan.json"))
    assert plan.deltas
    for d in plan.deltas:
        assert d.target in text, d.target
    assert "legend" in text and "stroke-dasharray" in text


def test_demo_graph_reads_back(
    demo_run: tuple[str, Path, subprocess.CompletedProcess[str], float],
) -> None:
    _, out, r, _ = demo_run
    assert r.returncode == 0, r.stderr
    saved = portmeta.Plan.load(str(out / "plan.json"))
    again = portmeta_cli("plan", str(out / "graph.json"), "--json")
    assert again.returncode == 0, again.stderr
    replanned = portmeta.Plan.from_json(again.stdout)
    assert replanned.deltas == saved.deltas
    assert replanned.fingerprint == saved.fingerprint
    graph = portmeta.load_graph(out / "graph.json")
    assert portmeta.plan(graph) == saved
    table = portmeta_cli("plan", str(out / "graph.json"))
    assert table.returncode == 0 and " annotated; " in table.stdout


# --------------------------------------------------------------------------- in process


def test_compare_detects_a_difference() -> None:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from portmeta_fx import demo

    a = convert_pt2e(demo.prepared_model(dynamic=False))
    b = convert_pt2e(demo.prepared_model(dynamic=False))
    count, problems = demo.compare(a, b)
    assert count > 0 and problems == []
    node = next(n for n in b.graph.nodes if "quantization_tag" in n.meta)
    node.meta["quantization_tag"] = "changed"
    _, problems = demo.compare(a, b)
    assert len(problems) == 1 and node.name in problems[0]


def test_demo_exit_status_1_on_disagreement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from portmeta_fx import demo

    monkeypatch.setattr(demo, "compare", lambda ours, theirs: (1, ["x.quantization_tag: a vs b"]))
    assert demo.main(["--out", str(tmp_path / "o")]) == 1
    assert "DISAGREE" in capsys.readouterr().out


def test_demo_out_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("keep")
    r = portmeta_cli("demo", "--out", str(target))
    assert r.returncode == 2 and str(target) in r.stderr and "Traceback" not in r.stderr
    assert target.read_text() == "keep"


def test_demo_tags_partitions_with_tag_partitions() -> None:
    from portmeta_fx import demo
    from portmeta_fx.quantizer import DemoQuantizer, TagPartitions

    prepared = demo.prepared_model(dynamic=True, batches=1)
    tags = {n.name: n.meta.get("quantization_tag") for n in prepared.graph.nodes}
    assert tags["conv2d"] == "conv2d_0"
    assert tags["adaptive_avg_pool2d"] == "adaptive_avg_pool2d_0"
    assert tags["linear"] == "linear_0"
    assert tags["conv_weight"] == tags["conv_bias"] == "conv2d_0"
    assert tags["fc_weight"] == tags["fc_bias"] == "linear_0"
    assert tags.get("hardtanh") is None
    q = TagPartitions(DemoQuantizer(dynamic_linear=True))
    assert q.quantizer.dynamic_linear is True and q.partitions == {}
