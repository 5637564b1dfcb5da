"""``portmeta.check`` on real PT2E flows and through the drop-in pass (needs torch, torchao).

The holes real quantizers leave (three linears sharing one dynamic chain through XNNPACK's
dynamic quantizer; a cat whose inputs share a spec through X86Inductor's quantizer) are found
on the snapshot taken before porting (the pass's ``last_snapshot``) and on the converted model
(``from_fx``), with the same findings; ordinary flows have none.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from parity import (
    ATEN,
    Hand,
    TaggingQuantizer,
    annotate,
    dynamic_spec,
    port_keys_state,
    static_spec,
)
from test_parity_models import MLP, x86_dynamic, x86_static, xnn
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

import portmeta
from portmeta.check import check
from portmeta.testing import assert_no_findings
from portmeta_fx import PortNodeMetaForQDQ, from_fx, patch_convert_pt2e
from portmeta_fx.demo import prepared_model

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

# --------------------------------------------------------------------------- models


class QKV(torch.nn.Module):
    """Attention's Q/K/V projections: three linears reading one input."""

    def __init__(self) -> None:
        super().__init__()
        self.q = torch.nn.Linear(8, 8)
        self.k = torch.nn.Linear(8, 8)
        self.v = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2), -1)
        return scores @ self.v(x)


class CatNet(torch.nn.Module):
    """Two convs concatenated: the cat's inputs share a spec."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 4, 1)
        self.c2 = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.c1(x), self.c2(x)], 1)


class ResidualMLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.fc2 = torch.nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc2(torch.relu(self.fc1(x))) + x)


def convert(
    model: torch.nn.Module,
    inputs: tuple[Any, ...],
    make_quantizer: Callable[[], Any],
    *,
    fold: bool,
    check_mode: Any = "off",
) -> tuple[torch.fx.GraphModule, PortNodeMetaForQDQ]:
    """Export, prepare (tagging every partition), calibrate and convert with portmeta's pass."""
    torch.manual_seed(0)
    exported = torch.export.export(model.eval(), inputs, strict=False).module()
    prepared = prepare_pt2e(exported, TaggingQuantizer(make_quantizer()))
    with torch.no_grad():
        prepared(*inputs)
    with patch_convert_pt2e(check=check_mode) as created:
        converted = convert_pt2e(prepared, fold_quantize=fold)
    (p,) = created
    return converted, p


def before_and_after(converted: torch.fx.GraphModule, p: PortNodeMetaForQDQ) -> Any:
    """The findings on the snapshot before porting; asserts the converted model gives the same."""
    assert p.last_snapshot is not None and p.last_plan is not None
    before = check(p.last_snapshot)
    assert check(p.last_snapshot, plan=p.last_plan) == before
    after_snapshot = from_fx(converted)
    assert portmeta.fingerprint(after_snapshot) != portmeta.fingerprint(p.last_snapshot)
    assert check(after_snapshot) == before
    assert check(after_snapshot, ported=True) == before
    assert check(after_snapshot, plan=p.last_plan, ported=True) == before
    with pytest.raises(portmeta.StalePlanError):  # the converted graph is not the plan's
        check(after_snapshot, plan=p.last_plan)
    return before


# --------------------------------------------------------------------------- holes of real flows


@pytest.mark.parametrize("fold", [False, True], ids=["nofold", "fold"])
def test_qkv_linears_quantized_dynamically_share_one_chain(fold: bool) -> None:
    converted, p = convert(QKV(), (torch.randn(2, 4, 8),), xnn(True, True), fold=fold)
    found = before_and_after(converted, p)
    assert [(f.kind, f.cause, f.anchor) for f in found] == [
        ("unported_input", "shared", "linear"),
        ("unported_input", "shared", "linear_1"),
    ]
    dq = found[0].node
    assert found[1].node == dq and dq.startswith("dequantize_per_tensor")
    node = next(n for n in converted.graph.nodes if n.name == dq)
    assert node.meta["quantization_tag"] == "P_linear_2"  # the last linear's tag won
    assert "3 annotated consumers ('linear', 'linear_1', 'linear_2')" in found[0].message
    assert set(found[0].keys) == {"stack_trace", "quantization_tag"}


