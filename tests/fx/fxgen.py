"""Random quantization-shaped FX graphs for the differential test (``test_differential.py``).

A graph is first drawn as a :class:`Recipe` (plain data: tuples, strings, numbers), then built
with :func:`build` as many times as needed; every build is identical (same node names, same
users order, same metadata, same annotation structure) but shares no node or spec object
with the others, so one copy can go to torchao's pass and another to portmeta's.

Recipe layout
-------------
``nodes``: ``NodeSpec(op, target, args, kwargs, name)`` in creation order; ``target`` is a key of
:data:`TARGETS` for ``call_function`` / ``call_method`` nodes and a plain string otherwise.
Argument values are ``("n", i)`` (node ``i``), ``("c", const)`` or ``("l", [values])`` (a list).
``ghosts``: indices of nodes erased after the graph is built (annotations may still name them).
``edits``: ``("reargs", i)`` (reassign ``node.args``: node ``i`` moves to the end of its inputs'
users), ``("replace", user, old, new)`` (``user.replace_input_with(old, new)``) or
``("share", i, j)`` (``node_j.meta = node_i.meta``, as passes that carry metadata over do).
``meta``: per node, ``(stack_trace, quantization_tag)`` choices: ``"absent"``, ``"none"``,
``"own"`` (a string unique to the node) or ``"shared"`` (one string shared by every node).
``anns``: ``(node, inputs, output)`` with ``inputs`` a tuple of ``(key, spec)`` (``key``: a node
index, or one of the odd keys of :func:`recipes`) and ``spec`` one of
``None``, ``("qs", is_dynamic)``, ``("shared", i)``, ``("shared_edge", i, j)``,
``("derived", is_dynamic)``, ``("fixed", is_dynamic)``.

Example
-------
>>> from hypothesis import given
>>> r = Recipe(nodes=(NodeSpec("placeholder", "x", (), (), "x"),
...                   NodeSpec("output", "output", (("l", [("n", 0)]),), (), "output")))
>>> [n.name for n in build(r).graph.nodes]
['x', 'output']
"""

from __future__ import annotations

import operator
import weakref
from typing import Any, NamedTuple

import torch
import torch.fx
import torchao  # noqa: F401  (registers the quantized_decomposed / torchao ops)
from hypothesis import strategies as st
from torchao.quantization.pt2e import MinMaxObserver
from torchao.quantization.pt2e.quantizer import (
    DerivedQuantizationSpec,
    FixedQParamsQuantizationSpec,
    QuantizationAnnotation,
    QuantizationSpec,
    SharedQuantizationSpec,
)

__all__ = ["KEYS", "TARGETS", "NodeSpec", "Recipe", "build", "recipes", "meta_state"]

KEYS = ("stack_trace", "quantization_tag")

_qd = torch.ops.quantized_decomposed
_ao = torch.ops.torchao
_aten = torch.ops.aten

