"""Immutable value records describing one node of a quantized graph.

Everything here is an attrs frozen, slotted class: build new records with :func:`attrs.evolve`,
never by mutation. The records take no weak references (``weakref_slot=False``, which lets
:func:`trusted_constructor` build them at about half the cost). The records hold only plain data: node references inside ``args`` and
``kwargs`` are :class:`NodeRef` values, constants the snapshot could not represent as JSON
types are :class:`Opaque` values, and operator targets are :class:`Target` values whose
``kind`` keeps an operator overload, an operator packet, a Python callable and a plain name
apart even where their strings would look alike.

Example
-------
>>> from portmeta.records import NodeRecord, NodeRef, Target
>>> q = NodeRecord(
...     name="q",
...     op="call_function",
...     target=Target.overload("quantized_decomposed.quantize_per_tensor.default"),
...     args=(NodeRef("x"), 0.1, 0, -128, 127, Opaque("torch.dtype", "torch.int8")),
...     users=("dq",),
... )
>>> q.input_names()
('x',)
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

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
    "trusted_constructor",
]

#: The ``op`` values ``torch.fx`` creates (a record accepts any non-empty string, as a node
#: whose ``op`` was reassigned by hand is still walked by upstream).
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


_T = TypeVar("_T")


def trusted_constructor(cls: type[_T]) -> Callable[..., _T]:
    """A constructor for the slotted attrs class ``cls`` that stores its arguments as given.

    It takes every field positionally, in field order, and runs no converter, validator or
    ``__attrs_post_init__`` check: it is for producers whose values already have the types the
    fields hold (the FX reader, the JSON reader after its own checks, the planner). The result
    is an ordinary instance of ``cls``, equal to the one the checked constructor makes from the
    same values.

    A frozen class refuses plain attribute stores, so its ``__init__`` sets each slot through
    ``object.__setattr__``. Here the fields are stored on an instance of a *mutable twin* (a
    plain class with the same slots) by plain stores, which CPython specialises, and the instance
    then becomes a ``cls`` by ``__class__`` assignment, which CPython allows between classes of
    the same layout: about half the cost for a ten-field record (measured in
    docs/performance.md). That needs ``cls`` without a ``__weakref__`` slot (attrs'
    ``weakref_slot=False``, as the records here are declared); for any other class the slots are
    set through their descriptors instead.

    Example
    -------
    >>> make = trusted_constructor(NodeRef)
    >>> make("x") == NodeRef("x"), type(make("x")) is NodeRef
    (True, True)
    """
    fields = [a.name for a in attrs.fields(cls)]  # type: ignore[arg-type]
    slots = tuple(getattr(cls, "__slots__", ()))
    cached_hash = "_attrs_cached_hash" in slots  # attrs' cache_hash=True slot
    params = ", ".join(fields)
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    twin = _mutable_twin(cls, slots)
    if twin is not None:
        namespace["twin"] = twin
        body = "".join(f"    obj.{f} = {f}\n" for f in fields)
        if cached_hash:
            body += "    obj._attrs_cached_hash = None\n"
        code = f"def make({params}):\n    obj = new(twin)\n{body}    obj.__class__ = cls\n    return obj\n"
    else:
        body = "".join(f"    set_{f}(obj, {f})\n" for f in fields)
        for f in fields:
            namespace[f"set_{f}"] = cls.__dict__[f].__set__
        if cached_hash:
            namespace["set_hash"] = cls.__dict__["_attrs_cached_hash"].__set__
            body += "    set_hash(obj, None)\n"
        code = f"def make({params}):\n    obj = new(cls)\n{body}    return obj\n"
    exec(compile(code, f"<trusted constructor of {cls.__qualname__}>", "exec"), namespace)
    make: Callable[..., _T] = namespace["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make


def _mutable_twin(cls: type[Any], slots: tuple[str, ...]) -> type[Any] | None:
    """A plain class with the slots of ``cls`` whose instances may become ``cls`` instances
    (``None`` when CPython refuses the ``__class__`` assignment: another layout)."""
    if not slots or cls.__bases__ != (object,):
        return None
    twin = type(f"_Mutable{cls.__name__}", (), {"__slots__": slots})
    probe: Any = object.__new__(twin)
    try:
        probe.__class__ = cls
    except TypeError:  # "object layout differs": a __weakref__ slot, a base with slots...
        return None
    return twin


#: Operator targets, interned: a graph names few distinct operators many times, and an
#: interned target makes the profiles' set lookups identity hits.
_INTERNED: dict[tuple[str, TargetKind], Target] = {}
_INTERN_LIMIT = 20_000


@attrs.frozen(slots=True, cache_hash=True, weakref_slot=False)
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

    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    kind: TargetKind = attrs.field(converter=TargetKind)

    @classmethod
    def of(cls, name: str, kind: TargetKind | str) -> Target:
        """The target ``name`` of ``kind``; operator targets (a bounded vocabulary) are interned.

        Example
        -------
        >>> Target.of("aten.relu.default", "overload") is Target.overload("aten.relu.default")
        True
        """
        kind = TargetKind(kind)
        if kind is not TargetKind.OVERLOAD and kind is not TargetKind.PACKET:
            # names and callables are open-ended (one per attribute, a repr per lambda): a
            # process-wide table of them would only grow
            return cls(name, kind)
        key = (name, kind)
        found = _INTERNED.get(key)
        if found is None:
            found = cls(name, kind)
            if len(_INTERNED) < _INTERN_LIMIT:  # a file naming endless "operators" stops here
                _INTERNED[key] = found
        return found

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
        if type(name) is not str:
            return cls(name, TargetKind.NAME)  # the checked constructor says what is wrong
        return _new_target(name, TargetKind.NAME)

    def __str__(self) -> str:
        return self.name


_new_target = trusted_constructor(Target)


@attrs.frozen(slots=True, repr=False, weakref_slot=False)
class NodeRef:
    """A reference to another node inside ``args`` / ``kwargs``.

    Example
    -------
    >>> NodeRef("x") == "x", NodeRef("x")
    (False, NodeRef(name='x'))
    """

    name: str = attrs.field(validator=attrs.validators.instance_of(str))

    def __repr__(self) -> str:  # attrs' format, written out: v1 fingerprints repr every argument
        return f"NodeRef(name={self.name!r})"


@attrs.frozen(slots=True, repr=False, weakref_slot=False)
class Opaque:
    """A constant the snapshot keeps only as text: its type name and its ``repr``.

    Example
    -------
    >>> Opaque("torch.dtype", "torch.int8")
    Opaque(type_name='torch.dtype', text='torch.int8')
    """

    type_name: str
    text: str

    def __repr__(self) -> str:  # attrs' format, written out: v1 fingerprints repr every argument
        return f"Opaque(type_name={self.type_name!r}, text={self.text!r})"

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


@attrs.frozen(slots=True, weakref_slot=False)
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

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.kind, str):
            raise TypeError(f"QSpec kind must be a str, got {self.kind!r}")
        if self.is_dynamic is not None and not isinstance(self.is_dynamic, bool):
            raise TypeError(
                f"QSpec is_dynamic must be True, False or None, got {self.is_dynamic!r}"
            )

    @property
    def dynamic(self) -> bool:
        """Whether the dynamic input rule applies (``is_dynamic is True``)."""
        return self.is_dynamic is True


@attrs.frozen(slots=True, weakref_slot=False)
class QInput:
    """One entry of an annotation's ``input_qspec_map``.

    ``node`` names the input's record. ``is_node`` is False when the annotation's key is not an
    FX node at all (a string, a tuple...): it connects to nothing, and the dynamic rule fails on
    it like upstream (``AttributeError``). A node name that is not in the graph is an input
    without users (an erased node a hand-built graph still names).

    Example
    -------
    >>> QInput("x", QSpec("QuantizationSpec", False)).is_node
    True
    """

    node: str
    qspec: QSpec | None = None
    is_node: bool = True

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.node, str):
            raise TypeError(f"QInput node must be a node name (str), got {self.node!r}")
        if self.qspec is not None and not isinstance(self.qspec, QSpec):
            raise TypeError(
                f"input {self.node!r}: qspec must be a QSpec or None, got {self.qspec!r}"
            )


@attrs.frozen(slots=True, weakref_slot=False)
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


def _to_inputs(value: Any) -> tuple[QInput, ...]:
    if type(value) is tuple:
        return value
    if isinstance(value, Mapping):
        return tuple(QInput(name, spec) for name, spec in value.items())
    return tuple(value)


@attrs.frozen(slots=True, weakref_slot=False)
class Annotation:
    """A quantization annotation as plain data: ordered inputs and the output spec.

    ``inputs`` accepts a mapping ``{input name: QSpec | None}`` or a sequence of
    :class:`QInput`; it is stored as a tuple in insertion order.

    Example
    -------
    >>> ann = Annotation({"x": QSpec("QuantizationSpec", False)}, output=None)
    >>> ann.is_valid, [i.node for i in ann.inputs]
    (True, ['x'])
    >>> Annotation({}, None).is_valid
    False
    """

    inputs: tuple[QInput, ...] = attrs.field(factory=tuple, converter=_to_inputs)
    output: QSpec | None = None
    malformed: Malformed | None = None

    def __attrs_post_init__(self) -> None:
        if self.output is not None and not isinstance(self.output, QSpec):
            raise TypeError(f"Annotation output must be a QSpec or None, got {self.output!r}")
        if self.malformed is not None and not isinstance(self.malformed, Malformed):
            raise TypeError(
                f"Annotation malformed must be Malformed or None, got {self.malformed!r}"
            )

    @property
    def is_valid(self) -> bool:
        """Upstream's test: an annotation with no inputs and no output spec is ignored.

        A malformed annotation is not "ignored": upstream fails on it (see :class:`Malformed`).
        """
        return bool(self.inputs) or self.output is not None or self.malformed is not None


def names(value: Iterable[str]) -> tuple[str, ...]:
    """Converter: any iterable of node names to a tuple (for attrs fields)."""
    return value if type(value) is tuple else tuple(value)


def _args(value: Iterable[Any]) -> tuple[Any, ...]:
    return value if type(value) is tuple else tuple(value)


def _is_pairs(value: tuple[Any, ...]) -> bool:
    """Whether ``value`` is already ``((str key, value), ...)`` with no key twice."""
    for pair in value:
        if type(pair) is not tuple or len(pair) != 2 or type(pair[0]) is not str:
            return False
    return len(value) < 2 or len({k for k, _ in value}) == len(value)


def _to_meta(value: Any) -> tuple[tuple[str, Any], ...]:
    """Converter: a mapping or pairs to ``((str key, value), ...)``, as a JSON object holds
    them (keys as strings, a repeated key keeping its last value in its first place)."""
    if type(value) is tuple and _is_pairs(value):  # already converted
        return value
    items = value.items() if isinstance(value, Mapping) else value
    out: dict[str, Any] = {}
    for k, v in items:
        out[str(k)] = v
    return tuple(out.items())


@attrs.frozen(slots=True, weakref_slot=False)
class NodeRecord:
    """One node of the snapshot.

    Parameters
    ----------
    name, op, target:
        As on ``torch.fx.Node``; ``target`` is a :class:`Target`.
    args, kwargs:
        Arguments with node references as :class:`NodeRef`. ``kwargs`` keeps its order.
    users:
        Names of the node's users, in ``node.users`` order.
    meta:
        The values of the metadata keys planning reads, in the order given. Absent keys are
        absent (presence, not truthiness, decides whether a key is copied).
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
    >>> rec = NodeRecord("x", "placeholder", Target.named("x"), meta={"stack_trace": "a.py:1"})
    >>> rec.meta_dict()
    {'stack_trace': 'a.py:1'}
    """

    name: str
    op: str
    target: Target
    args: tuple[Any, ...] = attrs.field(default=(), converter=_args)
    kwargs: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=_to_meta)
    users: tuple[str, ...] = attrs.field(default=(), converter=names)
    meta: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=_to_meta)
    annotation: Annotation | None = None
    foreign: bool = False
    meta_owner: str | None = None

    def __attrs_post_init__(self) -> None:
        # one check of the fields a snapshot walks, where attrs validators would cost a call each
        if type(self.name) is not str and not isinstance(self.name, str):
            raise TypeError(f"NodeRecord name must be a str, got {self.name!r}")
        if type(self.op) is not str and not isinstance(self.op, str):
            raise TypeError(f"node {self.name!r}: op must be a str, got {self.op!r}")
        if not self.op:
            raise ValueError(f"node {self.name!r}: op must not be empty")
        if type(self.target) is not Target and not isinstance(self.target, Target):
            raise TypeError(f"node {self.name!r}: target must be a Target, got {self.target!r}")
        ann = self.annotation
        if ann is not None and type(ann) is not Annotation and not isinstance(ann, Annotation):
            raise TypeError(f"node {self.name!r}: annotation must be an Annotation, got {ann!r}")
        if self.foreign is not True and self.foreign is not False:
            raise TypeError(
                f"node {self.name!r}: foreign must be True or False, got {self.foreign!r}"
            )
        if self.meta_owner is not None and not isinstance(self.meta_owner, str):
            raise TypeError(
                f"node {self.name!r}: meta_owner must be a node name or None, got {self.meta_owner!r}"
            )

    def meta_dict(self) -> dict[str, Any]:
        """The recorded metadata as a new dict (key order kept)."""
        return dict(self.meta)

    def input_names(self) -> tuple[str, ...]:
        """Names of the nodes referenced by args and kwargs, first occurrence order, no repeats."""
        seen: dict[str, None] = {}
        for value in (*self.args, *(v for _, v in self.kwargs)):
            if type(value) is NodeRef:  # the common case, without the generic walk
                seen.setdefault(value.name, None)
            elif isinstance(value, (list, tuple, dict)):
                for name in iter_node_refs(value):
                    seen.setdefault(name, None)
        return tuple(seen)
