"""Golden plans: compare a plan with a JSON plan file kept beside the test.

A golden plan file is :meth:`portmeta.Plan.to_json` output, by default
``<folder of the test file>/golden/<name>.plan.json``: the writes, the diagnostics, the
snapshot's fingerprint and the profile's name (a derived profile: its base and the fields that
differ). A file written by an older portmeta (plan schema 1, or a fingerprint of an older
scheme) is refused: rewrite it with ``--portmeta-update-golden``. A plan
*matches* its golden file when :func:`portmeta.diff.diff_plans` finds them in agreement: the
same final value, source, origin and rule for every node and key written, and the same
diagnostics. The write order,
the annotated node and path of each write, the profile and the snapshot fingerprint may
differ (a change there is no change in what lands where; rewriting the file refreshes them).

Run ``pytest --portmeta-update-golden`` (or set ``PORTMETA_UPDATE_GOLDEN=1`` outside pytest)
to write the files from the current plans, then review the change in version control. A
missing file fails; it is never created silently.

Example
-------
>>> import tempfile
>>> from portmeta import plan
>>> from portmeta.testing import GraphBuilder
>>> b = GraphBuilder(); b.output(b.placeholder("x")); p = plan(b.build())
>>> folder = tempfile.mkdtemp()
>>> assert_matches_golden(p, "empty", directory=folder, update=False)
Traceback (most recent call last):
...
AssertionError: no golden plan file .../empty.plan.json for 'empty'; run pytest with --portmeta-update-golden to write it from this plan, then review and commit it
>>> assert_matches_golden(p, "empty", directory=folder, update=True).name
'empty.plan.json'
>>> assert_matches_golden(p, "empty", directory=folder, update=False).name
'empty.plan.json'
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from ..diff import PlanDiff, diff_plans
from ..errors import GraphFormatError
from ..io import atomic_write_text
from ..plan import MetaDelta, Plan
from ._assertions import _show

__all__ = ["GOLDEN_DIR", "UPDATE_ENV", "GoldenPlans", "assert_matches_golden", "golden_path"]

#: Folder, beside the test file, that holds the golden plan files.
GOLDEN_DIR = "golden"
#: Environment variable that turns on updating outside pytest (``1``, ``true`` or ``yes``).
UPDATE_ENV = "PORTMETA_UPDATE_GOLDEN"
#: The pytest option that turns on updating (added by :mod:`portmeta.testing.plugin`).
UPDATE_OPTION = "--portmeta-update-golden"

_NAME = re.compile(r"[\w.\-\[\]]+(/[\w.\-\[\]]+)*")


@attrs.define
class _Context:
    """What the pytest plugin knows about the running test."""

    update: bool
    test_file: Path
    test_name: str
    written: Callable[[Path], None]
    unchanged: Callable[[Path], None] = lambda path: None


_CONTEXTS: list[_Context] = []  # innermost last: pytester runs a session inside a session


def _context() -> _Context | None:
    return _CONTEXTS[-1] if _CONTEXTS else None


def _env_update() -> bool:
    return os.environ.get(UPDATE_ENV, "").strip().lower() in ("1", "true", "yes")


def golden_path(name: str, directory: str | os.PathLike[str]) -> Path:
    """The file of golden plan ``name`` in ``directory``: ``<directory>/<name>.plan.json``.

    ``name`` is made of letters, digits, ``_ . - [ ]`` and ``/`` (for subfolders); it may not
    climb out of ``directory``.

    Example
    -------
    >>> golden_path("conv_relu", "tests/golden").as_posix()
    'tests/golden/conv_relu.plan.json'
    >>> golden_path("../x", "tests/golden")
    Traceback (most recent call last):
    ...
    ValueError: invalid golden plan name '../x': use letters, digits, '_', '.', '-', '[', ']' and '/' between folder names, without '..'
    """
    if not isinstance(name, str):
        raise TypeError(f"a golden plan name must be a string, got {type(name).__name__}")
    if not _NAME.fullmatch(name) or ".." in name.split("/") or name.startswith("."):
        raise ValueError(
            f"invalid golden plan name {name!r}: use letters, digits, '_', '.', '-', '[', ']' "
            "and '/' between folder names, without '..'"
        )
    return Path(directory) / f"{name}.plan.json"


def _default_directory() -> Path:
    """``golden/`` beside the running test file (plugin), else beside the caller's module."""
    ctx = _context()
    if ctx is not None:
        return ctx.test_file.parent / GOLDEN_DIR
    frame: Any = sys._getframe(2)  # the caller of assert_matches_golden
    caller = frame.f_globals.get("__file__") if frame is not None else None
    if not caller:
        raise ValueError(
            "assert_matches_golden cannot tell which test file it serves (not running under "
            "pytest with portmeta installed, and the caller has no __file__): pass directory="
        )
    return Path(caller).resolve().parent / GOLDEN_DIR


