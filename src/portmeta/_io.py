"""File helpers shared by graph and plan persistence and the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import GraphFormatError

__all__ = ["atomic_write_text", "read_json", "read_text", "parse_json", "json_error"]


def atomic_write_text(path: str | os.PathLike[str], text: str | bytes) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    A reader never sees a half-written file, and a failure leaves ``path`` untouched.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        data = text.encode("utf-8") if isinstance(text, str) else text
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_error(exc: json.JSONDecodeError) -> str:
    """The problem of a JSON parse failure in one phrase, with its line and column.

    Some of Python's messages end with "at" ("Unterminated string starting at"); the
    position then follows it instead of a second "at".

    Example
    -------
    >>> try:
    ...     json.loads('{"a": "b')
    ... except json.JSONDecodeError as exc:
    ...     print(json_error(exc))
    not valid JSON: Unterminated string starting at line 1 column 7
    """
    msg = exc.msg[: -len(" at")] if exc.msg.endswith(" at") else exc.msg
    return f"not valid JSON: {msg} at line {exc.lineno} column {exc.colno}"


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON document, turning every way it can fail into :class:`GraphFormatError`."""
    return parse_json(read_text(path), str(path))


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of a file that should hold JSON; :class:`GraphFormatError` if it cannot be
    read, is empty or is not UTF-8."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except IsADirectoryError:
        raise GraphFormatError("is a directory, not a file", source) from None
    except FileNotFoundError:
        raise GraphFormatError("no such file", source) from None
    except OSError as exc:
        raise GraphFormatError(f"cannot read: {exc.strerror or exc}", source) from None
    if not raw or raw.isspace():  # stops at the first other byte; strip() would copy
        raise GraphFormatError("file is empty", source)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GraphFormatError("not a text file (not UTF-8); expected JSON", source) from None


def parse_json(text: str, source: str) -> Any:
    """Parse :func:`read_text`'s text; :class:`GraphFormatError` (naming ``source``) if it is
    not JSON or is nested too deeply."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GraphFormatError(json_error(exc), source) from None
    except RecursionError:
        raise GraphFormatError("JSON is nested too deeply", source) from None
