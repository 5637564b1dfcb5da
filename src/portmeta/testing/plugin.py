"""portmeta's pytest plugin, registered through the ``pytest11`` entry point.

Active in every pytest session where portmeta is installed; it only adds names, so a session
that does not use them runs as before. It imports neither torch nor hypothesis.

Fixtures
--------
``portmeta_builder``
    A fresh :class:`portmeta.testing.GraphBuilder`.
``portmeta_load_graph``
    ``portmeta_load_graph("data/g.json")`` loads a saved graph (:func:`portmeta.load_graph`),
    a relative path being taken from the test file's folder.
``portmeta_golden``
    A :class:`portmeta.testing.GoldenPlans`: ``portmeta_golden.check(plan, "name")`` compares
    ``plan`` with ``golden/name.plan.json`` beside the test file (the name defaults to the
    test's).

Option
------
``--portmeta-update-golden``
    Write golden plan files from the plans under test instead of comparing; the terminal
    summary lists the files written and counts the ones left unchanged.

:func:`portmeta.testing.assert_matches_golden` called without ``directory=`` also finds the
running test's folder and the option through this plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from ..io import load_graph
from ..snapshot import Snapshot
from . import _golden
from ._builder import GraphBuilder

__all__ = [
    "portmeta_builder",
    "portmeta_load_graph",
    "portmeta_golden",
    "pytest_addoption",
    "pytest_configure",
    "pytest_runtest_protocol",
]

_WRITTEN_PROPERTY = "portmeta_golden_written"
_UNCHANGED_PROPERTY = "portmeta_golden_unchanged"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--portmeta-update-golden``."""
    group = parser.getgroup("portmeta", "portmeta golden plans")
    group.addoption(
        _golden.UPDATE_OPTION,
        action="store_true",
        default=False,
        dest="portmeta_update_golden",
        help="write portmeta golden plan files from the plans under test instead of comparing",
    )


class _GoldenRecorder:
    """Collects the golden files one session wrote or left unchanged (from xdist workers too,
    via reports), for the summary of a ``--portmeta-update-golden`` session."""

    def __init__(self, update: bool) -> None:
        self.update = update
        self.written: list[str] = []
        self.unchanged: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            for key, value in report.user_properties:
                if key == _WRITTEN_PROPERTY:
                    self.written.append(str(value))
                elif key == _UNCHANGED_PROPERTY:
                    self.unchanged.append(str(value))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.update:
            return
        files = list(dict.fromkeys(self.written))
        same = len(set(self.unchanged) - set(files))
        if files:
            title = f"portmeta: wrote {len(files)} golden plan file(s), {same} unchanged"
        elif same:
            title = f"portmeta: all {same} golden plan file(s) unchanged, none written"
        else:
            title = "portmeta: no test checked a golden plan, none written"
        terminalreporter.write_sep("-", title)
        for f in files:
            terminalreporter.write_line(f)


def pytest_configure(config: pytest.Config) -> None:
    """Record the golden files this session writes, for the terminal summary."""
    config.pluginmanager.register(_GoldenRecorder(_update(config)), "portmeta-golden-recorder")


def _update(config: pytest.Config) -> bool:
    return bool(config.getoption("portmeta_update_golden", default=False))


@pytest.hookimpl(hookwrapper=True)  # the old-style wrapper: works with every pytest >= 7
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    """Let :func:`~portmeta.testing.assert_matches_golden` know the running test."""

    def written(path: Path) -> None:
        item.user_properties.append((_WRITTEN_PROPERTY, str(path)))

    def unchanged(path: Path) -> None:
        item.user_properties.append((_UNCHANGED_PROPERTY, str(path)))

    context = _golden._Context(_update(item.config), Path(item.path), item.name, written, unchanged)
    _golden._CONTEXTS.append(context)
    try:
        yield
    finally:
        _golden._CONTEXTS.remove(context)


@pytest.fixture
def portmeta_builder() -> GraphBuilder:
    """A fresh :class:`portmeta.testing.GraphBuilder` (profile :data:`portmeta.TORCHAO`)."""
    return GraphBuilder()


@pytest.fixture
def portmeta_load_graph(request: pytest.FixtureRequest) -> Callable[[str | Path], Snapshot]:
    """Load a saved graph; a relative path is taken from the test file's folder."""
    here = Path(request.path).parent

    def load(path: str | Path) -> Snapshot:
        return load_graph(here / path)

    return load


@pytest.fixture
def portmeta_golden(request: pytest.FixtureRequest) -> _golden.GoldenPlans:
    """Golden plans beside the test file (see :class:`portmeta.testing.GoldenPlans`)."""
    return _golden.GoldenPlans(
        Path(request.path).parent / _golden.GOLDEN_DIR,
        _update(request.config),
        _golden.default_name(request.node.name),
    )