def _by(d: MetaDelta) -> str:
    origin = "" if d.origin == d.source else f", value first from {d.origin!r}"
    return f"by rule {d.rule.value} from {d.source!r}{origin}"


def format_golden_diff(d: PlanDiff, path: str | os.PathLike[str], order: list[str]) -> str:
    """The failure message of a plan that differs from its golden file ``path``.

    Names every node and key that changed with its old (golden) and new (planned) value and
    the rule and source of each, then the diagnostics that appeared or disappeared and the
    notes of :func:`portmeta.diff.diff_plans`. ``order`` lists node names in display order.
    """
    rank = {name: i for i, name in enumerate(order)}
    entries: list[tuple[int, str, str, list[str]]] = []
    for c in d.changed:
        assert c.a is not None and c.b is not None
        entries.append(
            (
                rank.get(c.target, len(rank)),
                c.target,
                c.key,
                [
                    f"{c.target}.{c.key}: changed ({', '.join(c.fields)})",
                    f"    old  {_show(c.a.value)}  {_by(c.a)}",
                    f"    new  {_show(c.b.value)}  {_by(c.b)}",
                ],
            )
        )
    for x in d.only_a:
        entries.append(
            (
                rank.get(x.target, len(rank)),
                x.target,
                x.key,
                [
                    f"{x.target}.{x.key}: no longer written",
                    f"    old  {_show(x.value)}  {_by(x)}",
                    "    new  nothing",
                ],
            )
        )
    for x in d.only_b:
        entries.append(
            (
                rank.get(x.target, len(rank)),
                x.target,
                x.key,
                [
                    f"{x.target}.{x.key}: newly written",
                    "    old  nothing",
                    f"    new  {_show(x.value)}  {_by(x)}",
                ],
            )
        )
    entries.sort(key=lambda e: (e[0], e[1]))
    n_diag = len(d.diagnostics_only_a) + len(d.diagnostics_only_b)
    n_writes = len(entries)
    lines = [
        f"plan differs from golden plan {os.fspath(path)}: {n_writes} write"
        f"{'' if n_writes == 1 else 's'} and {n_diag} diagnostic{'' if n_diag == 1 else 's'} "
        "changed",
        "",
    ]
    for *_, block in entries:
        lines += block
    for k in d.diagnostics_only_a:
        lines.append(f"diagnostic gone: {k[1]} {k[0]} at {k[2]!r}: {k[3]}")
    for k in d.diagnostics_only_b:
        lines.append(f"diagnostic new:  {k[1]} {k[0]} at {k[2]!r}: {k[3]}")
    lines += [f"note: {note}" for note in d.notes]
    lines += [
        "",
        f"If the new plan is right, rerun with {UPDATE_OPTION} to rewrite the file "
        "and review the change in version control.",
    ]
    return "\n".join(lines)


