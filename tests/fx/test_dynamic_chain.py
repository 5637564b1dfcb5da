"""ExecuTorch-style flows: convert, duplicate the shared dynamic chain, port again.

Q/K/V projections (and a gated MLP's two projections) read one dynamically quantized input.
``convert_pt2e`` leaves one chain shared by all of them, carrying the last projection's values;
:class:`dup_chain.DuplicateDynamicChains` (like ExecuTorch's pass: ``node_copy``, metadata
copied) gives each projection a copy with those same values. Porting again with
``dynamic_chain="feeding"`` gives every copy its own consumer's ``stack_trace`` and
``quantization_tag``; with the search (upstream, and the default) the copies stay stale and
``portmeta.check(..., ported=True)`` reports them.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import attrs
import fxgen
import pytest
import torch
from dup_chain import DuplicateDynamicChains
from hypothesis import HealthCheck, given, settings
from parity import KEYS, TaggingQuantizer
from test_differential import check_recipe
from torch.fx.passes.infra.pass_manager import PassManager
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.testing.pt2e._xnnpack_quantizer import (
    XNNPACKQuantizer,
    get_symmetric_quantization_config,
)

import portmeta
from portmeta.rules import feeding_choose_qparams, find_choose_qparams
from portmeta_fx import PortNodeMetaForQDQ, from_fx

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

FEEDING = attrs.evolve(portmeta.TORCHAO, dynamic_chain="feeding")
_QD = torch.ops.quantized_decomposed


class Attention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = torch.nn.Linear(8, 8)
        self.k_proj = torch.nn.Linear(8, 8)
        self.v_proj = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        return torch.softmax(q @ k.transpose(-1, -2), -1) @ v


class GatedMLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate_proj = torch.nn.Linear(8, 16)
        self.up_proj = torch.nn.Linear(8, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x)


MODELS = {"qkv": (Attention, 3), "gated_mlp": (GatedMLP, 2)}
_EXPORTED: dict[str, tuple[torch.fx.GraphModule, tuple[Any, ...]]] = {}


def _converted(name: str) -> torch.fx.GraphModule:
    """Prepare (dynamic XNNPACK, partitions tagged) a copy of the exported model, calibrate,
    convert_pt2e (torchao's own pass). Not a deep copy of a converted model: its annotations
    would name the original's nodes."""
    if name not in _EXPORTED:
        torch.manual_seed(0)
        inputs = (torch.randn(2, 4, 8),)
        model = MODELS[name][0]().eval()
        _EXPORTED[name] = (torch.export.export(model, inputs, strict=False).module(), inputs)
    exported, inputs = _EXPORTED[name]
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
    )
    m = prepare_pt2e(copy.deepcopy(exported), TaggingQuantizer(quantizer))
    m(*inputs)
    return convert_pt2e(m, fold_quantize=False)


def _is(node: torch.fx.Node, *targets: Any) -> bool:
    return node.op == "call_function" and node.target in targets


def _chains(gm: torch.fx.GraphModule) -> dict[str, tuple[torch.fx.Node, ...]]:
    """Each linear reading a dynamic dequantize: ``name -> (choose_qparams, q, dq, linear)``."""
    out = {}
    for lin in gm.graph.nodes:
        if not _is(lin, torch.ops.aten.linear.default):
            continue
        dq = lin.args[0]
        if not _is(dq, _QD.dequantize_per_tensor.tensor):
            continue
        q = dq.args[0]
        out[lin.name] = (q.args[1].args[0], q, dq, lin)
    return out


def _values(node: torch.fx.Node) -> dict[str, Any]:
    return {k: node.meta[k] for k in KEYS if k in node.meta}


def _stale(gm: torch.fx.GraphModule) -> list[str]:
    """The chain nodes that do not carry their own linear's values."""
    return [
        f"{node.name} of {lin.name}"
        for cq, q, dq, lin in _chains(gm).values()
        for node in (cq, q, dq)
        if _values(node) != _values(lin)
    ]


@pytest.mark.parametrize("name", list(MODELS))
def test_convert_shares_one_chain_carrying_the_last_consumers_values(name: str) -> None:
    gm = _converted(name)
    chains = _chains(gm)
    assert len(chains) == MODELS[name][1]
    assert len({c[:3] for c in chains.values()}) == 1  # one shared chain
    last = list(chains.values())[-1][3]
    cq, q, dq, _ = next(iter(chains.values()))
    assert _values(cq) == _values(q) == _values(dq) == _values(last)
    assert len(_stale(gm)) == 3 * (MODELS[name][1] - 1)


