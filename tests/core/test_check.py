"""``portmeta.check``: each kind and cause from hand-built graphs, clean graphs, before/after
porting, JSON round trips, ``assert_no_findings`` and the strategies' holes (no torch)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings

import portmeta
from portmeta import TORCHAO
from portmeta.check import (
    CAUSES,
    KINDS,
    REMEDIES,
    Finding,
    check,
    findings_from_json,
    findings_to_json,
    format_findings,
    load_findings,
    summary,
    unmatched_writes,
)
from portmeta.errors import GraphFormatError
from portmeta.plan import same_value
from portmeta.snapshot import build_graph, meta_keys, records
from portmeta.testing import (
    GraphBuilder,
    assert_no_findings,
    dynamic,
    shared,
    static,
)
from portmeta.testing.strategies import HOLES, graphs

from .helpers import DQ

# --------------------------------------------------------------------------- helpers


def ported(graph: portmeta.Snapshot, p: portmeta.Plan | None = None) -> Any:
    """The snapshot of the same graph after the pass: every node holds its final values."""
    p = p if p is not None else portmeta.plan(graph, errors="collect")
    final = portmeta.final_meta(graph, p)
    recs = [attrs.evolve(rec, meta=tuple(final[rec.name].items())) for rec in records(graph)]
    return build_graph(recs, meta_keys=meta_keys(graph), check=False)


def kinds(found: tuple[Finding, ...]) -> list[tuple[str, str, str | None, str]]:
    return [(f.kind, f.node, f.anchor, f.cause) for f in found]


def same_before_after(graph: Any) -> tuple[Finding, ...]:
    """check() of ``graph`` and of its ported snapshot: asserts they are equal."""
    before = check(graph)
    after = ported(graph)
    assert check(after) == before
    assert check(after, ported=True) == before
    return before


def cat_graph() -> Any:
    b = GraphBuilder()
    x, y = b.placeholder("x"), b.placeholder("y")
    _, dq = b.qdq(x)
    _, dq_1 = b.qdq(y)
    cat = b.call("aten.cat.default", [dq, dq_1], 1, name="cat", tag="cat_0", stack_trace="m:1")
    b.annotate(cat, inputs={x: static(), y: shared()})
    b.output(cat)
    return b.build()


def qkv_graph(chains: int = 1) -> Any:
    """Three (or, chains=2, two) linears reading input x dynamically."""
    b = GraphBuilder()
    x = b.placeholder("x")
    if chains == 1:
        c = b.dynamic_qdq(x)
        names = ("q_proj", "k_proj", "v_proj")
        dqs = [c.dq] * 3
    else:
        names = ("lin_a", "lin_b")
        dqs = [b.dynamic_qdq(x).dq for _ in names]
    lins = []
    for i, (name, dq) in enumerate(zip(names, dqs, strict=True)):
        lin = b.call("aten.linear.default", dq, name=name, tag=f"{name}_0", stack_trace=f"m:{i}")
        b.annotate(lin, inputs={x: dynamic()})
        lins.append(lin)
    b.output(*lins)
    return b.build()


def clean_graph() -> Any:
    """conv (weight through a permute) -> q/dq -> relu -> q/dq, and a dynamic linear."""
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    w = b.get_attr("weight", tag="conv_0")
    wt = b.view(w, name="wt")
    _, wdq = b.qdq(wt, per_channel=True)
    conv = b.call("aten.conv2d.default", dq, wdq, name="conv", tag="conv_0", stack_trace="m:1")
    b.annotate(conv, inputs={x: static(), wt: static()}, output=static())
    _, cdq = b.qdq(conv)
    relu = b.call("aten.relu.default", cdq, name="relu", tag="relu_0", stack_trace="m:2")
    b.annotate(relu, inputs={conv: static()}, output=shared())
    _, rdq = b.qdq(relu)
    chain = b.dynamic_qdq(rdq)
    lin = b.call("aten.linear.default", chain.dq, name="lin", tag="lin_0", stack_trace="m:3")
    # keyed on relu, as a quantizer does: the static pair after relu is relu's, not lin's chain
    b.annotate(lin, inputs={relu: dynamic()})
    b.output(lin)
    return b.build()


# --------------------------------------------------------------------------- clean graphs


def test_clean_graph_has_no_findings() -> None:
    g = clean_graph()
    assert portmeta.plan(g).deltas  # the rules do write: the graph is not trivially clean
    assert check(g) == ()
    assert check(ported(g)) == ()
    assert_no_findings(g)


def test_split_qdq_pair_between_two_partitions_is_not_a_finding() -> None:
    """The quantize after conv carries conv's tag, the dequantize after it relu's: normal."""
    g = clean_graph()
    final = portmeta.plan(g).final_state()
    assert final["q_2"]["quantization_tag"] == "conv_0"
    assert final["dq_2"]["quantization_tag"] == "relu_0"
    assert check(g) == ()


def test_output_spec_before_a_dynamic_chain_is_clean() -> None:
    """X86Inductor's dynamic config: max_pool2d has an output spec, its consumer's chain is
    dynamic. The output rule writes the quantize right after the op with the op's values, the
    consumer's rules write the rest: an ordinary flow, not a foreign_write."""
    b = GraphBuilder()
    x = b.placeholder("x")
    pool = b.call("aten.max_pool2d.default", x, name="pool", tag="pool_0", stack_trace="m:1")
    b.annotate(pool, output=static())
    c = b.dynamic_qdq(pool)
    relu = b.call("aten.relu.default", c.dq, name="relu", tag="relu_0", stack_trace="m:2")
    b.annotate(relu, inputs={pool: shared()})
    b.output(relu)
    g = b.build()
    p = portmeta.plan(g)
    assert any(d.target == c.q and d.anchor == "pool" for d in p.deltas)
    assert same_before_after(g) == ()