@pytest.mark.parametrize("fold", [False, True], ids=["nofold", "fold"])
def test_cat_of_inputs_sharing_a_spec(fold: bool) -> None:
    converted, p = convert(CatNet(), (torch.randn(1, 3, 4, 4),), x86_static, fold=fold)
    found = before_and_after(converted, p)
    assert [(f.kind, f.cause, f.anchor) for f in found] == [
        ("unported_input", "container", "cat"),
        ("unported_input", "container", "cat"),
    ]
    cat = next(n for n in converted.graph.nodes if n.name == "cat")
    assert {f.node for f in found} == {a.name for a in cat.args[0]}
    for n in cat.args[0]:
        assert "quantization_tag" not in n.meta  # what the finding says: left untagged


# --------------------------------------------------------------------------- ordinary flows


@pytest.mark.parametrize("fold", [False, True], ids=["nofold", "fold"])
def test_cat_through_x86_dynamic_output_quantize_is_not_foreign(fold: bool) -> None:
    """X86Inductor's dynamic config gives the cat (and the convs) an output spec while the
    consumers' chains are dynamic: the quantize right after an op carries the op's tag, as the
    output rule writes it; that is not a foreign_write."""
    converted, p = convert(CatNet(), (torch.randn(1, 3, 4, 4),), x86_dynamic, fold=fold)
    found = before_and_after(converted, p)
    # the real holes: the two convs read x through one dynamic chain (the last write won);
    # the cat's second input has a shared spec (static to upstream) inside the list
    assert [(f.kind, f.cause, f.anchor) for f in found] == [
        ("unported_input", "shared", "conv2d"),
        ("unported_input", "container", "cat"),
    ]
    assert p.last_plan is not None
    # the output rule writes the dynamic quantize right after the cat with the cat's values
    outputs = [d for d in p.last_plan.deltas if d.rule.value == "static_output"]
    assert outputs and {d.anchor for d in outputs} == {"cat"}
    (q,) = {d.target for d in outputs}
    assert q.startswith("quantize_per_tensor_tensor")  # dynamic: its scale is computed


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_demo_has_no_findings(dynamic: bool) -> None:
    prepared = prepared_model(dynamic=dynamic)
    with patch_convert_pt2e() as created:
        converted = convert_pt2e(prepared)
    assert before_and_after(converted, created[0]) == ()


FLOWS = {
    "xnn_static": xnn(True),
    "xnn_dynamic": xnn(True, True),
    "x86_static": x86_static,
    "x86_dynamic": x86_dynamic,
}


@pytest.mark.parametrize("model", [ResidualMLP, MLP])
@pytest.mark.parametrize("flow", list(FLOWS))
def test_ordinary_flows_have_no_findings(flow: str, model: type[torch.nn.Module]) -> None:
    converted, p = convert(model(), (torch.randn(3, 8),), FLOWS[flow], fold=True)
    assert p.last_plan is not None and p.last_plan.deltas  # the pass did port something
    assert before_and_after(converted, p) == ()
    assert_no_findings(from_fx(converted))


# --------------------------------------------------------------------------- foreign_write, hand-built


def two_chains() -> torch.fx.GraphModule:
    """lin_a and lin_b read x dynamically through two separate chains."""
    h = Hand()
    x = h.placeholder("x")
    chains = [h.dynamic_qdq(x), h.dynamic_qdq(x)]
    lins = []
    for name, c in zip(("lin_a", "lin_b"), chains, strict=True):
        w = h.get_attr(f"w_{name}")
        lin = h.call(ATEN.linear.default, c["dq"], w, name=name, tag=name, stack_trace=name)
        annotate(lin, {x: dynamic_spec()})
        lins.append(lin)
    return h.output(*lins)


def test_two_dynamic_chains_of_one_input_foreign_write() -> None:
    gm = two_chains()
    p = PortNodeMetaForQDQ(check="warn")
    with pytest.warns(portmeta.PortingWarning, match="5 findings"):
        p(gm)
    assert p.last_findings is not None
    assert p.last_snapshot is not None
    assert check(from_fx(gm)) == p.last_findings == check(p.last_snapshot)
    got = [(f.kind, f.node, f.anchor) for f in p.last_findings]
    assert got == [
        ("foreign_write", "choose_qparams_tensor", "lin_b"),
        ("foreign_write", "quantize_per_tensor_tensor", "lin_b"),
        ("unported_input", "dequantize_per_tensor_tensor", "lin_a"),
        ("foreign_write", "dequantize_per_tensor_tensor", "lin_b"),
        ("unported_input", "dequantize_per_tensor_tensor_1", "lin_b"),
    ]


