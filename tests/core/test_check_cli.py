"""``portmeta check`` on the command line, without torch (in process, one run as a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

import portmeta
from portmeta import cli
from portmeta.check import findings_from_json
from portmeta.testing import GraphBuilder, dynamic, static


@attrs.frozen
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """``portmeta ARGS...`` in process: exit status, stdout, stderr."""

    def call(*args: str) -> Result:
        try:
            status = cli.main(list(args))
        except SystemExit as exc:  # argparse usage errors
            status = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Result(status, out, err)

    return call


def save(tmp_path: Path, name: str, graph: portmeta.Snapshot) -> str:
    path = tmp_path / name
    portmeta.dump_graph(graph, path)
    return str(path)


def cat_graph() -> portmeta.Snapshot:
    b = GraphBuilder()
    x, y = b.placeholder("x"), b.placeholder("y")
    _, dq = b.qdq(x)
    _, dq_1 = b.qdq(y)
    cat = b.call("aten.cat.default", [dq, dq_1], 1, name="cat", tag="cat_0")
    b.annotate(cat, inputs={x: static(), y: static()})
    b.output(cat)
    return b.build()


def clean_graph() -> portmeta.Snapshot:
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu", tag="relu_0")
    b.annotate(relu, inputs={x: static()})
    b.output(relu)
    return b.build()


def test_findings_table_messages_summary_exit_1(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = run("check", save(tmp_path, "g.json", cat_graph()))
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["node", "kind", "anchor", "cause", "keys"]
    assert lines[2].split() == ["dq", "unported_input", "cat", "container", "quantization_tag"]
    assert lines[3].split()[0] == "dq_1"
    assert lines[5].startswith("1. 'dq' feeds 'cat'")
    assert lines[-1] == (
        "2 findings in 8 nodes, 1 annotated; compared quantization_tag on 1 (unported_input 2, unported_output 0, foreign_write 0, stale_annotation 0)"
    )
    assert r.stderr == ""


def test_clean_graph_exit_0(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = run("check", save(tmp_path, "g.json", clean_graph()))
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        "no findings in 5 nodes, 1 annotated; compared quantization_tag on 1 (unported_input 0, unported_output 0, foreign_write 0, stale_annotation 0)\n"
    )


def test_json_round_trips(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    g = cat_graph()
    r = run("check", save(tmp_path, "g.json", g), "--format", "json")
    assert r.returncode == 1
    assert findings_from_json(r.stdout) == portmeta.check(g)
    assert json.loads(r.stdout)["counts"]["unported_input"] == 2
    clean = run("check", save(tmp_path, "c.json", clean_graph()), "--format", "json")
    assert clean.returncode == 0 and json.loads(clean.stdout)["findings"] == []


def test_with_a_plan_and_with_a_ported_snapshot(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A plan of the graph before porting, used on the graph after porting: same findings."""
    b = GraphBuilder()
    x = b.placeholder("x")
    c = b.dynamic_qdq(x)
    lins = [b.call("aten.linear.default", c.dq, tag=f"L{i}") for i in range(2)]
    for lin in lins:
        b.annotate(lin, inputs={x: dynamic()})
    b.output(*lins)
    before = b.build()
    p = portmeta.plan(before)
    for target, meta in p.final_state().items():
        b.set_meta(target, **meta)
    after = b.build()
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(p.to_json())
    g_before, g_after = save(tmp_path, "b.json", before), save(tmp_path, "a.json", after)
    outs = [
        run("check", g_before),
        run("check", g_after),
        run("check", g_before, "--plan", str(plan_path)),
        run("check", g_after, "--plan", str(plan_path), "--ported"),
    ]
    assert {r.returncode for r in outs} == {1}
    assert len({r.stdout for r in outs}) == 1
    assert "unported_input" in outs[0].stdout and "shared" in outs[0].stdout
    assert outs[2].stderr == ""
    assert outs[3].stderr == (
        f"portmeta: note: {plan_path} was planned from a different snapshot than {g_after} "
        "(fine with --ported, for a snapshot taken after porting); checking it anyway\n"
    )
    # without --ported a plan of another snapshot is refused, saying what to do
    refused = run("check", g_after, "--plan", str(plan_path))
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr == (
        f"portmeta: error: {plan_path}: planned from another graph than {g_after} (give "
        "--ported if the graph was taken after porting); plan it again (portmeta plan "
        f"{g_after} -o PLAN.json)\n"
    )


