"""portmeta_fx replaces torch.ao's removed pass with torch alone: no torchao needed, none imported.

Code written against ``torch.ao.quantization.pt2e.port_metadata_pass.PortNodeMetaForQDQ`` (gone
in torch 2.13; OpenVINO's NNCF ran it as ``PassManager([PortNodeMetaForQDQ()])``) switches to
``portmeta_fx.PortNodeMetaForQDQ(profile=LEGACY_TORCH_AO)``. The test runs that in a fresh
interpreter where every ``import torchao...`` fails and is recorded, on a graph built with torch
alone (:mod:`torch_only_graph`), and compares the result with torchao's own pass run here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch_only_graph
from torchao.quantization.pt2e.quantizer.port_metadata_pass import (
    PortNodeMetaForQDQ as Upstream,
)

HERE = Path(__file__).resolve().parent

SCRIPT = r"""
import importlib.abc, json, sys

class NoTorchao(importlib.abc.MetaPathFinder):
    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torchao":
            self.attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None

assert not any(m.split(".")[0] == "torchao" for m in sys.modules), "torchao loaded at startup"
sys.meta_path.insert(0, NoTorchao())
try:
    import torchao  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the block does not work")
NoTorchao.attempts.clear()

import torch
from torch.fx.passes.infra.pass_manager import PassManager

import portmeta
import portmeta_fx
from portmeta_fx import PortNodeMetaForQDQ
import torch_only_graph

out = {}
for name, profile in (("legacy", portmeta.LEGACY_TORCH_AO), ("torchao", portmeta.TORCHAO)):
    gm = torch_only_graph.build()
    result = PassManager([PortNodeMetaForQDQ(profile=profile)])(gm)
    assert result.graph_module is gm
    out[name] = torch_only_graph.state(gm)
out["attempts"] = NoTorchao.attempts
out["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] == "torchao")
out["has_legacy_pass"] = hasattr(torch.ao.quantization, "pt2e")
print(json.dumps(out))
"""


def test_the_drop_in_pass_runs_with_torch_alone_and_equals_torchao() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["attempts"] == [] and out["loaded"] == []
    assert out["has_legacy_pass"] is False  # torch 2.13: the pass portmeta replaces is gone

    gm = torch_only_graph.build()
    Upstream().call(gm)
    expected = torch_only_graph.state(gm)
    assert out["legacy"] == out["torchao"] == expected
    # and the pass did port: the graph was not left as it was built
    built = torch_only_graph.state(torch_only_graph.build())
    written = {n for n in expected if expected[n] != built[n]}
    assert written == {
        "x_dq",
        "wt_q",
        "wt",
        "wt_dq",
        "linear_q",
        "linear_dq",
        "relu_q",
        "cq",
        "dyn_q",
        "dyn_dq",
        "w2_q",
        "w2_dq",
    }
    assert expected["cq"] == {"stack_trace": "m.py:9", "quantization_tag": "D"}
    assert expected["wt_q"] == {"stack_trace": "w.py:1", "quantization_tag": "W"}