def test_untagged_annotated_node_has_nothing_to_port() -> None:
    b = GraphBuilder()
    x, y = b.placeholder("x"), b.placeholder("y")
    _, dq = b.qdq(x)
    _, dq_1 = b.qdq(y)
    cat = b.call("aten.cat.default", [dq, dq_1], 1, name="cat")  # no tag, no stack trace
    b.annotate(cat, inputs={x: static(), y: static()})
    b.output(cat)
    assert check(b.build()) == ()


def test_empty_and_unannotated_graphs() -> None:
    b = GraphBuilder()
    x = b.placeholder("x", tag="T")
    _, dq = b.qdq(x)
    b.output(b.call("aten.relu.default", dq, tag="R"))
    assert check(b.build()) == ()


# --------------------------------------------------------------------------- unported_input


def test_list_argument_container() -> None:
    found = same_before_after(cat_graph())
    assert kinds(found) == [
        ("unported_input", "dq", "cat", "container"),
        ("unported_input", "dq_1", "cat", "container"),
    ]
    f = found[1]
    assert f.keys == ("stack_trace", "quantization_tag")
    assert f.related == ("y",)
    assert "'dq_1'" in f.message and "'cat'" in f.message and "list or tuple" in f.message


def test_keyword_argument() -> None:
    b = GraphBuilder()
    x, y = b.placeholder("x"), b.placeholder("y")
    _, dq = b.qdq(x)
    _, dq_1 = b.qdq(y)
    add = b.call("aten.add.Tensor", dq, kwargs={"other": dq_1}, name="add", tag="add_0")
    b.annotate(add, inputs={x: static(), y: static()})
    b.output(add)
    found = same_before_after(b.build())
    assert kinds(found) == [("unported_input", "dq_1", "add", "keyword")]
    assert found[0].keys == ("quantization_tag",)
    assert "keyword" in found[0].message


def test_not_the_first_dequantize_of_the_input() -> None:
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    _, dq_1 = b.qdq(x)
    add = b.call("aten.add.Tensor", dq, dq_1, name="add", tag="add_0")
    b.annotate(add, inputs={x: static()})
    b.output(add)
    found = same_before_after(b.build())
    assert kinds(found) == [("unported_input", "dq_1", "add", "not_first")]
    assert "earlier positional argument 'dq'" in found[0].message


def test_same_dequantize_twice_is_written_once_and_not_a_finding() -> None:
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    mul = b.call("aten.mul.Tensor", dq, dq, name="mul", tag="mul_0")
    b.annotate(mul, inputs={x: static()})
    b.output(mul)
    assert check(b.build()) == ()


def test_no_quantize_above() -> None:
    b = GraphBuilder()
    x = b.placeholder("x")
    dq = b.call(DQ, x, 0.1, 0, -128, 127, name="dq")
    relu = b.call("aten.relu.default", dq, name="relu", tag="relu_0")
    b.annotate(relu, inputs={x: static()})
    b.output(relu)
    found = same_before_after(b.build())
    assert kinds(found) == [("unported_input", "dq", "relu", "no_quantize")]
    assert "args[0] of it ('x') is not a quantize op" in found[0].message


