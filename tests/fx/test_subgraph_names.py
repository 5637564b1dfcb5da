"""Inside ``patch_convert_pt2e``, the pass of each graph ``convert_pt2e`` converts knows the
graph's qualified name, and its ``check`` warning and error say it: whether the user calls
``convert_pt2e`` through the module (the block's wrapper sees the top level) or through a name
imported before the block (the loop bodies are converted before the wrapper sees anything).

Two sources of conversions: a real one (a scan whose combine_fn feeds one dynamically quantized
input to two linears, a ``shared`` hole, through torchao's prepare/convert), and a stand-in for
torchao's ``convert_pt2e`` that converts nested bodies the way torchao converts one level
(torchao 0.18's own ``convert_pt2e`` fails on a loop inside a loop body).
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from parity import ATEN, Hand, annotate, dynamic_spec
from torch._higher_order_ops.scan import scan
from torch.fx.passes.infra.pass_manager import PassManager
from torchao.quantization.pt2e import quantize_pt2e
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e  # bound before any block

import portmeta
from portmeta_fx import patch_convert_pt2e

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

BODY = "scan_combine_graph_0"


class ScanQK(torch.nn.Module):
    """``scan`` whose combine_fn feeds ``carry + x`` to two linears."""

    def __init__(self) -> None:
        super().__init__()
        self.q = torch.nn.Linear(4, 4)
        self.k = torch.nn.Linear(4, 4)

    def forward(self, xs: torch.Tensor) -> Any:
        def combine(carry: torch.Tensor, x: torch.Tensor) -> Any:
            h = carry + x
            y = self.q(h) + self.k(h)
            return y, y.clone()

        return scan(combine, torch.zeros(4), xs)


@functools.cache
def _exported() -> torch.fx.GraphModule:
    torch.manual_seed(0)
    return torch.export.export(ScanQK().eval(), (torch.randn(3, 4),), strict=False).module()


def prepared() -> torch.fx.GraphModule:
    """Dynamic XNNPACK: the two linears share one choose_qparams chain in the loop body."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    from torchao.testing.pt2e._xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
        return prepare_pt2e(copy.deepcopy(_exported()), XNNPACKQuantizer().set_global(config))


def through_module(model: torch.fx.GraphModule) -> Any:
    return quantize_pt2e.convert_pt2e(model)  # looked up now: the block's wrapper


def through_name(model: torch.fx.GraphModule) -> Any:
    return convert_pt2e(model)  # the function itself, bound at import


CALLS = {"module": through_module, "name": through_name}


def _portmeta_warnings(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if issubclass(w.category, portmeta.PortingWarning)]


@pytest.mark.parametrize("how", list(CALLS))
def test_the_warning_names_the_loop_body_and_points_at_the_call(how: str) -> None:
    call = CALLS[how]
    model = prepared()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with patch_convert_pt2e(check="warn") as passes:
            call(model)
    assert [p.graph_name for p in passes] == [BODY, ""]
    body_findings = passes[0].last_findings
    assert body_findings and {f.cause for f in body_findings} == {"shared"}
    assert passes[1].last_findings == ()
    ours = _portmeta_warnings(caught)
    assert len(ours) == 1
    message = str(ours[0].message)
    assert message.splitlines()[0] == f"portmeta check: 1 finding in subgraph {BODY!r}"
    assert ours[0].message.graph == BODY  # type: ignore[union-attr]
    assert ours[0].message.findings == body_findings  # type: ignore[union-attr]
    # the user's line: the call of convert_pt2e in this file's helper
    assert ours[0].filename == __file__
    assert "convert_pt2e(model)" in _line(ours[0])


def _line(w: warnings.WarningMessage) -> str:
    with open(w.filename) as f:
        return f.readlines()[w.lineno - 1]


@pytest.mark.parametrize(("how", "graph"), [("module", BODY), ("name", None)])
def test_check_raise_names_the_loop_body_where_it_is_known(how: str, graph: str | None) -> None:
    call = CALLS[how]
    with pytest.raises(Exception) as info, patch_convert_pt2e(check="raise") as passes:
        call(prepared())
    error = info.value.__cause__
    assert isinstance(error, portmeta.PortingCheckError)
    assert error.graph == graph
    inside = f"in subgraph {BODY!r}" if graph else "in a subgraph (its name is not known)"
    assert str(error).splitlines()[0] == f"portmeta check: 1 finding {inside}, nothing written"
    assert error.findings == passes[0].last_findings


# ----------------------------------------------------------- nested bodies, a stand-in convert


