"""What ties a plan to its graph: the snapshot's fingerprint.

A plan carries the fingerprint of the snapshot it was made from; ``apply_plan`` and
``portmeta.testing.assert_ported`` refuse a plan whose fingerprint is not the graph's, and the
CLI notes it.

The fingerprint is ``"v3:"`` and the SHA-256 (hex) of the snapshot's JSON form
(:func:`portmeta.io.graph_to_dict`), written compactly (``json.dumps`` with no spaces, ASCII
only). That form covers structure, arguments, keyword arguments, users, recorded metadata (and
the metadata keys read), annotations, ``foreign`` and ``meta_owner``, and it is lossless for the
values a snapshot holds (:mod:`portmeta.codec`), so a live snapshot and its JSON round trip have
the same fingerprint, in any process.

Plans saved by portmeta before scheme v3 carry a v1 or v2 fingerprint; :meth:`Plan.load
<portmeta.Plan.load>` refuses them, saying to plan again.

Example
-------
>>> from portmeta.io import graph_from_dict, graph_to_dict
>>> from portmeta.testing import GraphBuilder
>>> b = GraphBuilder(); b.output(b.placeholder("x")); g = b.build()
>>> fingerprint(g) == fingerprint(graph_from_dict(graph_to_dict(g)))
True
>>> fingerprint(g)[:3], len(fingerprint(g))
('v3:', 67)
"""

from __future__ import annotations

import hashlib
import json

from .errors import StalePlanError
from .io import graph_to_dict
from .snapshot import Snapshot

__all__ = ["FINGERPRINT_SCHEME", "fingerprint", "is_fingerprint", "require_plan_of"]

#: The scheme :func:`fingerprint` computes: its values start with ``"v3:"``.
FINGERPRINT_SCHEME = "v3"
_PREFIX = FINGERPRINT_SCHEME + ":"
_HEX_DIGITS = frozenset("0123456789abcdef")


def fingerprint(graph: Snapshot) -> str:
    """The snapshot's fingerprint (see the module docstring).

    Computed on first use and kept in ``graph.graph["fingerprint"]``: planning and writing do
    not need it, saving and checking a plan do. The snapshot holds metadata values as FX holds
    them (strings, usually); a value changed in place after the snapshot was taken and before
    its fingerprint is changes the fingerprint too.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x", tag="T"))
    >>> is_fingerprint(fingerprint(b.build()))
    True
    """
    value: str | None = graph.graph.get("fingerprint")
    if value is None:
        text = json.dumps(graph_to_dict(graph), separators=(",", ":"))
        value = graph.graph["fingerprint"] = _PREFIX + hashlib.sha256(text.encode()).hexdigest()
    return value


def is_fingerprint(value: object) -> bool:
    """Whether ``value`` is a fingerprint of the current scheme.

    Example
    -------
    >>> is_fingerprint("v3:" + "0" * 64), is_fingerprint("v2:" + "0" * 64), is_fingerprint("0" * 64)
    (True, False, False)
    """
    return (
        isinstance(value, str)
        and len(value) == len(_PREFIX) + 64
        and value.startswith(_PREFIX)
        and set(value[len(_PREFIX) :]) <= _HEX_DIGITS
    )


def require_plan_of(graph: Snapshot, plan_fingerprint: str, doing: str) -> None:
    """Raise :class:`~portmeta.errors.StalePlanError` unless a plan with ``plan_fingerprint``
    was made from ``graph``; ``doing`` says what was about to happen (``"checking"``).

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x")); g = b.build()
    >>> require_plan_of(g, fingerprint(g), "drawing")
    >>> require_plan_of(g, "v3:" + "0" * 64, "drawing")
    Traceback (most recent call last):
    ...
    portmeta.errors.StalePlanError: drawing a plan made from another graph (plan v3:000000000000, graph v3:...); plan this graph and use that plan
    """
    have = fingerprint(graph)
    if have != plan_fingerprint:
        raise StalePlanError(
            f"{doing} a plan made from another graph (plan {plan_fingerprint[:15]}, graph "
            f"{have[:15]}); plan this graph and use that plan"
        )