def test_connectivity_walk_goes_past_an_input_that_is_a_dequantize() -> None:
    """relu's input is a dequantize: the walk from relu's own dq runs past it to 'conv'."""
    b = GraphBuilder()
    x = b.placeholder("x")
    conv = b.call("aten.conv2d.default", x, name="conv", tag="conv_0")
    b.annotate(conv, output=static())
    _, cdq = b.qdq(conv)
    _, dq = b.qdq(cdq, names=("q2", "dq2"))
    relu = b.call("aten.relu.default", dq, name="relu", tag="relu_0")
    b.annotate(relu, inputs={cdq: static()}, check_inputs=False)  # the mistake, on purpose
    b.output(relu)
    found = same_before_after(b.build())
    assert kinds(found) == [("unported_input", "dq2", "relu", "walk_past")]
    assert "up to 'conv'" in found[0].message


def test_shared_dynamic_chain_last_write_wins() -> None:
    g = qkv_graph()
    found = same_before_after(g)
    assert kinds(found) == [
        ("unported_input", "dq", "q_proj", "shared"),
        ("unported_input", "dq", "k_proj", "shared"),
    ]
    f = found[0]
    assert f.keys == ("stack_trace", "quantization_tag")
    assert "3 annotated consumers ('q_proj', 'k_proj', 'v_proj')" in f.message
    assert "for 'v_proj', won" in f.message
    assert "(so do 'q', 'choose_qparams' on its chain)" in f.message
    # it is what portmeta's plan already showed as INFO overwrites
    assert any(d.kind == "overwrite" for d in portmeta.plan(g).diagnostics)


def test_shared_static_dequantize() -> None:
    """One dequantize read by two annotated ops (no DuplicateDQPass): the last write wins."""
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    a = b.call("aten.relu.default", dq, name="a", tag="a_0")
    c = b.call("aten.sigmoid.default", dq, name="c", tag="c_0")
    for n in (a, c):
        b.annotate(n, inputs={x: static()})
    b.output(a, c)
    found = same_before_after(b.build())
    assert kinds(found) == [("unported_input", "dq", "a", "shared")]


def test_same_tags_on_a_shared_chain_are_not_a_finding() -> None:
    b = GraphBuilder()
    x = b.placeholder("x")
    c = b.dynamic_qdq(x)
    lins = [b.call("aten.linear.default", c.dq, tag="attn_0") for _ in range(3)]
    for lin in lins:
        b.annotate(lin, inputs={x: dynamic()})
    b.output(*lins)
    assert check(b.build()) == ()


def test_two_dynamic_chains_of_one_input() -> None:
    """lin_a's chain ends with lin_b's values; lin_b's own chain gets nothing."""
    found = same_before_after(qkv_graph(chains=2))
    assert kinds(found) == [
        ("foreign_write", "choose_qparams", "lin_b", "search_reached"),
        ("foreign_write", "q", "lin_b", "search_reached"),
        ("unported_input", "dq", "lin_a", "overwritten"),
        ("foreign_write", "dq", "lin_b", "search_reached"),
        ("unported_input", "dq_1", "lin_b", "search_elsewhere"),
    ]
    by = {(f.kind, f.node): f for f in found}
    assert "reached this chain too and wrote it last" in by["unported_input", "dq"].message
    msg = by["unported_input", "dq_1"].message
    assert "reaches choose_qparams 'choose_qparams' first (on the chain of 'lin_a')" in msg
    fw = by["foreign_write", "dq"]
    assert "it is on the chain of 'lin_a'" in fw.message and "'lin_b'" in fw.message
    assert fw.related == ("x", "lin_a")


def test_planning_error() -> None:
    """A dynamic input without a choose_qparams chain: the rules fail, nothing is written."""
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    lin = b.call("aten.linear.default", dq, name="lin", tag="lin_0")
    b.annotate(lin, inputs={x: dynamic()})
    b.output(lin)
    found = same_before_after(b.build())
    assert kinds(found) == [("unported_input", "dq", "lin", "planning_error")]
    assert "NoChooseQParamsError" in found[0].message


def test_unexplained_when_the_plan_given_writes_nothing() -> None:
    g = cat_graph()
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu", tag="relu_0")
    b.annotate(relu, inputs={x: static()})
    b.output(relu)
    g = b.build()
    empty = portmeta.Plan((), (), portmeta.fingerprint(g), TORCHAO)
    found = check(g, plan=empty)
    assert kinds(found) == [("unported_input", "dq", "relu", "unexplained")]
    assert check(g, plan=portmeta.plan(g)) == check(g) == ()


# --------------------------------------------------------------------------- unported_output


def test_output_whose_last_user_is_not_its_quantize() -> None:
    b = GraphBuilder()
    x = b.placeholder("x")
    relu = b.call("aten.relu.default", x, name="relu", tag="relu_0")
    b.annotate(relu, output=static())
    _, dq = b.qdq(relu)
    neg = b.call("aten.neg.default", relu, name="neg")
    b.output(dq, neg)
    found = same_before_after(b.build())
    assert kinds(found) == [("unported_output", "q", "relu", "not_last_user")]
    assert "'neg', which is not a quantize op" in found[0].message