def test_annotated_node_sharing_meta_with_a_written_dequantize() -> None:
    """FX ``A.meta = dqb.meta``: B's rule writes dqb, which changes A after A's rule copied
    A's values. The pass's findings and the ported check of the converted model agree."""
    h = Hand()
    x, y = h.placeholder("x"), h.placeholder("y")
    _, dqb = h.qdq(y)
    _, dqa = h.qdq(x)
    a = h.call(ATEN.relu.default, dqa, name="A")
    dqb.meta["quantization_tag"] = "A"
    dqb.meta["stack_trace"] = "sA"
    a.meta = dqb.meta
    annotate(a, {x: static_spec()})
    b = h.call(ATEN.relu.default, dqb, name="B", quantization_tag="B", stack_trace="sB")
    annotate(b, {y: static_spec()})
    gm = h.output(a, b)
    p = PortNodeMetaForQDQ(check="warn")
    with pytest.warns(portmeta.PortingWarning, match="1 finding"):
        p(gm)
    assert p.last_findings is not None
    assert [(f.kind, f.node, f.anchor, f.cause) for f in p.last_findings] == [
        ("unported_input", dqa.name, "A", "anchor_changed")
    ]
    assert check(from_fx(gm), ported=True) == p.last_findings
    assert a.meta["quantization_tag"] == "B" and dqa.meta["quantization_tag"] == "A"


# --------------------------------------------------------------------------- the drop-in option


def shared_chain() -> torch.fx.GraphModule:
    h = Hand()
    x = h.placeholder("x")
    c = h.dynamic_qdq(x)
    lins = []
    for i in range(3):
        w = h.get_attr(f"w{i}")
        lin = h.call(ATEN.linear.default, c["dq"], w, name=f"lin{i}", tag=f"L{i}")
        annotate(lin, {x: dynamic_spec()})
        lins.append(lin)
    return h.output(*lins)


def test_check_off_is_upstreams_behaviour() -> None:
    gm = shared_chain()
    p = PortNodeMetaForQDQ()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p(gm)
    assert p.check == "off" and p.last_findings is None


def test_check_warn_writes_the_same_and_warns_once_per_call() -> None:
    off, warn = shared_chain(), shared_chain()
    PortNodeMetaForQDQ(check="off")(off)
    p = PortNodeMetaForQDQ(check="warn")
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p(warn)
        ours = [w for w in caught if issubclass(w.category, portmeta.PortingWarning)]
        assert len(ours) == 1
        message = str(ours[0].message)
        # one finding per line, each with what to do, then where they all are
        lines = message.splitlines()
        assert lines[0] == "portmeta check: 2 findings"
        assert lines[1].startswith("  - 'dequantize_per_tensor_tensor' feeds ")
        assert lines[2].startswith("    to fix: ") and lines[2].endswith("(docs/check.md#shared)")
        assert lines[3].startswith("  - ") and lines[4].startswith("    to fix: ")
        assert lines[5:] == ["  (all of them in the pass's last_findings)"]
        assert ours[0].filename == __file__  # points at the caller
        assert ours[0].message.findings == p.last_findings  # type: ignore[union-attr]
    assert port_keys_state(warn, ("quantization_tag",)) == port_keys_state(
        off, ("quantization_tag",)
    )


def test_check_raise_raises_before_writing() -> None:
    gm = shared_chain()
    untouched = port_keys_state(gm, ("stack_trace", "quantization_tag"))
    p = PortNodeMetaForQDQ(check="raise")
    with pytest.raises(portmeta.PortingCheckError, match="2 findings, nothing written") as info:
        p(gm)
    assert port_keys_state(gm, ("stack_trace", "quantization_tag")) == untouched
    assert info.value.findings == p.last_findings
    assert p.last_findings is not None and len(p.last_findings) == 2


def test_check_raise_on_a_clean_graph_writes() -> None:
    from parity import static_model

    gm = static_model()
    p = PortNodeMetaForQDQ(check="raise")
    p(gm)
    assert p.last_findings == ()
    assert any("quantization_tag" in n.meta for n in gm.graph.nodes if "dequantize" in n.name)


def test_check_option_is_validated() -> None:
    with pytest.raises(portmeta.OptionError, match="check must be 'off', 'warn' or 'raise'"):
        PortNodeMetaForQDQ(check="loud")  # type: ignore[arg-type]


def test_convert_pt2e_with_check_raise() -> None:
    """Through convert_pt2e, torch's PassManager wraps the error; its cause is ours."""
    with pytest.raises(Exception) as info:
        convert(QKV(), (torch.randn(2, 4, 8),), xnn(True, True), fold=False, check_mode="raise")
    cause = (
        info.value if isinstance(info.value, portmeta.PortingCheckError) else info.value.__cause__
    )
    assert isinstance(cause, portmeta.PortingCheckError)
    assert len(cause.findings) == 2