def assert_matches_golden(
    plan: Plan,
    name: str,
    *,
    directory: str | os.PathLike[str] | None = None,
    update: bool | None = None,
) -> Path:
    """Assert that ``plan`` matches golden plan ``name``; return the golden file's path.

    Parameters
    ----------
    plan:
        The plan to check.
    name:
        The golden plan's name; the file is ``<directory>/<name>.plan.json``.
    directory:
        The folder of golden files. Default: ``golden/`` beside the running test's file (under
        pytest with portmeta installed), else beside the module that calls.
    update:
        Write the file from ``plan`` (when it is missing or its text differs) instead of
        comparing. Default: the pytest option ``--portmeta-update-golden``, else the
        environment variable ``PORTMETA_UPDATE_GOLDEN``.

    Raises
    ------
    AssertionError
        The file is missing or unreadable (the message says how to write it), or the plan
        differs from it: the message names each node and key that changed, with the old and
        new value and the rule and source of each, and the diagnostics that changed.

    Example
    -------
    See the module docstring.
    """
    __tracebackhide__ = True
    if not isinstance(plan, Plan):
        raise TypeError(f"assert_matches_golden takes a Plan, got {type(plan).__name__}")
    folder = Path(directory) if directory is not None else _default_directory()
    path = golden_path(name, folder)
    ctx = _context()
    if update is None:
        update = ctx.update if ctx is not None else _env_update()
    text = plan.to_json() + "\n"
    if update:
        try:
            current = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
            if ctx is not None and ctx.update:  # listed in the --portmeta-update-golden summary
                ctx.written(path)
        elif ctx is not None and ctx.update:  # counted in that summary
            ctx.unchanged(path)
        return path
    if not path.is_file():
        raise AssertionError(
            f"no golden plan file {path} for {name!r}; run pytest with {UPDATE_OPTION} to "
            "write it from this plan, then review and commit it"
        )
    try:
        golden = Plan.load(str(path))
    except GraphFormatError as exc:
        raise AssertionError(
            f"cannot read golden plan {path}: {exc.problem}; run pytest with {UPDATE_OPTION} to "
            "rewrite it from this plan"
        ) from None
    d = diff_plans(golden, plan)
    if d.agree:
        return path
    order = list(dict.fromkeys([x.target for x in plan.deltas] + [x.target for x in golden.deltas]))
    raise AssertionError(format_golden_diff(d, path, order))


@attrs.frozen
class GoldenPlans:
    """The ``portmeta_golden`` fixture: golden plans of one test.

    Attributes
    ----------
    directory:
        Where the files are (``golden/`` beside the test file).
    update:
        Whether ``--portmeta-update-golden`` was given.
    default_name:
        The name :meth:`check` uses when given none: the test's name (parameters included,
        characters other than letters, digits, ``_ . -`` replaced by ``_``).

    Example
    -------
    >>> import tempfile
    >>> from portmeta import plan
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x"))
    >>> golden = GoldenPlans(Path(tempfile.mkdtemp()), update=True, default_name="test_x")
    >>> golden.check(plan(b.build())).name
    'test_x.plan.json'
    """

    directory: Path
    update: bool
    default_name: str

    def path(self, name: str | None = None) -> Path:
        """The file of golden plan ``name`` (default: :attr:`default_name`)."""
        return golden_path(name if name is not None else self.default_name, self.directory)

    def check(self, plan: Plan, name: str | None = None) -> Path:
        """:func:`assert_matches_golden` in this test's golden folder."""
        __tracebackhide__ = True
        return assert_matches_golden(
            plan,
            name if name is not None else self.default_name,
            directory=self.directory,
            update=self.update,
        )


def default_name(test_name: str) -> str:
    """A file-name-safe golden name for a test (``test_x[a-1]`` becomes ``test_x_a-1``).

    Example
    -------
    >>> default_name("test_conv[static-True]")
    'test_conv_static-True'
    """
    return re.sub(r"[^\w.\-]+", "_", test_name).strip("_.") or "golden"