def test_output_with_an_unfiltered_sym_size_user() -> None:
    b = GraphBuilder()
    x = b.placeholder("x")
    conv = b.call("aten.conv2d.default", x, name="conv", tag="conv_0")
    b.annotate(conv, output=static())
    _, dq = b.qdq(conv)
    s = b.sym_size(conv, op="aten.sym_size.int", name="size")
    b.output(dq, s)
    found = same_before_after(b.build())
    assert kinds(found) == [("unported_output", "q", "conv", "not_last_user")]
    assert "aten.sym_size.int is not filtered" in found[0].message


def test_output_with_a_filtered_sym_size_user_is_clean() -> None:
    b = GraphBuilder()
    x = b.placeholder("x")
    conv = b.call("aten.conv2d.default", x, name="conv", tag="conv_0")
    b.annotate(conv, output=static())
    _, dq = b.qdq(conv)
    s = b.sym_size(conv, op="aten.sym_size.default", name="size")
    b.output(dq, s)
    assert check(b.build()) == ()


def test_output_planning_error() -> None:
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    lin = b.call("aten.linear.default", dq, name="lin", tag="lin_0")
    b.annotate(lin, inputs={x: dynamic()}, output=static())
    _, odq = b.qdq(lin)
    b.output(odq)
    found = same_before_after(b.build())
    assert ("unported_output", "q_1", "lin", "planning_error") in kinds(found)


# --------------------------------------------------------------------------- the check never writes


def test_check_does_not_change_the_plan() -> None:
    for g in (cat_graph(), qkv_graph(), qkv_graph(2), clean_graph()):
        before = portmeta.plan(g, errors="collect")
        check(g)
        assert portmeta.plan(g, errors="collect") == before


def test_plan_naming_unknown_nodes_is_refused() -> None:
    g = cat_graph()
    other = qkv_graph()
    # another graph's plan is refused by its fingerprint, naming what to do
    with pytest.raises(
        portmeta.StalePlanError, match=r"^checking a plan made from another graph \(plan v3:"
    ):
        check(g, plan=portmeta.plan(other))
    # with ported=True (the graph may have changed since planning) its annotated nodes decide
    with pytest.raises(portmeta.UnknownNodeError, match="the plan names it"):
        check(g, plan=portmeta.plan(other), ported=True)
    assert check(g, plan=portmeta.plan(g)) == check(g)


# --------------------------------------------------------------------------- records and JSON


def test_findings_round_trip_through_json(tmp_path: Any) -> None:
    found = check(qkv_graph(2)) + check(cat_graph())
    text = findings_to_json(found)
    assert findings_from_json(text) == found
    data = json.loads(text)
    assert data["format"] == "portmeta.findings" and data["version"] == 1
    assert data["counts"] == {
        "unported_input": 4,
        "unported_output": 0,
        "foreign_write": 3,
        "stale_annotation": 0,
    }
    first = data["findings"][0]
    assert first["remedy"] == REMEDIES[first["cause"]]
    assert first["docs"] == f"docs/check.md#{first['cause']}"
    path = tmp_path / "f.json"
    path.write_text(text)
    assert load_findings(str(path)) == found


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "expected a JSON object"),
        ('{"format": "portmeta.plan"}', "not a portmeta findings file"),
        ('{"format": "portmeta.findings", "version": 2}', "unsupported findings schema"),
        ('{"format": "portmeta.findings", "version": 1}', "missing field 'findings'"),
        (
            '{"format": "portmeta.findings", "version": 1, "findings": [{"kind": "odd"}]}',
            "missing field",
        ),
        ("{", "not valid JSON"),
    ],
)
def test_bad_findings_json(text: str, problem: str) -> None:
    with pytest.raises(GraphFormatError, match=problem):
        findings_from_json(text, source="f.json")


def test_finding_validates_kind_and_cause() -> None:
    with pytest.raises(ValueError, match="kind"):
        Finding("odd", "n", None, (), "shared", "m")
    with pytest.raises(ValueError, match="cause"):
        Finding("foreign_write", "n", None, (), "odd", "m")
    bad = {"kind": "foreign_write", "node": "n", "anchor": None, "keys": "k"}
    bad.update(cause="shared", message="m")
    with pytest.raises(GraphFormatError, match="expected a list"):
        findings_from_json(
            json.dumps({"format": "portmeta.findings", "version": 1, "findings": [bad]})
        )


