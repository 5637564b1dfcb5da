"""``Profile.dynamic_chain``: the search (upstream) and ``"feeding"`` (each consumer's own chain).

Graphs are what ExecuTorch's ``DuplicateDynamicQuantChainPass`` leaves: one choose_qparams ->
quantize -> dequantize chain per consumer of one dynamically quantized input, each copy
carrying the values the shared chain had (the last consumer's).
"""

from __future__ import annotations

import attrs
import pytest

import portmeta
from portmeta import LEGACY_TORCH_AO, TORCHAO, Plan, Profile, ProfileError, plan
from portmeta.errors import ChooseQParamsUsersError, NoChooseQParamsError
from portmeta.plan import final_meta
from portmeta.rules import feeding_choose_qparams, find_choose_qparams
from portmeta.testing import GraphBuilder, dynamic

FEEDING = attrs.evolve(TORCHAO, dynamic_chain="feeding")
KEYS = ("stack_trace", "quantization_tag")


def _duplicated(consumers=("q_proj", "k_proj", "v_proj"), *, shared=False):
    """x -> one chain per consumer (or one shared chain) -> linear each; every chain node carries
    the last consumer's values, as after convert_pt2e and the duplication."""
    b = GraphBuilder()
    x = b.placeholder("x")
    last = consumers[-1]
    stale = {"tag": f"{last}_0", "stack_trace": f"m.py:{len(consumers)}"}
    chains, outs = [], []
    shared_chain = b.dynamic_qdq(x) if shared else None
    for i, name in enumerate(consumers):
        chain = shared_chain or b.dynamic_qdq(x)
        chains.append(chain)
        y = b.call(
            "aten.linear.default", chain.dq, name=name, tag=f"{name}_0", stack_trace=f"m.py:{i + 1}"
        )
        b.annotate(y, inputs={x: dynamic()})
        outs.append(y)
    for chain in dict.fromkeys(chains):
        for node in (chain.choose_qparams, chain.q, chain.dq):
            b.set_meta(node, **stale)
    b.output(*outs)
    return b.build(), chains


def _own(graph, chains, consumers, profile):
    final = final_meta(graph, plan(graph, profile))
    return [
        [final[n]["quantization_tag"] for n in (c.choose_qparams, c.q, c.dq)]
        for c, name in zip(chains, consumers, strict=True)
    ]


# --------------------------------------------------------------------------- the profile field


def test_every_built_in_profile_searches():
    assert TORCHAO.dynamic_chain == LEGACY_TORCH_AO.dynamic_chain == "search"
    assert FEEDING.dynamic_chain == "feeding" and FEEDING != TORCHAO


@pytest.mark.parametrize("value", ["bfs", "", None, "Feeding"])
def test_an_unknown_value_is_a_profile_error_naming_the_allowed_ones(value):
    with pytest.raises(ProfileError, match=r"dynamic_chain must be one of 'search', 'feeding'"):
        attrs.evolve(TORCHAO, dynamic_chain=value)


def test_the_field_round_trips_and_old_data_means_search():
    assert Profile.from_dict(FEEDING.to_dict()) == FEEDING
    data = TORCHAO.to_dict()
    del data["dynamic_chain"]
    assert Profile.from_dict(data) == TORCHAO
    with pytest.raises(ProfileError, match="dynamic_chain"):
        Profile.from_dict({**data, "dynamic_chain": "nope"})


def test_a_plan_names_the_profile_by_its_base_and_the_option():
    graph, _ = _duplicated()
    p = plan(graph, FEEDING)
    assert p.to_dict()["profile"] == {"base": "torchao", "dynamic_chain": "feeding"}
    again = Plan.from_json(p.to_json())
    assert again == p and again.profile == FEEDING


# --------------------------------------------------------------------------- the chain chosen


@pytest.mark.parametrize(
    "consumers", [("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")], ids=["qkv", "mlp"]
)
def test_feeding_gives_every_copy_its_own_consumer(consumers):
    graph, chains = _duplicated(consumers)
    own = [[f"{name}_0"] * 3 for name in consumers]
    assert _own(graph, chains, consumers, FEEDING) == own
    # the search lands every consumer on the first chain: the copies keep the stale values
    searched = _own(graph, chains, consumers, TORCHAO)
    assert searched[0] == [f"{consumers[-1]}_0"] * 3  # the last consumer's write wins there
    assert all(row == [f"{consumers[-1]}_0"] * 3 for row in searched[1:])
    assert searched != own


