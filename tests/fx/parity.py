"""Comparison helpers for the FX parity tests: ours vs torchao's own ``PortNodeMetaForQDQ``.

Public API (other test modules import it):

* :func:`port_keys_state` ``(gm, keys) -> {node name: {key: value}}``
* :func:`assert_same_meta` ``(gm_ours, gm_theirs, keys)``

plus the flow helpers used by the parity tests (:func:`quantize_pair`, :class:`TaggingQuantizer`,
:func:`run_both_passes`) and the counters behind the session summary (:data:`STATS`).

Example
-------
>>> import torch
>>> g = torch.fx.Graph(); x = g.placeholder("x"); _ = g.output(x)
>>> x.meta["quantization_tag"] = "T"
>>> port_keys_state(torch.fx.GraphModule(torch.nn.Module(), g), ["quantization_tag"])
{'x': {'quantization_tag': 'T'}, 'output': {}}
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.fx

import portmeta
from portmeta.plan import same_value
from portmeta_fx import PortNodeMetaForQDQ, TagPartitions, patch_convert_pt2e

__all__ = [
    "ATEN",
    "KEYS",
    "QD",
    "Hand",
    "annotate",
    "dynamic_spec",
    "static_model",
    "static_spec",
    "STATS",
    "TaggingQuantizer",
    "assert_same_meta",
    "identity_signature",
    "port_keys_state",
    "quantize_pair",
    "run_both_passes",
    "tag_counts",
]

#: The keys torchao's pass ports.
KEYS = ("stack_trace", "quantization_tag")

#: Running totals of what :func:`assert_same_meta` compared (summed over workers by conftest).
STATS: dict[str, int] = {"graphs": 0, "nodes": 0, "present_values": 0}

_MISSING = object()


def _graph(gm: Any) -> torch.fx.Graph:
    return gm if isinstance(gm, torch.fx.Graph) else gm.graph


def port_keys_state(gm: Any, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Every node's value of each of ``keys`` that is present: ``{node name: {key: value}}``.

    Nodes in graph order; a node without any of the keys maps to ``{}``.
    """
    keys = tuple(keys)
    return {n.name: {k: n.meta[k] for k in keys if k in n.meta} for n in _graph(gm).nodes}


def identity_signature(gm: Any, keys: Iterable[str]) -> dict[tuple[str, str], tuple[str, str]]:
    """For every present ``(node, key)``, the first ``(node, key)`` holding the *same object*.

    Two graphs built the same way have equal signatures when the pass copied the same objects
    (upstream copies references, never values).
    """
    keys = tuple(keys)
    first: dict[int, tuple[str, str]] = {}
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for n in _graph(gm).nodes:
        for k in keys:
            if k in n.meta:
                out[(n.name, k)] = first.setdefault(id(n.meta[k]), (n.name, k))
    return out


def assert_same_meta(
    gm_ours: Any, gm_theirs: Any, keys: Sequence[str] = KEYS, *, identity: bool = True
) -> None:
    """Assert both graphs hold the same nodes and, for every key, the same presence and value.

    With ``identity`` also compare :func:`identity_signature` (which values are shared objects).
    The message lists every differing ``(node, key)``.
    """
    ours = port_keys_state(gm_ours, keys)
    theirs = port_keys_state(gm_theirs, keys)
    assert list(ours) == list(theirs), (
        f"graphs differ in nodes: ours {list(ours)!r}, theirs {list(theirs)!r}"
    )
    problems = []
    for name in ours:
        for k in keys:
            a, b = ours[name].get(k, _MISSING), theirs[name].get(k, _MISSING)
            if a is _MISSING and b is _MISSING:
                continue
            if a is _MISSING or b is _MISSING or not same_value(a, b):
                shown_a = "<absent>" if a is _MISSING else repr(a)[:80]
                shown_b = "<absent>" if b is _MISSING else repr(b)[:80]
                problems.append(f"{name}.meta[{k!r}]: ours {shown_a}, theirs {shown_b}")
    assert not problems, "metadata differs:\n" + "\n".join(problems)
    if identity:
        sig_ours, sig_theirs = (
            identity_signature(gm_ours, keys),
            identity_signature(gm_theirs, keys),
        )
        diff = [p for p in sig_ours if sig_ours[p] != sig_theirs.get(p)]
        assert not diff, f"object sharing differs at {diff[:10]!r}"
    STATS["graphs"] += 1
    STATS["nodes"] += len(ours)
    STATS["present_values"] += sum(len(v) for v in ours.values())