def test_format_and_summary() -> None:
    g = cat_graph()
    found = check(g)
    text = format_findings(found)
    assert text.splitlines()[0].split() == ["node", "kind", "anchor", "cause", "keys"]
    assert "1. 'dq' feeds 'cat'" in text and "2. 'dq_1' feeds 'cat'" in text
    remedy = f"   to fix: {REMEDIES['container']} (docs/check.md#container)"
    assert text.splitlines().count(remedy) == 2
    assert summary(found, g) == (
        "2 findings in 8 nodes, 1 annotated; compared quantization_tag on 1 (unported_input 2, "
        "unported_output 0, foreign_write 0, stale_annotation 0)"
    )
    assert format_findings(()) == "(no findings)"


def test_every_cause_is_documented() -> None:
    doc = (__import__("pathlib").Path(__file__).parents[2] / "docs" / "check.md").read_text()
    for cause in CAUSES:
        assert f"`{cause}`" in doc, cause
    for kind in KINDS:
        assert f"`{kind}`" in doc, kind


# --------------------------------------------------------------------------- assert_no_findings


def test_assert_no_findings_lists_each_finding() -> None:
    with pytest.raises(AssertionError) as info:
        assert_no_findings(qkv_graph(2))
    text = str(info.value)
    assert text.startswith("assert_no_findings: 5 findings (unported_input 2, foreign_write 3)")
    for node in ("'choose_qparams'", "'q'", "'dq'", "'dq_1'"):
        assert f"at {node}" in text
    assert "cause search_elsewhere" in text


def test_assert_no_findings_allow() -> None:
    g = qkv_graph(2)
    assert len(assert_no_findings(g, allow=["foreign_write", "unported_input"])) == 5
    assert len(assert_no_findings(g, allow=["lin_b", "lin_a"])) == 5
    assert len(assert_no_findings(g, allow=[lambda f: True])) == 5
    with pytest.raises(AssertionError, match="2 findings"):
        assert_no_findings(g, allow=["foreign_write"])
    with pytest.raises(ValueError, match="'foriegn_write' is not a finding kind"):
        assert_no_findings(g, allow=["foriegn_write"])
    with pytest.raises(TypeError, match="not the string"):
        assert_no_findings(g, allow="foreign_write")
    with pytest.raises(TypeError, match="snapshot"):
        assert_no_findings(portmeta.plan(g))  # type: ignore[arg-type]
    assert assert_no_findings(clean_graph()) == ()


# --------------------------------------------------------------------------- properties


def test_before_and_after_porting_give_the_same_findings() -> None:
    """Random graphs with every pattern and hole: the ported snapshot (which already holds the
    values) gives the findings of the snapshot before porting, with or without the plan."""
    seen: list[tuple[bool, bool]] = []

    @settings(max_examples=60)
    @given(graphs(max_blocks=6, holes=tuple(HOLES)))
    def run(graph: Any) -> None:
        p = portmeta.plan(graph, errors="collect")
        after = ported(graph, p)
        found = check(graph)
        assert check(after) == found == check(after, ported=True)
        assert check(after, plan=p, ported=True) == found == check(graph, plan=p)
        if portmeta.fingerprint(after) != portmeta.fingerprint(graph):
            with pytest.raises(portmeta.StalePlanError):
                check(after, plan=p)
        seen.append((bool(found), portmeta.fingerprint(after) != portmeta.fingerprint(graph)))

    run()
    assert sum(f and w for f, w in seen) >= len(seen) // 4, seen


def test_findings_are_true_of_the_final_values() -> None:
    """Each finding says something true: the node lacks the anchor's values on its keys, or
    (foreign_write) the last write of each key was for the anchor."""
    count = []

    @settings(max_examples=60)
    @given(graphs(max_blocks=6, holes=tuple(HOLES)))
    def run(graph: Any) -> None:
        p = portmeta.plan(graph, errors="collect")
        final = portmeta.final_meta(graph, p)
        last = {(d.target, d.key): d for d in p.deltas}
        for f in check(graph):
            count.append(f.kind)
            assert f.keys
            if f.kind == "foreign_write":
                assert all(last[f.node, k].anchor == f.anchor for k in f.keys)
                continue
            assert f.anchor is not None
            want, have = final[f.anchor], final[f.node]
            for k in f.keys:
                assert k in want and (k not in have or not same_value(have[k], want[k])), f

    run()
    # the builder's random graphs name no node of another graph: every kind but stale_annotation
    assert set(count) == set(KINDS) - {"stale_annotation"}