@pytest.mark.parametrize("name", list(MODELS))
def test_duplicate_then_port_with_feeding_gives_every_copy_its_consumer(name: str) -> None:
    gm = _converted(name)
    port = PortNodeMetaForQDQ(profile=FEEDING)
    PassManager([DuplicateDynamicChains(), port])(gm)
    chains = _chains(gm)
    assert len({c[:3] for c in chains.values()}) == MODELS[name][1]  # one chain per consumer
    assert _stale(gm) == []
    for cq, q, dq, lin in chains.values():
        tag = lin.meta["quantization_tag"]
        assert cq.meta["quantization_tag"] == q.meta["quantization_tag"] == tag
        assert dq.meta["quantization_tag"] == tag
    assert port.last_plan is not None and not port.last_plan.diagnostics
    assert portmeta.check(from_fx(gm), FEEDING, ported=True) == ()
    assert portmeta.check(port.last_snapshot, plan=port.last_plan) == ()


@pytest.mark.parametrize("name", list(MODELS))
def test_without_the_option_the_check_reports_the_stale_copies(name: str) -> None:
    n = MODELS[name][1]
    duplicated = _converted(name)
    PassManager([DuplicateDynamicChains()])(duplicated)
    assert len(_stale(duplicated)) == 3 * (n - 1)  # node_copy kept the shared chain's values
    before = portmeta.check(from_fx(duplicated), ported=True)
    assert before, "the duplicated copies carry another projection's values"

    gm = _converted(name)
    # the search: every consumer lands on one chain
    PassManager([DuplicateDynamicChains(), PortNodeMetaForQDQ()])(gm)
    assert len(_stale(gm)) == 3 * (n - 1)
    after = portmeta.check(from_fx(gm), ported=True)
    # each stale copy is an unported input of its consumer; the search's writes onto the first
    # copy come from another projection (foreign_write)
    assert {f.kind for f in after} == {"unported_input", "foreign_write"}
    chains = _chains(gm)
    stale_consumers = {lin for lin in chains if _values(chains[lin][2]) != _values(chains[lin][3])}
    unported = {f.anchor for f in after if f.kind == "unported_input"}
    assert unported == stale_consumers and len(stale_consumers) == n - 1

    # the duplicated graph, ported with the option: clean
    PassManager([PortNodeMetaForQDQ(profile=FEEDING)])(duplicated)
    assert _stale(duplicated) == []
    assert portmeta.check(from_fx(duplicated), FEEDING, ported=True) == ()


@pytest.mark.parametrize("name", list(MODELS))
def test_before_duplication_feeding_ports_exactly_as_the_search(name: str) -> None:
    """On convert's shared chain both choose the same chain: the same writes."""
    ours, theirs = _converted(name), _converted(name)
    search, feeding = PortNodeMetaForQDQ(), PortNodeMetaForQDQ(profile=FEEDING)
    search(ours)
    feeding(theirs)
    assert search.last_plan is not None and feeding.last_plan is not None
    assert feeding.last_plan.deltas == search.last_plan.deltas


# --------------------------------------------------------------------------- random graphs


def _chooses_apart(recipe: Any) -> bool:
    """Whether, for some dynamic input of ``recipe``'s graph, the feeding chain's choose_qparams
    is not the one the search finds (several chains hang off that input)."""
    graph = from_fx(fxgen.build(recipe))
    for node in portmeta.annotated_nodes(graph):
        ann = portmeta.record(graph, node).annotation
        if ann is None or ann.malformed is not None:
            continue
        for inp in ann.inputs:
            if inp.qspec is None or not inp.qspec.dynamic or not inp.is_node:
                continue
            feeding = feeding_choose_qparams(graph, portmeta.TORCHAO, node, inp.node)
            searched = find_choose_qparams(graph, portmeta.TORCHAO, inp.node)
            if feeding is not None and (searched is None or searched[-1] != feeding[1]):
                return True
    return False


RANDOM: Counter[str] = Counter()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(recipe=fxgen.recipes())
def _feeding_parity(recipe: Any) -> None:
    if _chooses_apart(recipe):
        RANDOM["chains apart"] += 1
        return
    RANDOM[check_recipe(recipe, FEEDING)] += 1


def test_random_graphs_feeding_is_upstream_where_the_chains_agree() -> None:
    """fxgen's random graphs: wherever every consumer's feeding chain is the searched one (or it
    reads none), ``dynamic_chain="feeding"`` leaves exactly what torchao's pass leaves, errors
    included."""
    RANDOM.clear()
    _feeding_parity()
    print(f"feeding parity on random graphs: {dict(RANDOM)}")
    assert RANDOM["ported"] >= 30 and sum(RANDOM.values()) >= 200, dict(RANDOM)
