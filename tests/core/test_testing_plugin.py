"""The pytest plugin (``pytest11`` entry point ``portmeta``), run through pytest's ``pytester``."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import textwrap

import pytest

import portmeta

pytest_plugins = ["pytester"]

# pytester's in-process runs find portmeta already imported by this session: that pytest cannot
# assertion-rewrite it then is expected here (a fresh session marks it before importing it)
ARGS = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")

GRAPH = textwrap.dedent(
    """
    import portmeta
    from portmeta.testing import NOTHING, GraphBuilder, assert_ported, static

    TAG = "conv_relu_0"


    def conv_relu(b=None):
        b = b or GraphBuilder()
        x = b.placeholder("x")
        _, x_dq = b.qdq(x, names=("x_q", "x_dq"))
        conv = b.call("aten.conv2d.default", x_dq, name="conv", tag=TAG, stack_trace="m.py:7")
        relu = b.call("aten.relu.default", conv, name="relu", tag=TAG)
        _, out_dq = b.qdq(relu, names=("out_q", "out_dq"))
        b.annotate(conv, inputs={x: static()})
        b.annotate(relu, output=static())
        b.output(out_dq)
        return b.build()
    """
)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(graph_lib=GRAPH)
    pytester.syspathinsert()
    return pytester


def test_the_plugin_is_registered_by_entry_point():
    eps = importlib.metadata.entry_points(group="pytest11")
    assert any(ep.name == "portmeta" and ep.value == "portmeta.testing.plugin" for ep in eps)


def test_fixtures_and_a_passing_assert_ported(project: pytest.Pytester):
    project.makepyfile(
        test_ok="""
        from graph_lib import conv_relu, NOTHING, assert_ported
        from portmeta.testing import GraphBuilder

        def test_builder_is_fresh(portmeta_builder):
            assert isinstance(portmeta_builder, GraphBuilder) and portmeta_builder.records() == []

        def test_ported(portmeta_builder):
            assert_ported(conv_relu(portmeta_builder), {
                "x_dq": {"quantization_tag": "conv_relu_0", "stack_trace": "m.py:7"},
                "out_q": {"quantization_tag": "conv_relu_0"},
                "x_q": NOTHING,
            })
        """
    )
    project.runpytest(*ARGS).assert_outcomes(passed=2)


def test_a_broken_expectation_shows_node_key_values_rule_and_source(project: pytest.Pytester):
    project.makepyfile(
        test_broken="""
        from graph_lib import conv_relu, assert_ported

        def test_broken():
            assert_ported(conv_relu(), {"x_dq": {"quantization_tag": "conv_relu_1"}})
        """
    )
    result = project.runpytest(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E*AssertionError: assert_ported: 1 of 1 expectations failed",
            "E*x_dq.quantization_tag",
            "E*    expected  'conv_relu_1'",
            "E*    planned   'conv_relu_0'  by rule static_input from 'conv' "
            "(annotated node 'conv'; path x -> x_q -> x_dq -> conv)",
            "E*plan: profile 'torchao', 3 writes to 2 nodes, 0 diagnostics",
        ]
    )
    # the traceback stops in the test, not inside portmeta
    assert "_assertions.py" not in result.stdout.str()


def test_saved_graphs_load_relative_to_the_test_file(project: pytest.Pytester):
    import graph_lib  # type: ignore[import-not-found]  # written by the fixture

    data = project.mkdir("sub").joinpath("data")
    data.mkdir()
    portmeta.dump_graph(graph_lib.conv_relu(), data / "g.json")
    project.makepyfile(
        **{
            "sub/test_saved": """
            from graph_lib import assert_ported

            def test_saved(portmeta_load_graph):
                graph = portmeta_load_graph("data/g.json")
                assert_ported(graph, {"out_q": {"quantization_tag": "conv_relu_0"}})
            """
        }
    )
    project.runpytest(*ARGS, "--rootdir", str(project.path)).assert_outcomes(passed=1)


GOLDEN_TESTS = """
import portmeta
from portmeta.testing import assert_matches_golden
from graph_lib import conv_relu

def test_fixture(portmeta_golden):
    portmeta_golden.check(portmeta.plan(conv_relu()), "conv_relu")

def test_default_name(portmeta_golden):
    portmeta_golden.check(portmeta.plan(conv_relu()))

def test_plain_function():
    assert_matches_golden(portmeta.plan(conv_relu()), "plain")
