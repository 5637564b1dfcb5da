"""Golden plans as a plain function: ``assert_matches_golden`` with an explicit folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import portmeta
from portmeta.testing import GoldenPlans, GraphBuilder, assert_matches_golden, golden_path, static
from portmeta.testing._golden import UPDATE_ENV, default_name


def graph(relu_tag="P0", second=False, trace="m.py:3"):
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu", tag=relu_tag, stack_trace=trace)
    b.annotate(relu, inputs={x: static()}, output=static())
    _, odq = b.qdq(relu)
    outs = [odq]
    if second:
        other = b.call("aten.neg.default", relu, name="neg")  # a 2nd user: user_count warning
        outs.append(other)
    b.output(*outs)
    return b.build()


def plan(**kwargs):
    return portmeta.plan(graph(**kwargs))


def golden_failure(p, name, folder) -> str:
    with pytest.raises(AssertionError) as info:
        assert_matches_golden(p, name, directory=folder, update=False)
    return str(info.value)


def test_missing_file_fails_and_is_not_created(tmp_path):
    msg = golden_failure(plan(), "relu", tmp_path)
    path = tmp_path / "relu.plan.json"
    assert msg == (
        f"no golden plan file {path} for 'relu'; run pytest with --portmeta-update-golden "
        "to write it from this plan, then review and commit it"
    )
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_update_writes_the_plan_json_and_an_unchanged_plan_passes(tmp_path):
    folder = tmp_path / "golden" / "deeper"  # created as needed
    path = assert_matches_golden(plan(), "relu", directory=folder, update=True)
    assert path == folder / "relu.plan.json"
    text = path.read_text(encoding="utf-8")
    assert text == plan().to_json() + "\n"
    assert portmeta.Plan.from_json(text) == plan()
    assert sorted(p.name for p in folder.iterdir()) == ["relu.plan.json"]  # no temp file left
    assert assert_matches_golden(plan(), "relu", directory=folder, update=False) == path


def test_update_does_not_touch_an_identical_file(tmp_path):
    path = assert_matches_golden(plan(), "relu", directory=tmp_path, update=True)
    os.utime(path, (1, 1))
    assert_matches_golden(plan(), "relu", directory=tmp_path, update=True)
    assert path.stat().st_mtime == 1


def test_a_changed_value_names_node_key_old_and_new(tmp_path):
    path = assert_matches_golden(plan(), "relu", directory=tmp_path, update=True)
    msg = golden_failure(plan(relu_tag="P1"), "relu", tmp_path)
    assert msg.splitlines() == [
        f"plan differs from golden plan {path}: 2 writes and 0 diagnostics changed",
        "",
        "dq.quantization_tag: changed (value)",
        "    old  'P0'  by rule static_input from 'relu'",
        "    new  'P1'  by rule static_input from 'relu'",
        "q_1.quantization_tag: changed (value)",
        "    old  'P0'  by rule static_output from 'relu'",
        "    new  'P1'  by rule static_output from 'relu'",
        f"note: planned from different snapshots: {portmeta.fingerprint(graph())[:12]} vs "
        f"{portmeta.fingerprint(graph(relu_tag='P1'))[:12]}",
        "",
        "If the new plan is right, rerun with --portmeta-update-golden to rewrite the file "
        "and review the change in version control.",
    ]


def test_writes_that_appear_or_disappear_and_diagnostics(tmp_path):
    assert_matches_golden(plan(), "relu", directory=tmp_path, update=True)
    msg = golden_failure(plan(trace=portmeta.Opaque("x", "y"), second=True), "relu", tmp_path)
    # stack_trace is still written, with another value; q_1 loses both keys (user_count)
    assert "dq.stack_trace: changed (value)\n    old  'm.py:3'" in msg
    assert "q_1.quantization_tag: no longer written\n    old  'P0'  by rule static_output" in msg
    assert "    new  nothing" in msg
    assert "diagnostic new:  warning user_count at 'relu': annotated output 'relu'" in msg
    # and the other way round
    assert_matches_golden(plan(second=True), "two", directory=tmp_path, update=True)
    msg = golden_failure(plan(), "two", tmp_path)
    assert "q_1.stack_trace: newly written\n    old  nothing\n    new  'm.py:3'" in msg
    assert "diagnostic gone: warning user_count at 'relu'" in msg


def test_order_of_writes_and_annotated_node_do_not_matter(tmp_path):
    p = plan()
    path = assert_matches_golden(p, "relu", directory=tmp_path, update=True)
    data = json.loads(path.read_text())
    data["deltas"].reverse()
    data["fingerprint"] = "v3:" + "0" * 64  # another snapshot's
    path.write_text(json.dumps(data))
    assert_matches_golden(p, "relu", directory=tmp_path, update=False)


def test_an_unreadable_golden_file_fails_with_the_problem(tmp_path):
    (tmp_path / "relu.plan.json").write_text('{"format": "portmeta.graph"}')
    msg = golden_failure(plan(), "relu", tmp_path)
    assert "cannot read golden plan" in msg and "not a portmeta plan file" in msg
    assert "--portmeta-update-golden" in msg
    assert_matches_golden(plan(), "relu", directory=tmp_path, update=True)  # repaired
    assert_matches_golden(plan(), "relu", directory=tmp_path, update=False)


def test_environment_variable_turns_on_update_outside_pytest_runs(tmp_path, monkeypatch):
    from portmeta.testing import _golden

    monkeypatch.setattr(_golden, "_CONTEXTS", [])  # as if no pytest plugin were running
    monkeypatch.setenv(UPDATE_ENV, "1")
    assert_matches_golden(plan(), "relu", directory=tmp_path)
    monkeypatch.setenv(UPDATE_ENV, "0")
    assert_matches_golden(plan(), "relu", directory=tmp_path)
    with pytest.raises(AssertionError, match="changed"):
        assert_matches_golden(plan(relu_tag="Q"), "relu", directory=tmp_path)


def test_without_pytest_the_folder_is_beside_the_calling_module(monkeypatch):
    from portmeta.testing import _golden

    monkeypatch.setattr(_golden, "_CONTEXTS", [])
    with pytest.raises(AssertionError) as info:
        assert_matches_golden(plan(), "never_written", update=False)
    here = Path(__file__).resolve().parent
    assert f"no golden plan file {here / 'golden' / 'never_written.plan.json'}" in str(info.value)


@pytest.mark.parametrize("name", ["../x", "/abs", "a b", "", ".hidden", "a//b"])
def test_bad_names_are_refused(name, tmp_path):
    with pytest.raises(ValueError, match="invalid golden plan name"):
        assert_matches_golden(plan(), name, directory=tmp_path, update=True)
    assert list(tmp_path.iterdir()) == []


def test_names_may_have_subfolders_and_test_ids():
    assert golden_path("conv/relu[static-1]", "g") == Path("g/conv/relu[static-1].plan.json")
    assert default_name("test_conv[static-True]") == "test_conv_static-True"
    assert default_name("test_a[x/y z]") == "test_a_x_y_z"


def test_only_plans_are_compared(tmp_path):
    with pytest.raises(TypeError, match="takes a Plan, got Snapshot"):
        assert_matches_golden(graph(), "relu", directory=tmp_path)


def test_golden_plans_object(tmp_path):
    golden = GoldenPlans(tmp_path, update=True, default_name="test_relu")
    assert golden.path() == tmp_path / "test_relu.plan.json"
    assert golden.check(plan()) == golden.path()
    assert golden.check(plan(), "named") == golden.path("named")
    checking = GoldenPlans(tmp_path, update=False, default_name="test_relu")
    checking.check(plan())
    with pytest.raises(AssertionError, match="changed"):
        checking.check(plan(relu_tag="X"), "named")
