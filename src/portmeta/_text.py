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

__all__ = ["short_value", "shown_apart", "did_you_mean"]

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


def shown_apart(a: Any, b: Any, width: int = 40) -> tuple[str, str]:
    r"""Two values that differ, as text that tells them apart: their :func:`short_value`
    forms, or, when those read the same (two stack traces that differ only in an outer frame,
    two long strings cut alike), both in full.

    Example
    -------
    >>> shown_apart("P0", "P1")
    ("'P0'", "'P1'")
    >>> a = 'File "/m.py", line 7, in forward\n  x = self.fc(x)'
    >>> b = 'File "/n.py", line 3, in main\nFile "/m.py", line 7, in forward\n  x = self.fc(x)'
    >>> short_value(a) == short_value(b), shown_apart(a, b)[1].startswith("'File")
    (True, True)
    """
    short_a, short_b = short_value(a, width), short_value(b, width)
    if short_a != short_b:
        return short_a, short_b
    full_a, full_b = short_value(a, _IN_FULL, trace=False), short_value(b, _IN_FULL, trace=False)
    return (short_a, short_b) if full_a == full_b else (full_a, full_b)


#: Wide enough for any stack trace: a value shown "in full" is not cut.
_IN_FULL = 1 << 20


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """A hint naming up to three of ``known`` that look like ``name``; empty when none do.

    Example
    -------
    >>> did_you_mean("conv", ["conv2d", "relu"]), did_you_mean("zzz", ["conv2d"])
    (" (did you mean 'conv2d'?)", '')
    """
    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
