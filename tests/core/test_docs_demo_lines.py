"""Every ``demo.py:N`` the docs show (README.md, docs/*.md, the demo's picture) names the line of
the demo model's ``forward`` that calls the module the value comes from, so the docs cannot go
stale when demo.py moves. No torch needed: demo.py is read as source."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "adapters" / "portmeta_fx" / "demo.py"
SHOWN = re.compile(r"demo\.py:(\d+)")
#: The aten op a value comes from, as the docs show it (a source column, ``from OP``, or the
#: ``quantization_tag = 'OP_0'`` line under a picture's ``stack_trace`` line).
OP_AFTER = re.compile(r"\b(\w+?)(?:_\d+)?\b")


def _snake(name: str) -> str:
    """``AdaptiveAvgPool2d`` -> ``adaptive_avg_pool2d``: the aten op a module's call becomes."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


def forward_lines() -> dict[str, int]:
    """aten op name -> the line of ``DemoModel.forward`` that calls the module producing it."""
    tree = ast.parse(DEMO.read_text(encoding="utf-8"))
    model = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DemoModel")
    methods = {f.name: f for f in model.body if isinstance(f, ast.FunctionDef)}
    ops: dict[str, str] = {}  # attribute -> op, from ``self.attr = torch.nn.Class(...)``
    for stmt in ast.walk(methods["__init__"]):
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call):
            (attr,) = stmt.targets
            if isinstance(attr, ast.Attribute) and isinstance(stmt.value.func, ast.Attribute):
                ops[attr.attr] = _snake(stmt.value.func.attr)
    lines: dict[str, int] = {}
    for call in ast.walk(methods["forward"]):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
            owner = call.func.value
            if isinstance(owner, ast.Name) and owner.id == "self" and call.func.attr in ops:
                lines[ops[call.func.attr]] = call.lineno
    return lines


def shown_lines() -> list[tuple[str, int, str]]:
    """(file, shown line number, the op named after it) for every ``demo.py:N`` in the docs."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files.append(ROOT / "docs" / "img" / "demo-plan.svg")
    ops = set(forward_lines())
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for m in SHOWN.finditer(text):
            after = text[m.end() : m.end() + 300]
            named = [w for w in OP_AFTER.findall(after) if w in ops]
            where = path.relative_to(ROOT).as_posix()
            found.append((where, int(m.group(1)), named[0] if named else "?"))
    return found


def test_the_demo_forward_is_read_from_source():
    lines = forward_lines()
    assert set(lines) == {"conv2d", "adaptive_avg_pool2d", "hardtanh", "linear"}
    source = DEMO.read_text(encoding="utf-8").splitlines()
    assert "self.conv(" in source[lines["conv2d"] - 1]
    assert "self.fc(" in source[lines["linear"] - 1]


def test_the_docs_show_demo_lines_in_the_readme_the_cli_page_and_the_picture():
    files = {f for f, _, _ in shown_lines()}
    assert {"README.md", "docs/cli.md", "docs/img/demo-plan.svg"} <= files


@pytest.mark.parametrize(
    ("where", "shown", "op"),
    [pytest.param(*case, id=f"{case[0]}:{i}") for i, case in enumerate(shown_lines())],
)
def test_every_demo_line_the_docs_show_is_the_line_of_its_module_call(where, shown, op):
    lines = forward_lines()
    assert op in lines, f"{where}: demo.py:{shown} is not followed by the op it comes from"
    assert shown == lines[op], (
        f"{where} shows demo.py:{shown} for {op}, which demo.py's forward calls on line "
        f"{lines[op]}: regenerate the example from `portmeta demo` output"
    )