def test_bad_input_exit_2(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    g = save(tmp_path, "g.json", cat_graph())
    missing = run("check", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"portmeta: error: {tmp_path / 'nope.json'}: no such file"
    as_plan = run("check", g, "--plan", g)
    assert as_plan.returncode == 2 and "not a portmeta plan file" in as_plan.stderr
    other = tmp_path / "other.json"
    other.write_text(portmeta.plan(clean_graph()).to_json())
    foreign = run("check", g, "--plan", str(other))
    assert foreign.returncode == 2
    assert foreign.stderr.splitlines() == [
        f"portmeta: error: {other}: planned from another graph than {g} (give --ported if the "
        f"graph was taken after porting); plan it again (portmeta plan {g} -o PLAN.json)"
    ]
    foreign_ported = run("check", g, "--plan", str(other), "--ported")
    assert foreign_ported.returncode == 2
    assert foreign_ported.stderr.splitlines()[-1].startswith(
        f"portmeta: error: {other}: no node named"
    )
    assert run("check", g, "--format", "xml").returncode == 2
    assert run("check", g, "--profile", "nope").returncode == 2
    for r in (missing, as_plan, foreign):
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2


def test_ported_and_keys(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--ported takes the graph's values as final; --keys chooses the keys compared."""
    b = GraphBuilder()
    x = b.placeholder("x")
    c = b.dynamic_qdq(x)
    lins = []
    for i in range(2):
        lin = b.call("aten.linear.default", c.dq, name=f"lin{i}", tag="one", stack_trace=f"m:{i}")
        b.annotate(lin, inputs={x: dynamic()})
        lins.append(lin)
    b.output(*lins)
    g = save(tmp_path, "g.json", b.build())
    assert run("check", g).returncode == 0  # one partition: a stack_trace difference alone
    strict = run("check", g, "--keys", "stack_trace")
    assert strict.returncode == 1 and "lin0" in strict.stdout and "stack_trace" in strict.stdout
    # the chain re-tagged after porting with lin0's values: clean with --ported only
    for n in (c.choose_qparams, c.q, c.dq):
        b.set_meta(n, tag="one", stack_trace="m:0")
    fixed = save(tmp_path, "fixed.json", b.build())
    assert run("check", fixed, "--keys", "stack_trace").returncode == 1
    ok = run("check", fixed, "--keys", "stack_trace", "--ported")
    assert ok.returncode == 1 and "lin1" in ok.stdout and "lin0" not in ok.stdout.splitlines()[2]
    bad = run("check", g, "--keys", "nope")
    assert bad.returncode == 2 and "--keys: give some of the profile's keys" in bad.stderr


def test_options_that_do_not_apply_with_a_plan_are_refused(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    g = cat_graph()
    path = save(tmp_path, "g.json", g)
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(portmeta.plan(g).to_json())
    for profile in ("nope", "torchao"):
        r = run("check", path, "--plan", str(plan_path), "--profile", profile)
        assert r.returncode == 2
        assert "--profile cannot be used with --plan" in r.stderr
    r = run("check", path, "--plan", str(plan_path), "--keys", "nope")
    assert r.returncode == 2 and "--keys" in r.stderr
    assert (
        run("check", path, "--plan", str(plan_path), "--keys", "quantization_tag").returncode == 1
    )


def test_writes_to_nodes_the_graph_lacks_are_skipped_with_a_note(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A plan naming a node the graph lacks (a folded weight quantize) is checked, with a note
    (one naming an annotated node the graph lacks is another graph's: test_bad_input_exit_2)."""
    g = clean_graph()
    p = portmeta.plan(g)
    gone = portmeta.MetaDelta(
        "gone", "quantization_tag", "relu_0", "relu", "relu", portmeta.Rule.STATIC_INPUT, "relu", ()
    )
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(attrs.evolve(p, deltas=(*p.deltas, gone)).to_json())
    r = run("check", save(tmp_path, "g.json", g), "--plan", str(plan_path))
    assert r.returncode == 0, r.stderr
    assert "note: skipped 1 write of" in r.stderr


def test_as_a_command(tmp_path: Path) -> None:
    """One real run: the installed command's exit status and help."""
    g = save(tmp_path, "g.json", cat_graph())
    r = subprocess.run(
        [sys.executable, "-m", "portmeta.cli", "check", g], capture_output=True, text=True
    )
    assert r.returncode == 1 and "container" in r.stdout
    h = subprocess.run(
        [sys.executable, "-m", "portmeta.cli", "check", "--help"], capture_output=True, text=True
    )
    assert h.returncode == 0 and "exit status: 0 no findings, 1 findings, 2 bad input" in h.stdout