#: target key -> FX target
TARGETS: dict[str, Any] = {
    # quantize (q_aff_d is the overload of a packet: NOT recognised)
    "q_pt": _qd.quantize_per_tensor.default,
    "q_pt_t": _qd.quantize_per_tensor.tensor,
    "q_pc": _qd.quantize_per_channel.default,
    "q_aff": _ao.quantize_affine,
    "q_aff_d": _ao.quantize_affine.default,
    # dequantize
    "dq_pt": _qd.dequantize_per_tensor.default,
    "dq_pt_t": _qd.dequantize_per_tensor.tensor,
    "dq_pc": _qd.dequantize_per_channel.default,
    "dq_aff": _ao.dequantize_affine,
    "dq_aff_d": _ao.dequantize_affine.default,
    # choose_qparams (only "cq" is also a workflow op of the connectivity walk)
    "cq": _qd.choose_qparams.tensor,
    "cq_sym": _qd.choose_qparams_symmetric.tensor,
    "cq_aff": _ao.choose_qparams_affine,
    "cq_aff_d": _ao.choose_qparams_affine.default,
    # view ops of the get_attr chain, and look-alikes that are not
    "permute": _aten.permute.default,
    "permute_copy": _aten.permute_copy.default,
    "transpose_int": _aten.transpose.int,
    "transpose_": _aten.transpose_,
    "transpose__d": _aten.transpose_.default,
    "mkldnn_t": _aten._mkldnn_transpose,
    "view": _aten.view.default,
    "view_copy": _aten.view_copy.default,
    "flatten": _aten.flatten.using_ints,
    "squeeze_dim": _aten.squeeze.dim,
    "squeeze_copy": _aten.squeeze_copy.dim,
    "slice_copy": _aten.slice_copy.Tensor,
    "t": _aten.t.default,
    "view_pkt": _aten.view,
    # sym-size users
    "sym_size_int": _aten.sym_size.int,
    "sym_size_d": _aten.sym_size.default,
    "sym_numel_d": _aten.sym_numel.default,
    "sym_size_p": _aten.sym_size,
    "sym_numel_p": _aten.sym_numel,
    # generic consumers
    "relu": _aten.relu.default,
    "add": _aten.add.Tensor,
    "mul": _aten.mul.Tensor,
    "linear": _aten.linear.default,
    "conv": _aten.conv2d.default,
    "cat": _aten.cat.default,
    "getitem": operator.getitem,
}

Q_KEYS = ("q_pt", "q_pt", "q_pt_t", "q_pc", "q_aff", "q_aff", "q_aff_d")
DQ_KEYS = ("dq_pt", "dq_pt", "dq_pt_t", "dq_pc", "dq_aff", "dq_aff", "dq_aff_d")
CQ_KEYS = ("cq", "cq", "cq_sym", "cq_aff", "cq_aff_d")
VIEW_KEYS = (
    "permute",
    "permute_copy",
    "transpose_int",
    "transpose_",
    "transpose__d",
    "mkldnn_t",
    "view",
    "view_copy",
    "flatten",
    "squeeze_dim",
    "squeeze_copy",
    "slice_copy",
    "t",
    "view_pkt",
    "relu",
)
SYM_KEYS = ("sym_size_int", "sym_size_d", "sym_numel_d", "sym_size_p", "sym_numel_p")
CONSUMER_KEYS = ("relu", "add", "mul", "linear", "conv", "cat")
ATTRS = ("w0", "w1", "w2", "aten.view.default")  # the last one is a dotted attribute path
#: placeholder targets spelled like operators (string targets must never match an operator)
NAME_LOOKALIKES = (
    "torchao.dequantize_affine",
    "aten.sym_size",
    "quantized_decomposed.quantize_per_tensor.default",
)


class NodeSpec(NamedTuple):
    op: str
    target: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]
    name: str


class Recipe(NamedTuple):
    nodes: tuple[NodeSpec, ...]
    ghosts: tuple[int, ...] = ()
    edits: tuple[tuple[Any, ...], ...] = ()
    meta: tuple[tuple[str, str], ...] = ()
    anns: tuple[tuple[Any, ...], ...] = ()


# --------------------------------------------------------------------------- building

#: graph module -> the "other" graph module its foreign annotation keys belong to
FOREIGN: weakref.WeakKeyDictionary[torch.fx.GraphModule, torch.fx.GraphModule] = (
    weakref.WeakKeyDictionary()
)
#: graph module -> its nodes by recipe index, erased ones included
CREATED: weakref.WeakKeyDictionary[torch.fx.GraphModule, list[torch.fx.Node]] = (
    weakref.WeakKeyDictionary()
)

_SHARED = {"stack_trace": "shared stack trace", "quantization_tag": "SHARED_TAG"}
_TENSOR = torch.zeros(1)


def _arg(value: Any, nodes: list[torch.fx.Node]) -> Any:
    kind = value[0]
    if kind == "n":
        return nodes[value[1]]
    if kind == "l":
        return [_arg(v, nodes) for v in value[1]]
    return value[1]