def tag_counts(gm: Any) -> dict[str, set[Any]]:
    """Tags by node kind, as torchao's ``test_metadata_porting`` records them.

    Keys: ``"get_attr"`` or ``str(target)`` of quantize / dequantize / choose_qparams ops.
    Raises ``AssertionError`` when two call_function nodes of one kind share a tag (upstream's
    check).
    """
    quant_ops = {
        "quantized_decomposed.quantize_per_tensor.default",
        "quantized_decomposed.dequantize_per_tensor.default",
        "quantized_decomposed.quantize_per_tensor.tensor",
        "quantized_decomposed.dequantize_per_tensor.tensor",
        "quantized_decomposed.quantize_per_channel.default",
        "quantized_decomposed.dequantize_per_channel.default",
        "quantized_decomposed.choose_qparams.tensor",
    }
    found: dict[str, set[Any]] = {}
    for n in _graph(gm).nodes:
        if "quantization_tag" not in n.meta:
            continue
        if n.op == "call_function" and str(n.target) in quant_ops:
            key = str(n.target)
        elif n.op == "get_attr":
            key = "get_attr"
        else:
            continue
        tags = found.setdefault(key, set())
        tag = n.meta["quantization_tag"]
        assert not (n.op == "call_function" and tag in tags), (
            f"{key} {n.format_node()} has tag {tag} already used by another node of that kind"
        )
        tags.add(tag)
    return found


# --------------------------------------------------------------------------- flows


def _tagger(prefix: str) -> Callable[[torch.fx.Node], str]:
    return lambda node: f"{prefix}_{node.name}"


def _vary_meta(gm: torch.fx.GraphModule, prefix: str) -> None:
    """After tagging, vary what the pass copies.

    A node a quantizer marked as handled without quantizing anything (no partition, so
    :class:`TagPartitions` left it) still gets a tag of its own, which the pass must not copy;
    every third annotated node (those included) gets ``stack_trace = None`` (presence, not
    truthiness, decides a copy); a weight an annotated node reads that its quantizer did not
    mark gets a stack trace of its own; every get_attr node still untagged gets a tag of its
    own (no stack trace).
    """
    count = 0
    for n in gm.graph.nodes:
        if n.meta.get("quantization_annotation") is None:
            continue
        n.meta.setdefault("quantization_tag", f"{prefix}_{n.name}")
        if count % 3 == 2:
            n.meta["stack_trace"] = None
        count += 1
        for arg in n.all_input_nodes:
            if (
                arg.op == "get_attr"
                and arg.meta.get("quantization_annotation") is None
                and "stack_trace" not in arg.meta
            ):
                arg.meta["stack_trace"] = f"weight {arg.name} of {n.name}"
    for n in gm.graph.nodes:  # weights no partition reads: tag them too
        if n.op == "get_attr" and "quantization_tag" not in n.meta:
            n.meta["quantization_tag"] = f"{prefix}_w_{n.name}"


class TaggingQuantizer(TagPartitions):
    """:class:`portmeta_fx.TagPartitions` tagging each partition ``P_<node name>``, then
    :func:`_vary_meta` (``None`` stack traces, weights with stack traces of their own)."""

    def __init__(self, inner: Any, prefix: str = "P") -> None:
        super().__init__(inner, tag=_tagger(prefix))
        self.prefix = prefix

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        model = super().annotate(model)
        _vary_meta(model, self.prefix)
        return model


