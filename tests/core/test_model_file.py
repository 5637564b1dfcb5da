"""The model file format (``portmeta.model``): every graph of a model in one file, torch-free."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import portmeta
from portmeta.io import model_from_dict, model_to_dict
from portmeta.testing import GraphBuilder, static


def _graph(tag: str) -> portmeta.Snapshot:
    """x -> q -> dq -> relu (annotated, tagged) -> output."""
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    relu = b.call("aten.relu.default", dq, name="relu", tag=tag, stack_trace="m.py:1")
    b.annotate(relu, inputs={x: static()})
    b.output(relu)
    return b.build()


def _model() -> dict[str, portmeta.Snapshot]:
    return {"": _graph("top"), "scan_combine_graph_0": _graph("body")}


def test_round_trip_keeps_every_graph(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    portmeta.dump_graphs(_model(), path)
    assert json.loads(path.read_text())["format"] == "portmeta.model"
    loaded = portmeta.load_graphs(path)
    assert list(loaded) == ["", "scan_combine_graph_0"]
    for name, graph in _model().items():
        assert portmeta.fingerprint(loaded[name]) == portmeta.fingerprint(graph)


def test_top_level_alone_is_written_and_read_as_a_graph_file(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    portmeta.dump_graphs({"": _graph("top")}, path)
    assert json.loads(path.read_text())["format"] == "portmeta.graph"
    assert list(portmeta.load_graph(path)) == list(_graph("top"))
    old = tmp_path / "old.json"
    portmeta.dump_graph(_graph("top"), old)
    assert list(portmeta.load_graphs(old)) == [""]


def test_merged_snapshot_names_nodes_by_graph() -> None:
    merged = portmeta.merge_graphs(_model())
    assert "scan_combine_graph_0:dq" in merged and "dq" in merged
    state = portmeta.plan(merged).final_state()
    assert state["dq"]["quantization_tag"] == "top"
    assert state["scan_combine_graph_0:dq"]["quantization_tag"] == "body"
    assert portmeta.users(merged, "scan_combine_graph_0:x") == ("scan_combine_graph_0:q",)
    top = _graph("top")
    assert portmeta.merge_graphs({"": top}) is top
    with pytest.raises(portmeta.GraphBuildError, match="contains ':'"):
        portmeta.merge_graphs({"": _graph("top"), "a:b": _graph("x")})


def _data() -> dict[str, Any]:
    return model_to_dict(_model())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(version=2), "unsupported model schema version 2"),
        (lambda d: d.update(graphs=[]), "field 'graphs' must be a non-empty object, got an array"),
        (lambda d: d.update(graphs={}), "field 'graphs' must be a non-empty object"),
        (lambda d: d["graphs"].pop(""), "the model has no top-level graph"),
        (lambda d: d["graphs"].update({"a:b": d["graphs"][""]}), "graph name 'a:b' contains ':'"),
        (
            lambda d: d["graphs"]["scan_combine_graph_0"]["nodes"][0].pop("op"),
            "graph 'scan_combine_graph_0': node 'x': missing field 'op'",
        ),
        (
            lambda d: d["graphs"]["scan_combine_graph_0"].update(version=9),
            "graph 'scan_combine_graph_0': unsupported graph schema version 9",
        ),
    ],
)
def test_strict_refusals_are_one_line(edit: Any, message: str, tmp_path: Path) -> None:
    data = _data()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(portmeta.GraphFormatError) as info:
        portmeta.load_graphs(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_a_model_file_is_no_graph_file(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    portmeta.dump_graphs(_model(), path)
    with pytest.raises(portmeta.GraphFormatError, match="read it with load_graphs"):
        portmeta.load_graph(path)
    with pytest.raises(portmeta.GraphFormatError, match="not a portmeta graph file"):
        model_from_dict({"format": "portmeta.plan"})


def test_graph_of_inverts_qualified_node() -> None:
    for graph in ("", "scan_combine_graph_0", "outer.while_loop_body_graph_0"):
        for node in ("dq", "x@0"):
            assert portmeta.graph_of(portmeta.qualified_node(graph, node)) == graph


def test_the_command_line_counts_each_graph(tmp_path: Path, capsys: Any) -> None:
    from portmeta.cli import main

    model = _model()
    body = GraphBuilder()  # a body whose dequantize is read inside a list: a hole
    x = body.placeholder("x")
    _, dq = body.qdq(x)
    cat = body.call("aten.cat.default", [dq], name="cat", tag="body_cat")
    body.annotate(cat, inputs={x: static()})
    body.output(cat)
    model["while_loop_body_graph_0"] = body.build()
    path = tmp_path / "model.json"
    portmeta.dump_graphs(model, path)

    assert main(["plan", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3:] == [
        "graph ''                         5 nodes, 1 annotated, 2 writes",
        "graph 'scan_combine_graph_0'     5 nodes, 1 annotated, 2 writes",
        "graph 'while_loop_body_graph_0'  5 nodes, 1 annotated, 0 writes",
    ]
    assert main(["check", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3:] == [
        "graph ''                         5 nodes, 1 annotated, 2 writes, 0 findings",
        "graph 'scan_combine_graph_0'     5 nodes, 1 annotated, 2 writes, 0 findings",
        "graph 'while_loop_body_graph_0'  5 nodes, 1 annotated, 0 writes, 1 finding",
    ]
    assert main(["plan", str(path), "--graph", "scan_combine_graph_0"]) == 0
    assert not capsys.readouterr().out.splitlines()[-1].startswith("graph ")
