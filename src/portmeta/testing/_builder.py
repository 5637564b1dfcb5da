"""Build quantization-shaped graphs by hand, without torch (``portmeta.testing.GraphBuilder``).

:class:`GraphBuilder` creates node records the way ``torch.fx`` would: names are made unique
(``q``, ``q_1``, ...), users are kept in the order uses were created, and ``build()`` returns
the same frozen snapshot ``portmeta_fx.from_fx`` returns for a real graph. Helpers add q/dq
pairs, dynamic choose_qparams chains, get_attr weights behind view ops and sym-size users.

Example
-------
>>> from portmeta import plan
>>> from portmeta.testing import GraphBuilder, static
>>> b = GraphBuilder()
>>> x = b.placeholder("x")
>>> q, dq = b.qdq(x)
>>> w = b.get_attr("weight", tag="W")
>>> wq, wdq = b.qdq(w, per_channel=True)
>>> conv = b.call("aten.conv2d.default", dq, wdq, name="conv", tag="conv0", stack_trace="m.py:7")
>>> b.annotate(conv, inputs={x: static(), w: static()}, output=static())
>>> oq, odq = b.qdq(conv)
>>> b.output(odq)
>>> sorted(plan(b.build()).final_state())
['dq', 'dq_1', 'q_1', 'q_2']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..errors import GraphBuildError
from ..profiles import TORCHAO, Profile
from ..records import (
    Annotation,
    NodeRecord,
    NodeRef,
    Opaque,
    QInput,
    QSpec,
    Target,
    TargetKind,
    iter_node_refs,
)
from ..snapshot import Snapshot, build_graph

__all__ = [
    "GraphBuilder",
    "DynamicChain",
    "static",
    "dynamic",
    "shared",
    "derived",
    "fixed",
    "target",
]


def static() -> QSpec:
    """A ``QuantizationSpec`` with ``is_dynamic=False``."""
    return QSpec("QuantizationSpec", False)


def dynamic() -> QSpec:
    """A ``QuantizationSpec`` with ``is_dynamic=True``."""
    return QSpec("QuantizationSpec", True)


def shared() -> QSpec:
    """A ``SharedQuantizationSpec`` (no ``is_dynamic`` attribute: static)."""
    return QSpec("SharedQuantizationSpec", None)


def derived(is_dynamic: bool = False) -> QSpec:
    """A ``DerivedQuantizationSpec`` (``is_dynamic`` defaults to False in torchao 0.18.0)."""
    return QSpec("DerivedQuantizationSpec", is_dynamic)


def fixed(is_dynamic: bool = False) -> QSpec:
    """A ``FixedQParamsQuantizationSpec`` (``is_dynamic`` defaults to False in torchao 0.18.0)."""
    return QSpec("FixedQParamsQuantizationSpec", is_dynamic)


def target(name: str | Target) -> Target:
    """Guess a target's kind from its spelling; pass a :class:`Target` to be explicit.

    ``operator.*`` and ``builtins.*`` are callables; ``ns.op.overload`` (two dots or more) is an
    operator overload; ``ns.op`` (one dot) is an operator packet; no dot is a plain name.

    Example
    -------
    >>> target("aten.view.default").kind.value, target("aten.transpose_").kind.value
    ('overload', 'packet')
    >>> target("operator.getitem").kind.value
    'callable'
    """
    if isinstance(name, Target):
        return name
    if name.startswith(("operator.", "builtins.", "_operator.")):
        return Target.function(name)
    dots = name.count(".")
    if dots >= 2:
        return Target.overload(name)
    if dots == 1:
        return Target.packet(name)
    return Target.named(name)


@attrs.frozen(slots=True)
class DynamicChain:
    """Names of the nodes :meth:`GraphBuilder.dynamic_qdq` created."""

    choose_qparams: str
    scale: str
    zero_point: str
    q: str
    dq: str


_DTYPE = Opaque("torch.dtype", "torch.int8")
_UINT8 = Opaque("torch.dtype", "torch.uint8")


@attrs.define
class _Draft:
    name: str
    op: str
    target: Target
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    meta: dict[str, Any]
    annotation: Annotation | None = None
    foreign: bool = False
    meta_owner: str | None = None


class GraphBuilder:
    """Mutable builder of an immutable snapshot; every method returns node names.

    Parameters
    ----------
    profile:
        Where the helper methods take their quantize / dequantize / choose_qparams op names
        from (the first overload of each kind); :data:`portmeta.TORCHAO` by default.

    Metadata: every node method accepts ``stack_trace=``, ``tag=`` (``quantization_tag``) and
    ``meta=`` (any other keys). Passing ``None`` explicitly for ``tag`` or ``stack_trace``
    records the key with a ``None`` value (presence, not truthiness); leave it out for absent.
    """

    _UNSET: Any = object()

    def __init__(self, profile: Profile = TORCHAO) -> None:
        self._profile = profile
        self._drafts: dict[str, _Draft] = {}
        self._users: dict[str, list[str]] = {}
        self._taken: set[str] = set()
        self._suffix: dict[str, int] = {}  # base name -> last suffix given (as FX's namespace)

    def __len__(self) -> int:
        """The number of nodes added so far.

        Example
        -------
        >>> b = GraphBuilder(); _ = b.qdq(b.placeholder("x")); len(b)
        3
        """
        return len(self._drafts)

    # -- names ----------------------------------------------------------------------------
    def _fresh(self, base: str) -> str:
        base = re.sub(r"[^\w@]", "_", base) or "node"
        name, i = base, self._suffix.get(base, 0)
        while name in self._taken:  # every suffix up to ``i`` is taken: start after it
            i += 1
            name = f"{base}_{i}"
        self._suffix[base] = i
        self._taken.add(name)
        return name

    # -- core -----------------------------------------------------------------------------
    def add(
        self,
        op: str,
        target: str | Target,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        stack_trace: Any = _UNSET,
        tag: Any = _UNSET,
        meta: Mapping[str, Any] | None = None,
        foreign: bool = False,
    ) -> str:
        """Add any node and return its name.

        ``foreign=True`` adds a node that is not one of the graph's own (see
        :attr:`portmeta.NodeRecord.foreign`); give it a name with ``@`` as the FX adapter does.

        As in ``torch.fx``, a name already taken gets a suffix (``q``, ``q_1``, ...). Strings in
        ``args``/``kwargs`` stay strings here: wrap node names with
        :class:`~portmeta.records.NodeRef` (:meth:`call` does this for you).
        """
        tgt = globals()["target"](target)
        if name is None:
            base = (
                tgt.name.split(".")[-2]
                if tgt.kind is TargetKind.OVERLOAD
                else tgt.name.split(".")[-1]
            )
        else:
            base = name
        node_name = self._fresh(base)
        record_meta: dict[str, Any] = {}
        if stack_trace is not self._UNSET:
            record_meta["stack_trace"] = stack_trace
        if tag is not self._UNSET:
            record_meta["quantization_tag"] = tag
        record_meta.update(meta or {})
        draft = _Draft(
            node_name, op, tgt, tuple(args), dict(kwargs or {}), record_meta, foreign=foreign
        )
        for ref in dict.fromkeys(iter_node_refs((draft.args, draft.kwargs))):
            if ref not in self._drafts:
                raise GraphBuildError(f"node {node_name!r} uses unknown node {ref!r}")
            self._users[ref].append(node_name)
        self._drafts[node_name] = draft
        self._users[node_name] = []
        return node_name

    def placeholder(self, name: str, **meta: Any) -> str:
        """A graph input."""
        return self.add("placeholder", Target.named(name), name=name, **meta)

    def get_attr(self, name: str, attr: str | None = None, **meta: Any) -> str:
        """A ``get_attr`` node (a weight or buffer); ``attr`` defaults to ``name``."""
        return self.add("get_attr", Target.named(attr or name), name=name, **meta)

    def call(
        self, target: str | Target, *args: Any, kwargs: Mapping[str, Any] | None = None, **opts: Any
    ) -> str:
        """A ``call_function`` node; positional ``args`` that are node names become references.

        A string argument is taken as a node reference when a node of that name exists; wrap
        it in :class:`~portmeta.records.Opaque` or use :meth:`add` to pass a real string.
        """
        return self.add(
            "call_function",
            target,
            tuple(self._ref(a) for a in args),
            {k: self._ref(v) for k, v in (kwargs or {}).items()},
            **opts,
        )

    def output(self, *values: Any, **meta: Any) -> None:
        """Add the output node (named ``output``) returning ``values`` as a tuple."""
        self.add(
            "output",
            Target.named("output"),
            (tuple(self._ref(v) for v in values),),
            name="output",
            **meta,
        )

    def _ref(self, value: Any) -> Any:
        if isinstance(value, str) and value in self._drafts:
            return NodeRef(value)
        if isinstance(value, list):
            return [self._ref(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._ref(v) for v in value)
        return value

    # -- quantization helpers ---------------------------------------------------------------
    def _op(self, ops: Iterable[Target], prefer: str) -> Target:
        named = {t.name: t for t in ops}
        if prefer in named:
            return named[prefer]
        return sorted(named.values(), key=lambda t: t.name)[0]

    def qdq(
        self,
        x: str,
        *,
        per_channel: bool = False,
        names: tuple[str, str] = ("q", "dq"),
        q_meta: Mapping[str, Any] | None = None,
        dq_meta: Mapping[str, Any] | None = None,
    ) -> tuple[str, str]:
        """A static ``quantize -> dequantize`` pair reading ``x``; returns ``(q, dq)``."""
        kind = "channel" if per_channel else "tensor"
        q_op = self._op(self._profile.quantize, f"quantized_decomposed.quantize_per_{kind}.default")
        dq_op = self._op(
            self._profile.dequantize, f"quantized_decomposed.dequantize_per_{kind}.default"
        )
        qargs: tuple[Any, ...] = (0.1, 0, -128, 127, _DTYPE)
        q = self.call(q_op, x, *qargs, name=names[0], meta=q_meta)
        dq = self.call(dq_op, q, *qargs, name=names[1], meta=dq_meta)
        return q, dq

    def dynamic_qdq(self, x: str, *, symmetric: bool = False) -> DynamicChain:
        """``choose_qparams -> getitem(scale), getitem(zero_point) -> q -> dq`` reading ``x``."""
        cq_name = (
            "quantized_decomposed.choose_qparams_symmetric.tensor"
            if symmetric
            else "quantized_decomposed.choose_qparams.tensor"
        )
        cq = self.call(
            self._op(self._profile.choose_qparams, cq_name),
            x,
            -128,
            127,
            1e-5,
            _DTYPE,
            name="choose_qparams",
        )
        scale = self.call(Target.function("operator.getitem"), cq, 0, name="scale")
        zp = self.call(Target.function("operator.getitem"), cq, 1, name="zero_point")
        qt = "quantized_decomposed.quantize_per_tensor.tensor"
        dqt = "quantized_decomposed.dequantize_per_tensor.tensor"
        q = self.call(
            self._op(self._profile.quantize, qt), x, scale, zp, -128, 127, _DTYPE, name="q"
        )
        dq = self.call(
            self._op(self._profile.dequantize, dqt), q, scale, zp, -128, 127, _DTYPE, name="dq"
        )
        return DynamicChain(cq, scale, zp, q, dq)

    def view(
        self, x: str, op: str | Target = "aten.permute.default", *args: Any, **opts: Any
    ) -> str:
        """A view op (one of the profile's, by default ``aten.permute.default``) reading ``x``."""
        return self.call(op, x, *(args or ([1, 0],)), **opts)

    def sym_size(
        self, x: str, dim: int = 0, op: str | Target = "aten.sym_size.int", **opts: Any
    ) -> str:
        """A sym-size node reading ``x``; ``aten.sym_size.int`` is *not* filtered by upstream."""
        return self.call(op, x, dim, **opts)

    # -- annotations and metadata -------------------------------------------------------------
    def annotate(
        self,
        node: str,
        inputs: Mapping[str, QSpec | None] | Iterable[QInput] | None = None,
        output: QSpec | None = None,
        *,
        check_inputs: bool = True,
    ) -> None:
        """Set ``node``'s quantization annotation (replacing any earlier one).

        ``inputs`` maps input node names to specs or ``None``, as a quantizer's
        ``input_qspec_map`` does: the names are the nodes ``node`` read before ``convert_pt2e``
        put quantize / dequantize pairs in between, that is each node ``node`` reads, followed
        up ``args[0]`` through the profile's quantize / dequantize ops (:meth:`inputs_of`).

        Raises
        ------
        GraphBuildError
            An input that is not one of ``node``'s inputs (the rules would silently skip it),
            naming ``node``'s real inputs; a quantize / dequantize between an input and
            ``node`` (the rules key on the input the walk ends at), naming that input. Pass ``check_inputs=False`` to build such an
            annotation on purpose (a node elsewhere, for a stale annotation); a name that
            is no node of the graph is refused by :meth:`build` (an erased node is a
            ``foreign`` record, as ``portmeta_fx.from_fx`` records it). ``QInput(..., is_node=False)`` entries are
            never checked.

        Example
        -------
        >>> b = GraphBuilder(); w = b.get_attr("w"); p = b.view(w, name="permute")
        >>> _, w_dq = b.qdq(p); lin = b.call("aten.linear.default", w_dq, name="linear")
        >>> b.annotate(lin, inputs={w: static()})
        Traceback (most recent call last):
        ...
        portmeta.errors.GraphBuildError: annotate('linear'): 'w' is not an input of 'linear'; its inputs are 'permute' (read through q -> dq); pass check_inputs=False to build such an annotation on purpose
        >>> b.annotate(lin, inputs={w: static()}, check_inputs=False)  # on purpose
        >>> b.annotate(lin, inputs={p: static()})  # what the quantizer saw
        >>> b.annotate(lin, inputs={w_dq: static()})
        Traceback (most recent call last):
        ...
        portmeta.errors.GraphBuildError: annotate('linear'): 'dq' is not an input of 'linear' but a node on the way to one; name 'permute', the node before q -> dq, as the quantizer saw it before q/dq nodes were put in between; pass check_inputs=False to build such an annotation on purpose
        """
        annotation = Annotation.of(inputs if inputs is not None else {}, output)
        if check_inputs:
            real = self.inputs_of(node)
            for entry in annotation.inputs:
                if entry.is_node and entry.node not in real:
                    raise GraphBuildError(self._not_an_input(node, entry.node, real))
        self._draft(node).annotation = annotation

    def inputs_of(self, node: str) -> dict[str, tuple[str, ...]]:
        """``node``'s inputs as an annotation names them, each with the nodes read through.

        Every node ``node`` reads (in its arguments, in order) is followed up ``args[0]`` while
        its target is one of the profile's workflow ops (quantize, dequantize,
        ``choose_qparams.tensor``: the nodes the static rule's walk passes through); where the
        walk ends is an input, the key. The value lists the workflow nodes in between, in
        data-flow order; :meth:`annotate` refuses them, with a hint to name the key instead
        (neither the static nor the dynamic rule finds anything from a quantize / dequantize).

        Example
        -------
        >>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
        >>> b.inputs_of(b.call("aten.add.Tensor", dq, x, name="add"))
        {'x': ('q', 'dq')}
        """
        found: dict[str, tuple[str, ...]] = {}
        draft = self._draft(node)
        for ref in iter_node_refs((draft.args, draft.kwargs)):
            end, walked = self._walk_up(ref)
            via = found.get(end, ())
            found[end] = via + tuple(n for n in walked if n not in via)
        return found

    def input_key(self, value: str) -> str:
        """The name an annotation gives an input read through ``value``: the node the walk up
        from ``value`` (through the profile's quantize / dequantize ops) ends at.

        Example
        -------
        >>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
        >>> b.input_key(dq), b.input_key(x)
        ('x', 'x')
        """
        self._draft(value)
        return self._walk_up(value)[0]

    def _walk_up(self, start: str) -> tuple[str, tuple[str, ...]]:
        """Where the walk up ``args[0]`` from ``start`` ends, and the workflow nodes passed
        (in data-flow order)."""
        walked: list[str] = []
        cur: _Draft | None = self._drafts[start]
        while cur is not None and cur.target in self._profile.workflow_ops:
            first = cur.args[0] if cur.args else None
            walked.append(cur.name)
            cur = self._drafts[first.name] if isinstance(first, NodeRef) else None
        end = cur.name if cur is not None else walked.pop()  # a constant stops the walk
        return end, tuple(reversed(walked))

    def _not_an_input(self, node: str, name: str, real: Mapping[str, tuple[str, ...]]) -> str:
        for end, via in real.items():
            if name in via:  # a q/dq node on the way: the rules key on where the walk ends
                return (
                    f"annotate({node!r}): {name!r} is not an input of {node!r} but a node on the "
                    f"way to one; name {end!r}, the node before {' -> '.join(via)}, as the "
                    "quantizer saw it before q/dq nodes were put in between; pass "
                    "check_inputs=False to build such an annotation on purpose"
                )
        known = name in self._drafts
        where = f"is not an input of {node!r}" if known else "is not a node of this graph"
        listed = ", ".join(
            f"{i!r} (read through {' -> '.join(via)})" if via else repr(i)
            for i, via in real.items()
        )
        return (
            f"annotate({node!r}): {name!r} {where}; its inputs are {listed or 'none'}; "
            "pass check_inputs=False to build such an annotation on purpose"
        )

    def set_annotation(self, node: str, annotation: Annotation | None) -> None:
        """Set ``node``'s annotation record as given (``None`` removes it), e.g. a malformed one."""
        self._draft(node).annotation = annotation

    def share_meta(self, node: str, owner: str) -> None:
        """Make ``node`` share ``owner``'s meta dict (as ``node.meta = owner.meta`` does in FX).

        ``owner`` must come before ``node``; ``node``'s own metadata is replaced by the owner's.
        """
        self._draft(node).meta = self._draft(owner).meta
        self._draft(node).meta_owner = owner

    def set_meta(self, node: str, **meta: Any) -> None:
        """Set metadata keys on ``node`` (``tag`` means ``quantization_tag``)."""
        if "tag" in meta:
            meta["quantization_tag"] = meta.pop("tag")
        self._draft(node).meta.update(meta)

    def reorder_users(self, node: str, order: Sequence[str]) -> None:
        """Give ``node``'s users a different order (as FX does after ``replace_input_with``)."""
        if sorted(order) != sorted(self._users[node]):
            raise GraphBuildError(
                f"new users order for {node!r} must be a permutation of {self._users[node]!r}"
            )
        self._users[node] = list(order)

    def _draft(self, node: str) -> _Draft:
        try:
            return self._drafts[node]
        except KeyError:
            raise GraphBuildError(f"no node named {node!r}") from None

    # -- result -------------------------------------------------------------------------------
    def records(self) -> list[NodeRecord]:
        """The records so far, in graph order."""
        return [
            NodeRecord.of(
                d.name,
                d.op,
                d.target,
                args=d.args,
                kwargs=d.kwargs,
                users=tuple(self._users[d.name]),
                meta=d.meta,
                annotation=d.annotation,
                foreign=d.foreign,
                meta_owner=d.meta_owner,
            )
            for d in self._drafts.values()
        ]

    def build(self, meta_keys: Sequence[str] | None = None) -> Snapshot:
        """The frozen snapshot (see :func:`portmeta.build_graph`)."""
        return build_graph(self.records(), meta_keys=meta_keys)