def _body(inner: torch.fx.GraphModule | None = None) -> torch.fx.GraphModule:
    """Three linears on one dynamically quantized input, each tagged apart: a ``shared`` hole
    (2 findings); with ``inner``, a ``get_attr`` of it as a loop body would be."""
    h = Hand()
    x = h.placeholder("x")
    c = h.dynamic_qdq(x)
    outputs: list[Any] = []
    for i in range(3):
        w = h.get_attr(f"w{i}")
        lin = h.call(ATEN.linear.default, c["dq"], w, name=f"lin{i}", tag=f"L{i}")
        annotate(lin, {x: dynamic_spec()})
        outputs.append(lin)
    if inner is not None:
        h.root.add_module("inner_graph", inner)
        outputs.append(h.g.get_attr("inner_graph"))
    return h.output(*outputs)


def _top() -> torch.fx.GraphModule:
    """A top level that quantizes nothing, with ``body_graph`` whose own body is
    ``inner_graph``."""
    h = Hand()
    h.placeholder("x")
    h.root.add_module("body_graph", _body(_body()))
    return h.output(h.g.get_attr("body_graph"))


NESTED = ["body_graph.inner_graph", "body_graph", ""]


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """torchao's ``convert_pt2e`` reduced to what matters here: convert each body by calling
    ``quantize_pt2e.convert_pt2e`` on it, then port the graph with
    ``quantize_pt2e.PortNodeMetaForQDQ()`` in a ``PassManager``; the top level fails on
    request (``fail_top=True``)."""

    def convert(model: torch.fx.GraphModule, fail_top: bool = False) -> Any:
        for node in model.graph.nodes:
            if node.op == "get_attr" and node.target.endswith("_graph"):
                body = model.get_submodule(node.target)
                setattr(model, node.target, quantize_pt2e.convert_pt2e(body))
        if fail_top and any(n.target == "body_graph" for n in model.graph.nodes):
            raise RuntimeError("the top level failed")
        return PassManager([quantize_pt2e.PortNodeMetaForQDQ()])(model).graph_module

    monkeypatch.setattr(quantize_pt2e, "convert_pt2e", convert)
    yield convert


@pytest.mark.parametrize("how", ["module", "name"])
def test_nested_bodies_are_named_from_the_top_level(how: str, stand_in: Callable[..., Any]) -> None:
    call = (lambda m: quantize_pt2e.convert_pt2e(m)) if how == "module" else stand_in
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with patch_convert_pt2e(check="warn") as passes:
            call(_top())
    assert [p.graph_name for p in passes] == NESTED
    ours = _portmeta_warnings(caught)
    assert [w.message.graph for w in ours] == NESTED[:2]  # type: ignore[union-attr]
    assert all(len(w.message.findings) == 2 for w in ours)  # type: ignore[union-attr]
    assert all(w.filename == __file__ for w in ours)


def test_warnings_held_when_the_top_level_fails_are_issued_at_the_end_of_the_block(
    stand_in: Callable[..., Any],
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with (
            pytest.raises(RuntimeError, match="the top level failed"),
            patch_convert_pt2e(check="warn") as passes,
        ):
            stand_in(_top(), fail_top=True)
    assert [p.graph_name for p in passes] == [None, None]
    ours = _portmeta_warnings(caught)
    assert len(ours) == 2 and all(w.filename == __file__ for w in ours)
    assert all(w.message.graph is None for w in ours)  # type: ignore[union-attr]
    assert "in a subgraph (its name is not known)" in str(ours[0].message)
    assert quantize_pt2e.convert_pt2e is stand_in  # the block put back what it found


def test_a_block_inside_another_still_sees_torchaos_function(stand_in: Callable[..., Any]) -> None:
    with patch_convert_pt2e(), patch_convert_pt2e(check="off") as inner:
        stand_in(_top())  # a name bound before both blocks
    assert [p.graph_name for p in inner] == NESTED
    assert quantize_pt2e.convert_pt2e is stand_in


def test_a_convert_pt2e_that_is_no_function_is_wrapped_too(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(quantize_pt2e, "convert_pt2e", functools.partial(calls.append))
    with patch_convert_pt2e():
        quantize_pt2e.convert_pt2e("model")
    assert calls == ["model"]


def test_warnings_made_errors_do_not_hide_the_failure(stand_in: Callable[..., Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", portmeta.PortingWarning)
        with (
            pytest.raises(RuntimeError, match="the top level failed") as info,
            patch_convert_pt2e(check="warn"),
        ):
            stand_in(_top(), fail_top=True)
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 2
    assert all(
        n.startswith("PortingWarning: portmeta check: 2 findings in a subgraph") for n in notes
    )


def test_what_a_failed_conversion_held_is_issued_by_the_next_one(
    stand_in: Callable[..., Any],
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with patch_convert_pt2e(check="warn") as passes:
            with pytest.raises(RuntimeError):
                stand_in(_top(), fail_top=True)
            assert _portmeta_warnings(caught) == []  # held: their names may still come
            stand_in(_top())
            graphs = [w.message.graph for w in _portmeta_warnings(caught)]  # type: ignore[union-attr]
    # the second conversion names its own bodies, then gives up on the first one's
    assert graphs == ["body_graph.inner_graph", "body_graph", None, None]
    assert [p.graph_name for p in passes] == [None, None, *NESTED]