#: The findings each hole may give besides its own (see ``test_each_hole_gives_its_finding``).
_ALSO = {
    "dynamic_siblings": {
        ("foreign_write", "search_reached"),
        ("unported_input", "overwritten"),
        ("unported_input", "search_elsewhere"),
    },
}


@pytest.mark.parametrize("hole", list(HOLES))
def test_each_hole_gives_its_finding(hole: str) -> None:
    """Graphs with only clean blocks and one kind of hole: a hole's annotated nodes (tags h1,
    h2...) are there exactly when its finding is, and nothing else is found."""
    expected = HOLES[hole]
    allowed = {expected} | _ALSO.get(hole, set())
    seen = []

    @settings(max_examples=25)
    @given(graphs(max_blocks=4, patterns={"weight", "view_chain", "output"}, holes=[hole]))
    def run(graph: Any) -> None:
        found = {(f.kind, f.cause) for f in check(graph)}
        tags = [portmeta.record(graph, n).meta_dict().get("quantization_tag") for n in graph]
        has_hole = any(isinstance(t, str) and t.startswith("h") for t in tags)
        assert found <= allowed
        assert (expected in found) == has_hole
        seen.append(has_hole)

    run()
    assert any(seen), f"no graph with hole {hole!r} was drawn"


def test_unknown_hole() -> None:
    with pytest.raises(ValueError, match="unknown holes"):
        graphs(holes=["nope"])
    with pytest.raises(ValueError, match="unknown holes"):
        graphs(holes="list")


def test_docs_builder_snippets_give_the_findings_they_describe() -> None:
    """Each builder snippet of docs/check.md, run as written, gives the causes its section names."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "check.md").read_text(encoding="utf-8")
    blocks = [
        b
        for b in re.findall(r"^```python\n(.*?)^```", doc, re.S | re.M)
        if b.startswith("b = GraphBuilder()")
    ]
    expected = [
        {"shared"},
        {"container"},
        {"not_first"},
        {"no_quantize"},
        {"overwritten", "search_elsewhere", "search_reached"},
        {"not_last_user"},
    ]
    assert len(blocks) == len(expected)
    for block, causes in zip(blocks, expected, strict=True):
        namespace: dict[str, Any] = {
            "GraphBuilder": GraphBuilder,
            "static": static,
            "dynamic": dynamic,
            "shared": shared,
        }
        exec(compile(block, "docs/check.md", "exec"), namespace)
        assert {f.cause for f in check(namespace["b"].build())} == causes, block


def test_unexplained_output_and_foreign_write_from_a_plan_given() -> None:
    """Plans that are not the graph's own: the values are checked, the cause is unexplained."""
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu", tag="relu_0")
    b.annotate(relu, inputs={x: static()}, output=static())
    _, odq = b.qdq(relu)
    b.output(odq)
    g = b.build()
    fp = portmeta.fingerprint(g)
    empty = portmeta.Plan((), (), fp, TORCHAO)
    assert kinds(check(g, plan=empty)) == [
        ("unported_input", "dq", "relu", "unexplained"),
        ("unported_output", "q_1", "relu", "unexplained"),
    ]
    own = portmeta.plan(g)
    stray = portmeta.MetaDelta(
        "x",
        "quantization_tag",
        "relu_0",
        "relu",
        "relu",
        portmeta.Rule.STATIC_OUTPUT,
        "relu",
        ("relu", "x"),
    )
    found = check(g, plan=portmeta.Plan((*own.deltas, stray), (), fp, TORCHAO))
    assert kinds(found) == [("foreign_write", "x", "relu", "unexplained")]
    assert "a static_output write (path relu -> x)" in found[0].message


def test_legacy_profile() -> None:
    g = cat_graph()
    assert check(g, portmeta.LEGACY_TORCH_AO) == check(g)
    p = portmeta.plan(g, portmeta.LEGACY_TORCH_AO)
    assert check(g, plan=p) == check(g)


# --------------------------------------------------------------------------- after porting


def test_an_annotated_node_sharing_meta_with_a_written_dequantize() -> None:
    """A.meta is dqb.meta (FX ``A.meta = dqb.meta``) and B's rule writes dqb after A's rule
    copied A's values onto dqa: A ends with B's values, dqa with A's old ones. The before
    check and the ported check of the after snapshot agree (anchor_changed); the default
    check of the after snapshot replays writes from already-changed values and does not."""
    b = GraphBuilder()
    x, y = b.placeholder("x"), b.placeholder("y")
    _, dqb = b.qdq(y, names=("qb", "dqb"))
    _, dqa = b.qdq(x, names=("qa", "dqa"))
    b.set_meta(dqb, tag="A", stack_trace="sA")
    a = b.call("aten.relu.default", dqa, name="A")
    b.share_meta(a, dqb)
    b.annotate(a, inputs={x: static()})
    bb = b.call("aten.relu.default", dqb, name="B", tag="B", stack_trace="sB")
    b.annotate(bb, inputs={y: static()})
    b.output(a, bb)
    g = b.build()
    before = check(g)
    assert kinds(before) == [("unported_input", "dqa", "A", "anchor_changed")]
    assert "through 'dqb' (they share one meta dict)" in before[0].message
    after = ported(g)
    assert check(after, ported=True) == before
    assert check(after) == ()  # documented: replaying over changed sources hides it


