"""Models with control-flow subgraphs (``scan``, ``while_loop``) through torchao's
prepare/convert: every graph is snapshot, saved, loaded, planned, checked and explained.

torchao 0.18's ``convert_pt2e`` converts (and ports) each scan ``combine_fn`` and each
while_loop ``body_fn`` as its own GraphModule. The models are not calibrated (an observer
inside a loop body cannot run under tracing), so the observers give default parameters; the
q/dq structure, which is all porting reads, is the same.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch._higher_order_ops.scan import scan
from torch._higher_order_ops.while_loop import while_loop

import portmeta
from portmeta_fx import dump, from_fx, from_fx_graphs, patch_convert_pt2e, subgraph_modules

pytestmark = pytest.mark.filterwarnings("ignore")


class ScanLinear(torch.nn.Module):
    """``scan`` whose combine_fn runs a linear on ``carry + x``."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, xs: torch.Tensor) -> Any:
        def combine(carry: torch.Tensor, x: torch.Tensor) -> Any:
            y = self.lin(carry + x)
            return y, y.clone()

        return scan(combine, torch.zeros(4), xs)


class WhileLinear(torch.nn.Module):
    """``while_loop`` whose body_fn runs a linear three times."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, i: torch.Tensor, x: torch.Tensor) -> Any:
        def cond(i: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return i < 3

        def body(i: torch.Tensor, x: torch.Tensor) -> Any:
            return i + 1, self.lin(x)

        return while_loop(cond, body, (i, x))


MODELS = {
    "scan": (ScanLinear, lambda: (torch.randn(3, 4),), "scan_combine_graph_0"),
    "while": (WhileLinear, lambda: (torch.tensor(0), torch.randn(2, 4)), "while_loop_body_graph_0"),
}
FLOWS = [(m, d) for m in MODELS for d in (False, True)]
IDS = [f"{m}-{'dynamic' if d else 'static'}" for m, d in FLOWS]


@functools.cache
def exported(model: str) -> torch.fx.GraphModule:
    cls, inputs, _ = MODELS[model]
    torch.manual_seed(0)
    return torch.export.export(cls().eval(), inputs(), strict=False).module()


def prepared(model: str, dynamic: bool) -> torch.fx.GraphModule:
    """A fresh prepared copy of the exported model (a deep copy of a *prepared* model would
    keep annotations naming the original's nodes)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    from torchao.testing.pt2e._xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    return prepare_pt2e(copy.deepcopy(exported(model)), XNNPACKQuantizer().set_global(config))


@functools.cache
def converted(
    model: str, dynamic: bool, ours: bool = True
) -> tuple[torch.fx.GraphModule, list[Any]]:
    """``(converted model, the portmeta passes that ran)``; cached, read-only."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    if not ours:
        return convert_pt2e(prepared(model, dynamic)), []
    with patch_convert_pt2e(check="warn") as passes:
        return convert_pt2e(prepared(model, dynamic)), list(passes)


def _meta(gm: torch.fx.GraphModule) -> dict[str, dict[str, Any]]:
    keys = ("stack_trace", "quantization_tag")
    return {n.name: {k: n.meta[k] for k in keys if k in n.meta} for n in gm.graph.nodes}


# --------------------------------------------------------------------------- Python API


@pytest.mark.parametrize(("model", "dynamic"), FLOWS, ids=IDS)
def test_every_graph_is_read_by_qualified_name(model: str, dynamic: bool) -> None:
    gm, _ = converted(model, dynamic)
    graphs = from_fx_graphs(gm)
    sub = MODELS[model][2]
    assert next(iter(graphs)) == "" and sub in graphs
    assert set(graphs) == set(subgraph_modules(gm))
    assert list(graphs[sub]) == list(from_fx(gm.get_submodule(sub)))
    # the loop body holds the quantized linear, and its q/dq nodes carry their metadata
    annotated = portmeta.annotated_nodes(graphs[sub])
    assert annotated
    ported = [n for n in gm.get_submodule(sub).graph.nodes if "dequantize" in n.name]
    assert any("stack_trace" in n.meta for n in ported)


@pytest.mark.parametrize(("model", "dynamic"), FLOWS, ids=IDS)
def test_drop_in_agrees_with_torchao_on_every_graph(model: str, dynamic: bool) -> None:
    ours, passes = converted(model, dynamic)
    theirs, _ = converted(model, dynamic, ours=False)
    mine, upstream = subgraph_modules(ours), subgraph_modules(theirs)
    assert list(mine) == list(upstream)
    for name in mine:
        assert _meta(mine[name]) == _meta(upstream[name]), name
    assert len(passes) == 2  # the loop body's conversion, then the top level's


@pytest.mark.parametrize(("model", "dynamic"), FLOWS, ids=IDS)
def test_dump_saves_every_graph_and_it_loads_back(
    model: str, dynamic: bool, tmp_path: Path
) -> None:
    gm, _ = converted(model, dynamic)
    path = tmp_path / "model.json"
    dump(gm, path)
    assert json.loads(path.read_text())["format"] == "portmeta.model"
    loaded = portmeta.load_graphs(path)
    graphs = from_fx_graphs(gm)
    assert list(loaded) == list(graphs)
    for name, graph in graphs.items():
        assert portmeta.fingerprint(loaded[name]) == portmeta.fingerprint(graph), name
    with pytest.raises(portmeta.GraphFormatError, match="read it with load_graphs"):
        portmeta.load_graph(path)


@pytest.mark.parametrize(("model", "dynamic"), FLOWS, ids=IDS)
def test_merged_plan_is_the_plans_of_the_graphs(model: str, dynamic: bool) -> None:
    _, passes = converted(model, dynamic)
    sub = MODELS[model][2]
    before = {sub: passes[0].last_snapshot, "": passes[1].last_snapshot}  # as converted
    merged = portmeta.merge_graphs(before)
    whole = portmeta.plan(merged).final_state()
    expected: dict[str, Any] = {}
    for name, graph in before.items():
        for node, values in portmeta.plan(graph).final_state().items():
            expected[portmeta.qualified_node(name, node)] = values
    assert whole == expected
    assert any(node.startswith(f"{sub}:") for node in whole)


def test_a_model_without_subgraphs_still_saves_one_graph(tmp_path: Path) -> None:
    gm = torch.fx.symbolic_trace(torch.nn.ReLU())
    path = tmp_path / "g.json"
    dump(gm, path)
    assert json.loads(path.read_text())["format"] == "portmeta.graph"
    assert list(portmeta.load_graph(path)) == ["input_1", "relu", "output"]
    assert list(portmeta.load_graphs(path)) == [""]


# --------------------------------------------------------------------------- command line


def _before(model: str, dynamic: bool) -> dict[str, portmeta.Snapshot]:
    """The graphs as the drop-in pass saw them, before porting, by qualified name."""
    _, passes = converted(model, dynamic)
    return {"": passes[1].last_snapshot, MODELS[model][2]: passes[0].last_snapshot}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from portmeta.cli import main

    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(("model", "dynamic"), FLOWS, ids=IDS)
def test_cli_plans_checks_explains_and_draws_every_graph(
    model: str, dynamic: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sub = MODELS[model][2]
    path = tmp_path / "model.json"
    portmeta.dump_graphs(_before(model, dynamic), path)

    status, out, _ = _cli(capsys, "plan", path)
    expected = portmeta.plan(portmeta.merge_graphs(_before(model, dynamic)))
    written = sorted({d.target for d in expected.deltas})
    assert status == 0 and written and all(t.startswith(f"{sub}:") for t in written)
    assert all(t in out for t in written)

    status, out, _ = _cli(capsys, "check", path, "--format", "json")
    assert status in (0, 1)
    nodes = [f["node"] for f in json.loads(out)["findings"]]
    assert all(n.startswith(f"{sub}:") for n in nodes)  # the top level quantizes nothing

    status, out, _ = _cli(capsys, "explain", path, written[0])
    assert status == 0 and out.startswith(f"node {written[0]!r}")
    bare = written[0].split(":", 1)[1]
    status, _, err = _cli(capsys, "explain", path, bare)
    assert status == 2 and f"did you mean {written[0]!r}" in err
    status, out, _ = _cli(capsys, "explain", path, bare, "--graph", sub)
    assert status == 0 and out.startswith(f"node {bare!r}")

    status, _, _ = _cli(capsys, "draw", path, "-o", tmp_path / "all.dot")
    assert status == 0 and f'"{written[0]}"' in (tmp_path / "all.dot").read_text()

    # one graph alone, under its own names: its plan file is the subgraph's own plan
    body_plan = tmp_path / "body.plan.json"
    status, _, _ = _cli(capsys, "plan", path, "--graph", sub, "-o", body_plan)
    assert status == 0
    assert portmeta.Plan.load(body_plan).final_state() == (
        portmeta.plan(_before(model, dynamic)[sub]).final_state()
    )
    status, _, _ = _cli(
        capsys, "draw", path, "--graph", sub, "--plan", body_plan, "-o", tmp_path / "b.dot"
    )
    assert status == 0
    status, _, err = _cli(capsys, "plan", path, "--graph", "nope")
    assert status == 2 and "no graph named 'nope'" in err and repr(sub) in err


@pytest.mark.parametrize(("model", "dynamic"), FLOWS, ids=IDS)
def test_cli_checks_a_converted_model_saved_with_dump(
    model: str, dynamic: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gm, passes = converted(model, dynamic)
    path = tmp_path / "converted.json"
    dump(gm, path)
    status, out, _ = _cli(capsys, "check", path, "--ported", "--format", "json")
    found = json.loads(out)["findings"]
    sub = MODELS[model][2]
    body = passes[0].last_findings
    assert status == (1 if found else 0)
    assert sorted(f["node"] for f in found) == sorted(f"{sub}:{f.node}" for f in body)
    status, out, _ = _cli(capsys, "diff", path, path)
    assert status == 0 and "plans agree" in out


# --------------------------------------------------------------------------- check="warn"


@pytest.mark.parametrize(("model", "dynamic"), FLOWS, ids=IDS)
def test_each_pass_knows_the_graph_it_ports(model: str, dynamic: bool) -> None:
    _, passes = converted(model, dynamic)
    assert [p.graph_name for p in passes] == [MODELS[model][2], ""]


def test_the_warning_names_the_subgraph() -> None:
    warning = portmeta.PortingWarning(("f",), graph="scan_combine_graph_0")
    assert str(warning).splitlines()[0] == (
        "portmeta check: 1 finding in subgraph 'scan_combine_graph_0'"
    )
    assert str(portmeta.PortingWarning(("f",))).splitlines()[0] == "portmeta check: 1 finding"


def test_convert_pt2e_is_restored_after_the_block() -> None:
    from torchao.quantization.pt2e import quantize_pt2e

    original = quantize_pt2e.convert_pt2e
    with patch_convert_pt2e():
        assert quantize_pt2e.convert_pt2e is not original
    assert quantize_pt2e.convert_pt2e is original


# --------------------------------------------------------------------------- applying a model's plan


def _q_nodes(gm: torch.fx.GraphModule) -> dict[str, torch.fx.Node]:
    """Every quantize / dequantize / choose_qparams node of the model, by qualified name."""
    return {
        portmeta.qualified_node(name, n.name): n
        for name, module in subgraph_modules(gm).items()
        for n in module.graph.nodes
        if n.op == "call_function" and ("quantize" in n.name or "choose_qparams" in n.name)
    }


@pytest.mark.parametrize(("model", "dynamic"), FLOWS, ids=IDS)
def test_the_plan_of_a_model_file_applies_to_the_model(
    model: str, dynamic: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from portmeta_fx import apply_plan

    with patch_convert_pt2e():
        gm = quantize_pt2e_convert(prepared(model, dynamic))
    keys = ("stack_trace", "quantization_tag")
    ported = {q: {k: n.meta.get(k) for k in keys} for q, n in _q_nodes(gm).items()}
    for node in _q_nodes(gm).values():  # back to a model with nothing ported
        for key in keys:
            node.meta.pop(key, None)
    path, plan_path = tmp_path / "model.json", tmp_path / "model.plan.json"
    dump(gm, path)
    assert _cli(capsys, "plan", path, "-o", plan_path)[0] == 0
    plan = portmeta.Plan.load(plan_path)
    sub = MODELS[model][2]
    assert any(d.target.startswith(f"{sub}:") for d in plan.deltas)

    undo = apply_plan(plan, gm)
    written = {d.target for d in plan.deltas}
    now = {q: {k: n.meta.get(k) for k in keys} for q, n in _q_nodes(gm).items()}
    assert {q: now[q] for q in written} == {q: ported[q] for q in written}
    assert apply_plan(plan, gm).entries == ()  # applied already: nothing to do
    undo.restore(gm)
    assert all(k not in n.meta for n in _q_nodes(gm).values() for k in keys)

    # the plan of the body alone applies to the body
    body_plan = tmp_path / "body.plan.json"
    assert _cli(capsys, "plan", path, "--graph", sub, "-o", body_plan)[0] == 0
    apply_plan(portmeta.Plan.load(body_plan), gm.get_submodule(sub))
    now = {q: {k: n.meta.get(k) for k in keys} for q, n in _q_nodes(gm).items()}
    assert {q: now[q] for q in written} == {q: ported[q] for q in written}
    # the top level quantizes nothing: the model is where the model's plan leaves it
    assert apply_plan(plan, gm).entries == ()
    next(iter(_q_nodes(gm).values())).meta["stack_trace"] = "edited"
    with pytest.raises(portmeta.StalePlanError, match="take a new snapshot and plan again") as e:
        apply_plan(plan, gm)
    # both readings of the model, the top level's own graph and all graphs merged
    own = portmeta.fingerprint(from_fx(gm))
    merged = portmeta.fingerprint(portmeta.merge_graphs(from_fx_graphs(gm)))
    assert f"graph fingerprint {own} or, all its graphs merged, {merged} " in str(e.value)


def quantize_pt2e_convert(model: torch.fx.GraphModule) -> torch.fx.GraphModule:
    from torchao.quantization.pt2e import quantize_pt2e

    return quantize_pt2e.convert_pt2e(model)