def test_feeding_writes_only_the_consumers_own_chain_with_its_path():
    graph, chains = _duplicated()
    p = plan(graph, FEEDING)
    for chain, name in zip(chains, ("q_proj", "k_proj", "v_proj"), strict=True):
        targets = [d.target for d in p.deltas if d.anchor == name]
        assert targets == [t for t in (chain.choose_qparams, chain.q, chain.dq) for _ in KEYS]
        assert {d.path for d in p.deltas if d.anchor == name} == {
            ("x", chain.choose_qparams, chain.zero_point, chain.q, chain.dq)
        }
    assert not p.diagnostics


def test_feeding_finds_the_chain_the_search_misses():
    graph, chains = _duplicated()
    assert find_choose_qparams(graph, TORCHAO, "x")[-1] == chains[0].choose_qparams
    assert feeding_choose_qparams(graph, TORCHAO, "v_proj", "x") == (
        "x",
        chains[2].choose_qparams,
        chains[2].dq,
    )
    assert feeding_choose_qparams(graph, TORCHAO, "v_proj", "nope") is None


def test_a_shared_chain_gets_the_same_writes_either_way():
    """One chain for three consumers (convert_pt2e without the duplication): the feeding chain is
    the searched one, so the plans are equal (the last consumer's values win)."""
    graph, _ = _duplicated(shared=True)
    assert plan(graph, FEEDING).deltas == plan(graph, TORCHAO).deltas
    assert plan(graph, FEEDING).diagnostics == plan(graph, TORCHAO).diagnostics


def test_one_consumer_one_chain_is_upstreams_plan():
    graph, _ = _duplicated(("lin",))
    assert plan(graph, FEEDING).deltas == plan(graph, TORCHAO).deltas


# --------------------------------------------------------------------------- no feeding chain


def _reads_through_a_list():
    """The consumer reads the dequantize inside a list: no feeding chain among its arguments."""
    b = GraphBuilder()
    x = b.placeholder("x")
    chain = b.dynamic_qdq(x)
    cat = b.call("aten.cat.default", [chain.dq], 1, name="cat", tag="cat_0", stack_trace="m.py:1")
    b.annotate(cat, inputs={x: dynamic()})
    b.output(cat)
    return b.build(), chain


def test_no_feeding_chain_falls_back_to_the_search_with_an_info_diagnostic():
    graph, chain = _reads_through_a_list()
    p = plan(graph, FEEDING)
    assert p.deltas == plan(graph, TORCHAO).deltas
    assert [d.target for d in p.deltas][::2] == [chain.choose_qparams, chain.q, chain.dq]
    (diag,) = p.diagnostics
    assert (diag.kind, diag.severity.value, diag.node) == ("dynamic_search", "info", "cat")
    assert diag.related == ("x", chain.choose_qparams)
    assert plan(graph, TORCHAO).diagnostics == ()


def test_a_dequantize_of_another_input_is_not_the_feeding_chain():
    """The consumer's dequantize quantizes ``y``, not the annotated input ``x``: the search."""
    b = GraphBuilder()
    x, y = b.placeholder("x"), b.placeholder("y")
    cx, cy = b.dynamic_qdq(x), b.dynamic_qdq(y)
    lin = b.call("aten.linear.default", cy.dq, name="lin", tag="L")
    b.annotate(lin, inputs={x: dynamic()}, check_inputs=False)
    b.output(lin, cx.dq)
    graph = b.build()
    assert feeding_choose_qparams(graph, TORCHAO, "lin", "x") is None
    p = plan(graph, FEEDING)
    assert p.deltas == plan(graph, TORCHAO).deltas
    assert [d.kind for d in p.diagnostics] == ["dynamic_search"]


def test_no_chain_at_all_is_upstreams_error():
    b = GraphBuilder()
    x = b.placeholder("x")
    lin = b.call("aten.linear.default", x, name="lin")
    b.annotate(lin, inputs={x: dynamic()})
    b.output(lin)
    with pytest.raises(NoChooseQParamsError):
        plan(b.build(), FEEDING)