def test_an_annotated_node_written_by_another_nodes_dynamic_search() -> None:
    """D is annotated and on C's dynamic search path: C's search writes D itself after D's
    rules copied D's values. unported_input's node is the dequantize even when only its
    quantize lacks the values."""
    b = GraphBuilder()
    x = b.placeholder("x")
    c = b.dynamic_qdq(x)
    d = b.call("aten.linear.default", c.dq, name="D", tag="D")
    b.annotate(d, inputs={x: dynamic()}, output=static())
    _, dqo = b.qdq(d, names=("q_out", "dq_out"))
    cc = b.call("aten.linear.default", x, name="C", tag="C", stack_trace="sC")
    b.annotate(cc, inputs={x: dynamic()})
    b.reorder_users(c.zero_point, [c.dq, c.q])
    b.output(dqo, cc)
    g = b.build()
    before = check(g)
    assert kinds(before) == [
        ("unported_input", c.dq, "D", "anchor_changed"),
        ("foreign_write", "D", "C", "search_reached"),
        ("unported_output", "q_out", "D", "anchor_changed"),
    ]
    assert f"{c.q!r} on its chain ends without" in before[0].message
    assert check(ported(g), ported=True) == before
    for f in before:
        if f.kind == "unported_input":
            assert portmeta.record(g, f.node).target.name.startswith("quantized_decomposed.dequant")


def folded_weight_graph(folded: bool) -> Any:
    """A linear whose rules fail (dynamic input, static chain), with its weight chain as
    convert_pt2e leaves it before (folded=False) and after (folded=True) folding."""
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dqx = b.qdq(x, names=("qx", "dqx"))
    w = b.get_attr("w", tag="w_tag")
    if folded:
        fw = b.get_attr("_frozen_param0", tag="w_tag")
        dqw = b.call(
            "quantized_decomposed.dequantize_per_channel.default",
            fw,
            0.1,
            0,
            0,
            -127,
            127,
            name="dqw",
        )
    else:
        qw = b.call(
            "quantized_decomposed.quantize_per_channel.default",
            w,
            0.1,
            0,
            0,
            -127,
            127,
            name="qw",
        )
        dqw = b.call(
            "quantized_decomposed.dequantize_per_channel.default",
            qw,
            0.1,
            0,
            0,
            -127,
            127,
            name="dqw",
        )
    lin = b.call("aten.linear.default", dqx, dqw, name="lin", tag="lin_0")
    # after folding, the annotation still names the weight the quantizer saw, no longer an input
    b.annotate(lin, inputs={x: dynamic(), w: static()}, check_inputs=not folded)
    b.output(lin)
    return b.build()


def test_folded_weight_dequantize_is_not_linked_to_its_input_after_folding() -> None:
    """Documented: after folding, the weight's dequantize no longer reaches the annotated
    weight, so only the snapshot before porting reports it."""
    assert kinds(check(folded_weight_graph(False))) == [
        ("unported_input", "dqx", "lin", "planning_error"),
        ("unported_input", "dqw", "lin", "planning_error"),
    ]
    folded = folded_weight_graph(True)
    assert kinds(check(folded)) == kinds(check(folded, ported=True))
    assert kinds(check(folded)) == [("unported_input", "dqx", "lin", "planning_error")]


def test_a_plan_from_before_folding_skips_the_folded_writes() -> None:
    """The plan of the snapshot before porting, checked against the snapshot after folding:
    the writes to the folded weight quantize are skipped, the dequantize is still the
    linear's, and the findings are those of the before check."""
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    w = b.get_attr("w", tag="w_tag")
    _, wdq = b.qdq(w, per_channel=True, names=("wq", "wdq"))
    lin = b.call("aten.linear.default", dq, wdq, name="lin", tag="lin_0", stack_trace="m:1")
    b.annotate(lin, inputs={x: static(), w: static()})
    b.output(lin)
    g = b.build()
    p = portmeta.plan(g)
    assert any(d.target == "wq" for d in p.deltas)
    folded = []
    for rec in records(ported(g, p)):
        if rec.name == wdq:  # the dequantize now reads the (folded) weight directly
            rec = attrs.evolve(rec, args=(portmeta.NodeRef("w"), *rec.args[1:]))
        elif rec.name == "w":
            rec = attrs.evolve(rec, users=(wdq,))
        if rec.name != "wq":
            folded.append(rec)
    after = build_graph(folded, meta_keys=meta_keys(g), check=False)
    skipped = unmatched_writes(after, p.deltas)
    assert {d.target for d in skipped} == {"wq"}
    assert check(after, plan=p, ported=True) == check(g) == ()
    with pytest.raises(portmeta.StalePlanError):
        check(after, plan=p)  # the graph changed since the plan: only ported=True reads it
    with pytest.raises(portmeta.UnknownNodeError, match="names it as annotated"):
        check(after, plan=portmeta.plan(qkv_graph()), ported=True)


