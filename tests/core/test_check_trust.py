"""A check users can trust on real flows (issue 18), on ten-line hand-built graphs, no torch.

Each test pins one item: what is compared when nothing is tagged, what a check that compared
nothing says, annotations that name nodes of another graph, every node of a hole named, a
remedy and a docs anchor per finding, readable values, honest counts, a plan of another graph.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings

import portmeta
from portmeta.check import CAUSES, KINDS, REMEDIES, compared_keys, summary
from portmeta.errors import PortingWarning
from portmeta.records import NodeRecord, Target
from portmeta.structure import anchors_near, structure
from portmeta.testing import GraphBuilder, dynamic, shared, static
from portmeta.testing.strategies import HOLES, graphs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "check.md"


def qkv(**meta: str) -> portmeta.Snapshot:
    """Three linears reading one dynamic chain (one stack trace each; ``meta`` on all)."""
    b = GraphBuilder()
    x = b.placeholder("x")
    chain = b.dynamic_qdq(x)
    outs = []
    for i in range(3):
        lin = b.call("aten.linear.default", chain.dq, name=f"lin{i}", stack_trace=f"m.py:{i}")
        if meta:
            b.set_meta(lin, **meta)
        b.annotate(lin, inputs={x: dynamic()})
        outs.append(lin)
    b.output(*outs)
    return b.build()


def test_an_untagged_graph_is_checked_on_stack_trace_by_default() -> None:
    # real quantizers set no quantization_tag: the stack trace is what there is to compare
    found = portmeta.check(qkv())
    assert [(f.kind, f.node, f.anchor, f.cause, f.keys) for f in found] == [
        ("unported_input", "dq", "lin0", "shared", ("stack_trace",)),
        ("unported_input", "dq", "lin1", "shared", ("stack_trace",)),
    ]
    # every node of the hole is named: the chain's quantize and choose_qparams too
    assert set(found[0].related) >= {"q", "choose_qparams"}
    assert "(so do 'q', 'choose_qparams' on its chain)" in found[0].message


def test_a_tag_decides_where_there_is_one() -> None:
    # one partition tag on all three: the shared chain carries it, whatever its stack trace
    assert portmeta.check(qkv(tag="P")) == ()
    # keys= still overrides: any difference on the keys given counts
    assert len(portmeta.check(qkv(tag="P"), keys=["stack_trace"])) == 2


def test_the_summary_says_what_was_compared() -> None:
    g = qkv()
    assert compared_keys(g) == {"stack_trace": 3}
    assert summary(portmeta.check(g), g) == (
        "2 findings in 10 nodes, 3 annotated; compared stack_trace on 3 (unported_input 2, "
        "unported_output 0, foreign_write 0, stale_annotation 0)"
    )
    assert compared_keys(qkv(tag="P")) == {"quantization_tag": 3}
    assert compared_keys(g, keys=["quantization_tag"]) == {"": 3}


def test_a_check_that_compared_nothing_says_so() -> None:
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    y = b.call("aten.relu.default", dq, name="relu")  # neither tag nor stack trace
    b.annotate(y, inputs={x: static()})
    b.output(y)
    g = b.build()
    assert portmeta.check(g) == ()
    text = summary((), g)
    assert text.startswith("nothing compared in 5 nodes, 1 annotated: no annotated node carries")
    assert "no findings" not in text


def test_counts_are_the_annotated_nodes_the_pass_sees_and_the_graphs_own_nodes() -> None:
    b = GraphBuilder()
    x = b.placeholder("x")
    w = b.get_attr("w")
    _, dq = b.qdq(x)
    _, wdq = b.qdq(w, names=("wq", "wdq"))
    lin = b.call("aten.linear.default", dq, wdq, name="lin", stack_trace="m.py:1")
    b.annotate(lin, inputs={x: static(), w: static()})
    b.set_annotation(w, portmeta.Annotation())  # the empty "handled" mark on a weight
    b.output(lin)
    recs = list(b.records())
    other = NodeRecord.of("other@0", "placeholder", Target.named("other"), foreign=True)
    g = portmeta.build_graph([*recs, other])
    assert len(portmeta.records(g)) == len(recs) + 1  # a sequence
    assert summary((), g).startswith(f"no findings in {len(recs)} nodes, 1 annotated;")


def test_annotations_naming_another_graphs_nodes_are_a_finding_of_their_own() -> None:
    # convert_pt2e(copy.deepcopy(prepared)): the annotation names the original graph's relu
    b = GraphBuilder()
    x = b.placeholder("x")
    r = b.call("aten.relu.default", x, name="relu", stack_trace="m.py:1")
    _, dq = b.qdq(r)
    lin = b.call("aten.linear.default", dq, name="lin", stack_trace="m.py:2")
    b.annotate(lin, inputs={r: static()})
    b.output(lin)
    recs = b.records()
    copied = portmeta.Annotation.of({"relu@0": static()})
    recs = [
        portmeta.NodeRecord.of(
            rec.name,
            rec.op,
            rec.target,
            args=rec.args,
            users=rec.users,
            meta=rec.meta,
            annotation=copied if rec.name == "lin" else rec.annotation,
        )
        for rec in recs
    ]
    foreign = NodeRecord.of(
        "relu@0", "call_function", Target.overload("aten.relu.default"), foreign=True
    )
    g = portmeta.build_graph([*recs, foreign])
    assert portmeta.plan(g).deltas == ()  # no rule reaches the copy's q/dq nodes
    (f,) = portmeta.check(g)
    assert (f.kind, f.node, f.anchor, f.cause) == ("stale_annotation", "dq", "lin", "deep_copy")
    assert "names 'relu@0', a node of another graph" in f.message
    assert "deep-copied between prepare_pt2e and convert_pt2e" in f.message
    assert f.remedy == REMEDIES["deep_copy"]
    (feed,) = structure(g).feeds
    assert (feed.input, feed.named, feed.stale) == ("relu", "relu@0", True)
    text = portmeta.explain(g, "dq")
    assert "names 'relu@0', a node of another graph" in text


def test_a_static_spec_over_a_choose_qparams_chain_names_the_whole_hole() -> None:
    # X86Inductor's dynamic config: cat's second input shares the first's spec (static), but
    # its chain is a choose_qparams chain no rule writes: all three nodes are the hole
    b = GraphBuilder()
    x, y = b.placeholder("x"), b.placeholder("y")
    cx, cy = b.dynamic_qdq(x), b.dynamic_qdq(y)
    cat = b.call("aten.cat.default", [cx.dq, cy.dq], 1, name="cat", stack_trace="m.py:1")
    b.annotate(cat, inputs={x: dynamic(), y: shared()})
    b.output(cat)
    found = {f.node: f for f in portmeta.check(b.build())}
    f = found[cy.dq]
    assert (f.kind, f.cause) == ("unported_input", "container")
    assert {cy.q, cy.choose_qparams} <= set(f.related)
    assert cx.dq not in found  # the dynamic input's chain is written by the search


def test_every_finding_says_what_to_do_and_where_to_read_more() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    assert set(REMEDIES) == set(CAUSES)
    for cause in CAUSES:
        assert f'<a id="{cause}"></a>' in doc, cause  # the anchor Finding.docs points at
        assert REMEDIES[cause] in " ".join(doc.split()), cause  # the same sentence there
    for kind in KINDS:
        assert f"`{kind}`" in doc, kind
    (f, *_) = portmeta.check(qkv())
    assert f.docs == "docs/check.md#shared"
    assert f.to_dict()["remedy"] == REMEDIES["shared"]


def test_the_warning_lists_one_finding_per_line_with_what_to_do() -> None:
    found = portmeta.check(qkv())
    lines = str(PortingWarning(found, where="the pass's last_findings")).splitlines()
    assert lines[0] == "portmeta check: 2 findings"
    assert lines[1] == f"  - {found[0].message}"
    assert lines[2] == f"    to fix: {REMEDIES['shared']} (docs/check.md#shared)"
    assert lines[-1] == "  (all of them in the pass's last_findings)"
    assert max(map(len, lines)) < 400


def test_overwrite_diagnostics_show_values_that_can_be_told_apart() -> None:
    def trace(line: int, extra: str = "") -> str:
        return (
            f'{extra}File "/site-packages/torch/nn/modules/module.py", line 1, in _call_impl\n'
            f'File "/home/me/models.py", line {line}, in forward\n'
            "    x = torch.nn.functional.linear(x, self.weight, self.bias)"
        )

    b = GraphBuilder()
    x = b.placeholder("x")
    chain = b.dynamic_qdq(x)
    a = b.call("aten.linear.default", chain.dq, name="a", stack_trace=trace(23))
    c = b.call("aten.linear.default", chain.dq, name="c", stack_trace=trace(31))
    for lin in (a, c):
        b.annotate(lin, inputs={x: dynamic()})
    b.output(a, c)
    diag = next(d for d in portmeta.plan(b.build()).diagnostics if d.kind == "overwrite")
    assert "(models.py:23 in forward from 'a' becomes models.py:31 in forward from 'c')" in (
        diag.message
    )


def test_overwrite_diagnostics_show_in_full_what_the_short_form_cannot_tell_apart() -> None:
    b = GraphBuilder()
    x = b.placeholder("x")
    chain = b.dynamic_qdq(x)
    tails = (
        'File "/m.py", line 7, in forward\n  y',
        'File "/n.py", line 1, in main\nFile "/m.py", line 7, in forward\n  y',
    )
    lins = []
    for i, t in enumerate(tails):
        lin = b.call("aten.linear.default", chain.dq, name=f"l{i}", stack_trace=t)
        b.annotate(lin, inputs={x: dynamic()})
        lins.append(lin)
    b.output(*lins)
    diag = next(d for d in portmeta.plan(b.build()).diagnostics if d.kind == "overwrite")
    assert "main" in diag.message  # the outer frame that tells the two apart


def test_a_plan_of_another_graph_is_refused_by_check_and_draw() -> None:
    g, other = qkv(), qkv(tag="P")
    with pytest.raises(portmeta.StalePlanError, match=r"^checking a plan made from another graph"):
        portmeta.check(g, plan=portmeta.plan(other))
    from portmeta.draw import to_dot

    with pytest.raises(portmeta.StalePlanError, match=r"^drawing a plan made from another graph"):
        to_dot(g, portmeta.plan(other))
    # ported=True: a snapshot taken after porting is not the plan's graph, and is read with it
    p = portmeta.plan(g)
    after = portmeta.build_graph(
        attrs.evolve(rec, meta=tuple(portmeta.final_meta(g, p)[rec.name].items()))
        for rec in portmeta.records(g)
    )
    assert portmeta.fingerprint(after) != portmeta.fingerprint(g)
    with pytest.raises(portmeta.StalePlanError):
        portmeta.check(after, plan=p)
    assert portmeta.check(after, plan=p, ported=True) == portmeta.check(g) != ()


def cat_of_two() -> portmeta.Snapshot:
    """cat([dq, dq_1]) with both inputs quantized: the rule never looks into the list."""
    b = GraphBuilder()
    x, y = b.placeholder("x"), b.placeholder("y")
    _, dq = b.qdq(x)
    _, dq_1 = b.qdq(y, names=("q_1", "dq_1"))
    cat = b.call("aten.cat.default", [dq, dq_1], 1, name="cat", stack_trace="m.py:1")
    b.annotate(cat, inputs={x: static(), y: shared()})
    b.output(cat)
    return b.build()


def test_explain_gives_the_remedy_that_applies_to_a_list_argument() -> None:
    text = portmeta.explain(cat_of_two(), "dq_1")
    remedy = next(line for line in text.splitlines() if "to receive metadata" in line)
    assert "no annotation can" in remedy and REMEDIES["container"] in remedy
    assert "static spec" not in remedy  # the advice for a positional argument does not apply


def test_the_drawing_marks_every_node_of_each_hole_the_check_reports() -> None:
    from portmeta.draw import to_dot

    g = cat_of_two()
    text = to_dot(g, portmeta.plan(g))
    holes = [line for line in text.splitlines() if "unported_input of cat" in line]
    assert sorted(line.split()[0] for line in holes) == ['"dq"', '"dq_1"']
    assert all("unported_input of cat: container" in line and "dashed" in line for line in holes)
    # a dynamic hole: its quantize and choose_qparams are drawn as part of it
    text = to_dot(qkv(), portmeta.plan(qkv()))
    marked = {line.split()[0] for line in text.splitlines() if "unported_input of lin0" in line}
    assert marked == {'"dq"', '"q"', '"choose_qparams"'}


def test_the_stale_copies_of_a_split_chain_are_named_whole() -> None:
    # a pass duplicated the shared dynamic chain per consumer after porting: every copy kept
    # the last consumer's values; checked as ported, each stale copy is named whole
    b = GraphBuilder()
    x = b.placeholder("x")
    chains = []
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
        c = b.dynamic_qdq(x)
        for n in (c.choose_qparams, c.q, c.dq):
            b.set_meta(n, tag="v_proj_0", stack_trace="m:2")
        lin = b.call("aten.linear.default", c.dq, name=name, tag=f"{name}_0", stack_trace=f"m:{i}")
        b.annotate(lin, inputs={x: dynamic()})
        chains.append(c)
    b.output("q_proj", "k_proj", "v_proj")
    found = {f.node: f for f in portmeta.check(b.build(), ported=True) if f.anchor != "v_proj"}
    for c, anchor in zip(chains[:2], ("q_proj", "k_proj"), strict=True):
        f = found[c.dq]
        assert (f.kind, f.anchor) == ("unported_input", anchor)
        assert {c.q, c.choose_qparams} <= set(f.related), f.related
    assert chains[2].dq not in found  # v_proj's own copy is right


@settings(max_examples=40)
@given(graphs(max_blocks=6, holes=tuple(HOLES)))
def test_the_structure_around_a_node_is_the_structure_of_the_whole_graph_there(g) -> None:
    # explain works out only the chains that can hold the node it is asked about
    whole = structure(g)
    for name in g:
        near = structure(g, anchors=anchors_near(g, portmeta.TORCHAO, name))
        assert near.owners_of(name) == whole.owners_of(name), name
        assert [f for f in near.feeds if name in f.chain] == [
            f for f in whole.feeds if name in f.chain
        ], name