def test_the_feeding_chain_is_checked_as_upstream_checks_the_searched_one():
    """A third user of the feeding choose_qparams: upstream's InternalError, from that node."""
    b = GraphBuilder()
    x = b.placeholder("x")
    b.dynamic_qdq(x)
    chain = b.dynamic_qdq(x)
    extra = b.call("aten.relu.default", chain.choose_qparams, name="extra")
    lin = b.call("aten.linear.default", chain.dq, name="lin", tag="L")
    b.annotate(lin, inputs={x: dynamic()})
    b.output(lin, extra)
    graph = b.build()
    with pytest.raises(ChooseQParamsUsersError, match=chain.choose_qparams):
        plan(graph, FEEDING)
    assert plan(graph, TORCHAO).deltas  # the search reaches the first, well-formed chain


def test_the_check_sees_the_stale_copies_only_without_the_option():
    graph, _ = _duplicated()
    found = {(f.kind, f.node, f.anchor, f.cause) for f in portmeta.check(graph, TORCHAO)}
    # k_proj's own copy keeps v_proj's values; the search wrote v_proj's onto q_proj's chain
    assert ("unported_input", "dq_1", "k_proj", "search_elsewhere") in found
    assert ("unported_input", "dq", "q_proj", "overwritten") in found
    assert ("foreign_write", "choose_qparams", "v_proj", "search_reached") in found
    assert portmeta.check(graph, FEEDING) == ()


# --------------------------------------------------------------------------- command line


def test_the_command_line_takes_the_option(tmp_path, capsys):
    from portmeta.cli import main

    graph, _ = _duplicated()
    path = tmp_path / "graph.json"
    portmeta.dump_graph(graph, path)

    def cli(*argv):
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    assert cli("check", path)[0] == 1  # the stale copies, with upstream's search
    assert cli("check", path, "--dynamic-chain", "feeding")[0] == 0
    assert cli("check", path, "--dynamic-chain", "search")[0] == 1

    saved = tmp_path / "feeding.plan.json"
    assert cli("plan", path, "--dynamic-chain", "feeding", "-o", saved)[0] == 0
    assert Plan.load(saved) == plan(graph, FEEDING)
    assert Plan.load(saved).to_dict()["profile"] == {"base": "torchao", "dynamic_chain": "feeding"}
    assert cli("check", path, "--plan", saved)[0] == 0  # the plan's profile is used

    status, out, _ = cli("explain", path, "dq_1", "--dynamic-chain", "feeding")
    assert status == 0 and "k_proj" in out

    status, out, _ = cli("diff", path, saved)
    assert status == 0
    assert "profiles named 'torchao' differ in dynamic_chain: search vs feeding" in out

    status, _, err = cli("check", path, "--plan", saved, "--dynamic-chain", "feeding")
    assert status == 2 and "--dynamic-chain cannot be used with --plan" in err
    with pytest.raises(SystemExit) as info:  # argparse's own usage error
        cli("plan", path, "--dynamic-chain", "bfs")
    assert info.value.code == 2 and "invalid choice: 'bfs'" in capsys.readouterr().err


def test_diff_names_every_profile_difference():
    from portmeta.diff import diff_plans

    graph, _ = _duplicated()
    both = attrs.evolve(FEEDING, keys=("quantization_tag",))
    notes = diff_plans(plan(graph, TORCHAO), plan(graph, both)).notes
    assert "profiles named 'torchao' differ in dynamic_chain: search vs feeding" in notes
    assert "profiles named 'torchao' differ in content (keys or op sets)" in notes
    notes = diff_plans(plan(graph, TORCHAO), plan(graph, FEEDING)).notes
    assert not any("content" in n for n in notes)


def test_draw_refuses_planning_options_with_a_plan(tmp_path, capsys):
    from portmeta.cli import main

    graph, _ = _duplicated()
    path, saved = tmp_path / "graph.json", tmp_path / "plan.json"
    portmeta.dump_graph(graph, path)
    assert main(["plan", str(path), "-o", str(saved)]) == 0
    for option in (["--dynamic-chain", "feeding"], ["--profile", "legacy"], ["--keys", "x"]):
        status = main(["draw", str(path), "--plan", str(saved), *option, "-o", "x.dot"])
        err = capsys.readouterr().err
        assert status == 2 and f"{option[0]} cannot be used with --plan" in err
