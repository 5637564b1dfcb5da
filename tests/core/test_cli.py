"""The ``portmeta`` command line, run as a user would (subprocess), without torch."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import portmeta
from portmeta import cli, draw
from portmeta.records import Target
from portmeta.testing import NOTHING, GraphBuilder, assert_ported, dynamic, static

COMMANDS = ("plan", "explain", "diff", "draw", "demo")
HAS_DOT = shutil.which("dot") is not None


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portmeta.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def conv_graph() -> portmeta.Snapshot:
    """x -> q -> dq -> conv(w via q/dq) -> q -> dq -> output, conv annotated and tagged."""
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    w = b.get_attr("weight", tag="conv_0")
    _, wdq = b.qdq(w, per_channel=True)
    conv = b.call(
        "aten.conv2d.default",
        dq,
        wdq,
        name="conv",
        tag="conv_0",
        stack_trace='File "model.py", line 7, in forward\n    x = self.conv(x)',
    )
    b.annotate(conv, inputs={x: static(), w: static()}, output=static())
    _, odq = b.qdq(conv)
    b.output(odq)
    return b.build()


def affine_graph() -> portmeta.Snapshot:
    """A relu fed by torchao affine q/dq packets: torchao ports, legacy does not."""
    b = GraphBuilder()
    x = b.placeholder("x")
    q = b.call(Target.packet("torchao.quantize_affine"), x, name="q")
    dq = b.call(Target.packet("torchao.dequantize_affine"), q, name="dq")
    y = b.call("aten.relu.default", dq, name="relu", tag="P0")
    b.annotate(y, inputs={x: static()})
    b.output(y)
    return b.build()


def broken_graph() -> portmeta.Snapshot:
    """A dynamic input with no choose_qparams: upstream raises ValueError."""
    b = GraphBuilder()
    x = b.placeholder("x")
    y = b.call("aten.linear.default", x, name="lin")
    b.annotate(y, inputs={x: dynamic()})
    b.output(y)
    return b.build()


@pytest.fixture
def graph_file(tmp_path: Path) -> Path:
    path = tmp_path / "graph.json"
    portmeta.dump_graph(conv_graph(), path)
    return path


def snapshot_dir(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# --------------------------------------------------------------------------- plan


def test_plan_table(graph_file: Path) -> None:
    r = run("plan", str(graph_file))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["target", "op", "key", "value", "source", "rule"]
    expected = portmeta.plan(conv_graph())
    for d in expected.deltas:
        assert any(line.split()[:3] == [d.target, line.split()[1], d.key] for line in lines[2:])
    assert "model.py:7 in forward" in r.stdout
    assert "get_attr_chain" in r.stdout
    assert "10 nodes, 1 annotated; 7 writes to 4 nodes" in lines[-1]


@pytest.mark.parametrize("make", [conv_graph, affine_graph, broken_graph])
def test_plan_table_and_explain_equal_what_the_fingerprinted_plan_gives(
    make: Callable[[], portmeta.Snapshot], tmp_path: Path
) -> None:
    # the table and explain plan without the fingerprint they never show
    path = tmp_path / "graph.json"
    portmeta.dump_graph(make(), path)
    graph = portmeta.load_graph(path)
    full = portmeta.plan(graph, errors="collect")
    r = run("plan", str(path), "--errors", "collect")
    assert r.returncode == 0, r.stderr
    diags = portmeta.report.format_diagnostics(full)
    assert r.stdout == (
        portmeta.report.format_table(graph, full)
        + "\n"
        + ("\n" + diags + "\n" if diags else "")
        + "\n"
        + portmeta.report.summary(graph, full)
        + "\n"
    )
    for node in graph:
        assert portmeta.explain(graph, node) == portmeta.explain(graph, node, plan=full)


def test_plan_json_stdout_equals_library_plan(graph_file: Path) -> None:
    r = run("plan", str(graph_file), "--json")
    assert r.returncode == 0, r.stderr
    assert portmeta.Plan.from_json(r.stdout) == portmeta.plan(conv_graph())


def test_plan_output_file(graph_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    r = run("plan", str(graph_file), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert portmeta.Plan.load(str(out)) == portmeta.plan(conv_graph())
    assert "target" in r.stdout and str(out) in r.stderr
    r = run("plan", str(graph_file), "--json", "-o", str(tmp_path / "quiet.json"))
    assert r.returncode == 0 and r.stdout == ""


def test_plan_profile_and_keys(graph_file: Path) -> None:
    r = run("plan", str(graph_file), "--profile", "legacy", "--json")
    assert r.returncode == 0, r.stderr
    assert portmeta.Plan.from_json(r.stdout).profile.name == "legacy"
    r = run("plan", str(graph_file), "--keys", "stack_trace", "--json")
    assert r.returncode == 0, r.stderr
    p = portmeta.Plan.from_json(r.stdout)
    assert p.profile.keys == ("stack_trace",)
    assert {d.key for d in p.deltas} == {"stack_trace"}


def test_plan_errors_collect(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    portmeta.dump_graph(broken_graph(), path)
    r = run("plan", str(path), "--errors", "collect")
    assert r.returncode == 0, r.stderr
    assert "NoChooseQParamsError" in r.stdout and "1 diagnostic (error 1)" in r.stdout


# --------------------------------------------------------------------------- explain


def test_explain(graph_file: Path) -> None:
    r = run("explain", str(graph_file), "dq")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("node 'dq'")
    assert "static_input" in r.stdout and "'conv_0'" in r.stdout
    assert r.stdout.strip() == portmeta.explain(conv_graph(), "dq")


def test_explain_profile_and_keys(graph_file: Path) -> None:
    r = run("explain", str(graph_file), "q_1", "--profile", "legacy", "--keys", "quantization_tag")
    assert r.returncode == 0, r.stderr
    assert "get_attr_chain" in r.stdout and "stack_trace" not in r.stdout


# --------------------------------------------------------------------------- diff


def _plans(tmp_path: Path, graph: portmeta.Snapshot) -> tuple[Path, Path]:
    g = tmp_path / "g.json"
    portmeta.dump_graph(graph, g)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run("plan", str(g), "-o", str(a)).returncode == 0
    assert run("plan", str(g), "--profile", "legacy", "-o", str(b)).returncode == 0
    return a, b


def test_diff_two_profiles_that_differ(tmp_path: Path) -> None:
    a, b = _plans(tmp_path, affine_graph())
    r = run("diff", str(a), str(b))
    assert r.returncode == 0, r.stderr
    assert "only in A: dq.quantization_tag = 'P0' from relu (static_input)" in r.stdout
    assert "profiles differ: torchao vs legacy" in r.stdout
    assert r.stdout.rstrip().splitlines()[-1].startswith("plans differ: 1 only in A")
    assert run("diff", str(a), str(b), "--exit-code").returncode == 1
    data = json.loads(run("diff", str(a), str(b), "--json").stdout)
    assert data["agree"] is False and data["only_a"][0]["target"] == "dq"


def test_diff_two_profiles_that_agree(tmp_path: Path) -> None:
    a, b = _plans(tmp_path, conv_graph())
    r = run("diff", str(a), str(b), "--exit-code")
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().endswith("plans agree")


def test_diff_identical_plans(tmp_path: Path) -> None:
    a, _ = _plans(tmp_path, conv_graph())
    r = run("diff", str(a), str(a))
    assert r.returncode == 0 and r.stdout.strip() == "plans agree"


def test_diff_of_graph_files_plans_them_and_says_so(tmp_path: Path) -> None:
    a, b = tmp_path / "a_graph.json", tmp_path / "b_graph.json"
    portmeta.dump_graph(affine_graph(), a)
    portmeta.dump_graph(affine_graph(), b)
    r = run("diff", str(a), str(b))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "plans agree"
    assert r.stderr.splitlines() == [
        f"portmeta: note: {p} is a graph file; comparing the plan made from it now "
        "(profile torchao, errors collected)"  # diff has no --errors option to name
        for p in (a, b)
    ]
    # --profile applies to the graphs: the legacy pass does not know torchao's affine ops
    plan_a = tmp_path / "a_plan.json"
    assert run("plan", str(a), "-o", str(plan_a)).returncode == 0
    r = run("diff", str(plan_a), str(b), "--profile", "legacy", "--exit-code")
    assert r.returncode == 1, r.stderr
    assert "only in A: dq.quantization_tag = 'P0' from relu (static_input)" in r.stdout
    assert r.stderr.count("note:") == 1 and "profile legacy" in r.stderr
    # a graph where upstream raises is diffed too: its error is a diagnostic
    broken = tmp_path / "broken.json"
    portmeta.dump_graph(broken_graph(), broken)
    r = run("diff", str(a), str(broken))
    assert r.returncode == 0, r.stderr
    assert "diagnostic only in B: error at lin: no choose_qparams node" in r.stdout


def test_diff_of_a_file_that_is_neither_plan_nor_graph(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"format": "something.else"}')
    before = snapshot_dir(tmp_path)
    r = run("diff", str(other), str(other))
    assert_clean_failure(r, [str(other)], tmp_path, before)
    assert r.stderr == (
        f"portmeta: error: {other}: not a portmeta plan or graph file (format is "
        "'something.else', expected 'portmeta.plan' or 'portmeta.graph')\n"
    )


def test_diff_reads_both_files_before_planning_either(tmp_path: Path) -> None:
    g = tmp_path / "g.json"
    portmeta.dump_graph(conv_graph(), g)
    missing = tmp_path / "missing.json"
    before = snapshot_dir(tmp_path)
    for args in ((g, missing), (missing, g)):
        r = run("diff", *map(str, args))
        assert_clean_failure(r, [str(missing)], tmp_path, before)
        assert r.stderr == f"portmeta: error: {missing}: no such file\n"  # no note: nothing planned


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        ("[1]", "a JSON list"),
        ('"x"', "a JSON string"),
        ("3", "a JSON number"),
        ("null", "JSON null"),
    ],
)
def test_diff_of_json_that_is_not_an_object_says_what_it_is(
    tmp_path: Path, content: str, kind: str
) -> None:
    other = tmp_path / "other.json"
    other.write_text(content)
    before = snapshot_dir(tmp_path)
    r = run("diff", str(other), str(other))
    assert_clean_failure(r, [str(other)], tmp_path, before)
    assert r.stderr == (
        f"portmeta: error: {other}: not a portmeta plan or graph file (it holds {kind}; "
        "expected 'portmeta.plan' or 'portmeta.graph' in an object's 'format')\n"
    )


def test_diff_changed_value(tmp_path: Path) -> None:
    a, _ = _plans(tmp_path, conv_graph())
    data = json.loads(a.read_text())
    data["deltas"][-1]["value"] = "other"
    b = tmp_path / "edited.json"
    b.write_text(json.dumps(data))
    r = run("diff", str(a), str(b))
    assert r.returncode == 0
    assert "differs (value): q_2.quantization_tag" in r.stdout


# --------------------------------------------------------------------------- draw


def test_draw_dot(graph_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan.dot"
    r = run("draw", str(graph_file), "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.startswith("digraph portmeta {")
    for d in portmeta.plan(conv_graph()).deltas:
        assert f'"{d.target}"' in text
    assert 'style="dashed"' in text and "cluster_legend" in text


def test_draw_with_plan(graph_file: Path, tmp_path: Path) -> None:
    plan_file = tmp_path / "legacy.json"
    assert run("plan", str(graph_file), "--profile", "legacy", "-o", str(plan_file)).returncode == 0
    out = tmp_path / "p.dot"
    r = run("draw", str(graph_file), "--plan", str(plan_file), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "portmeta plan (legacy)" in out.read_text()


def _dot_label(text: str, node: str) -> str:
    for line in text.splitlines():
        if line.startswith(f'  "{node}" [label="'):
            return line.split('label="', 1)[1].split('"', 1)[0]
    raise AssertionError(f"no node {node!r} in the drawing")


def test_draw_shows_the_written_values_of_the_plan_it_is_given(
    graph_file: Path, tmp_path: Path
) -> None:
    a = tmp_path / "a.json"
    assert run("plan", str(graph_file), "-o", str(a)).returncode == 0
    data = json.loads(a.read_text())
    for d in data["deltas"]:
        if d["target"] == "dq" and d["key"] == "quantization_tag":
            d["value"] = "other_tag"
    b = tmp_path / "b.json"
    b.write_text(json.dumps(data))
    out_a, out_b, out_now = tmp_path / "a.dot", tmp_path / "b.dot", tmp_path / "now.dot"
    assert run("draw", str(graph_file), "--plan", str(a), "-o", str(out_a)).returncode == 0
    assert run("draw", str(graph_file), "--plan", str(b), "-o", str(out_b)).returncode == 0
    assert run("draw", str(graph_file), "-o", str(out_now)).returncode == 0
    label_a = _dot_label(out_a.read_text(), "dq").split("\\n")
    label_b = _dot_label(out_b.read_text(), "dq").split("\\n")
    assert label_a == [
        "dq",
        "dequantize_per_tensor",
        "<- static_input",
        "stack_trace = model.py:7 in forward",
        "quantization_tag = 'conv_0'",
    ]
    # the tampered value is no rule's: the check reports it, and the drawing marks it
    assert label_b == [
        *label_a[:-1],
        "quantization_tag = 'other_tag'",
        "unported_input of conv: unexplained",
    ]
    assert out_now.read_text() == out_a.read_text()
    # a node the plan does not write keeps its recorded tag
    assert _dot_label(out_b.read_text(), "weight").split("\\n") == [
        "weight",
        "get_attr",
        "[conv_0]",
    ]


def _documented_draw_suffixes() -> list[str]:
    """The output suffixes docs/cli.md's `portmeta draw` section names (`.svg`, ...)."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    section = docs.read_text().split("## `portmeta draw", 1)[1].split("\n## ", 1)[0]
    return sorted(set(re.findall(r"`(\.[a-z]+)`", section)))


