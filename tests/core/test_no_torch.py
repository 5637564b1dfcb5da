"""The core never imports torch: import every portmeta module with torch made unimportable."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import portmeta

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"

BLOCKER = r"""
import importlib, importlib.abc, json, pkgutil, sys

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test: {name}")
        return None

sys.meta_path.insert(0, BlockTorch())
for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
    del sys.modules[name]
try:
    import torch  # noqa: F401
except ImportError as exc:
    blocked = str(exc)
else:
    blocked = None
import portmeta
modules = sorted(
    m.name for m in pkgutil.walk_packages(portmeta.__path__, "portmeta.", onerror=lambda n: None)
)
failed = {}
for name in modules:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failed[name] = repr(exc)
print(json.dumps({
    "blocked": blocked,
    "file": portmeta.__file__,
    "modules": modules,
    "failed": failed,
    "torch_loaded": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")),
}))
"""


def _run_blocked():
    out = subprocess.run(
        [sys.executable, "-c", BLOCKER],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _source_modules():
    pkg = SRC / "portmeta"
    names = set()
    for path in pkg.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.add(".".join(parts))
    return names - {"portmeta"}


def test_every_portmeta_module_imports_without_torch():
    result = _run_blocked()
    assert result["blocked"] == "torch is blocked in this test: torch"
    assert result["failed"] == {}
    assert result["torch_loaded"] == []
    assert set(result["modules"]) == _source_modules()
    assert {
        "portmeta.snapshot",
        "portmeta.fingerprint",
        "portmeta.io",
        "portmeta.plan",
        "portmeta.rules.dynamic_input",
    } <= set(result["modules"])
    # split up or removed in the refactor: gone for good
    assert not {"portmeta.graph", "portmeta._io", "portmeta._gc"} & set(result["modules"])


def test_portmeta_resolves_from_src():
    assert Path(portmeta.__file__).resolve().parent == SRC / "portmeta"
    assert Path(_run_blocked()["file"]).resolve().parent == SRC / "portmeta"


def test_core_tests_never_import_torch_or_the_adapter():
    banned = {"torch", "portmeta_fx", "torchao"}
    offenders = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            offenders += [f"{path.name}:{node.lineno}:{r}" for r in roots if r in banned]
    assert offenders == []
