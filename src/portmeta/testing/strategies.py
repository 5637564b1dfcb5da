"""Hypothesis strategies for random quantization-shaped graphs (needs ``hypothesis``).

:func:`graphs` draws converted PT2E graphs built with :class:`~portmeta.testing.GraphBuilder`
from a list of *blocks*, each one a pattern ``convert_pt2e`` produces, so a graph looks like
a small quantized model and hypothesis shrinks a failure to a few blocks with FX-like names
(``x``, ``q``, ``dq``, ``relu``, ``weight``...):

=============  ===========================================================================
pattern        block
=============  ===========================================================================
``static``     static ``q -> dq`` pairs of activations feeding an annotated op (one or two
               inputs)
``dynamic``    ``choose_qparams -> getitem -> q -> dq`` feeding an annotated linear
``weight``     a ``get_attr`` weight through ``q -> dq`` into an annotated conv / linear
``view_chain`` (with ``weight``) view ops between the weight and its quantize
``output``     (modifier) annotated ops also get an output spec and a ``q -> dq`` after them
``fan_out``    one dequantize read by two annotated ops, or (with ``output``) an annotated
               output with a second, unannotated user (the pass's overwrite / user-count
               cases)
``sym_size``   sym-size users of values (filtered and unfiltered ones), and filtered ones of
               annotated outputs (with ``fan_out``, unfiltered ones too: a second user)
=============  ===========================================================================

A graph drawn with ``patterns=S`` contains only the patterns of ``S`` (as :func:`patterns_in`
finds them), with two exceptions, both ``static``: a ``fan_out`` block's dequantizes are
static pairs of activations; and ``view_chain`` also draws ``aten.t.default``, a view the
profiles do not list, which cuts the weight off its quantize: to the pass, and to
:func:`patterns_in`, what is above that quantize is then an activation.

``holes=`` adds blocks where the porting rules leave a partition's q/dq nodes without its
values, each one a finding of :func:`portmeta.check` (see :data:`HOLES`); they are not
limited by ``patterns``.

Annotations use every kind of spec (:data:`SPEC_KINDS`); nodes carry ``quantization_tag``
and ``stack_trace`` present, absent or ``None`` (:func:`node_meta`). :func:`patterns_in`
tells which patterns a graph contains (to count them, or for ``hypothesis.event``).

Install with ``pip install 'portmeta[testing]'``.

Example
-------
>>> from hypothesis import given, settings
>>> import portmeta
>>> @settings(max_examples=20, database=None)
... @given(graphs(max_blocks=3))
... def test_plans_are_deterministic(graph):
...     assert portmeta.plan(graph) == portmeta.plan(graph)
>>> test_plans_are_deterministic()
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

try:
    from hypothesis import assume
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - exercised without hypothesis only
    raise ImportError(
        "portmeta.testing.strategies needs hypothesis: install it with "
        "`pip install 'portmeta[testing]'` (or `pip install 'hypothesis>=6.100'`)"
    ) from exc

from ..plan import plan
from ..profiles import TORCHAO, Profile
from ..records import NodeRecord, NodeRef, QSpec
from ..snapshot import Snapshot, annotated_nodes, records, users
from ._builder import GraphBuilder, derived, dynamic, fixed, shared, static, target

__all__ = [
    "HOLES",
    "PATTERNS",
    "SPEC_KINDS",
    "graphs",
    "node_meta",
    "patterns_in",
    "specs",
]

#: The patterns :func:`graphs` can draw (see the module docstring).
PATTERNS: tuple[str, ...] = (
    "static",
    "dynamic",
    "weight",
    "view_chain",
    "output",
    "fan_out",
    "sym_size",
)

#: The holes :func:`graphs` can add (``holes=``), and the finding each one gives
#: (:func:`portmeta.check`: kind and cause).
HOLES: dict[str, tuple[str, str]] = {
    "keyword": ("unported_input", "keyword"),
    "list": ("unported_input", "container"),
    "same_input": ("unported_input", "not_first"),
    "no_quantize": ("unported_input", "no_quantize"),
    "shared_dynamic": ("unported_input", "shared"),
    "dynamic_siblings": ("foreign_write", "search_reached"),
    "output_user": ("unported_output", "not_last_user"),
}

#: Every kind of quantization spec, by name: what a quantizer's annotation can hold.
SPEC_KINDS: dict[str, QSpec] = {
    "static": static(),
    "shared": shared(),
    "derived": derived(),
    "fixed": fixed(),
    "dynamic": dynamic(),
    "derived_dynamic": derived(True),
    "fixed_dynamic": fixed(True),
}

_STATIC_KINDS = ("static", "shared", "derived", "fixed")
_DYNAMIC_KINDS = ("dynamic", "derived_dynamic", "fixed_dynamic")
_BLOCKS = ("static", "dynamic", "weight", "fan_out", "sym_size")  # simplest first: shrinks there
_FAILING_BLOCKS = ("no_choose_qparams", "dynamic_fan_out")
_UNARY = ("aten.relu.default", "aten.hardtanh.default", "aten.sigmoid.default")
_BINARY = ("aten.add.Tensor", "aten.mul.Tensor")
_WEIGHTED = ("aten.conv2d.default", "aten.linear.default")
_VIEWS = ("aten.permute.default", "aten.view.default", "aten.transpose.int", "aten.t.default")
_SYMS = ("aten.sym_size.default", "aten.sym_size.int", "aten.sym_numel.default")
_TRACES = ('File "model.py", line 12, in forward', 'File "model.py", line 30, in forward')


def specs(dynamic: bool | None = None) -> st.SearchStrategy[QSpec]:
    """Quantization specs of every kind (:data:`SPEC_KINDS`).

    ``dynamic=False``: only the kinds the static rules take (``QuantizationSpec``, shared,
    derived, fixed); ``True``: only the ones that select the dynamic rule; ``None``: any.

    Example
    -------
    >>> from hypothesis import find
    >>> find(specs(dynamic=True), lambda s: s.kind == "FixedQParamsQuantizationSpec")
    QSpec(kind='FixedQParamsQuantizationSpec', is_dynamic=True)
    """
    kinds = {None: tuple(SPEC_KINDS), False: _STATIC_KINDS, True: _DYNAMIC_KINDS}[dynamic]
    return st.sampled_from([SPEC_KINDS[k] for k in kinds])


def node_meta(
    tags: Collection[str] = ("p0", "p1", "p2"), traces: Collection[str] = _TRACES
) -> st.SearchStrategy[dict[str, Any]]:
    """Metadata keyword arguments for a :class:`GraphBuilder` node method.

    Each of ``tag`` (``quantization_tag``) and ``stack_trace`` is absent, ``None`` (present
    with value ``None``, which the pass copies) or one of ``tags`` / ``traces``. Shrinks to
    ``{}`` (no metadata).

    Example
    -------
    >>> from hypothesis import find
    >>> find(node_meta(), lambda m: "tag" in m)
    {'tag': 'p0'}
    """
    return st.fixed_dictionaries(
        {},
        optional={
            "tag": st.sampled_from([*sorted(tags), None]),
            "stack_trace": st.sampled_from([*sorted(traces), None]),
        },
    )


class _Drawer:
    """Builds one graph block by block from hypothesis draws."""

    def __init__(
        self,
        draw: Callable[[st.SearchStrategy[Any]], Any],
        profile: Profile,
        patterns: frozenset[str],
    ) -> None:
        self.draw = draw
        self.patterns = patterns
        self.b_profile = profile
        self.holes_made = 0  # annotated nodes of holes, which get tags h1, h2, ...
        self.b = GraphBuilder(profile)
        self.pool = [self.b.placeholder("x", **draw(node_meta()))]  # values later blocks read
        self.outputs: list[str] = []  # annotated nodes with an output spec (sym_size targets)

    def pick(self) -> str:
        """A value, counting back from the newest (shrinks to a chain of blocks)."""
        i: int = self.draw(st.integers(0, len(self.pool) - 1))
        return self.pool[-1 - i]

    def spec(self, dynamic: bool = False) -> QSpec:
        s: QSpec = self.draw(specs(dynamic=dynamic))
        return s

    def finish(self, node: str, inputs: dict[str, QSpec | None]) -> None:
        """Annotate ``node``; with ``output``, maybe an output spec and a q/dq after it."""
        output = None
        if "output" in self.patterns and self.draw(st.booleans()):
            output = self.spec()
        self.b.annotate(node, inputs=inputs, output=output)
        if output is not None:
            self.outputs.append(node)
            _, dq = self.b.qdq(node)
            self.pool.append(dq)
        else:
            self.pool.append(node)

    def static(self) -> None:
        n = self.draw(st.integers(1, 2))
        srcs = [self.pick() for _ in range(n)]
        dqs = [self.b.qdq(src)[1] for src in srcs]
        op = self.draw(st.sampled_from(_UNARY if n == 1 else _BINARY))
        node = self.b.call(op, *dqs, **self.draw(node_meta()))
        self.finish(node, {self.b.input_key(src): self.spec() for src in srcs})

    def dynamic(self) -> None:
        src = self.pick()
        chain = self.b.dynamic_qdq(src, symmetric=self.draw(st.booleans()))
        node = self.b.call("aten.linear.default", chain.dq, **self.draw(node_meta()))
        self.b.annotate(node, inputs={self.b.input_key(src): self.spec(dynamic=True)})
        self.pool.append(node)

    def weight(self) -> None:
        act = self.pick()
        cur = w = self.b.get_attr("weight", **self.draw(node_meta(tags=("w0", "w1"))))
        if "view_chain" in self.patterns:
            for op in self.draw(st.lists(st.sampled_from(_VIEWS), max_size=2)):
                cur = self.b.view(cur, op)
        del w
        inputs: dict[str, QSpec | None] = {}
        a_in = act
        if "static" in self.patterns:
            a_in = self.b.qdq(act)[1]
            inputs[self.b.input_key(act)] = self.spec()
        _, w_dq = self.b.qdq(cur, per_channel=self.draw(st.booleans()))
        inputs[cur] = self.spec()
        op = self.draw(st.sampled_from(_WEIGHTED))
        node = self.b.call(op, a_in, w_dq, **self.draw(node_meta()))
        self.finish(node, inputs)

    def fan_out(self) -> None:
        src = self.pick()
        _, dq = self.b.qdq(src)
        if "output" not in self.patterns or self.draw(st.booleans()):
            # one dequantize, two annotated readers: overwrites
            for _ in range(2):
                node = self.b.call(self.draw(st.sampled_from(_UNARY)), dq, **self.draw(node_meta()))
                self.b.annotate(node, inputs={self.b.input_key(src): self.spec()})
                self.pool.append(node)
            return
        # an annotated output with a second, unannotated user before or after its quantize
        node = self.b.call(self.draw(st.sampled_from(_UNARY)), dq, **self.draw(node_meta()))
        self.b.annotate(node, inputs={self.b.input_key(src): self.spec()}, output=self.spec())
        self.outputs.append(node)
        other_first = self.draw(st.booleans())
        if other_first:
            self.pool.append(self.b.call("aten.neg.default", node))
        self.pool.append(self.b.qdq(node)[1])
        if not other_first:
            self.pool.append(self.b.call("aten.neg.default", node))

    def sym_size(self) -> None:
        candidates = self.pool + self.outputs
        node = candidates[-1 - self.draw(st.integers(0, len(candidates) - 1))]
        ops: tuple[str, ...] = _SYMS
        if node in self.outputs and "fan_out" not in self.patterns:
            # a sym-size user the profile does not filter is a second user: that is fan_out
            p = self.b_profile
            ops = tuple(
                op for op in _SYMS if target(op) in p.sym_size_call_function | p.sym_size_any_op
            )
        self.b.sym_size(node, op=self.draw(st.sampled_from(ops)))

    def no_choose_qparams(self) -> None:
        src = self.pick()
        _, dq = self.b.qdq(src)
        node = self.b.call("aten.linear.default", dq, **self.draw(node_meta()))
        self.b.annotate(node, inputs={self.b.input_key(src): self.spec(dynamic=True)})
        self.pool.append(node)

    def dynamic_fan_out(self) -> None:
        src = self.pick()
        chain = self.b.dynamic_qdq(src)
        node = self.b.call("aten.linear.default", chain.dq, **self.draw(node_meta()))
        self.b.call("aten.relu.default", chain.q)  # a second user of the dynamic quantize
        self.b.annotate(node, inputs={self.b.input_key(src): self.spec(dynamic=True)})
        self.pool.append(node)

    # -- holes (``holes=``): each gives the finding HOLES names ---------------------------------
    def _hole_tag(self) -> dict[str, Any]:
        """Metadata for an annotated node of a hole: a tag of its own (``h1``, ``h2``, ...)."""
        self.holes_made += 1
        return {**self.draw(node_meta()), "tag": f"h{self.holes_made}"}

    def _fresh_input(self) -> str:
        """A new graph input: holes read their own, so no other block changes their finding."""
        return self.b.placeholder("x", **self.draw(node_meta()))

    def hole_keyword(self) -> None:
        a, b = self._fresh_input(), self._fresh_input()
        dq_a, dq_b = self.b.qdq(a)[1], self.b.qdq(b)[1]
        node = self.b.call("aten.add.Tensor", dq_a, kwargs={"other": dq_b}, **self._hole_tag())
        self.b.annotate(node, inputs={a: self.spec(), b: self.spec()})
        self.pool.append(node)

    def hole_list(self) -> None:
        srcs = [self._fresh_input() for _ in range(self.draw(st.integers(1, 3)))]
        dqs = [self.b.qdq(src)[1] for src in srcs]
        node = self.b.call("aten.cat.default", dqs, 1, **self._hole_tag())
        inputs: dict[str, QSpec | None] = {srcs[0]: self.spec()}
        for src in srcs[1:]:
            inputs.setdefault(src, shared())
        self.finish(node, inputs)

    def hole_same_input(self) -> None:
        src = self._fresh_input()
        dq, dq_1 = self.b.qdq(src)[1], self.b.qdq(src)[1]
        node = self.b.call(self.draw(st.sampled_from(_BINARY)), dq, dq_1, **self._hole_tag())
        self.finish(node, {src: self.spec()})

    def hole_no_quantize(self) -> None:
        src = self._fresh_input()
        dq_op = sorted(self.b_profile.dequantize, key=lambda t: t.name)[0]
        dq = self.b.call(dq_op, src, 0.1, 0, -128, 127, name="dq")
        node = self.b.call(self.draw(st.sampled_from(_UNARY)), dq, **self._hole_tag())
        self.finish(node, {src: self.spec()})

    def hole_shared_dynamic(self) -> None:
        src = self._fresh_input()
        chain = self.b.dynamic_qdq(src, symmetric=self.draw(st.booleans()))
        for _ in range(self.draw(st.integers(2, 3))):
            node = self.b.call("aten.linear.default", chain.dq, **self._hole_tag())
            self.b.annotate(node, inputs={src: self.spec(dynamic=True)})
            self.pool.append(node)

    def hole_dynamic_siblings(self) -> None:
        src = self._fresh_input()
        chains = [self.b.dynamic_qdq(src) for _ in range(2)]
        for chain in chains:
            node = self.b.call("aten.linear.default", chain.dq, **self._hole_tag())
            self.b.annotate(node, inputs={src: self.spec(dynamic=True)})
            self.pool.append(node)

    def hole_output_user(self) -> None:
        src = self._fresh_input()
        _, dq = self.b.qdq(src)
        node = self.b.call(self.draw(st.sampled_from(_UNARY)), dq, **self._hole_tag())
        self.b.annotate(node, inputs={src: self.spec()}, output=self.spec())
        self.pool.append(self.b.qdq(node)[1])
        self.pool.append(self.b.call("aten.neg.default", node))

    def build(self) -> Snapshot:
        n_out = min(len(self.pool), self.draw(st.integers(1, 2)))
        self.b.output(*self.pool[-n_out:])
        return self.b.build()


def graphs(
    *,
    min_blocks: int = 1,
    max_blocks: int = 5,
    patterns: Collection[str] = PATTERNS,
    profile: Profile = TORCHAO,
    failing: bool = False,
    holes: Collection[str] = (),
) -> st.SearchStrategy[Snapshot]:
    """Random converted graphs, as a quantizer and ``convert_pt2e`` would leave them.

    Parameters
    ----------
    min_blocks, max_blocks:
        How many pattern blocks a graph has (its size: a block is 3 to 12 nodes).
    patterns:
        Which patterns may appear (names from :data:`PATTERNS`): ``patterns={"static"}``
        draws only static q/dq pairs around unary and binary ops. No other pattern appears
        (as :func:`patterns_in` finds them), except ``static`` with ``fan_out`` or
        ``view_chain`` (see the module docstring); ``holes`` blocks come on top of these and
        may show any pattern.
    profile:
        The op names the builder uses, and (unless ``failing``) the profile the graph must
        plan under.
    failing:
        ``False`` (default): every graph plans without error under ``profile``. ``True``:
        some blocks are also broken the ways upstream raises on (a dynamic input without
        ``choose_qparams``, a dynamic quantize with two users); plan them with
        ``errors="collect"`` or expect a :class:`portmeta.PlanError`.
    holes:
        Names from :data:`HOLES`: blocks where the porting rules leave a partition's q/dq
        nodes without its values are drawn too (a keyword or list argument, two dequantize
        nodes of one input, a dequantize without a quantize above it, a dynamic chain shared
        by several linears, two dynamic chains of one input, an annotated output whose last
        user is not its quantize). Their annotated nodes always carry a tag of their own, so
        each such block gives :func:`portmeta.check` the finding :data:`HOLES` names.

    Example
    -------
    >>> from hypothesis import find
    >>> import portmeta
    >>> g = find(graphs(patterns={"dynamic"}), lambda g: portmeta.plan(g).deltas)
    >>> list(g.nodes)
    ['x', 'choose_qparams', 'scale', 'zero_point', 'q', 'dq', 'linear', 'output']
    >>> portmeta.plan(g).final_state()
    {'choose_qparams': {'quantization_tag': 'p0'}, 'q': {'quantization_tag': 'p0'}, 'dq': {'quantization_tag': 'p0'}}
    """
    chosen = frozenset(patterns)
    unknown = sorted(chosen - set(PATTERNS))
    if isinstance(patterns, str) or unknown:
        raise ValueError(
            f"unknown patterns {unknown or [patterns]!r}; choose among {list(PATTERNS)!r}"
        )
    kinds = [k for k in _BLOCKS if k in chosen]
    if not kinds:
        raise ValueError(
            f"patterns {sorted(chosen)!r} contain no block; add one of {list(_BLOCKS)!r}"
        )
    if failing:
        kinds += _FAILING_BLOCKS
    if isinstance(holes, str) or not set(holes) <= set(HOLES):
        bad = [holes] if isinstance(holes, str) else sorted(set(holes) - set(HOLES))
        raise ValueError(f"unknown holes {bad!r}; choose among {list(HOLES)!r}")
    kinds += [f"hole_{h}" for h in HOLES if h in holes]
    if not 0 <= min_blocks <= max_blocks:
        raise ValueError(f"need 0 <= min_blocks <= max_blocks, got {min_blocks}, {max_blocks}")

    @st.composite
    def draw_graph(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Snapshot:
        d = _Drawer(draw, profile, chosen)
        for kind in draw(
            st.lists(st.sampled_from(kinds), min_size=min_blocks, max_size=max_blocks)
        ):
            getattr(d, kind)()
        graph = d.build()
        if not failing:  # rare: a dynamic search that reaches another block's chain
            assume(not plan(graph, profile, errors="collect").errors)
        return graph

    result: st.SearchStrategy[Snapshot] = draw_graph()
    return result


def _first_ref(args: tuple[Any, ...]) -> str | None:
    """The node ``args[0]`` names, if it is a node reference."""
    return args[0].name if args and isinstance(args[0], NodeRef) else None


def _walk(recs: dict[str, NodeRecord], profile: Profile, start: str) -> list[str]:
    """``start`` and the nodes up its ``args[0]`` through workflow ops (as the static rule)."""
    walked = [start]
    cur = _first_ref(recs[start].args) if profile.is_workflow_op(recs[start]) else None
    while cur is not None and cur in recs and cur not in walked:
        walked.append(cur)
        cur = _first_ref(recs[cur].args) if profile.is_workflow_op(recs[cur]) else None
    return walked


def _is_weight(recs: dict[str, NodeRecord], profile: Profile, name: str) -> bool:
    """Whether ``name`` is a ``get_attr`` node, or a view op chain above one."""
    cur: str | None = name
    seen: set[str] = set()
    while cur is not None and cur in recs and cur not in seen and profile.is_view(recs[cur]):
        seen.add(cur)
        cur = _first_ref(recs[cur].args)
    return cur is not None and cur in recs and recs[cur].op == "get_attr"


def patterns_in(graph: Snapshot, profile: Profile = TORCHAO) -> frozenset[str]:
    """The patterns of :data:`PATTERNS` ``graph`` contains, found by its structure.

    ``static``: an annotated node reads a dequantize whose walk up (through quantize and
    dequantize ops, as the static rule's) passes a node the annotation gives a static spec,
    and ends at an activation (not a ``get_attr`` weight, nor a view of one). ``fan_out``: a
    dequantize two annotated nodes read that way (with any spec), or an annotated node with an
    output spec and more than one user the profile does not filter as sym-size. ``output``:
    an annotated node with an output spec and a quantize among those users. ``weight``: a
    quantize reading a ``get_attr`` (``view_chain``: through view ops). ``dynamic``: a
    dynamic input spec and a choose_qparams node. ``sym_size``: an ``aten.sym_*`` node.

    Also ``"spec:<kind>"`` for every kind of :data:`SPEC_KINDS` an annotation uses, and
    ``"error"`` when planning under ``profile`` fails for some annotated node.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder, static
    >>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
    >>> y = b.call("aten.relu.default", dq); b.annotate(y, inputs={x: static()}); b.output(y)
    >>> sorted(patterns_in(b.build()))
    ['spec:static', 'static']
    """
    found: set[str] = set()
    kind_of = {spec: name for name, spec in SPEC_KINDS.items()}
    recs = {rec.name: rec for rec in records(graph)}
    readers: dict[str, int] = {}  # dequantize -> annotated nodes that read and annotate it
    for name in annotated_nodes(graph):
        ann = recs[name].annotation
        if ann is None or ann.malformed is not None:
            continue
        specs_used = [inp.qspec for inp in ann.inputs] + [ann.output]
        found.update(f"spec:{kind_of[s]}" for s in specs_used if s in kind_of)
        named = {i.node: i.qspec for i in ann.inputs if i.is_node and i.qspec is not None}
        for arg in dict.fromkeys(recs[name].input_names()):
            if not profile.is_dequantize(recs[arg]):
                continue
            walk = _walk(recs, profile, arg)
            given = [named[n] for n in walk if n in named]
            if not given:
                continue
            readers[arg] = readers.get(arg, 0) + 1
            if any(not s.dynamic for s in given) and not _is_weight(recs, profile, walk[-1]):
                found.add("static")
        if any(i.qspec is not None and i.qspec.dynamic for i in ann.inputs) and any(
            profile.is_choose_qparams(r) for r in recs.values()
        ):
            found.add("dynamic")
        if ann.output is not None:
            kept = [u for u in users(graph, name) if not profile.is_sym_size(recs[u])]
            if any(profile.is_quantize(recs[u]) for u in kept):
                found.add("output")
            if len(kept) > 1:
                found.add("fan_out")
    if any(n > 1 for n in readers.values()):
        found.add("fan_out")
    for rec in recs.values():
        if rec.target.name.startswith("aten.sym_"):
            found.add("sym_size")
        if profile.is_quantize(rec):
            views, cur = 0, _first_ref(rec.args)
            while cur is not None and profile.is_view(recs[cur]):
                views, cur = views + 1, _first_ref(recs[cur].args)
            if cur is not None and recs[cur].op == "get_attr":
                found.add("weight")
                if views:
                    found.add("view_chain")
    if annotated_nodes(graph) and plan(graph, profile, errors="collect").errors:
        found.add("error")
    return frozenset(found)
