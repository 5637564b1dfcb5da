"""Plan files name their profile (a derived one: its base and the fields that differ) instead
of writing it out in full; files of the first schema version, and files whose fingerprint is of
a scheme before v3, are refused with a note to plan again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import attrs
import pytest

import portmeta
from portmeta import LEGACY_TORCH_AO, TORCHAO, Plan, Target
from portmeta.diff import diff_plans
from portmeta.errors import GraphFormatError
from portmeta.fingerprint import is_fingerprint
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


def test_version_1_files_are_refused_saying_to_plan_again():
    assert json.loads(V1_FILE.read_text())["version"] == 1
    with pytest.raises(GraphFormatError) as info:
        Plan.load(str(V1_FILE))
    assert str(info.value) == (
        f"{V1_FILE}: a plan of schema version 1, saved by an older portmeta; plan again "
        f"(`portmeta plan GRAPH.json -o {V1_FILE}`)"
    )


def test_the_writes_of_a_version_1_file_are_still_todays_plan():
    """What the file saved before the change is still what planning gives (read as version 2:
    its whole profile as the fields that differ from a base, and today's fingerprint)."""
    graph = portmeta.load_graph(DATA / "conv_relu_graph.json")
    now = portmeta.plan(graph, UNSQUEEZE)
    data = json.loads(V1_FILE.read_text())
    assert data["fingerprint"] != now.fingerprint and not is_fingerprint(data["fingerprint"])
    data.update(
        version=2, fingerprint=now.fingerprint, profile={"base": "torchao", **data["profile"]}
    )
    old = Plan.from_dict(data)
    assert old == now and old.profile == UNSQUEEZE
    assert diff_plans(old, now).agree and diff_plans(old, now).notes == ()


@pytest.mark.parametrize(
    "found",
    [
        "85120d97c38a5d4e2b6cf5a0bf2e47c45fa098d790511303db2e8dc7cbee0be3",  # scheme v1
        "v2:" + "0" * 64,
        "v3:" + "0" * 63,
        "",
        None,
    ],
    ids=["v1", "v2", "short-v3", "empty", "none"],
)
def test_a_fingerprint_of_an_older_scheme_is_refused_in_one_line(found):
    data = portmeta.plan(_add_graph()).to_dict()
    data["fingerprint"] = found
    with pytest.raises(GraphFormatError) as info:
        Plan.from_dict(data, source="p.json")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("p.json: the plan's fingerprint ")
    assert message.endswith(
        "is not of scheme v3 (a plan saved by an older portmeta); plan again "
        "(`portmeta plan GRAPH.json -o p.json`)"
    )


def test_an_old_golden_file_fails_saying_to_update_and_an_update_rewrites_it(tmp_path):
    shutil.copy(V1_FILE, tmp_path / "conv_relu.plan.json")
    p = portmeta.plan(portmeta.load_graph(DATA / "conv_relu_graph.json"), UNSQUEEZE)
    with pytest.raises(AssertionError) as info:
        assert_matches_golden(p, "conv_relu", directory=tmp_path, update=False)
    assert str(info.value).startswith(
        f"cannot read golden plan {tmp_path / 'conv_relu.plan.json'}: "
    )
    assert "schema version 1" in str(info.value)
    assert str(info.value).endswith(
        "; run pytest with --portmeta-update-golden to rewrite it from this plan"
    )
    path = assert_matches_golden(p, "conv_relu", directory=tmp_path, update=True)
    assert json.loads(path.read_text())["profile"]["base"] == "torchao"
    assert path.stat().st_size < V1_FILE.stat().st_size  # 2570 bytes against 4901
    assert_matches_golden(p, "conv_relu", directory=tmp_path, update=False)