def test_draw_accepts_every_documented_suffix_and_only_those() -> None:
    documented = _documented_draw_suffixes()
    assert documented == sorted(draw.FORMATS)
    r = run("draw", "--help")
    assert all(s in r.stdout for s in documented)


@pytest.mark.parametrize("suffix", _documented_draw_suffixes())
def test_draw_writes_each_documented_suffix(graph_file: Path, tmp_path: Path, suffix: str) -> None:
    if draw.FORMATS.get(suffix) is not None and not HAS_DOT:
        pytest.skip("Graphviz dot not installed")
    out = tmp_path / f"plan{suffix.upper() if suffix == '.gv' else suffix}"
    r = run("draw", str(graph_file), "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    fmt = draw.FORMATS[suffix] or "dot"
    assert r.stderr == f"wrote {out} ({fmt})\n"
    assert data.startswith({"dot": b"digraph portmeta {", "png": b"\x89PNG"}.get(fmt, b"<?xml"))


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz dot not installed")
@pytest.mark.parametrize("ext", [".svg", ".png"])
def test_draw_rendered(graph_file: Path, tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"plan{ext}"
    r = run("draw", str(graph_file), "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    if ext == ".png":
        assert data.startswith(b"\x89PNG")
        return
    root = ET.fromstring(data)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = data.decode()
    for d in portmeta.plan(conv_graph()).deltas:
        assert d.target in text


# --------------------------------------------------------------------------- help, version


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command: str) -> None:
    r = run(command, "--help")
    assert r.returncode == 0
    assert "example" in r.stdout and f"portmeta {command}" in r.stdout


def test_top_level_help_and_version() -> None:
    r = run("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in COMMANDS)
    r = run("--version")
    assert r.returncode == 0 and portmeta.__version__ in r.stdout


def test_no_command_is_usage_error() -> None:
    r = run()
    assert r.returncode == 2 and "usage" in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- bad input


def _write_bad(path: Path, kind: str) -> None:
    good = json.dumps(portmeta.graph_to_dict(conv_graph()))
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_text(good[: len(good) // 2])
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "not_json":
        path.write_text("format: portmeta.graph\nnodes: []\n")
    elif kind == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "wrong_structure":
        path.write_text(
            json.dumps({"format": "portmeta.graph", "version": 1, "nodes": [{"name": 3}]})
        )
    elif kind == "wrong_format":
        path.write_text(json.dumps({"format": "something.else", "nodes": []}))
    elif kind == "top_level_list":
        path.write_text("[1, 2, 3]")
    elif kind == "dangling_user":
        data = portmeta.graph_to_dict(conv_graph())
        data["nodes"][0]["users"].append("ghost")
        path.write_text(json.dumps(data))
    elif kind == "directory":
        path.mkdir()
    else:  # pragma: no cover
        raise AssertionError(kind)


BAD_KINDS = (
    "empty",
    "truncated",
    "binary",
    "not_json",
    "deep",
    "wrong_structure",
    "wrong_format",
    "top_level_list",
    "dangling_user",
    "directory",
)


def assert_clean_failure(
    r: subprocess.CompletedProcess[str],
    names: Sequence[str],
    folder: Path,
    before: dict[str, bytes],
) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("portmeta: error: ") or "error:" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 3, r.stderr
    assert any(n in r.stderr for n in names), r.stderr
    assert snapshot_dir(folder) == before, "inputs changed or output/temp files left behind"


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize(
    "command",
    [
        ("plan", "{bad}"),
        ("plan", "{bad}", "-o", "{out}"),
        ("explain", "{bad}", "x"),
        ("draw", "{bad}", "-o", "{out}.dot"),
        ("draw", "{good}", "--plan", "{bad}", "-o", "{out}.dot"),
        ("diff", "{bad}", "{plan}"),
        ("diff", "{plan}", "{bad}"),
    ],
    ids=["plan", "plan-o", "explain", "draw", "draw-plan", "diff-a", "diff-b"],
)
def test_bad_input_file(tmp_path: Path, kind: str, command: tuple[str, ...]) -> None:
    good = tmp_path / "good.json"
    portmeta.dump_graph(conv_graph(), good)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(portmeta.plan(conv_graph()).to_json())
    bad = tmp_path / "bad.json"
    _write_bad(bad, kind)
    before = snapshot_dir(tmp_path)
    fill = {
        "bad": str(bad),
        "good": str(good),
        "plan": str(plan_file),
        "out": str(tmp_path / "out"),
    }
    r = run(*(a.format(**fill) for a in command))
    assert_clean_failure(r, [str(bad)], tmp_path, before)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    for args in (
        ("plan", str(missing)),
        ("explain", str(missing), "x"),
        ("draw", str(missing), "-o", str(tmp_path / "x.dot")),
        ("diff", str(missing), str(missing)),
    ):
        r = run(*args)
        assert_clean_failure(r, [str(missing)], tmp_path, {})
        assert "no such file" in r.stderr


@pytest.mark.parametrize("command", ["draw", "check"])
def test_graph_given_where_plan_expected(graph_file: Path, tmp_path: Path, command: str) -> None:
    before = snapshot_dir(tmp_path)
    out = ("-o", str(tmp_path / "x.dot")) if command == "draw" else ()
    r = run(command, str(graph_file), "--plan", str(graph_file), *out)
    assert_clean_failure(r, [str(graph_file)], tmp_path, before)
    assert r.stderr == (
        f"portmeta: error: {graph_file}: not a portmeta plan file (format is 'portmeta.graph', "
        f"expected 'portmeta.plan') (make one with `portmeta plan {graph_file} -o PLAN.json`)\n"
    )
    # the command it suggests makes a plan the same command accepts
    plan_file = tmp_path / "plan.json"
    assert run("plan", str(graph_file), "-o", str(plan_file)).returncode == 0
    assert run(command, str(graph_file), "--plan", str(plan_file), *out).returncode == 0


def test_draw_refuses_a_plan_made_from_another_snapshot(graph_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    portmeta.dump_graph(affine_graph(), other)
    plan_file = tmp_path / "plan.json"
    assert run("plan", str(other), "-o", str(plan_file)).returncode == 0
    before = snapshot_dir(tmp_path)
    r = run("draw", str(graph_file), "--plan", str(plan_file), "-o", str(tmp_path / "x.dot"))
    assert_clean_failure(r, [str(plan_file)], tmp_path, before)
    assert r.stderr == (
        f"portmeta: error: {plan_file}: planned from another graph than {graph_file}; plan it "
        f"again (portmeta plan {graph_file} -o PLAN.json)\n"
    )
    with pytest.raises(portmeta.StalePlanError, match=r"^drawing a plan made from another graph"):
        draw.to_dot(portmeta.load_graph(graph_file), portmeta.Plan.load(str(plan_file)))


@pytest.mark.parametrize("command", ["draw", "check"])
def test_a_plan_saved_with_a_v1_fingerprint_is_refused_saying_to_plan_again(
    tmp_path: Path, command: str
) -> None:
    # written by portmeta before fingerprint scheme v3 (schema version 1), for the graph beside it
    data = Path(__file__).resolve().parent / "data"
    graph_file, plan_file = data / "conv_relu_graph.json", data / "conv_relu_v1.plan.json"
    out = ("-o", str(tmp_path / "x.dot")) if command == "draw" else ()
    before = snapshot_dir(tmp_path)
    r = run(command, str(graph_file), "--plan", str(plan_file), *out)
    assert_clean_failure(r, [str(plan_file)], tmp_path, before)
    assert r.stderr == (
        f"portmeta: error: {plan_file}: a plan of schema version 1, saved by an older "
        f"portmeta; plan again (`portmeta plan GRAPH.json -o {plan_file}`)\n"
    )


@pytest.mark.parametrize("command", ["draw", "check", "diff"])
def test_a_plan_with_a_fingerprint_of_an_older_scheme_is_refused(
    tmp_path: Path, command: str
) -> None:
    graph_file = tmp_path / "g.json"
    portmeta.dump_graph(conv_graph(), graph_file)
    good, plan_file = tmp_path / "good.plan.json", tmp_path / "old.plan.json"
    assert run("plan", str(graph_file), "-o", str(good)).returncode == 0
    data = json.loads(good.read_text())
    data["fingerprint"] = "v2:" + data["fingerprint"][3:]
    plan_file.write_text(json.dumps(data))
    args = {
        "draw": ("draw", str(graph_file), "--plan", str(plan_file), "-o", str(tmp_path / "x.dot")),
        "check": ("check", str(graph_file), "--plan", str(plan_file)),
        "diff": ("diff", str(good), str(plan_file)),
    }[command]
    before = snapshot_dir(tmp_path)
    r = run(*args)
    assert_clean_failure(r, [str(plan_file)], tmp_path, before)
    assert r.stderr.startswith(f"portmeta: error: {plan_file}: the plan's fingerprint ")
    assert r.stderr.endswith(
        "is not of scheme v3 (a plan saved by an older portmeta); plan again "
        f"(`portmeta plan GRAPH.json -o {plan_file}`)\n"
    )
    if command != "diff":  # planned again, the plan is the graph's
        r = run(*[str(good) if a == str(plan_file) else a for a in args])
        assert r.returncode in (0, 1), r.stderr
        assert "different snapshot" not in r.stderr and "error" not in r.stderr


def test_unknown_node(graph_file: Path, tmp_path: Path) -> None:
    before = snapshot_dir(tmp_path)
    r = run("explain", str(graph_file), "no_such_node")
    assert_clean_failure(r, [str(graph_file)], tmp_path, before)
    assert "no_such_node" in r.stderr
    assert "did you mean" not in r.stderr  # nothing in the graph looks like it


def test_unknown_node_suggests_close_names(graph_file: Path, tmp_path: Path) -> None:
    before = snapshot_dir(tmp_path)
    r = run("explain", str(graph_file), "dqq")
    assert_clean_failure(r, [str(graph_file)], tmp_path, before)
    assert r.stderr == (
        f"portmeta: error: no node named 'dqq' in {graph_file} (did you mean 'dq'?)\n"
    )


def test_unknown_node_hint_is_the_one_assert_ported_gives() -> None:
    graph = conv_graph()
    with pytest.raises(portmeta.UnknownNodeError) as info:
        portmeta.explain(graph, "dq_3")
    hint = "(did you mean 'dq_2', 'dq_1', 'dq'?)"
    assert str(info.value) == f"no node named 'dq_3' in the graph {hint}"
    with pytest.raises(AssertionError) as failed:
        assert_ported(graph, {"dq_3": NOTHING})
    assert f"the graph has no node named 'dq_3' {hint}" in str(failed.value)


def test_unknown_profile(graph_file: Path, tmp_path: Path) -> None:
    before = snapshot_dir(tmp_path)
    for command in (("plan",), ("explain",), ("draw",)):
        extra = ["dq"] if command == ("explain",) else []
        extra += ["-o", str(tmp_path / "x.dot")] if command == ("draw",) else []
        r = run(*command, str(graph_file), *extra, "--profile", "nope")
        assert_clean_failure(r, [str(graph_file)], tmp_path, before)
        assert "unknown profile 'nope'" in r.stderr and "legacy" in r.stderr


def test_bad_keys(graph_file: Path, tmp_path: Path) -> None:
    before = snapshot_dir(tmp_path)
    for keys in (",", "a,a"):
        r = run("plan", str(graph_file), "--keys", keys)
        assert_clean_failure(r, [str(graph_file)], tmp_path, before)
    # keys the snapshot did not record
    path = tmp_path / "recorded.json"
    portmeta.dump_graph(GraphBuilder().build(meta_keys=["stack_trace"]), path)
    before = snapshot_dir(tmp_path)
    r = run("plan", str(path), "--keys", "quantization_tag")
    assert_clean_failure(r, [str(path)], tmp_path, before)
    assert "did not record" in r.stderr


def test_planning_error_with_errors_raise(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    portmeta.dump_graph(broken_graph(), path)
    before = snapshot_dir(tmp_path)
    for args in (("plan", str(path)), ("plan", str(path), "-o", str(tmp_path / "p.json"))):
        r = run(*args)
        assert_clean_failure(r, [str(path)], tmp_path, before)
        assert "'lin'" in r.stderr and "NoChooseQParamsError" in r.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("plan", "{g}", "-o", "{out}"),
        ("draw", "{g}", "-o", "{out}"),
    ],
    ids=["plan", "draw"],
)
@pytest.mark.parametrize("where", ["missing_dir", "is_dir", "is_input"])
def test_unwritable_output(tmp_path: Path, command: tuple[str, ...], where: str) -> None:
    g = tmp_path / "g.json"
    portmeta.dump_graph(conv_graph(), g)
    (tmp_path / "adir.dot").mkdir()
    before = snapshot_dir(tmp_path)
    out = {
        "missing_dir": tmp_path / "no" / "such" / "dir" / "out.dot",
        "is_dir": tmp_path / "adir.dot",
        "is_input": g,
    }[where]
    if where == "is_input" and command[0] == "draw":
        out = g  # .json extension: refused as the input before the format is looked at
    r = run(*(a.format(g=str(g), out=str(out)) for a in command))
    assert_clean_failure(r, [str(out)], tmp_path, before)
    assert not (tmp_path / "no").exists()


def test_draw_unknown_extension(graph_file: Path, tmp_path: Path) -> None:
    before = snapshot_dir(tmp_path)
    out = tmp_path / "plan.pdf"
    r = run("draw", str(graph_file), "-o", str(out))
    assert_clean_failure(r, [str(out)], tmp_path, before)


@pytest.mark.parametrize("ext", [".svg", ".png"])
def test_draw_without_dot(graph_file: Path, tmp_path: Path, ext: str) -> None:
    before = snapshot_dir(tmp_path)
    out = tmp_path / f"plan{ext}"
    env = dict(os.environ, PATH=str(tmp_path / "empty-path"))
    r = run("draw", str(graph_file), "-o", str(out), env=env)
    assert_clean_failure(r, [str(out)], tmp_path, before)
    assert "Graphviz 'dot' not found" in r.stderr


# --------------------------------------------------------------------------- in-process checks


def test_internal_error_is_reported_not_swallowed(
    graph_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(args: object) -> int:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(cli, "cmd_plan", boom)
    monkeypatch.delenv("PORTMETA_DEBUG", raising=False)
    assert cli.main(["plan", str(graph_file)]) == 2
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError: oops" in err and "Traceback" not in err
    monkeypatch.setenv("PORTMETA_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli.main(["plan", str(graph_file)])


def test_demo_without_torch_side(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_find_spec", lambda name: None)
    assert cli.main(["demo", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "demo needs torch" in err and "Traceback" not in err


def test_core_cli_does_not_import_torch(graph_file: Path) -> None:
    code = (
        "import sys, runpy; sys.argv = ['portmeta', 'plan', sys.argv[1]];"
        "import portmeta.cli as c; rc = c.main(sys.argv[1:]);"
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(graph_file)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- JSON errors


def test_unterminated_string_is_reported_once_with_its_position(tmp_path: Path) -> None:
    bad = tmp_path / "cut.json"
    bad.write_text('{\n "format": "portmeta.graph",\n "nodes": [{"name": "x')
    before = snapshot_dir(tmp_path)
    r = run("plan", str(bad))
    assert_clean_failure(r, [str(bad)], tmp_path, before)
    assert r.stderr == (
        f"portmeta: error: {bad}: not valid JSON: Unterminated string starting at line 3 "
        "column 21\n"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"a": "b', "Unterminated string starting at line 1 column 7"),
        ('{"a" 1}', "Expecting ':' delimiter at line 1 column 6"),
        ("[1, 2", "Expecting ',' delimiter at line 1 column 6"),
        ('"a\tb"', "Invalid control character at line 1 column 3"),
    ],
)
def test_json_errors_read_the_same_from_a_file_and_from_text(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(portmeta.GraphFormatError) as from_file:
        portmeta.Plan.load(str(path))
    with pytest.raises(portmeta.GraphFormatError) as from_text:
        portmeta.Plan.from_json(text, source=str(path))
    assert str(from_file.value) == str(from_text.value) == f"{path}: not valid JSON: {problem}"
    assert " at at " not in str(from_file.value)
