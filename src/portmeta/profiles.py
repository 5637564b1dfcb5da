"""Profiles: the op vocabularies and metadata keys of one upstream version, as data.

Rules never name an operator; they ask the profile. :data:`TORCHAO` (the default) is torchao
0.18.0's ``PortNodeMetaForQDQ``; :data:`LEGACY_TORCH_AO` is the removed
``torch.ao.quantization.pt2e`` version. Derive your own with :meth:`Profile.extend` (more keys,
more view ops) or :func:`attrs.evolve`.

Example
-------
>>> from portmeta import TORCHAO
>>> mine = TORCHAO.extend(name="torchao+et", keys=("nn_module_stack", "custom"))
>>> mine.keys
('stack_trace', 'quantization_tag', 'nn_module_stack', 'custom')
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from .errors import ProfileError
from .records import NodeRecord, Target

__all__ = ["Profile", "DYNAMIC_CHAINS", "TORCHAO", "LEGACY_TORCH_AO", "PROFILES", "get_profile"]


def _targets(value: Iterable[Target]) -> frozenset[Target]:
    return frozenset(value)


def _keys(value: Iterable[str]) -> tuple[str, ...]:
    keys = tuple(value)
    if len(set(keys)) != len(keys):
        raise ProfileError(f"profile keys must be unique, got {keys!r}")
    for key in keys:
        if not isinstance(key, str) or not key:
            raise ProfileError(f"profile keys must be non-empty strings, got {key!r}")
    return keys


#: The values of :attr:`Profile.dynamic_chain`.
DYNAMIC_CHAINS = ("search", "feeding")


def _dynamic_chain(value: str) -> str:
    if value not in DYNAMIC_CHAINS:
        allowed = ", ".join(repr(v) for v in DYNAMIC_CHAINS)
        raise ProfileError(f"dynamic_chain must be one of {allowed}, got {value!r}")
    return value


@attrs.frozen
class Profile:
    """The data that parameterises the porting rules.

    Parameters
    ----------
    name:
        A short identifier (``torchao``, ``legacy``).
    keys:
        Metadata keys copied by every write, in copy order.
    quantize, dequantize, choose_qparams, view_ops:
        Target sets recognised as quantize, dequantize, choose_qparams and view ops.
    workflow_ops:
        Targets the static rule's connectivity walk passes through (upstream: quantize,
        dequantize and the single ``quantized_decomposed.choose_qparams.tensor`` overload).
    sym_size_call_function:
        Targets filtered out of user lists only on ``call_function`` nodes.
    sym_size_any_op:
        Targets filtered out of user lists whatever the node's op (upstream's operator
        precedence makes three of its four tests ignore ``op``).
    skip_output_without_users:
        torchao returns early when an annotated node with an output spec has no users at all;
        the legacy pass lacks that guard and crashes.
    dynamic_chain:
        Which choose_qparams chain the dynamic input rule writes. ``"search"`` (every built-in
        profile): upstream's breadth-first search from the input node, so every consumer of
        one input lands on the same first chain. ``"feeding"``: the chain that feeds the
        consumer (the dequantize among its arguments, that dequantize's quantize, the
        choose_qparams its scale and zero point come from), for graphs where a later pass
        (ExecuTorch's ``DuplicateDynamicQuantChainPass``) gave each consumer a chain of its
        own; the search where the consumer reads no such chain. See docs/semantics.md.

    Example
    -------
    >>> from portmeta import TORCHAO, LEGACY_TORCH_AO
    >>> Target.packet("torchao.quantize_affine") in TORCHAO.quantize
    True
    >>> Target.packet("torchao.quantize_affine") in LEGACY_TORCH_AO.quantize
    False
    >>> attrs.evolve(TORCHAO, dynamic_chain="feeding").dynamic_chain
    'feeding'
    """

    name: str
    keys: tuple[str, ...] = attrs.field(converter=_keys)
    quantize: frozenset[Target] = attrs.field(converter=_targets)
    dequantize: frozenset[Target] = attrs.field(converter=_targets)
    choose_qparams: frozenset[Target] = attrs.field(converter=_targets)
    workflow_ops: frozenset[Target] = attrs.field(converter=_targets)
    view_ops: frozenset[Target] = attrs.field(converter=_targets)
    sym_size_call_function: frozenset[Target] = attrs.field(converter=_targets)
    sym_size_any_op: frozenset[Target] = attrs.field(converter=_targets)
    skip_output_without_users: bool = True
    dynamic_chain: str = attrs.field(default="search", converter=_dynamic_chain)

    # -- predicates the rules use -------------------------------------------------------
    def is_quantize(self, rec: NodeRecord) -> bool:
        """A ``call_function`` node whose target is a quantize op."""
        return rec.op == "call_function" and rec.target in self.quantize

    def is_dequantize(self, rec: NodeRecord) -> bool:
        """A ``call_function`` node whose target is a dequantize op."""
        return rec.op == "call_function" and rec.target in self.dequantize

    def is_choose_qparams(self, rec: NodeRecord) -> bool:
        """A ``call_function`` node whose target is a choose_qparams op."""
        return rec.op == "call_function" and rec.target in self.choose_qparams

    def is_view(self, rec: NodeRecord) -> bool:
        """A ``call_function`` node whose target is a view op of the get_attr chain."""
        return rec.op == "call_function" and rec.target in self.view_ops

    def is_workflow_op(self, rec: NodeRecord) -> bool:
        """Whether the connectivity walk steps through ``rec`` (the target alone decides)."""
        return rec.target in self.workflow_ops

    def is_sym_size(self, rec: NodeRecord) -> bool:
        """Whether ``rec`` is dropped from user lists (upstream's ``_is_sym_size_node``)."""
        return rec.target in self.sym_size_any_op or (
            rec.op == "call_function" and rec.target in self.sym_size_call_function
        )

    # -- deriving -------------------------------------------------------------------------
    def extend(
        self,
        *,
        name: str | None = None,
        keys: Iterable[str] = (),
        view_ops: Iterable[Target] = (),
    ) -> Profile:
        """A new profile with more keys and/or view ops appended.

        Example
        -------
        >>> from portmeta import TORCHAO
        >>> p = TORCHAO.extend(view_ops=[Target.overload("aten.unsqueeze.default")])
        >>> Target.overload("aten.unsqueeze.default") in p.view_ops
        True
        """
        return attrs.evolve(
            self,
            name=name if name is not None else self.name,
            keys=self.keys + tuple(k for k in keys if k not in self.keys),
            view_ops=self.view_ops | frozenset(view_ops),
        )

    # -- plain data -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready data; sets are written sorted.

        Example
        -------
        >>> from portmeta import TORCHAO
        >>> Profile.from_dict(TORCHAO.to_dict()) == TORCHAO
        True
        """
        out: dict[str, Any] = {"name": self.name, "keys": list(self.keys)}
        for field in _SET_FIELDS:
            targets = sorted(getattr(self, field), key=lambda t: (t.name, t.kind.value))
            out[field] = [{"name": t.name, "kind": t.kind.value} for t in targets]
        out["skip_output_without_users"] = self.skip_output_without_users
        out["dynamic_chain"] = self.dynamic_chain
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Profile:
        """Inverse of :meth:`to_dict`; raises :class:`ProfileError` on malformed data.

        Data without ``dynamic_chain`` (written before the field existed) means ``"search"``.
        """
        try:
            kwargs: dict[str, Any] = {
                "name": str(data["name"]),
                "keys": [str(k) for k in data["keys"]],
                "skip_output_without_users": bool(data["skip_output_without_users"]),
                "dynamic_chain": data.get("dynamic_chain", "search"),
            }
            for field in _SET_FIELDS:
                kwargs[field] = [Target.of(t["name"], t["kind"]) for t in data[field]]
            return cls(**kwargs)
        except ProfileError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"malformed profile data: {exc!r}") from exc


_SET_FIELDS = (
    "quantize",
    "dequantize",
    "choose_qparams",
    "workflow_ops",
    "view_ops",
    "sym_size_call_function",
    "sym_size_any_op",
)

_O = Target.overload
_P = Target.packet

_QD_QUANTIZE = (
    _O("quantized_decomposed.quantize_per_tensor.default"),
    _O("quantized_decomposed.quantize_per_tensor.tensor"),
    _O("quantized_decomposed.quantize_per_channel.default"),
)
_QD_DEQUANTIZE = (
    _O("quantized_decomposed.dequantize_per_tensor.default"),
    _O("quantized_decomposed.dequantize_per_tensor.tensor"),
    _O("quantized_decomposed.dequantize_per_channel.default"),
)
_QD_CHOOSE = (
    _O("quantized_decomposed.choose_qparams.tensor"),
    _O("quantized_decomposed.choose_qparams_symmetric.tensor"),
)
_VIEW_OPS = (
    _O("aten.flatten.using_ints"),
    _O("aten.permute.default"),
    _O("aten.permute_copy.default"),
    _O("aten.slice_copy.Tensor"),
    _O("aten.squeeze.dim"),
    _O("aten.squeeze_copy.dim"),
    _O("aten.transpose.int"),
    _P("aten.transpose_"),
    _O("aten.view_copy.default"),
    _O("aten.view.default"),
    _P("aten._mkldnn_transpose"),
)
_SYM_SIZE_CALL_FUNCTION = (_O("aten.sym_size.default"),)
_SYM_SIZE_ANY_OP = (_O("aten.sym_numel.default"), _P("aten.sym_numel"), _P("aten.sym_size"))
_KEYS = ("stack_trace", "quantization_tag")

#: torchao 0.18.0's ``PortNodeMetaForQDQ`` (the default profile).
TORCHAO = Profile(
    name="torchao",
    keys=_KEYS,
    quantize=(*_QD_QUANTIZE, _P("torchao.quantize_affine")),
    dequantize=(*_QD_DEQUANTIZE, _P("torchao.dequantize_affine")),
    choose_qparams=(*_QD_CHOOSE, _P("torchao.choose_qparams_affine")),
    workflow_ops=(
        *_QD_QUANTIZE,
        _P("torchao.quantize_affine"),
        *_QD_DEQUANTIZE,
        _P("torchao.dequantize_affine"),
        _O("quantized_decomposed.choose_qparams.tensor"),
    ),
    view_ops=_VIEW_OPS,
    sym_size_call_function=_SYM_SIZE_CALL_FUNCTION,
    sym_size_any_op=_SYM_SIZE_ANY_OP,
    skip_output_without_users=True,
)

#: The removed ``torch.ao.quantization.pt2e`` pass (no affine ops, ``aten.transpose.Dimname``
#: in the view ops, no guard for annotated outputs without users).
LEGACY_TORCH_AO = Profile(
    name="legacy",
    keys=_KEYS,
    quantize=_QD_QUANTIZE,
    dequantize=_QD_DEQUANTIZE,
    choose_qparams=_QD_CHOOSE,
    workflow_ops=_QD_QUANTIZE
    + _QD_DEQUANTIZE
    + (_O("quantized_decomposed.choose_qparams.tensor"),),
    view_ops=(*_VIEW_OPS, _O("aten.transpose.Dimname")),
    sym_size_call_function=_SYM_SIZE_CALL_FUNCTION,
    sym_size_any_op=_SYM_SIZE_ANY_OP,
    skip_output_without_users=False,
)

#: Built-in profiles by name (the CLI's ``--profile``).
PROFILES: dict[str, Profile] = {"torchao": TORCHAO, "legacy": LEGACY_TORCH_AO}


def get_profile(name: str) -> Profile:
    """Look up a built-in profile by name.

    Raises
    ------
    ProfileError
        If no built-in profile has that name.

    Example
    -------
    >>> get_profile("legacy").name
    'legacy'
    """
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ProfileError(f"unknown profile {name!r} (known: {known})") from None
