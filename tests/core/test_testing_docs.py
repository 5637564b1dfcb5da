"""Section 4 of docs/testing-without-torch.md, run as the page says: a pytest file, its golden
plan written with ``--portmeta-update-golden``, and the failure messages the page shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing-without-torch.md"
ARGS = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")


def _test_file() -> tuple[str, str]:
    found = re.findall(
        r"^<!-- test file: (\S+) -->\n```python\n(.*?)^```", DOC.read_text(), re.S | re.M
    )
    assert len(found) == 1
    return found[0]


def _failures() -> list[tuple[str, str, list[str]]]:
    """(old, new, expected output lines) of each ``<!-- failure: old -> new -->`` block."""
    found = re.findall(
        r"^<!-- failure: (.*?) -> (.*?) -->\n```text\n(.*?)^```", DOC.read_text(), re.S | re.M
    )
    return [(old, new, text.splitlines()) for old, new, text in found]


@pytest.fixture
def newcomer(pytester: pytest.Pytester) -> pytest.Pytester:
    name, code = _test_file()
    pytester.makepyfile(**{name.removesuffix(".py"): code})
    return pytester


def test_the_file_is_under_30_lines_and_passes_after_writing_its_golden_plan(newcomer):
    _, code = _test_file()
    assert len(code.splitlines()) < 30
    first = newcomer.runpytest(*ARGS)
    first.assert_outcomes(passed=2, failed=1)  # the golden plan does not exist yet
    first.stdout.fnmatch_lines(["*no golden plan file */golden/add.plan.json for 'add'*"])
    newcomer.runpytest(*ARGS, "--portmeta-update-golden").assert_outcomes(passed=3)
    assert (newcomer.path / "golden" / "add.plan.json").is_file()
    newcomer.runpytest(*ARGS).assert_outcomes(passed=3)


def _pattern(line: str) -> str:
    line = line.rstrip().replace("...", "*")
    return "E*" if line == "E" else line


@pytest.mark.parametrize("index", [0, 1], ids=["broken-expectation", "changed-golden-plan"])
def test_the_failure_messages_shown_are_the_real_ones(newcomer, index):
    newcomer.runpytest(*ARGS, "--portmeta-update-golden").assert_outcomes(passed=3)
    name, code = _test_file()
    old, new, lines = _failures()[index]
    assert code.count(old) == 1
    newcomer.makepyfile(**{name.removesuffix(".py"): code.replace(old, new)})
    result = newcomer.runpytest(*ARGS, "-k", "partition" if index == 0 else "unchanged")
    result.assert_outcomes(failed=1, deselected=2)
    assert len(lines) > 5
    result.stdout.fnmatch_lines([_pattern(line) for line in lines], consecutive=True)
