"""How portmeta shows a value or a misspelt name in one line of text.

Every message, table, diff and picture that shows a metadata or argument value goes through
:func:`short_value`; every "no such node" message suggests names through :func:`did_you_mean`.

Example
-------
>>> short_value("P0"), short_value(list(range(30)), width=20)
("'P0'", '[0, 1, 2,...28, 29]')
>>> did_you_mean("w_dqq", ["x", "w_dq", "w_q"])
" (did you mean 'w_dq', 'w_q'?)"
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from .records import Opaque

__all__ = ["short_value", "did_you_mean"]

_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
_LIBRARY = re.compile(r"[/\\](site-packages|dist-packages|torch|torchao)[/\\]")


def short_value(value: Any, width: int = 40, *, trace: bool = True) -> str:
    """A one-line rendering of ``value`` of at most ``width`` characters.

    Parameters
    ----------
    value:
        Any value (a ``repr`` that raises still gives a line).
    width:
        The longest result; longer text is cut in the middle (``...``), so both the start
        and the end stay visible.
    trace:
        Show a Python stack trace (a string with ``File "...", line N, in f`` frames) as
        ``file:line in func`` of its innermost frame outside installed libraries (the
        innermost frame when all are library frames). ``False`` shows it as any string,
        for messages where two traces must be told apart.

    Returns
    -------
    str
        The value's ``repr`` (an :class:`~portmeta.records.Opaque` shows its text), with
        runs of whitespace collapsed to one space.

    Example
    -------
    >>> short_value('File "/a/m.py", line 7, in forward\\n    x = self.conv(x)')
    'm.py:7 in forward'
    >>> short_value("x" * 60, width=12)
    "'xxxx...xxx'"
    """
    text: str | None = None
    if trace and isinstance(value, str):
        frames = _FRAME.findall(value)
        if frames:
            own = [f for f in frames if not _LIBRARY.search(f[0])]
            path, line, func = (own or frames)[-1]
            text = f"{path.replace(chr(92), '/').rsplit('/', 1)[-1]}:{line} in {func}"
    if text is None:
        if isinstance(value, Opaque):
            text = value.text
        else:
            try:
                text = repr(value)
            except Exception as exc:  # a value whose repr raises still gets a line
                text = f"<{type(value).__name__} whose repr raised {type(exc).__name__}>"
    text = " ".join(text.split())
    if len(text) > width:
        keep = max(width - 3, 2)
        head = (keep + 1) // 2
        text = text[:head] + "..." + text[len(text) - (keep - head) :]
    return text


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """A hint naming up to three of ``known`` that look like ``name``; empty when none do.

    Example
    -------
    >>> did_you_mean("conv", ["conv2d", "relu"]), did_you_mean("zzz", ["conv2d"])
    (" (did you mean 'conv2d'?)", '')
    """
    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