def _spec(spec: Any, nodes: list[torch.fx.Node]) -> Any:
    if spec is None:
        return None
    kind = spec[0]
    if kind == "qs":
        return QuantizationSpec(
            dtype=torch.int8, observer_or_fake_quant_ctr=MinMaxObserver, is_dynamic=spec[1]
        )
    if kind == "shared":
        return SharedQuantizationSpec(nodes[spec[1]])
    if kind == "shared_edge":
        return SharedQuantizationSpec((nodes[spec[1]], nodes[spec[2]]))
    if kind == "derived":
        return DerivedQuantizationSpec(
            derived_from=[nodes[0]],
            derive_qparams_fn=_derive,
            dtype=torch.int32,
            is_dynamic=spec[1],
        )
    if kind == "fixed":
        return FixedQParamsQuantizationSpec(
            dtype=torch.uint8, scale=1.0 / 256, zero_point=0, is_dynamic=spec[1]
        )
    raise AssertionError(spec)


def _derive(obs: Any) -> Any:  # pragma: no cover - never called
    raise AssertionError


def _meta_value(choice: str, key: str, name: str) -> Any:
    if choice == "none":
        return None
    if choice == "shared":
        return _SHARED[key]
    return f"{key} of {name}"  # "own": a fresh string object per build


def build(recipe: Recipe) -> torch.fx.GraphModule:
    """A fresh ``GraphModule`` for ``recipe`` (no code generation: the graph is never run).

    An annotation input ``("f", i)`` names node ``i`` of *another* graph module built from the
    same recipe (what ``copy.deepcopy`` of a prepared model leaves: the annotation objects are
    shared, their keys are the original graph's nodes).
    """
    gm = torch.fx.GraphModule(torch.nn.Module(), torch.fx.Graph())
    for attr in ATTRS[:3]:
        gm.register_buffer(attr, _TENSOR)
    inner = torch.nn.Module()
    inner.add_module("view", torch.nn.Module())
    inner.view.register_buffer("default", _TENSOR)
    gm.add_module("aten", inner)
    graph = gm.graph
    nodes: list[torch.fx.Node] = []
    for spec in recipe.nodes:
        args = tuple(_arg(a, nodes) for a in spec.args)
        kwargs = {k: _arg(v, nodes) for k, v in spec.kwargs}
        if spec.op == "call_function":
            node = graph.create_node(spec.op, TARGETS[spec.target], args, kwargs, name=spec.name)
        elif spec.op == "call_method":
            # FX only accepts a str target for call_method: set the operator afterwards, so
            # the rules' "target only" and "op and target" checks can be told apart
            node = graph.create_node(spec.op, spec.target, args, kwargs, name=spec.name)
            node.target = TARGETS[spec.target]
        else:
            node = graph.create_node(spec.op, spec.target, args, kwargs, name=spec.name)
        nodes.append(node)
    for i, (st_choice, tag_choice) in enumerate(recipe.meta):
        node = nodes[i]
        for key, choice in zip(KEYS, (st_choice, tag_choice), strict=True):
            if choice != "absent":
                node.meta[key] = _meta_value(choice, key, node.name)
    for edit in recipe.edits:
        if edit[0] == "reargs":
            node = nodes[edit[1]]
            node.args = tuple(node.args)
        elif edit[0] == "share":
            nodes[edit[2]].meta = nodes[edit[1]].meta
        else:
            _, user, old, new = edit
            nodes[user].replace_input_with(nodes[old], nodes[new])
    for i in recipe.ghosts:
        graph.erase_node(nodes[i])
    CREATED[gm] = nodes
    foreign: list[torch.fx.Node] = []
    if any(isinstance(j, tuple) and j[0] == "f" for _, inputs, _ in recipe.anns for j, _ in inputs):
        other = build(recipe._replace(anns=()))
        FOREIGN[gm] = other
        foreign = CREATED[other]  # by recipe index, erased ("ghost") nodes included

    def key(j: Any) -> Any:
        if not isinstance(j, tuple):
            return nodes[j]
        if j[0] == "f":
            return foreign[j[1]]
        if j[0] == "e":  # an edge (a tuple of nodes) where a node belongs
            return (nodes[j[1]], nodes[j[2]])
        return nodes[j[1]].name  # "s": the node's name, a str, where a node belongs

    for i, inputs, output in recipe.anns:
        qmap = {key(j): _spec(s, nodes) for j, s in inputs}
        nodes[i].meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map=qmap, output_qspec=_spec(output, nodes)
        )
    return gm


