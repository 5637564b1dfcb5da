"""Lossless JSON encoding of argument and metadata values.

JSON scalars stand for themselves and JSON arrays are Python lists. Everything else is a JSON
object with one tag key:

=========================  ==========================================
``{"$node": "x"}``          :class:`~portmeta.records.NodeRef`
``{"$tuple": [...]}``       a tuple
``{"$dict": [[k, v], ...]}`` a dict (any keys, order kept)
``{"$float": "inf"}``       a non-finite float (``inf``, ``-inf``, ``nan``)
``{"$opaque": text, "type": name}``  :class:`~portmeta.records.Opaque`
=========================  ==========================================

A value outside that domain is encoded as ``$opaque`` with its type and ``repr``, so
``decode(encode(v)) == v`` holds for every value of the domain and a decoded value always
encodes back to the same JSON.

Example
-------
>>> from portmeta.records import NodeRef
>>> encode((NodeRef("x"), 1.5, [None]))
{'$tuple': [{'$node': 'x'}, 1.5, [None]]}
>>> decode(encode((NodeRef("x"), float("inf"))))
(NodeRef(name='x'), inf)
"""

from __future__ import annotations

import math
from typing import Any

from ._text import short_value
from .errors import CodecError
from .records import NodeRef, Opaque

__all__ = ["encode", "decode", "CodecError", "opaque_of"]


def opaque_of(value: Any) -> Opaque:
    """The :class:`Opaque` stand-in for a value that is not in the codec's domain.

    Example
    -------
    >>> opaque_of(range(2))
    Opaque(type_name='builtins.range', text='range(0, 2)')
    """
    cls = type(value)
    try:
        text = repr(value)
    except Exception as exc:  # a repr that raises still gets a stand-in
        text = f"<unrepresentable {cls.__qualname__}: {type(exc).__name__}>"
    return Opaque(f"{cls.__module__}.{cls.__qualname__}", text)


def encode(value: Any) -> Any:
    """Encode ``value`` as JSON-ready data (see the module docstring).

    A value nested too deeply to walk (a list that contains itself, say) is encoded whole as
    ``$opaque``.

    Example
    -------
    >>> loop = []; loop.append(loop)
    >>> encode(loop)
    {'$opaque': '[[...]]', 'type': 'builtins.list'}
    """
    try:
        return _encode(value)
    except RecursionError:
        return _encode(opaque_of(value))


def _encode(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or value is None or kind is bool:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, NodeRef):
        return {"$node": value.name}
    if isinstance(value, Opaque):
        return {"$opaque": value.text, "type": value.type_name}
    if kind is list:
        return [_encode(v) for v in value]
    if kind is tuple:
        return {"$tuple": [_encode(v) for v in value]}
    if kind is dict:
        return {"$dict": [[_encode(k), _encode(v)] for k, v in value.items()]}
    return _encode(opaque_of(value))


_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def decode(data: Any) -> Any:
    """Decode what :func:`encode` produced; raises :class:`CodecError` on anything else."""
    if data is None or isinstance(data, (bool, str, int, float)):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if isinstance(data, dict):
        if len(data) == 1:
            ((tag, body),) = data.items()
            if tag == "$node" and isinstance(body, str):
                return NodeRef(body)
            if tag == "$tuple" and isinstance(body, list):
                return tuple(decode(v) for v in body)
            if tag == "$dict" and isinstance(body, list):
                out: dict[Any, Any] = {}
                for pair in body:
                    if not (isinstance(pair, list) and len(pair) == 2):
                        raise CodecError(f"$dict entries must be [key, value] pairs, got {pair!r}")
                    key = decode(pair[0])
                    try:
                        out[key] = decode(pair[1])
                    except TypeError as exc:  # unhashable key
                        raise CodecError(f"$dict key {pair[0]!r} is not hashable") from exc
                return out
            if tag == "$float" and isinstance(body, str) and body in _FLOATS:
                return _FLOATS[body]
        if set(data) == {"$opaque", "type"}:
            text, type_name = data["$opaque"], data["type"]
            if isinstance(text, str) and isinstance(type_name, str):
                return Opaque(type_name, text)
        raise CodecError(f"unknown encoded value {short_value(data, 80, trace=False)}")
    raise CodecError(f"unexpected JSON value {short_value(data, 80, trace=False)}")