def quantize_pair(
    model: torch.nn.Module,
    example_inputs: tuple[Any, ...],
    make_quantizer: Callable[[], Any],
    *,
    fold_quantize: bool = True,
    dynamic_shapes: Any = None,
    tag: bool = True,
    exported: torch.fx.GraphModule | None = None,
    profile: portmeta.Profile = portmeta.TORCHAO,
) -> tuple[torch.fx.GraphModule, torch.fx.GraphModule, list[PortNodeMetaForQDQ]]:
    """Export once, then prepare / calibrate / convert two copies: ours (patched, planning with
    ``profile``) and theirs.

    Returns ``(ours, theirs, passes)`` where ``passes`` are the portmeta pass instances that ran.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if exported is None:
        exported = torch.export.export(
            model, example_inputs, dynamic_shapes=dynamic_shapes, strict=False
        ).module()
    out = []
    passes: list[PortNodeMetaForQDQ] = []
    for ours in (True, False):
        m = copy.deepcopy(exported)
        quantizer = make_quantizer()
        if tag:
            quantizer = TaggingQuantizer(quantizer)
        m = prepare_pt2e(m, quantizer)
        with torch.no_grad():
            m(*example_inputs)
        if ours:
            with patch_convert_pt2e(profile) as created:
                m = convert_pt2e(m, fold_quantize=fold_quantize)
            passes.extend(created)
        else:
            m = convert_pt2e(m, fold_quantize=fold_quantize)
        out.append(m)
    return out[0], out[1], passes


def run_both_passes(
    build: Callable[[], torch.fx.GraphModule], keys: Sequence[str] | None = None
) -> tuple[torch.fx.GraphModule, torch.fx.GraphModule, Any, Any]:
    """Build the graph twice; run ours on one and torchao's on the other.

    Returns ``(ours_gm, theirs_gm, our_outcome, their_outcome)`` where an outcome is the
    ``PassResult`` or the exception raised.
    """
    from torchao.quantization.pt2e.quantizer.port_metadata_pass import (
        PortNodeMetaForQDQ as Upstream,
    )

    ours_gm, theirs_gm = build(), build()
    outcomes: list[Any] = []
    for gm, p in ((ours_gm, PortNodeMetaForQDQ(keys=keys)), (theirs_gm, Upstream())):
        try:
            outcomes.append(p(gm))
        except BaseException as exc:  # StopIteration too
            outcomes.append(exc)
    return ours_gm, theirs_gm, outcomes[0], outcomes[1]


# --------------------------------------------------------------------------- hand-built graphs

QD = torch.ops.quantized_decomposed
ATEN = torch.ops.aten


def static_spec() -> Any:
    """A real static ``QuantizationSpec`` (XNNPACK test config's activation spec)."""
    from torchao.testing.pt2e._xnnpack_quantizer import get_symmetric_quantization_config

    return get_symmetric_quantization_config().input_activation


def dynamic_spec() -> Any:
    """A real ``QuantizationSpec`` with ``is_dynamic=True``."""
    from torchao.testing.pt2e._xnnpack_quantizer import get_symmetric_quantization_config

    return get_symmetric_quantization_config(is_dynamic=True).input_activation


def annotate(node: torch.fx.Node, inputs: dict[Any, Any], output: Any = None) -> None:
    """Attach a real ``QuantizationAnnotation``."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    node.meta["quantization_annotation"] = QuantizationAnnotation(
        input_qspec_map=dict(inputs), output_qspec=output
    )


class Hand:
    """A tiny builder of quantized FX graphs by hand (``torch.fx.Graph`` + module root)."""

    def __init__(self) -> None:
        self.g = torch.fx.Graph()
        self.root = torch.nn.Module()

    def placeholder(self, name: str, **meta: Any) -> torch.fx.Node:
        return self._meta(self.g.placeholder(name), meta)

    def get_attr(self, name: str, **meta: Any) -> torch.fx.Node:
        self.root.register_buffer(name, torch.randn(4, 4))
        return self._meta(self.g.get_attr(name), meta)

    def call(self, target: Any, *args: Any, name: str | None = None, **meta: Any) -> torch.fx.Node:
        node = self.g.create_node("call_function", target, tuple(args), {}, name=name)
        return self._meta(node, meta)

    def qdq(self, x: torch.fx.Node) -> tuple[torch.fx.Node, torch.fx.Node]:
        q = self.call(QD.quantize_per_tensor.default, x, 0.1, 0, -128, 127, torch.int8)
        dq = self.call(QD.dequantize_per_tensor.default, q, 0.1, 0, -128, 127, torch.int8)
        return q, dq

    def dynamic_qdq(self, x: torch.fx.Node) -> dict[str, torch.fx.Node]:
        import operator

        cq = self.call(QD.choose_qparams.tensor, x, -128, 127, 1e-5, torch.int8)
        scale = self.call(operator.getitem, cq, 0)
        zp = self.call(operator.getitem, cq, 1)
        q = self.call(QD.quantize_per_tensor.tensor, x, scale, zp, -128, 127, torch.int8)
        dq = self.call(QD.dequantize_per_tensor.tensor, q, scale, zp, -128, 127, torch.int8)
        return {"cq": cq, "scale": scale, "zp": zp, "q": q, "dq": dq}

    def output(self, *values: Any) -> torch.fx.GraphModule:
        self.g.output(values[0] if len(values) == 1 else tuple(values))
        return self.module()

    def module(self) -> torch.fx.GraphModule:
        return torch.fx.GraphModule(self.root, self.g)

    @staticmethod
    def _meta(node: torch.fx.Node, meta: dict[str, Any]) -> torch.fx.Node:
        for k, v in meta.items():
            node.meta["quantization_tag" if k == "tag" else k] = v
        return node


def static_model(*, second_tag: bool = True) -> torch.fx.GraphModule:
    """x -> q -> dq -> linear(dq, dq(q(permute(w)))) -> q -> dq -> relu -> q -> dq -> output.

    Both ``linear`` and ``relu`` are annotated (static inputs, static output); the weight is
    read through a permute; several keys are present or absent on purpose.
    """
    h = Hand()
    x = h.placeholder("x", stack_trace="x.py:1")
    w = h.get_attr("w", tag="W", stack_trace="w.py:1")
    _q, dq = h.qdq(x)
    wt = h.call(ATEN.permute.default, w, [1, 0], name="wt")
    _wq, wdq = h.qdq(wt)
    lin = h.call(ATEN.linear.default, dq, wdq, name="linear", tag="L", stack_trace="m.py:3")
    annotate(lin, {x: static_spec(), wt: static_spec()}, static_spec())
    _oq, odq = h.qdq(lin)
    relu = h.call(ATEN.relu.default, odq, name="relu", stack_trace=None)
    if second_tag:
        relu.meta["quantization_tag"] = "R"
    annotate(relu, {lin: static_spec()}, static_spec())
    _rq, rdq = h.qdq(relu)
    return h.output(rdq)
