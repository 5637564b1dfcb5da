"""Plan files name their profile (a derived one: its base and the fields that differ) instead
of writing it out in full; files of the first schema version still load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import attrs
import pytest

import portmeta
from portmeta import LEGACY_TORCH_AO, TORCHAO, Plan, Target
from portmeta.diff import diff_plans
from portmeta.graph import fingerprint_matches, fingerprint_scheme
from portmeta.plan import PLAN_SCHEMA_VERSION
from portmeta.testing import GraphBuilder, assert_matches_golden, shared, static

DATA = Path(__file__).resolve().parent / "data"
V1_FILE = DATA / "conv_relu_v1.plan.json"  # written by portmeta before this change
UNSQUEEZE = TORCHAO.extend(
    name="torchao+unsqueeze", view_ops=[Target.overload("aten.unsqueeze.default")]
)


def _add_graph():
    """The graph of docs/testing-without-torch.md section 4 (x + y, one partition)."""
    b = GraphBuilder()
    x, y = b.placeholder("x"), b.placeholder("y")
    dqs = [b.qdq(v, names=(f"{v}_q", f"{v}_dq"))[1] for v in (x, y)]
    add = b.call("aten.add.Tensor", *dqs, name="add", tag="add_0", stack_trace="m.py:9")
    b.annotate(add, inputs={x: static(), y: shared()}, output=static())
    b.output(b.qdq(add, names=("out_q", "out_dq"))[1])
    return b.build()


@pytest.mark.parametrize(
    ("profile", "written"),
    [
        (TORCHAO, "torchao"),
        (LEGACY_TORCH_AO, "legacy"),
        (TORCHAO.extend(keys=["custom"]), {"base": "torchao", "keys": [*TORCHAO.keys, "custom"]}),
        (
            attrs.evolve(LEGACY_TORCH_AO, name="mine", skip_output_without_users=True),
            {"base": "legacy", "name": "mine", "skip_output_without_users": True},
        ),
    ],
    ids=["torchao", "legacy", "more-keys", "legacy-with-guard"],
)
def test_the_profile_is_named_and_only_differences_are_written(profile, written):
    p = portmeta.plan(_add_graph(), profile)
    data = p.to_dict()
    assert data["version"] == PLAN_SCHEMA_VERSION == 2
    assert data["profile"] == written
    again = Plan.from_json(p.to_json())
    assert again == p and again.profile == profile


def test_a_derived_profile_lists_the_changed_field_whole():
    data = portmeta.plan(_add_graph(), UNSQUEEZE).to_dict()["profile"]
    assert set(data) == {"base", "name", "view_ops"}
    assert {"name": "aten.unsqueeze.default", "kind": "overload"} in data["view_ops"]
    assert Plan.from_dict(portmeta.plan(_add_graph(), UNSQUEEZE).to_dict()).profile == UNSQUEEZE


def test_a_golden_file_is_mostly_writes():
    text = portmeta.plan(_add_graph()).to_json() + "\n"
    assert '"profile": "torchao"' in text
    assert "view_ops" not in text and "dequantize_per_tensor" not in text
    assert len(text.encode()) < 2000  # 1511 bytes; 4665 before, for the same 6 writes


def test_version_1_files_still_load():
    old = Plan.load(str(V1_FILE))
    assert json.loads(V1_FILE.read_text())["version"] == 1
    graph = portmeta.load_graph(DATA / "conv_relu_graph.json")
    now = portmeta.plan(graph, UNSQUEEZE)
    # the file carries a fingerprint of scheme v1, which still identifies the graph
    assert fingerprint_scheme(old.fingerprint) == "v1" and fingerprint_matches(
        graph, old.fingerprint
    )
    assert attrs.evolve(old, fingerprint=now.fingerprint) == now and old.profile == UNSQUEEZE
    diff = diff_plans(old, now)
    assert diff.agree and any("different schemes (v1, v2)" in n for n in diff.notes)


def test_an_old_golden_file_still_matches_and_an_update_rewrites_it(tmp_path):
    shutil.copy(V1_FILE, tmp_path / "conv_relu.plan.json")
    p = portmeta.plan(portmeta.load_graph(DATA / "conv_relu_graph.json"), UNSQUEEZE)
    assert_matches_golden(p, "conv_relu", directory=tmp_path, update=False)
    path = assert_matches_golden(p, "conv_relu", directory=tmp_path, update=True)
    assert json.loads(path.read_text())["profile"]["base"] == "torchao"
    assert path.stat().st_size < V1_FILE.stat().st_size  # 2570 bytes against 4901
    assert_matches_golden(p, "conv_relu", directory=tmp_path, update=False)