def meta_state(gm: torch.fx.GraphModule) -> dict[str, dict[str, Any]]:
    """``{node name: {key: value}}`` for the ported keys present on each node.

    Nodes of the graph module that foreign annotation keys belong to follow, as ``name@other``
    (upstream's dynamic rule writes there).
    """
    state = {n.name: {k: n.meta[k] for k in KEYS if k in n.meta} for n in gm.graph.nodes}
    other = FOREIGN.get(gm)
    if other is not None:
        for n in other.graph.nodes:
            state[f"{n.name}@other"] = {k: n.meta[k] for k in KEYS if k in n.meta}
    return state


# --------------------------------------------------------------------------- drawing


def _n(i: int) -> tuple[str, int]:
    return ("n", i)


def _c(v: Any) -> tuple[str, Any]:
    return ("c", v)


class _Draft:
    """Mutable state while drawing a recipe."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.nodes: list[NodeSpec] = []
        self.pool: list[int] = []  # tensor-ish nodes usable as inputs
        self.dqs: list[int] = []  # dequantize-like nodes, preferred by consumers
        self.ghosts: list[int] = []
        self.hints: dict[int, tuple[int, bool]] = {}  # consumer -> (quantized input, dynamic)

    def add(
        self,
        op: str,
        target: str,
        args: tuple[Any, ...] = (),
        kwargs: tuple[tuple[str, Any], ...] = (),
        kind: str | None = None,
    ) -> int:
        i = len(self.nodes)
        name = f"{kind or target}_{i}".replace(".", "_")
        self.nodes.append(NodeSpec(op, target, args, kwargs, name))
        return i

    def pick(self, prefer_dq: bool = False) -> int:
        d = self.draw
        if prefer_dq and self.dqs and d(st.integers(0, 9)) < 7:
            return d(st.sampled_from(self.dqs))
        return d(st.sampled_from(self.pool))

    # -- blocks --------------------------------------------------------------------------
    def placeholder(self) -> None:
        i = len(self.nodes)
        target = self.draw(st.sampled_from((f"x{i}", f"x{i}", f"x{i}", *NAME_LOOKALIKES)))
        self.pool.append(self.add("placeholder", target, kind="x"))

    def weight(self) -> None:
        d = self.draw
        cur = self.add("get_attr", d(st.sampled_from(ATTRS)), kind="w")
        for _ in range(d(st.integers(0, 3))):
            key = d(st.sampled_from(VIEW_KEYS))
            if d(st.integers(0, 19)) == 0:  # only keyword args: upstream's args[0] fails
                cur = self.add("call_function", key, (), (("input", _n(cur)),))
            else:
                cur = self.add("call_function", key, (_n(cur), _c(1), _c(0)))
        self.pool.append(cur)
        if d(st.integers(0, 9)) < 8:
            self.static(cur)

    def static(self, x: int | None = None) -> None:
        d = self.draw
        if x is None:
            x = self.pick()
        variant = d(
            st.sampled_from(
                (
                    "qdq",
                    "qdq",
                    "qdq",
                    "qdq",
                    "qdq",
                    "qdq",
                    "dq_only",
                    "q_const",
                    "dq_const",
                    "dq_noargs",
                    "q_noargs",
                    "double",
                    "via_cq",
                    "q_method",
                    "q_fanout",
                )
            )
        )
        qk, dqk = d(st.sampled_from(Q_KEYS)), d(st.sampled_from(DQ_KEYS))
        tail = (_c(0.1), _c(0), _c(-128), _c(127))
        if variant == "dq_only":
            dq = self.add("call_function", dqk, (_n(x), *tail), kind="dq")
        elif variant == "dq_const":
            dq = self.add("call_function", dqk, (_c(1.5), *tail), kind="dq")
        elif variant == "dq_noargs":
            dq = self.add("call_function", dqk, (), (("input", _n(x)),), kind="dq")
        else:
            src = x
            if variant == "via_cq":
                src = self.add("call_function", d(st.sampled_from(CQ_KEYS)), (_n(x),), kind="cq")
            if variant == "double":
                q0 = self.add("call_function", qk, (_n(x), *tail), kind="q")
                src = self.add("call_function", dqk, (_n(q0), *tail), kind="dq")
            if variant == "q_const":
                q = self.add("call_function", qk, (_c(2.0), *tail), kind="q")
            elif variant == "q_noargs":
                q = self.add("call_function", qk, (), (("input", _n(src)),), kind="q")
            else:
                op = "call_method" if variant == "q_method" else "call_function"
                q = self.add(op, qk, (_n(src), *tail), kind="q")
            dq = self.add("call_function", dqk, (_n(q), *tail), kind="dq")
            if variant == "q_fanout":
                dq2 = self.add("call_function", dqk, (_n(q), *tail), kind="dq")
                self.dqs.append(dq2)
                self.pool.append(dq2)
        self.dqs.append(dq)
        self.pool.append(dq)
        if d(st.integers(0, 9)) < 6:
            self.hints[self.consumer(dq)] = (x, False)

    def dynamic(self) -> None:
        d = self.draw
        x = self.pick()
        brk = d(
            st.sampled_from(
                (
                    *("ok",) * 10,
                    "swap",
                    "no_gi1",
                    "no_gi0",
                    "extra_gi",
                    "cq_sym_user",
                    "scale_unused",
                    "q_none",
                    "q_two",
                    "q_sym_user",
                    "scale_unused",
                    "no_cq",
                )
            )
        )
        cqk = d(st.sampled_from(CQ_KEYS))
        tail = (_c(-128), _c(127))
        if brk == "no_cq":
            dq = self.add("call_function", "dq_pt_t", (_n(x), _c(0.1), _c(0), *tail), kind="dq")
            self.dqs.append(dq)
            self.pool.append(dq)
            self.hints[self.consumer(dq)] = (x, True)
            return
        cq = self.add("call_function", cqk, (_n(x), *tail, _c(1e-5)), kind="cq")
        gis: dict[int, int] = {}
        order = (1, 0) if brk == "swap" else (0, 1)
        for k in order:
            if (brk, k) in (("no_gi1", 1), ("no_gi0", 0)):
                continue
            gis[k] = self.add("call_function", "getitem", (_n(cq), _c(k)), kind="gi")
        if brk == "extra_gi":
            self.add("call_function", "getitem", (_n(cq), _c(0)), kind="gi")
        if brk == "cq_sym_user":
            self.add(
                d(st.sampled_from(("call_function", "call_method"))),
                d(st.sampled_from(SYM_KEYS)),
                (_n(cq),),
                kind="sym",
            )
        qargs: list[Any] = [_n(x)]
        for k in (0, 1):
            if k in gis and not (brk == "scale_unused" and k == max(gis)):
                qargs.append(_n(gis[k]))
            else:
                qargs.append(_c(0.5))
        q = self.add("call_function", "q_pt_t", (*qargs, *tail), kind="q")
        if brk == "q_sym_user":
            self.add("call_function", d(st.sampled_from(SYM_KEYS)), (_n(q),), kind="sym")
        if brk == "q_none":
            return
        dqargs = (_n(q), *qargs[1:], *tail)
        dq = self.add("call_function", "dq_pt_t", dqargs, kind="dq")
        if brk == "q_two":
            self.add("call_function", "dq_pt_t", dqargs, kind="dq")
        self.dqs.append(dq)
        self.pool.append(dq)
        if d(st.integers(0, 9)) < 8:
            self.hints[self.consumer(dq)] = (x, True)

    def consumer(self, first: int | None = None) -> int:
        d = self.draw
        key = d(st.sampled_from(CONSUMER_KEYS))
        a = first if first is not None else self.pick(prefer_dq=True)
        style = d(st.sampled_from(("args",) * 6 + ("kwarg", "list")))
        n_more = d(st.integers(0, 2))
        more = [self.pick(prefer_dq=True) for _ in range(n_more)]
        kwargs: tuple[tuple[str, Any], ...] = ()
        if style == "list":
            args: tuple[Any, ...] = (("l", [_n(a), *(_n(m) for m in more)]), _c(0))
            key = "cat"
        elif style == "kwarg":
            args = tuple(_n(m) for m in more)
            kwargs = (("other", _n(a)),)
        else:
            args = (_n(a), *(_n(m) for m in more))
        i = self.add("call_function", key, args, kwargs)
        self.pool.append(i)
        return i

    def diamond(self) -> None:
        x = self.pick()
        left = self.add("call_function", "relu", (_n(x),))
        right = self.add("call_function", "relu", (_n(x),))
        self.pool.append(self.add("call_function", "add", (_n(left), _n(right))))

    def sym(self) -> None:
        d = self.draw
        x = self.pick(prefer_dq=d(st.booleans()))
        op = d(st.sampled_from(("call_function", "call_function", "call_method")))
        self.add(op, d(st.sampled_from(SYM_KEYS)), (_n(x), _c(0)), kind="sym")

    def ghost(self) -> None:
        self.ghosts.append(self.add("call_function", "relu", (_n(self.pick()),), kind="ghost"))


def _refs(value: Any) -> list[int]:
    if value[0] == "n":
        return [value[1]]
    if value[0] == "l":
        return [r for v in value[1] for r in _refs(v)]
    return []


def _spec_strategy(candidates: list[int]) -> st.SearchStrategy[Any]:
    node = st.sampled_from(candidates)
    rarely_dynamic = st.sampled_from((False,) * 10 + (True, 1))
    return st.one_of(
        st.none(),
        st.tuples(st.just("qs"), rarely_dynamic),
        st.tuples(st.just("qs"), st.just(False)),
        st.tuples(st.just("shared"), node),
        st.tuples(st.just("shared_edge"), node, node),
        st.tuples(st.just("derived"), rarely_dynamic),
        st.tuples(st.just("fixed"), rarely_dynamic),
    )


@st.composite
def recipes(draw: Any, max_blocks: int = 9, odd_keys: bool = False) -> Recipe:
    """Draw a :class:`Recipe`.

    ``odd_keys``: annotation input keys may also be nodes of another graph (``("f", i)``),
    node names (``("s", i)``) or edges (``("e", i, j)``) instead of this graph's nodes.
    """
    g = _Draft(draw)
    for _ in range(draw(st.integers(1, 2))):
        g.placeholder()
    blocks = draw(
        st.lists(
            st.sampled_from(
                (
                    "static",
                    "dynamic",
                    "weight",
                    "static",
                    "dynamic",
                    "weight",
                    "static",
                    "dynamic",
                    "static",
                    "consumer",
                    "diamond",
                    "sym",
                    "ghost",
                    "placeholder",
                )
            ),
            min_size=2,
            max_size=max_blocks,
        )
    )
    for b in blocks:
        getattr(g, b)()
    # output: a subset of the pool (dequantize nodes and consumers feeding the output node)
    outs = draw(st.lists(st.sampled_from(g.pool), max_size=3, unique=True))
    out_idx = g.add("output", "output", (("l", [_n(i) for i in outs]),), kind="output")
    n = len(g.nodes)
    ghosts = set(g.ghosts)
    live = [i for i in range(n) if i not in ghosts]

    # edits: reassign args (users order), replace an input by an earlier node
    edits: list[tuple[Any, ...]] = []
    with_inputs = [
        i for i in live if any(r not in ghosts for a in g.nodes[i].args for r in _refs(a))
    ]
    if with_inputs:
        for _ in range(draw(st.integers(0, 3))):
            user = draw(st.sampled_from(with_inputs))
            if draw(st.booleans()):
                edits.append(("reargs", user))
                continue
            olds = sorted({r for a in g.nodes[user].args for r in _refs(a)})
            old = draw(st.sampled_from(olds))
            news = [j for j in live if j < user and j != old and j != out_idx]
            if user == out_idx:
                news = [j for j in live if j != old and j != out_idx]
            if news:
                edits.append(("replace", user, old, draw(st.sampled_from(news))))

    # now and then two nodes share one meta dict (writes to one show on the other)
    if len(live) > 1 and draw(st.integers(0, 3)) == 0:
        for _ in range(draw(st.integers(1, 2))):
            i, j = draw(st.lists(st.sampled_from(live), min_size=2, max_size=2, unique=True))
            edits.append(("share", i, j))

    # "own" first: the simplest (shrunk) examples carry metadata that can be ported
    meta_choice = st.sampled_from(("own", "own", "own", "absent", "none", "own", "shared"))
    meta = tuple((draw(meta_choice), draw(meta_choice)) for _ in range(n))

    # annotations: inputs drawn mostly among the node's inputs and their args[0] ancestors
    anns: list[tuple[Any, ...]] = []
    for i in live:
        roll = draw(st.integers(0, 9))  # hinted consumers mostly, other nodes sometimes
        if g.nodes[i].op == "output" or (roll == 9 if i in g.hints else roll < 8):
            continue
        spec = g.nodes[i]
        near: list[int] = []
        frontier = [r for a in (*spec.args, *(v for _, v in spec.kwargs)) for r in _refs(a)]
        for _ in range(4):
            near.extend(frontier)
            frontier = [r for j in frontier if g.nodes[j].args for r in _refs(g.nodes[j].args[0])]
        near = [j for j in near if j not in ghosts] or [0]
        candidates = sorted(set(near))
        far = st.sampled_from(range(n - 1))
        key = st.one_of(st.sampled_from(near), st.sampled_from(near), far)
        if g.ghosts and draw(st.integers(0, 9)) == 0:
            key = st.sampled_from(g.ghosts)
        if odd_keys:
            key = st.one_of(
                key,
                key.map(lambda j: ("f", j)),
                key.map(lambda j: ("s", j)),
                st.tuples(st.just("e"), key, key),
            )
        inputs = draw(
            st.lists(
                st.tuples(key, _spec_strategy(candidates)), max_size=3, unique_by=lambda t: t[0]
            )
        )
        hint = g.hints.get(i)
        if hint is not None and draw(st.integers(0, 9)) < 7:
            x, dynamic = hint
            if dynamic:
                spec_hint: Any = ("qs", True)
            elif draw(st.integers(0, 9)) < 7:
                spec_hint = ("qs", False)
            else:
                spec_hint = draw(_spec_strategy(candidates))
            if odd_keys and draw(st.booleans()):
                x = draw(st.sampled_from((("f", x), ("s", x), ("e", x, x))))
            inputs = [(x, spec_hint), *(t for t in inputs if t[0] != x)]
        output = draw(st.one_of(st.none(), _spec_strategy(candidates)))
        anns.append((i, tuple(inputs), output))

    return Recipe(tuple(g.nodes), tuple(g.ghosts), tuple(edits), meta, tuple(anns))
