"""Fixtures and the session summary for the torch.fx tests.

``tests/fx`` is not a package: this file puts its directory on ``sys.path`` so test modules
(and other engineers' tests) can ``from parity import port_keys_state, assert_same_meta``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import parity  # noqa: E402
import torch  # noqa: E402
import torchao  # noqa: E402, F401  (registers the quantized_decomposed / torchao ops)

_STATS_ENV = "PORTMETA_FX_STATS_DIR"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and _STATS_ENV not in os.environ:
        os.environ[_STATS_ENV] = tempfile.mkdtemp(prefix="portmeta-fx-stats-")


def pytest_sessionfinish(session: pytest.Session) -> None:
    stats_dir = os.environ.get(_STATS_ENV)
    if not stats_dir or not any(parity.STATS.values()):
        return
    worker = getattr(session.config, "workerinput", {}).get("workerid", "main")
    Path(stats_dir, f"{worker}.json").write_text(json.dumps(parity.STATS))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    stats_dir = os.environ.get(_STATS_ENV)
    if not stats_dir or hasattr(config, "workerinput") or not os.path.isdir(stats_dir):
        return
    total: dict[str, int] = {}
    for f in Path(stats_dir).glob("*.json"):
        for k, v in json.loads(f.read_text()).items():
            total[k] = total.get(k, 0) + v
        f.unlink()
    if total:
        terminalreporter.write_line(
            "portmeta fx parity: "
            + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(total.items()))
            + " compared (ours vs torchao)"
        )


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