def test_convert_pt2e_with_check_warn_points_at_the_caller() -> None:
    """Inside convert_pt2e the warning points at the line calling convert_pt2e, not at torch's
    pass manager, and says where all the findings are."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, p = convert(
            QKV(), (torch.randn(2, 4, 8),), xnn(True, True), fold=False, check_mode="warn"
        )
    ours = [w for w in caught if issubclass(w.category, portmeta.PortingWarning)]
    assert len(ours) == 1
    assert ours[0].filename == __file__
    assert "(all of them in the pass's last_findings)" in str(ours[0].message)
    assert p.last_findings is not None and len(p.last_findings) == 2


def one_tag_chain() -> torch.fx.GraphModule:
    """Q/K/V linears tagged as one partition, each with its own stack trace."""
    h = Hand()
    x = h.placeholder("x")
    c = h.dynamic_qdq(x)
    lins = []
    for i in range(3):
        lin = h.call(
            ATEN.linear.default,
            c["dq"],
            h.get_attr(f"w{i}"),
            name=f"lin{i}",
            tag="QKV",
            stack_trace=f"model.py:{i}",
        )
        annotate(lin, {x: dynamic_spec()})
        lins.append(lin)
    return h.output(*lins)


def test_check_keys_of_the_drop_in() -> None:
    """One partition (one tag): a stack_trace difference alone is not reported by default;
    check_keys=["stack_trace"] reports it."""
    p = PortNodeMetaForQDQ(check="raise")
    p(one_tag_chain())
    assert p.last_findings == ()
    strict = PortNodeMetaForQDQ(check="warn", check_keys=["stack_trace", "quantization_tag"])
    with pytest.warns(portmeta.PortingWarning, match="2 findings"):
        strict(one_tag_chain())
    assert strict.last_findings is not None
    assert {f.keys for f in strict.last_findings} == {("stack_trace",)}
    with pytest.raises(portmeta.OptionError, match="check_keys must be some of"):
        PortNodeMetaForQDQ(check="warn", check_keys=["nope"])
    with pytest.raises(portmeta.OptionError, match="not the string"):
        PortNodeMetaForQDQ(check="warn", check_keys="stack_trace")  # type: ignore[arg-type]
    with patch_convert_pt2e(check="warn", check_keys=["quantization_tag"]):
        from torchao.quantization.pt2e import quantize_pt2e

        assert quantize_pt2e.PortNodeMetaForQDQ().check_keys == ("quantization_tag",)


def test_last_findings_are_those_of_the_last_call() -> None:
    """A call that fails to plan leaves no findings behind from the call before it."""
    p = PortNodeMetaForQDQ(check="warn")
    with pytest.warns(portmeta.PortingWarning):
        p(shared_chain())
    assert p.last_findings is not None and len(p.last_findings) == 2
    h = Hand()
    x = h.placeholder("x")
    _, dq = h.qdq(x)
    lin = h.call(ATEN.linear.default, dq, h.get_attr("w"), name="lin", tag="L")
    annotate(lin, {x: dynamic_spec()})  # dynamic, but no choose_qparams: upstream raises
    with pytest.raises(ValueError, match="no choose_qparams"):
        p(h.output(lin))
    assert p.last_findings is None
    with pytest.warns(portmeta.PortingWarning, match="planning_error|rules of 'lin' fail"):
        PortNodeMetaForQDQ(errors="collect", check="warn")(h.module())


def test_random_fx_graphs_same_findings_before_and_after_porting() -> None:
    """fxgen's random graphs (shared meta dicts, reordered users, erased annotation inputs...),
    ported by the drop-in pass: the snapshot before and the one after give the same findings."""
    import fxgen
    from hypothesis import HealthCheck, given, settings

    counts = {"graphs": 0, "with_findings": 0}

    @settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
    @given(fxgen.recipes())
    def run(recipe: Any) -> None:
        gm = fxgen.build(recipe)
        p = PortNodeMetaForQDQ(errors="collect", check="warn")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", portmeta.PortingWarning)
            p(gm)
        assert p.last_snapshot is not None and p.last_findings is not None
        assert check(from_fx(gm), ported=True) == p.last_findings == check(p.last_snapshot)
        counts["graphs"] += 1
        counts["with_findings"] += bool(p.last_findings)

    run()
    assert counts["with_findings"] >= counts["graphs"] // 4, counts