"""


def test_golden_missing_then_update_then_unchanged_then_changed(project: pytest.Pytester):
    project.makepyfile(test_golden=GOLDEN_TESTS)
    golden = project.path / "golden"

    missing = project.runpytest(*ARGS)
    missing.assert_outcomes(failed=3)
    missing.stdout.fnmatch_lines(
        [
            "E*AssertionError: no golden plan file */golden/conv_relu.plan.json for 'conv_relu'; "
            "run pytest with --portmeta-update-golden to write it from this plan, then review "
            "and commit it"
        ]
    )
    assert not golden.exists()

    updated = project.runpytest(*ARGS, "--portmeta-update-golden")
    updated.assert_outcomes(passed=3)
    names = sorted(p.name for p in golden.iterdir())
    assert names == ["conv_relu.plan.json", "plain.plan.json", "test_default_name.plan.json"]
    assert json.loads((golden / "plain.plan.json").read_text())["format"] == "portmeta.plan"
    updated.stdout.fnmatch_lines(
        ["*portmeta: wrote 3 golden plan file(s), 0 unchanged*", "*conv_relu.plan.json"]
    )

    unchanged = project.runpytest(*ARGS)
    unchanged.assert_outcomes(passed=3)
    assert "portmeta:" not in unchanged.stdout.str()  # no summary without the option
    again = project.runpytest(*ARGS, "--portmeta-update-golden")
    again.assert_outcomes(passed=3)
    assert "portmeta: wrote" not in again.stdout.str()  # identical files are not rewritten
    again.stdout.fnmatch_lines(["*portmeta: all 3 golden plan file(s) unchanged, none written*"])
    (golden / "plain.plan.json").unlink()
    one = project.runpytest(*ARGS, "--portmeta-update-golden")
    one.stdout.fnmatch_lines(
        ["*portmeta: wrote 1 golden plan file(s), 2 unchanged*", "*plain.plan.json"]
    )
    none = project.runpytest(*ARGS, "--portmeta-update-golden", "-k", "nothing_matches")
    none.stdout.fnmatch_lines(["*portmeta: no test checked a golden plan, none written*"])

    project.makepyfile(graph_lib=GRAPH.replace('TAG = "conv_relu_0"', 'TAG = "conv_relu_9"'))
    changed = project.runpytest(*ARGS, "-k", "test_fixture")
    changed.assert_outcomes(failed=1, deselected=2)
    changed.stdout.fnmatch_lines(
        [
            "E*AssertionError: plan differs from golden plan */golden/conv_relu.plan.json: "
            "2 writes and 0 diagnostics changed",
            "E*x_dq.quantization_tag: changed (value)",
            "E*    old  'conv_relu_0'  by rule static_input from 'conv'",
            "E*    new  'conv_relu_9'  by rule static_input from 'conv'",
            "E*out_q.quantization_tag: changed (value)",
            "E*    old  'conv_relu_0'  by rule static_output from 'relu'",
            "E*    new  'conv_relu_9'  by rule static_output from 'relu'",
            "E*If the new plan is right, rerun with --portmeta-update-golden *",
        ]
    )


def test_golden_update_summary_from_xdist_workers(project: pytest.Pytester):
    pytest.importorskip("xdist")
    project.makepyfile(test_golden=GOLDEN_TESTS)
    result = project.runpytest_subprocess(*ARGS, "-n", "2", "--portmeta-update-golden")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*portmeta: wrote 3 golden plan file(s)*"])
    assert len(list((project.path / "golden").iterdir())) == 3


def test_a_session_that_does_not_use_the_plugin_is_unchanged(pytester: pytest.Pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    with_plugin = pytester.runpytest(*ARGS, "-rA")
    without = pytester.runpytest(*ARGS, "-p", "no:portmeta", "-rA")
    with_plugin.assert_outcomes(passed=1)
    without.assert_outcomes(passed=1)

    def body(result: pytest.RunResult) -> list[str]:
        return [
            ln
            for ln in result.outlines
            if not ln.startswith(("platform", "rootdir", "plugins", "="))
        ]

    assert body(with_plugin) == body(without)


def test_the_plugin_module_imports_neither_torch_nor_hypothesis():
    code = (
        "import sys, json; import portmeta.testing.plugin; "
        "print(json.dumps(sorted(m for m in ('torch', 'hypothesis') if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []
