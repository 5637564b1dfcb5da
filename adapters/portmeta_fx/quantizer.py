"""Tag partitions on top of any torchao quantizer, and the small quantizer the demo uses.

Backends (ExecuTorch delegates, compilers) find "the quantized pattern" through
``node.meta["quantization_tag"]``, which the PT2E ``convert`` copies from each annotated node
onto the quantize / dequantize nodes it inserts (``PortNodeMetaForQDQ``, the pass portmeta is
about). torchao's quantizers annotate but do not tag; :class:`TagPartitions` wraps any of them
and tags what it annotated, the way a backend tags its partitions:

* every annotated node (an annotation with input specs or an output spec: the nodes the pass
  ports from; the empty "handled" annotations torchao leaves on weights and biases are not
  partitions) gets a tag of its own, ``<op>_<k>`` (``conv2d_0``, ``linear_1``: ``k`` counts
  that op's tags in graph order), or the one your ``tag(node)`` function gives;
* the weight / bias ``get_attr`` nodes an annotated node reads (directly or through the view
  ops the pass walks through) get that node's tag;
* a tag already set (by the quantizer, or by you) is never changed.

:class:`DemoQuantizer` annotates like a backend would, without tagging: static int8
``conv2d``, ``adaptive_avg_pool2d`` and ``linear`` (per-tensor affine activations,
per-channel symmetric weights, float bias), the pool's output sharing its input's observer
(``SharedQuantizationSpec``). With ``dynamic_linear=True`` the linear's activation input is
quantized dynamically (``is_dynamic=True``, choose_qparams at run time) and its output is left
in float. The demo runs ``TagPartitions(DemoQuantizer())``.

This module imports torchao (``import portmeta_fx`` does not; ``portmeta_fx.TagPartitions``
imports it on first use).

Example
-------
>>> import torch
>>> from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
>>> m = torch.nn.Sequential(torch.nn.Linear(4, 2)).eval()
>>> gm = torch.export.export(m, (torch.randn(1, 4),)).module()
>>> prepared = prepare_pt2e(gm, TagPartitions(DemoQuantizer()))
>>> sorted(n.meta["quantization_tag"] for n in prepared.graph.nodes if "quantization_tag" in n.meta)
['linear_0', 'linear_0', 'linear_0']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

import torch
import torch.fx
from torchao.quantization.pt2e import (  # type: ignore[import-untyped]
    MinMaxObserver,
    PerChannelMinMaxObserver,
    PlaceholderObserver,
)
from torchao.quantization.pt2e.quantizer import (  # type: ignore[import-untyped]
    QuantizationAnnotation,
    QuantizationSpec,
    Quantizer,
    SharedQuantizationSpec,
)

import portmeta
from portmeta.profiles import TORCHAO
from portmeta.records import TargetKind

from .snapshot import Q_ANNOTATION_KEY, module_path, subgraph_modules, target_of

__all__ = [
    "TAG_KEY",
    "TagPartitions",
    "is_partition",
    "tag_partitions",
    "DemoQuantizer",
    "static_activation_spec",
    "dynamic_activation_spec",
    "weight_spec",
]

#: The metadata key backends tag partitions with (one of the keys the pass ports).
TAG_KEY = "quantization_tag"


aten = torch.ops.aten


# --------------------------------------------------------------------------- tagging


def is_partition(node: torch.fx.Node) -> bool:
    """Whether ``node`` is annotated with input specs or an output spec.

    Those are the nodes ``PortNodeMetaForQDQ`` ports from (the annotation upstream calls
    valid). The empty annotations torchao's quantizers leave on the weights and biases they
    handled (``QuantizationAnnotation(_annotated=True)``) are not.

    Example
    -------
    >>> g = torch.fx.Graph(); x = g.placeholder("x")
    >>> relu = g.call_function(torch.ops.aten.relu.default, (x,))
    >>> relu.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=weight_spec())
    >>> x.meta["quantization_annotation"] = QuantizationAnnotation()
    >>> is_partition(relu), is_partition(x)
    (True, False)
    """
    annotation = node.meta.get(Q_ANNOTATION_KEY)
    if annotation is None:
        return False
    inputs = getattr(annotation, "input_qspec_map", None) or {}
    return len(inputs) > 0 or getattr(annotation, "output_qspec", None) is not None


def _op_name(node: torch.fx.Node) -> str:
    """The short name a default tag starts with: ``conv2d`` for ``aten.conv2d.default``."""
    target = target_of(node)
    parts = target.name.split(".")
    if target.kind is TargetKind.OVERLOAD and len(parts) > 2:
        return parts[-2]
    if target.kind is TargetKind.NAME:  # a module or method name: keep its path readable
        return target.name.replace(".", "_")
    return parts[-1]


def _weights(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The ``get_attr`` nodes ``node`` reads, directly or through the pass's view ops."""
    found = []
    for arg in node.all_input_nodes:
        while arg.op == "call_function" and target_of(arg) in TORCHAO.view_ops and arg.args:
            source = arg.args[0]
            if not isinstance(source, torch.fx.Node):
                break
            arg = source
        if arg.op == "get_attr" and arg not in found:
            found.append(arg)
    return found


def tag_partitions(
    graph: torch.fx.Graph | torch.fx.GraphModule,
    tag: Callable[[torch.fx.Node], str | None] | None = None,
    taken: Collection[str] = (),
) -> dict[str, list[str]]:
    """Tag the annotated nodes of an annotated graph in place (what :class:`TagPartitions` runs).

    For a graph a quantizer has just annotated (``quantizer.annotate(gm)``; after
    ``prepare_pt2e`` the weights sit behind observers and are not found). ``tag`` is
    :class:`TagPartitions`'s. A default tag is never one the graph holds already, nor one of
    ``taken`` (the tags of the model's other graphs). Returns ``{tag: [names of the nodes
    tagged]}`` in graph order.

    Example
    -------
    >>> g = torch.fx.Graph(); x = g.placeholder("x")
    >>> w = g.get_attr("w")
    >>> lin = g.call_function(torch.ops.aten.linear.default, (x, w), name="linear")
    >>> lin.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=weight_spec())
    >>> tag_partitions(g)
    {'linear_0': ['linear', 'w']}
    >>> tag_partitions(g)   # tags already set are kept
    {}
    """
    nodes = list(graph.graph.nodes if isinstance(graph, torch.fx.GraphModule) else graph.nodes)
    used = {n.meta[TAG_KEY] for n in nodes if isinstance(n.meta.get(TAG_KEY), str)} | set(taken)
    counts: Counter[str] = Counter()
    tagged: dict[str, list[str]] = {}

    def default(node: torch.fx.Node) -> str:
        base = _op_name(node)
        while True:
            name = f"{base}_{counts[base]}"
            counts[base] += 1
            if name not in used:
                return name

    for node in nodes:
        if not is_partition(node):
            continue
        if TAG_KEY in node.meta:
            value = node.meta[TAG_KEY]
        else:
            value = default(node) if tag is None else tag(node)
            if value is None:
                continue
            if not isinstance(value, str):
                raise TypeError(
                    f"tag({node.name!r}) returned {value!r}: a tag is a str (or None: untagged)"
                )
            node.meta[TAG_KEY] = value
            tagged.setdefault(value, []).append(node.name)
        if value is None:
            continue
        for weight in _weights(node):
            if TAG_KEY not in weight.meta:
                weight.meta[TAG_KEY] = value
                tagged.setdefault(value, []).append(weight.name)
    return tagged


class TagPartitions(Quantizer):  # type: ignore[misc]
    """Wrap a quantizer: annotate with it, then tag each annotated node as one partition.

    ``prepare_pt2e(model, TagPartitions(quantizer))`` annotates exactly as ``quantizer`` does
    (``transform_for_annotation``, ``annotate``, ``validate`` and
    ``prepare_obs_or_fq_callback`` are the wrapped quantizer's), then, in graph order, gives
    each annotated node (see :func:`is_partition`) without a ``quantization_tag`` one, and
    gives the untagged ``get_attr`` nodes it reads (weights, biases; also through the view ops
    the pass walks through) the same tag. ``convert_pt2e`` then ports those tags onto the
    quantize / dequantize / choose_qparams nodes around each partition.

    Parameters
    ----------
    quantizer:
        Any torchao PT2E quantizer (``XNNPACKQuantizer``, ``X86InductorQuantizer``,
        ``ComposableQuantizer``, your own).
    tag:
        ``tag(node) -> str | None``, called once per untagged annotated node in graph order:
        the node's tag, or ``None`` to leave it (and its weights) untagged. Return one string
        for several nodes to make them one partition. Default: ``<op>_<k>``, the op's short
        name (``conv2d`` for ``aten.conv2d.default``) and how many tags that op got before,
        skipping tags the graph already holds.

    Attributes
    ----------
    partitions:
        After ``prepare_pt2e``: ``{tag: [names of the nodes this wrapper tagged]}``, in graph
        order (nodes that kept their own tag are not listed). For a model with ``scan`` /
        ``while_loop`` loop bodies, which ``prepare_pt2e`` annotates after the model itself,
        the tags are the whole model's: a loop body's default tags go on counting from the
        model's (``linear_1`` after the top level's ``linear_0``), and its nodes are listed as
        ``GRAPH:node`` (``scan_combine_graph_0:linear``), as :func:`portmeta.merge_graphs`
        names them.

    Example
    -------
    >>> import torch
    >>> from collections import OrderedDict
    >>> from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    >>> from torchao.testing.pt2e._xnnpack_quantizer import (
    ...     XNNPACKQuantizer, get_symmetric_quantization_config)
    >>> fc1, act, fc2 = torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
    >>> model = torch.nn.Sequential(OrderedDict(fc1=fc1, act=act, fc2=fc2)).eval()
    >>> example = (torch.randn(1, 4),)
    >>> xnnpack = XNNPACKQuantizer().set_global(get_symmetric_quantization_config())
    >>> quantizer = TagPartitions(xnnpack)
    >>> prepared = prepare_pt2e(torch.export.export(model, example).module(), quantizer)
    >>> quantizer.partitions
    {'linear_0': ['linear', 'fc1_weight', 'fc1_bias'], 'relu_0': ['relu'],
     'linear_1': ['linear_1', 'fc2_weight', 'fc2_bias']}
    >>> _ = prepared(*example)                   # calibrate
    >>> converted = convert_pt2e(prepared)
    >>> for n in converted.graph.nodes:          # the tags the q/dq nodes got
    ...     if n.op == "call_function" and "quantize_per_tensor" in n.name:
    ...         print(n.name, n.meta.get("quantization_tag"))
    dequantize_per_tensor_default linear_0
    dequantize_per_tensor_default_1 linear_1
    quantize_per_tensor_default_2 None
    dequantize_per_tensor_default_2 linear_0
    quantize_per_tensor_default_3 relu_0
    dequantize_per_tensor_default_3 linear_1
    quantize_per_tensor_default_4 linear_1
    dequantize_per_tensor_default_4 None

    The two first dequantize nodes are the weights' (``convert_pt2e`` folded their quantize);
    the model's input quantize and output dequantize belong to no partition. Your own
    grouping, here a ReLU joining the partition of the op before it:

    >>> def with_relu(node):
    ...     source = node.args[0] if node.target == torch.ops.aten.relu.default else node
    ...     return f"{source.name}_part"
    >>> quantizer = TagPartitions(xnnpack, tag=with_relu)
    >>> _ = prepare_pt2e(torch.export.export(model, example).module(), quantizer)
    >>> quantizer.partitions
    {'linear_part': ['linear', 'fc1_weight', 'fc1_bias', 'relu'],
     'linear_1_part': ['linear_1', 'fc2_weight', 'fc2_bias']}
    """

    def __init__(
        self,
        quantizer: Quantizer,
        *,
        tag: Callable[[torch.fx.Node], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.tag = tag
        self.partitions: dict[str, list[str]] = {}
        self._taken: set[str] = set()  # the tags of the model's graphs annotated so far
        self._bodies: list[tuple[torch.fx.GraphModule, str]] = []  # loop bodies still to come

    def transform_for_annotation(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        """The wrapped quantizer's ``transform_for_annotation``."""
        out: torch.fx.GraphModule = self.quantizer.transform_for_annotation(model)
        return out

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        """Annotate with the wrapped quantizer, then tag (in place); returns the model.

        A model that is none of the loop bodies of the model annotated before starts a new
        model: :attr:`partitions` starts again.
        """
        graph_name = next((name for body, name in self._bodies if body is model), None)
        if graph_name is None:
            graph_name, self.partitions, self._taken, self._bodies = "", {}, set(), []
        bodies = subgraph_modules(model)
        model = self.quantizer.annotate(model) or model
        tagged = tag_partitions(model.graph, self.tag, self._taken)
        for tag, names in tagged.items():
            found = self.partitions.setdefault(tag, [])
            found.extend(portmeta.qualified_node(graph_name, name) for name in names)
        self._taken.update(
            n.meta[TAG_KEY] for n in model.graph.nodes if isinstance(n.meta.get(TAG_KEY), str)
        )
        self._bodies = [(body, name) for body, name in self._bodies if body is not model]
        self._bodies.extend(
            (body, module_path(graph_name, name)) for name, body in bodies.items() if name
        )
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        """The wrapped quantizer's ``validate``."""
        self.quantizer.validate(model)

    def prepare_obs_or_fq_callback(
        self, model: torch.fx.GraphModule, edge_or_node_to_obs_or_fq: dict[Any, Any]
    ) -> None:
        """The wrapped quantizer's ``prepare_obs_or_fq_callback``."""
        self.quantizer.prepare_obs_or_fq_callback(model, edge_or_node_to_obs_or_fq)

    def __repr__(self) -> str:
        return f"TagPartitions({self.quantizer!r})"


# --------------------------------------------------------------------------- the demo's quantizer


def static_activation_spec() -> QuantizationSpec:
    """Static per-tensor affine int8, observed with a min/max observer during calibration."""
    return QuantizationSpec(
        dtype=torch.int8,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_affine,
        is_dynamic=False,
        observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12),
    )


def dynamic_activation_spec() -> QuantizationSpec:
    """Dynamic per-tensor affine int8: choose_qparams computes scale/zero point at run time."""
    return QuantizationSpec(
        dtype=torch.int8,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_affine,
        is_dynamic=True,
        observer_or_fake_quant_ctr=PlaceholderObserver.with_args(is_dynamic=True),
    )


def weight_spec() -> QuantizationSpec:
    """Per-output-channel symmetric int8 weights."""
    return QuantizationSpec(
        dtype=torch.int8,
        quant_min=-127,
        quant_max=127,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
        is_dynamic=False,
        observer_or_fake_quant_ctr=PerChannelMinMaxObserver.with_args(eps=2**-12),
    )


class DemoQuantizer(Quantizer):  # type: ignore[misc]
    """Annotate conv2d / adaptive_avg_pool2d / linear as the demo's backend; tags nothing.

    Wrap it in :class:`TagPartitions` to tag the partitions (the demo does).

    Parameters
    ----------
    dynamic_linear:
        Quantize the linear's activation input dynamically (and leave its output float).

    Example
    -------
    >>> import torch
    >>> from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    >>> gm = torch.export.export(torch.nn.Linear(4, 2).eval(), (torch.randn(1, 4),)).module()
    >>> prepared = prepare_pt2e(gm, DemoQuantizer(dynamic_linear=True))
    >>> [n.name for n in prepared.graph.nodes if "quantization_tag" in n.meta]
    []
    """

    def __init__(self, *, dynamic_linear: bool = False) -> None:
        super().__init__()
        self.dynamic_linear = dynamic_linear

    @staticmethod
    def _mark(node: torch.fx.Node, annotation: QuantizationAnnotation) -> None:
        annotation._annotated = True
        node.meta[Q_ANNOTATION_KEY] = annotation

    # -- the patterns -----------------------------------------------------------------------
    def _conv_or_linear(self, node: torch.fx.Node, dynamic: bool) -> None:
        act, weight = node.args[0], node.args[1]
        assert isinstance(act, torch.fx.Node) and isinstance(weight, torch.fx.Node)
        act_spec = dynamic_activation_spec() if dynamic else static_activation_spec()
        self._mark(
            node,
            QuantizationAnnotation(
                input_qspec_map={act: act_spec, weight: weight_spec()},
                output_qspec=None if dynamic else static_activation_spec(),
            ),
        )

    def _pool(self, node: torch.fx.Node) -> None:
        act = node.args[0]
        assert isinstance(act, torch.fx.Node)
        self._mark(
            node,
            QuantizationAnnotation(
                input_qspec_map={act: static_activation_spec()},
                output_qspec=SharedQuantizationSpec((act, node)),
            ),
        )

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        """Annotate the supported ops of ``model`` in place; returns ``model``."""
        handlers: dict[object, Callable[[torch.fx.Node], None]] = {
            aten.conv2d.default: lambda n: self._conv_or_linear(n, False),
            aten.adaptive_avg_pool2d.default: self._pool,
            aten.linear.default: lambda n: self._conv_or_linear(n, self.dynamic_linear),
        }
        for node in model.graph.nodes:
            if node.op != "call_function" or node.target not in handlers:
                continue
            ann = node.meta.get(Q_ANNOTATION_KEY)
            if ann is not None and getattr(ann, "_annotated", False):
                continue
            handlers[node.target](node)
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        """Nothing to check: every annotation this quantizer makes is supported."""