def split_and_retagged() -> Any:
    """Q/K/V chains split after convert, each copy re-tagged with its consumer's values."""
    b = GraphBuilder()
    x = b.placeholder("x")
    lins = []
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
        c = b.dynamic_qdq(x)
        for n in (c.choose_qparams, c.q, c.dq):
            b.set_meta(n, tag=f"{name}_0", stack_trace=f"m:{i}")
        lin = b.call("aten.linear.default", c.dq, name=name, tag=f"{name}_0", stack_trace=f"m:{i}")
        b.annotate(lin, inputs={x: dynamic()})
        lins.append(lin)
    b.output(*lins)
    return b.build()


def test_ported_takes_the_graphs_values_as_final() -> None:
    """A fix made after porting (chains split and re-tagged) checks clean with ported=True;
    the default judges the graph as if the pass ran on it again."""
    g = split_and_retagged()
    assert check(g, ported=True) == ()
    assert_no_findings(g, ported=True)
    assert {f.cause for f in check(g)} >= {"search_reached"}
    # a wrong fix is still found, with the plan's cause
    wrong = GraphBuilder()
    x = wrong.placeholder("x")
    c = wrong.dynamic_qdq(x)
    lins = []
    for name in ("q_proj", "k_proj"):
        lin = wrong.call("aten.linear.default", c.dq, name=name, tag=f"{name}_0")
        wrong.annotate(lin, inputs={x: dynamic()})
        lins.append(lin)
    wrong.output(*lins)
    g = ported(wrong.build())
    assert kinds(check(g, ported=True)) == [("unported_input", c.dq, "q_proj", "shared")]


def one_partition_graph() -> Any:
    """Q/K/V linears tagged as one partition, each with its own stack trace."""
    b = GraphBuilder()
    x = b.placeholder("x")
    c = b.dynamic_qdq(x)
    lins = []
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
        lin = b.call("aten.linear.default", c.dq, name=name, tag="qkv_0", stack_trace=f"m:{i}")
        b.annotate(lin, inputs={x: dynamic()})
        lins.append(lin)
    b.output(*lins)
    return b.build()


def test_keys_default_needs_a_tag_difference() -> None:
    g = one_partition_graph()
    assert check(g) == ()
    found = check(g, keys=["stack_trace", "quantization_tag"])
    assert kinds(found) == [
        ("unported_input", "dq", "q_proj", "shared"),
        ("unported_input", "dq", "k_proj", "shared"),
    ]
    assert {f.keys for f in found} == {("stack_trace",)}
    assert check(g, keys=["stack_trace"]) == found
    assert check(g, keys=["quantization_tag"]) == ()
    assert assert_no_findings(g) == ()
    with pytest.raises(AssertionError, match="2 findings"):
        assert_no_findings(g, keys=["stack_trace"])
    # a tag difference reports the stack trace difference with it
    assert {f.keys for f in check(qkv_graph())} == {("stack_trace", "quantization_tag")}
    # a profile without the tag key: every key counts
    tagless = attrs.evolve(TORCHAO, name="st", keys=("stack_trace",))
    assert kinds(check(g, tagless)) == kinds(found)


@pytest.mark.parametrize("keys", [["nope"], [], "stack_trace"])
def test_keys_are_validated(keys: Any) -> None:
    with pytest.raises(portmeta.OptionError, match="keys must be"):
        check(cat_graph(), keys=keys)


def test_unexplained_message_is_neutral() -> None:
    """The message reads the same in Python and on the command line."""
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu", tag="relu_0")
    b.annotate(relu, inputs={x: static()})
    b.output(relu)
    g = b.build()
    (f,) = check(g, plan=portmeta.Plan((), (), portmeta.fingerprint(g), TORCHAO))
    assert "portmeta's explain shows what the rules do" in f.message
    assert "explain(" not in f.message
