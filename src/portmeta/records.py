"""Immutable value records describing one node of a quantized graph.

Every record is an attrs frozen, slotted class with plain fields: attrs' generated ``__init__``
stores what it is given, no converter or check runs. Values are normalised and checked at the
boundary instead: the classmethod factories (:meth:`NodeRecord.of`, :meth:`Annotation.of`,
:meth:`Target.of`), the readers (``portmeta_fx.from_fx``, :func:`portmeta.load_graph`) and
:func:`portmeta.build_graph`, which checks every record once. Build new records with
:func:`attrs.evolve`, never by mutation.

The records hold only plain data: node references inside ``args`` and ``kwargs`` are
:class:`NodeRef` values, constants the snapshot could not represent as JSON types are
:class:`Opaque` values, and operator targets are :class:`Target` values whose ``kind`` keeps an
operator overload, an operator packet, a Python callable and a plain name apart even where their
strings would look alike.

Example
-------
>>> from portmeta.records import NodeRecord, NodeRef, Opaque, Target
>>> q = NodeRecord.of(
...     "q",
...     "call_function",
...     Target.overload("quantized_decomposed.quantize_per_tensor.default"),
...     args=[NodeRef("x"), 0.1, 0, -128, 127, Opaque("torch.dtype", "torch.int8")],
...     users=["dq"],
... )
>>> q.input_names(), q.users
(('x',), ('dq',))
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

__all__ = [
    "TargetKind",
    "Target",
    "NodeRef",
    "Opaque",
    "ArgValue",
    "QSpec",
    "QInput",
    "Annotation",
    "Malformed",
    "NodeRecord",
    "OPS",
    "iter_node_refs",
]

#: The ``op`` values ``torch.fx`` creates. A saved graph must use one of them; a record built
#: in Python accepts any non-empty string, as a node whose ``op`` was reassigned by hand is still
#: walked by upstream.
OPS = frozenset(
    {"placeholder", "get_attr", "call_function", "call_method", "call_module", "output"}
)


class TargetKind(str, enum.Enum):
    """What a node's target is.

    ``OVERLOAD`` (``aten.view.default``) and ``PACKET`` (``torchao.quantize_affine``) are torch
    operators; ``CALLABLE`` is any other Python callable (``operator.getitem``); ``NAME`` is a
    string target: a placeholder, attribute, module or method name.

    Example
    -------
    >>> TargetKind("packet") is TargetKind.PACKET
    True
    """

    OVERLOAD = "overload"
    PACKET = "packet"
    CALLABLE = "callable"
    NAME = "name"


@attrs.frozen(cache_hash=True)
class Target:
    """A node target as a canonical string plus its kind.

    Two targets are equal only if both the string and the kind are equal, so the packet
    ``torchao.quantize_affine`` never equals the overload ``torchao.quantize_affine.default``
    and an attribute named ``aten.view.default`` never equals the operator.

    Example
    -------
    >>> Target.packet("torchao.quantize_affine") == Target.overload("torchao.quantize_affine")
    False
    >>> str(Target.overload("aten.view.default"))
    'aten.view.default'
    """

    name: str
    kind: TargetKind

    @classmethod
    def of(cls, name: str, kind: TargetKind | str) -> Target:
        """The target ``name`` of ``kind`` (a :class:`TargetKind` or its value), checked.

        Example
        -------
        >>> Target.of("aten.relu.default", "overload") == Target.overload("aten.relu.default")
        True
        >>> Target.of("x", "nonsense")
        Traceback (most recent call last):
        ...
        ValueError: 'nonsense' is not a valid TargetKind
        """
        if not isinstance(name, str):
            raise TypeError(f"a target's name must be a str, got {name!r}")
        return cls(name, kind if isinstance(kind, TargetKind) else TargetKind(kind))

    @classmethod
    def overload(cls, name: str) -> Target:
        """An operator overload such as ``aten.view.default``."""
        return cls.of(name, TargetKind.OVERLOAD)

    @classmethod
    def packet(cls, name: str) -> Target:
        """An operator packet such as ``torchao.quantize_affine``."""
        return cls.of(name, TargetKind.PACKET)

    @classmethod
    def function(cls, name: str) -> Target:
        """A Python callable such as ``operator.getitem``."""
        return cls.of(name, TargetKind.CALLABLE)

    @classmethod
    def named(cls, name: str) -> Target:
        """A string target: placeholder, attribute, module or method name."""
        return cls.of(name, TargetKind.NAME)

    def __str__(self) -> str:
        return self.name


@attrs.frozen
class NodeRef:
    """A reference to another node inside ``args`` / ``kwargs``.

    Example
    -------
    >>> NodeRef("x") == "x", NodeRef("x")
    (False, NodeRef(name='x'))
    """

    name: str


@attrs.frozen
class Opaque:
    """A constant the snapshot keeps only as text: its type name and its ``repr``.

    Example
    -------
    >>> Opaque("torch.dtype", "torch.int8")
    Opaque(type_name='torch.dtype', text='torch.int8')
    """

    type_name: str
    text: str

    def __str__(self) -> str:
        return self.text


#: What may appear in ``args``, ``kwargs`` and metadata values: ``NodeRef``, ``Opaque``,
#: ``None``, ``bool``, ``int``, ``float``, ``str`` and lists, tuples and dicts of these.
ArgValue = (
    NodeRef
    | Opaque
    | None
    | bool
    | int
    | float
    | str
    | list[Any]
    | tuple[Any, ...]
    | dict[Any, Any]
)


def iter_node_refs(value: Any) -> Iterator[str]:
    """Yield the names of every :class:`NodeRef` inside ``value``, depth first, in order.

    Dict keys are not searched: as in ``torch.fx``, only dict values hold inputs.

    Example
    -------
    >>> list(iter_node_refs((NodeRef("a"), [1, NodeRef("b")], {NodeRef("c"): NodeRef("a")})))
    ['a', 'b', 'a']
    """
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, NodeRef):
            yield item.name
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))


@attrs.frozen
class QSpec:
    """The part of a quantization spec that planning reads.

    ``is_dynamic`` is ``True`` / ``False`` when the spec has that attribute and ``None`` when it
    does not (in torchao 0.18.0 only ``SharedQuantizationSpec`` has none; ``Derived`` and
    ``FixedQParams`` specs default to ``False`` and may be ``True``). Only ``True`` selects the
    dynamic rule.

    Example
    -------
    >>> QSpec("SharedQuantizationSpec").dynamic
    False
    >>> QSpec("QuantizationSpec", is_dynamic=True).dynamic
    True
    """

    kind: str
    is_dynamic: bool | None = None

    @property
    def dynamic(self) -> bool:
        """Whether the dynamic input rule applies (``is_dynamic is True``)."""
        return self.is_dynamic is True


@attrs.frozen
class QInput:
    """One entry of an annotation's ``input_qspec_map``.

    ``node`` names the input's record. ``is_node`` is False when the annotation's key is not an
    FX node at all (a string, a tuple...): it connects to nothing, and the dynamic rule fails on
    it like upstream (``AttributeError``).

    Example
    -------
    >>> QInput("x", QSpec("QuantizationSpec", False)).is_node
    True
    """

    node: str
    qspec: QSpec | None = None
    is_node: bool = True


@attrs.frozen
class Malformed:
    """An annotation object upstream cannot read, and the error reading it raises.

    ``error`` names the built-in exception upstream's ``is_valid_annotation`` or its
    ``input_qspec_map.items()`` call raises (``AttributeError`` for a missing attribute,
    ``TypeError`` for a map without ``len``); ``message`` is its text.

    Example
    -------
    >>> Malformed("AttributeError", "'dict' object has no attribute 'output_qspec'").error
    'AttributeError'
    """

    error: str
    message: str


@attrs.frozen
class Annotation:
    """A quantization annotation as plain data: ordered inputs and the output spec.

    Build one from a mapping with :meth:`of`.

    Example
    -------
    >>> ann = Annotation.of({"x": QSpec("QuantizationSpec", False)})
    >>> ann.is_valid, [i.node for i in ann.inputs]
    (True, ['x'])
    >>> Annotation().is_valid
    False
    """

    inputs: tuple[QInput, ...] = ()
    output: QSpec | None = None
    malformed: Malformed | None = None

    @classmethod
    def of(
        cls,
        inputs: Mapping[str, QSpec | None] | Iterable[QInput] = (),
        output: QSpec | None = None,
        malformed: Malformed | None = None,
    ) -> Annotation:
        """An annotation from ``{input name: QSpec | None}`` (insertion order kept) or a
        sequence of :class:`QInput`, checked.

        Example
        -------
        >>> Annotation.of({"x": None}, output=QSpec("QuantizationSpec")).inputs
        (QInput(node='x', qspec=None, is_node=True),)
        >>> Annotation.of(output="int8")
        Traceback (most recent call last):
        ...
        TypeError: an annotation's output must be a QSpec or None, got 'int8'
        """
        if isinstance(inputs, Mapping):
            items = tuple(QInput(name, spec) for name, spec in inputs.items())
        else:
            items = tuple(inputs)
        ann = cls(items, output, malformed)
        problem = annotation_problem(ann)
        if problem is not None:
            raise TypeError(problem)
        return ann

    @property
    def is_valid(self) -> bool:
        """Upstream's test: an annotation with no inputs and no output spec is ignored.

        A malformed annotation is not "ignored": upstream fails on it (see :class:`Malformed`).
        """
        return bool(self.inputs) or self.output is not None or self.malformed is not None


def _qspec_problem(spec: Any, where: str) -> str | None:
    if spec is None:
        return None
    if not isinstance(spec, QSpec):
        return f"{where} must be a QSpec or None, got {spec!r}"
    if not isinstance(spec.kind, str):
        return f"{where}'s kind must be a str, got {spec.kind!r}"
    if spec.is_dynamic is not None and type(spec.is_dynamic) is not bool:
        return f"{where}'s is_dynamic must be True, False or None, got {spec.is_dynamic!r}"
    return None


def annotation_problem(ann: Any) -> str | None:
    """What is wrong with the fields of ``ann`` (an :class:`Annotation`), or ``None``.

    Example
    -------
    >>> annotation_problem(Annotation((QInput(1),)))
    "an annotation's input must name a node (a str), got 1"
    """
    if not isinstance(ann, Annotation):
        return f"an annotation must be an Annotation or None, got {ann!r}"
    if type(ann.inputs) is not tuple:
        return f"an annotation's inputs must be a tuple, got {ann.inputs!r}"
    for inp in ann.inputs:
        if not isinstance(inp, QInput):
            return f"an annotation's inputs must be QInput records, got {inp!r}"
        if not isinstance(inp.node, str):
            return f"an annotation's input must name a node (a str), got {inp.node!r}"
        if type(inp.is_node) is not bool:
            return f"input {inp.node!r}: is_node must be True or False, got {inp.is_node!r}"
        problem = _qspec_problem(inp.qspec, f"input {inp.node!r}: the qspec")
        if problem is not None:
            return problem
    problem = _qspec_problem(ann.output, "an annotation's output")
    if problem is not None:
        return problem
    bad = ann.malformed
    if bad is not None and not (
        isinstance(bad, Malformed) and isinstance(bad.error, str) and isinstance(bad.message, str)
    ):
        return f"an annotation's malformed must be Malformed(error, message) or None, got {bad!r}"
    return None


def _pairs(value: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> tuple[tuple[str, Any], ...]:
    """A mapping or ``(key, value)`` pairs as pairs with ``str`` keys, as a JSON object holds
    them (a repeated key keeps its last value in its first place)."""
    items = value.items() if isinstance(value, Mapping) else value
    out: dict[str, Any] = {}
    for k, v in items:
        out[str(k)] = v
    return tuple(out.items())


@attrs.frozen
class NodeRecord:
    """One node of the snapshot.

    Build one with :meth:`of`, which takes lists and mappings and checks the fields; the
    constructor stores its arguments as given (readers that already hold the right types use
    it, and :func:`portmeta.build_graph` checks every record either way).

    Parameters
    ----------
    name, op, target:
        As on ``torch.fx.Node``; ``target`` is a :class:`Target`.
    args, kwargs:
        Arguments with node references as :class:`NodeRef`: a tuple, and ``(key, value)``
        pairs in their order.
    users:
        Names of the node's users, in ``node.users`` order.
    meta:
        ``(key, value)`` pairs of the metadata keys planning reads, in the order given. Absent
        keys are absent (presence, not truthiness, decides whether a key is copied).
    annotation:
        The quantization annotation, or ``None``.
    foreign:
        The node is not one of the graph's own nodes but is reachable from them (through
        arguments, users or an annotation's inputs): a node of another graph, or an erased one.
        Upstream's rules walk through such nodes and write to them, so the snapshot keeps them,
        after the graph's own nodes; planning never visits their annotations.
    meta_owner:
        The name of an earlier node whose ``meta`` dict this node shares (``node.meta is
        owner.meta``, as passes that do ``new.meta = old.meta`` leave it), or ``None``. Upstream
        writes in place, so a write to either shows on both; planning keeps one view for them.

    Example
    -------
    >>> rec = NodeRecord.of("x", "placeholder", Target.named("x"), meta={"stack_trace": "a.py:1"})
    >>> rec.meta, rec.meta_dict()
    ((('stack_trace', 'a.py:1'),), {'stack_trace': 'a.py:1'})
    """

    name: str
    op: str
    target: Target
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    users: tuple[str, ...] = ()
    meta: tuple[tuple[str, Any], ...] = ()
    annotation: Annotation | None = None
    foreign: bool = False
    meta_owner: str | None = None

    @classmethod
    def of(
        cls,
        name: str,
        op: str,
        target: Target,
        *,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
        users: Iterable[str] = (),
        meta: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
        annotation: Annotation | None = None,
        foreign: bool = False,
        meta_owner: str | None = None,
    ) -> NodeRecord:
        """A record from lists and mappings, its fields checked.

        Raises
        ------
        TypeError, ValueError
            A field of the wrong type (the message names the node and the field).

        Example
        -------
        >>> NodeRecord.of("y", "call_function", "relu")
        Traceback (most recent call last):
        ...
        TypeError: node 'y': target must be a Target, got 'relu'
        """
        fields: dict[str, Any] = {"args": args, "kwargs": kwargs, "users": users, "meta": meta}
        for field, value in fields.items():
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise TypeError(
                    f"node {name!r}: {field} must be a list, tuple or mapping, got {value!r}"
                )
        pairs = {}
        for field in ("kwargs", "meta"):
            try:
                pairs[field] = _pairs(fields[field])
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"node {name!r}: {field} must be a mapping or (key, value) pairs ({exc})"
                ) from None
        rec = cls(
            name,
            op,
            target,
            tuple(args),
            pairs["kwargs"],
            tuple(users),
            pairs["meta"],
            annotation,
            foreign,
            meta_owner,
        )
        problem = record_problem(rec)
        if problem is not None:
            raise (ValueError if rec.op == "" else TypeError)(problem)
        return rec

    def meta_dict(self) -> dict[str, Any]:
        """The recorded metadata as a new dict (key order kept)."""
        return dict(self.meta)

    def input_names(self) -> tuple[str, ...]:
        """Names of the nodes referenced by args and kwargs, first occurrence order, no repeats."""
        seen: dict[str, None] = {}
        for value in (*self.args, *(v for _, v in self.kwargs)):
            if type(value) is NodeRef:  # the usual argument
                seen[value.name] = None
            elif isinstance(value, (list, tuple, dict)):
                seen.update(dict.fromkeys(iter_node_refs(value)))
        return tuple(seen)


def _is_pairs(value: Any) -> bool:
    if type(value) is not tuple:
        return False
    for pair in value:
        if type(pair) is not tuple or len(pair) != 2 or not isinstance(pair[0], str):
            return False
    return len(value) < 2 or len({key for key, _ in value}) == len(value)


def record_problem(rec: Any) -> str | None:
    """What is wrong with the field types of ``rec`` (a :class:`NodeRecord`), or ``None``.

    The one check of a record's fields: :meth:`NodeRecord.of` and
    :func:`portmeta.build_graph` run it.

    Example
    -------
    >>> record_problem(NodeRecord("x", "placeholder", Target.named("x"), meta={"k": 1}))
    "node 'x': meta must be a tuple of (key, value) pairs, each key once, got {'k': 1}; build records with NodeRecord.of(...)"
    """
    if not isinstance(rec, NodeRecord):
        return f"expected NodeRecord, got {type(rec).__name__}"
    if not isinstance(rec.name, str):
        return f"NodeRecord name must be a str, got {rec.name!r}"
    where = f"node {rec.name!r}"
    if not isinstance(rec.op, str):
        return f"{where}: op must be a str, got {rec.op!r}"
    if not rec.op:
        return f"{where}: op must not be empty"
    if not (
        isinstance(rec.target, Target)
        and isinstance(rec.target.name, str)
        and isinstance(rec.target.kind, TargetKind)
    ):
        return f"{where}: target must be a Target, got {rec.target!r}"
    if type(rec.args) is not tuple:
        return f"{where}: args must be a tuple, got {rec.args!r}"
    for field in ("kwargs", "meta"):
        if not _is_pairs(getattr(rec, field)):
            return (
                f"{where}: {field} must be a tuple of (key, value) pairs, each key once, got "
                f"{getattr(rec, field)!r}; build records with NodeRecord.of(...)"
            )
    if type(rec.users) is not tuple or not all(isinstance(u, str) for u in rec.users):
        return f"{where}: users must be a tuple of node names, got {rec.users!r}"
    if rec.annotation is not None:
        problem = annotation_problem(rec.annotation)
        if problem is not None:
            return f"{where}: {problem}"
    if type(rec.foreign) is not bool:
        return f"{where}: foreign must be True or False, got {rec.foreign!r}"
    if rec.meta_owner is not None and not isinstance(rec.meta_owner, str):
        return f"{where}: meta_owner must be a node name or None, got {rec.meta_owner!r}"
    return None
