"""``portmeta.testing.strategies``: pattern coverage, JSON round trips, knobs and shrinking."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, find, given, settings

import portmeta
from portmeta import LEGACY_TORCH_AO, TORCHAO
from portmeta.testing.strategies import (
    PATTERNS,
    SPEC_KINDS,
    graphs,
    node_meta,
    patterns_in,
    specs,
)

DRAWS = 200
COVERAGE = settings(
    max_examples=DRAWS,
    database=None,
    deadline=None,
    derandomize=True,  # the same draws every run: the counts below are stable
    suppress_health_check=[HealthCheck.too_slow],
)


def draw_many(strategy, check=None) -> tuple[Counter[str], list[int]]:
    """Run ``check`` on DRAWS graphs; count patterns per graph and record sizes."""
    counts: Counter[str] = Counter()
    sizes: list[int] = []

    @COVERAGE
    @given(strategy)
    def run(graph):
        counts.update(patterns_in(graph))
        sizes.append(len(graph))
        if check is not None:
            check(graph)

    run()
    return counts, sizes


def round_trips_and_plans_deterministically(graph) -> None:
    data = portmeta.graph_to_dict(graph)
    again = portmeta.graph_from_dict(json.loads(json.dumps(data)))
    assert list(portmeta.records(again)) == list(portmeta.records(graph))
    assert portmeta.fingerprint(again) == portmeta.fingerprint(graph)
    assert portmeta.graph_to_dict(again) == data
    first = portmeta.plan(graph)
    assert not first.errors
    assert portmeta.plan(again) == first
    assert portmeta.Plan.from_json(first.to_json()) == first


def test_every_pattern_and_spec_kind_appears_and_every_graph_round_trips():
    counts, sizes = draw_many(graphs(), round_trips_and_plans_deterministically)
    assert len(sizes) == DRAWS
    for name in (*PATTERNS, *(f"spec:{k}" for k in SPEC_KINDS)):
        assert counts[name] >= DRAWS // 20, (name, counts)  # each in at least 5% of graphs
    assert counts["error"] == 0
    assert min(sizes) >= 3 and max(sizes) <= 60


def test_failing_graphs_include_errors_and_still_round_trip():
    def check(graph):
        again = portmeta.graph_from_dict(json.loads(json.dumps(portmeta.graph_to_dict(graph))))
        assert portmeta.fingerprint(again) == portmeta.fingerprint(graph)
        p = portmeta.plan(graph, errors="collect")
        assert portmeta.plan(again, errors="collect") == p
        if p.errors:
            with pytest.raises(portmeta.PlanError):
                portmeta.plan(graph)

    counts, _ = draw_many(graphs(failing=True), check)
    assert counts["error"] >= DRAWS // 10


@pytest.mark.parametrize(
    ("patterns", "absent"),
    [
        ({"static"}, {"dynamic", "weight", "view_chain", "output", "fan_out", "sym_size"}),
        ({"dynamic"}, {"static", "weight", "output", "fan_out", "sym_size"}),
        ({"weight", "static"}, {"dynamic", "view_chain", "output", "fan_out", "sym_size"}),
        ({"static", "output"}, {"dynamic", "weight", "fan_out", "sym_size"}),
    ],
)
def test_patterns_knob_limits_what_appears(patterns, absent):
    @settings(max_examples=60, database=None, deadline=None, derandomize=True)
    @given(graphs(patterns=patterns))
    def run(graph):
        found = {p for p in patterns_in(graph) if not p.startswith("spec:")}
        assert not found & absent, found

    run()


def test_size_knobs():
    @settings(max_examples=50, database=None, deadline=None, derandomize=True)
    @given(graphs(min_blocks=4, max_blocks=4, patterns={"static"}))
    def run(graph):
        assert len([n for n in graph if n.startswith("dq")]) >= 4

    run()
    small, _ = draw_many(graphs(max_blocks=1))
    assert sum(small.values()) > 0


def test_legacy_profile_graphs_plan_under_it():
    @settings(max_examples=60, database=None, deadline=None, derandomize=True)
    @given(graphs(profile=LEGACY_TORCH_AO))
    def run(graph):
        assert not portmeta.plan(graph, LEGACY_TORCH_AO, errors="collect").errors

    run()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patterns": {"stattic"}}, "unknown patterns"),
        ({"patterns": "static"}, "unknown patterns"),
        ({"patterns": {"output", "view_chain"}}, "contain no block"),
        ({"min_blocks": 3, "max_blocks": 2}, "min_blocks <= max_blocks"),
    ],
)
def test_bad_knobs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        graphs(**kwargs)


SHRINK = settings(max_examples=2000, database=None, derandomize=True, deadline=None)


def test_shrinking_gives_small_readable_graphs():
    # properties of the shrunk graph, never its exact shape: a shrinker's output is not a contract
    g = find(graphs(), lambda g: "view_chain" in patterns_in(g), settings=SHRINK)
    assert "view_chain" in patterns_in(g)
    assert len(g) <= 12, list(g.nodes)
    assert all(name.isidentifier() for name in g), list(g.nodes)
    assert not portmeta.plan(g).errors
    g = find(
        graphs(),
        lambda g: "fan_out" in patterns_in(g) and portmeta.plan(g).diagnostics,
        settings=SHRINK,
    )
    assert "fan_out" in patterns_in(g)
    assert len(g) <= 14, list(g.nodes)
    assert {d.kind for d in portmeta.plan(g).diagnostics} <= {
        "overwrite",
        "user_count",
        "not_quantize",
    }


def test_spec_and_meta_strategies():
    @settings(max_examples=80, database=None, deadline=None, derandomize=True)
    @given(specs(dynamic=False), specs(dynamic=True), specs(), node_meta())
    def run(static_spec, dynamic_spec, any_spec, meta):
        assert not static_spec.dynamic and dynamic_spec.dynamic
        assert any_spec in SPEC_KINDS.values()
        assert set(meta) <= {"tag", "stack_trace"}

    run()
    assert find(node_meta(tags=["mine"]), lambda m: "tag" in m, settings=SHRINK)["tag"] == "mine"


def test_patterns_in_a_builder_graph():
    from portmeta.testing import GraphBuilder, dynamic, shared

    b = GraphBuilder()
    x = b.placeholder("x")
    chain = b.dynamic_qdq(x)
    lin = b.call("aten.linear.default", chain.dq, name="lin")
    b.annotate(lin, inputs={x: dynamic()}, output=shared())
    b.sym_size(lin, op="aten.sym_size.default")  # filtered: lin keeps a single user
    b.output(lin)
    assert patterns_in(b.build()) == {"dynamic", "sym_size", "spec:dynamic", "spec:shared"}
    b.sym_size(lin)  # aten.sym_size.int is not filtered: a second user
    assert patterns_in(b.build(), TORCHAO) - patterns_in(b.build(), LEGACY_TORCH_AO) == set()
    assert "fan_out" in patterns_in(b.build())


def test_a_helpful_import_error_without_hypothesis():
    code = (
        "import sys\n"
        "sys.modules['hypothesis'] = None\n"
        "try:\n"
        "    import portmeta.testing.strategies\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "portmeta.testing.strategies needs hypothesis" in out
    assert "pip install 'portmeta[testing]'" in out
