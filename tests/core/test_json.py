"""Graph and plan files: round trips, and every way a file can be wrong -> GraphFormatError."""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import portmeta
from portmeta import (
    GraphFormatError,
    NodeRecord,
    NodeRef,
    Plan,
    Snapshot,
    Target,
    build_graph,
    dump_graph,
    graph_from_dict,
    graph_to_dict,
    load_graph,
)
from portmeta.records import Annotation, Malformed, Opaque, QInput, QSpec
from portmeta.testing import GraphBuilder, dynamic, static
from portmeta.testing.strategies import graphs

from .helpers import DQ


def _graph():
    b = GraphBuilder()
    x = b.placeholder("x", stack_trace="m.py:1")
    _q, dq = b.qdq(x)
    w = b.get_attr("w", tag="W")
    _wq, wdq = b.qdq(w, per_channel=True)
    conv = b.call(
        "aten.conv2d.default",
        dq,
        wdq,
        kwargs={"groups": 1, "pad": (1, 1)},
        name="conv",
        tag="C",
        stack_trace=None,
    )
    b.annotate(
        conv,
        inputs={x: static(), w: static(), "ghost": dynamic()},
        output=static(),
        check_inputs=False,  # "ghost": an erased input, on purpose
    )
    _oq, odq = b.qdq(conv)
    b.output(odq)
    # the erased input is recorded as a foreign node, after the graph's own
    b.add("placeholder", "ghost", name="ghost", foreign=True)
    return b.build(meta_keys=["stack_trace", "quantization_tag"])


def test_graph_dict_layout():
    d = graph_to_dict(_graph())
    assert (d["format"], d["version"], d["meta_keys"]) == (
        "portmeta.graph",
        1,
        ["stack_trace", "quantization_tag"],
    )
    conv = next(n for n in d["nodes"] if n["name"] == "conv")
    assert conv["target"] == {"name": "aten.conv2d.default", "kind": "overload"}
    assert conv["args"] == [{"$node": "dq"}, {"$node": "dq_1"}]
    assert conv["kwargs"] == {"groups": 1, "pad": {"$tuple": [1, 1]}}
    assert conv["meta"] == {"stack_trace": None, "quantization_tag": "C"}
    assert conv["annotation"]["inputs"][2] == {
        "node": "ghost",
        "qspec": {"kind": "QuantizationSpec", "is_dynamic": True},
        "is_node": True,
    }
    q = next(n for n in d["nodes"] if n["name"] == "q")
    assert q["args"][-1] == {"$opaque": "torch.int8", "type": "torch.dtype"}
    ghost = d["nodes"][-1]  # the erased input: a foreign node, last
    assert (ghost["name"], ghost["foreign"]) == ("ghost", True)
    assert [n.get("foreign", False) for n in d["nodes"]].count(True) == 1


def test_graph_round_trip_through_dict_and_file(tmp_path):
    g = _graph()
    again = graph_from_dict(json.loads(json.dumps(graph_to_dict(g))))
    assert list(portmeta.records(again)) == list(portmeta.records(g))
    assert portmeta.fingerprint(again) == portmeta.fingerprint(g)
    path = tmp_path / "g.json"
    dump_graph(g, path)
    loaded = load_graph(path)
    assert list(portmeta.records(loaded)) == list(portmeta.records(g))
    assert portmeta.fingerprint(loaded) == portmeta.fingerprint(g)
    assert portmeta.plan(loaded, errors="collect") == portmeta.plan(g, errors="collect")
    assert portmeta.record(loaded, "q").args[-1] == Opaque("torch.dtype", "torch.int8")


def test_dump_graph_leaves_no_temporary_files(tmp_path):
    dump_graph(_graph(), tmp_path / "g.json")
    dump_graph(_graph(), tmp_path / "g.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json"]


# ----------------------------------------------------------------------- bad raw files

_VALID = json.dumps(graph_to_dict(_graph()), indent=1)

RAW_CASES = {
    "not-json": (b"hello world", "not valid JSON"),
    "empty": (b"", "file is empty"),
    "whitespace-only": (b"  \n\t ", "file is empty"),
    "binary": (bytes(range(256)) * 4, "not UTF-8"),
    "binary-valid-utf8": (b"\x00\x01\x02PK\x03\x04", "not valid JSON"),
    "truncated": (_VALID[: len(_VALID) // 2].encode(), "not valid JSON"),
    "deeply-nested-open": (b"[" * 100000, "nested too deeply"),
    "deeply-nested-closed": (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    "top-level-array": (b"[]", "expected a JSON object at the top level, got an array"),
    "top-level-number": (b"3", "expected a JSON object at the top level, got a number"),
    "plan-file": (
        json.dumps({"format": "portmeta.plan", "version": 1}).encode(),
        "not a portmeta graph file (format is 'portmeta.plan'",
    ),
}


@pytest.mark.parametrize(("content", "problem"), RAW_CASES.values(), ids=RAW_CASES.keys())
def test_bad_graph_file(tmp_path, content, problem):
    path = tmp_path / "bad graph.json"
    path.write_bytes(content)
    with pytest.raises(GraphFormatError) as info:
        load_graph(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert info.value.source == str(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(GraphFormatError, match="no such file"):
        load_graph(tmp_path / "missing.json")
    with pytest.raises(GraphFormatError, match="is a directory"):
        load_graph(tmp_path)


# ----------------------------------------------------------------- bad structured data


def _node(d, name):
    return next(n for n in d["nodes"] if n["name"] == name)


def _node_set(name, path, value):
    def mutate(d):
        obj = _node(d, name)
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value

    return mutate


def _node_del(name, path):
    def mutate(d):
        obj = _node(d, name)
        for key in path[:-1]:
            obj = obj[key]
        del obj[path[-1]]

    return mutate


def _top(key, value=..., delete=False):
    def mutate(d):
        if delete:
            del d[key]
        else:
            d[key] = value

    return mutate


def _dup_node(d):
    d["nodes"].insert(1, copy.deepcopy(d["nodes"][0]))


def _unknown_ref(d):
    _node(d, "q")["args"][0] = {"$node": "nowhere"}


def _users_disagree(d):
    _node(d, "x")["users"] = []


def _unknown_user(d):
    _node(d, "output")["users"] = ["ghost_user"]


def _cycle(d):
    # relu-like loop: q reads dq, dq reads q
    _node(d, "q")["args"][0] = {"$node": "dq"}
    _node(d, "x")["users"] = []
    _node(d, "dq")["users"] = ["conv", "q"]


STRUCT_CASES = {
    "wrong-format": (_top("format", "onnx.graph"), "not a portmeta graph file"),
    "no-format": (_top("format", delete=True), "not a portmeta graph file (format is None"),
    "version-2": (_top("version", 2), "unsupported graph schema version 2"),
    "version-string": (_top("version", "1"), "unsupported graph schema version '1'"),
    "version-missing": (_top("version", delete=True), "unsupported graph schema version None"),
    "meta-keys-mistyped": (_top("meta_keys", "stack_trace"), "field 'meta_keys' must be a list"),
    "meta-keys-not-strings": (_top("meta_keys", [1]), "field 'meta_keys' must be a list"),
    "nodes-missing": (_top("nodes", delete=True), "graph: missing field 'nodes'"),
    "nodes-mistyped": (_top("nodes", {}), "graph: field 'nodes' must be an array, got an object"),
    "node-not-object": (_top("nodes", [7]), "nodes[0]: must be an object, got a number"),
    "name-missing": (_node_del("x", ["name"]), "nodes[0]: missing field 'name'"),
    "name-mistyped": (_node_set("x", ["name"], 5), "nodes[0]: field 'name' must be a string"),
    "op-missing": (_node_del("q", ["op"]), "node 'q': missing field 'op'"),
    "op-empty": (_node_set("q", ["op"], ""), "node 'q': unknown op '' (expected one of"),
    "op-unknown": (
        _node_set("q", ["op"], "call_functon"),
        "node 'q': unknown op 'call_functon' (did you mean 'call_function'",
    ),
    "target-missing": (_node_del("q", ["target"]), "node 'q': missing field 'target'"),
    "target-mistyped": (_node_set("q", ["target"], DQ), "field 'target' must be an object"),
    "target-name-missing": (
        _node_del("q", ["target", "name"]),
        "node 'q'.target: missing field 'name'",
    ),
    "target-kind-unknown": (
        _node_set("q", ["target", "kind"], "lambda"),
        "node 'q'.target: unknown kind 'lambda'",
    ),
    "args-missing": (_node_del("q", ["args"]), "node 'q': missing field 'args'"),
    "args-mistyped": (_node_set("q", ["args"], "x"), "field 'args' must be an array"),
    "args-bad-value": (
        _node_set("q", ["args", 1], {"$weird": 1}),
        "node 'q'.args: unknown encoded",
    ),
    "args-unhashable-dict-key": (
        _node_set("q", ["args", 1], {"$dict": [[[1], 2]]}),
        "node 'q'.args: $dict key",
    ),
    "kwargs-mistyped": (_node_set("conv", ["kwargs"], []), "field 'kwargs' must be an object"),
    "kwargs-bad-value": (
        _node_set("conv", ["kwargs", "groups"], {"$float": "big"}),
        "node 'conv'.kwargs['groups']",
    ),
    "users-missing": (_node_del("x", ["users"]), "node 'x': missing field 'users'"),
    "users-not-strings": (_node_set("x", ["users"], [1]), "users must be node names"),
    "meta-missing": (_node_del("x", ["meta"]), "node 'x': missing field 'meta'"),
    "meta-mistyped": (_node_set("x", ["meta"], ["a"]), "field 'meta' must be an object"),
    "meta-bad-value": (
        _node_set("x", ["meta", "stack_trace"], {"$opaque": 1, "type": "t"}),
        "node 'x'.meta['stack_trace']",
    ),
    "annotation-missing": (_node_del("x", ["annotation"]), "node 'x': missing field 'annotation'"),
    "annotation-mistyped": (
        _node_set("conv", ["annotation"], "static"),
        "node 'conv'.annotation: annotation must be an object or null",
    ),
    "inputs-missing": (
        _node_del("conv", ["annotation", "inputs"]),
        "node 'conv'.annotation: missing field 'inputs'",
    ),
    "inputs-mistyped": (
        _node_set("conv", ["annotation", "inputs"], {}),
        "field 'inputs' must be an array",
    ),
    "input-not-object": (
        _node_set("conv", ["annotation", "inputs", 0], "x"),
        "node 'conv'.annotation.inputs[0]: must be an object, got a string",
    ),
    "input-node-missing": (
        _node_del("conv", ["annotation", "inputs", 1, "node"]),
        "node 'conv'.annotation.inputs[1]: missing field 'node'",
    ),
    "input-is_node-mistyped": (
        _node_set("conv", ["annotation", "inputs", 0, "is_node"], "yes"),
        "field 'is_node' must be a boolean",
    ),
    "qspec-mistyped": (
        _node_set("conv", ["annotation", "inputs", 0, "qspec"], True),
        "qspec must be an object or null, got a boolean",
    ),
    "qspec-kind-missing": (
        _node_del("conv", ["annotation", "inputs", 0, "qspec", "kind"]),
        "missing field 'kind'",
    ),
    "qspec-is-dynamic-mistyped": (
        _node_set("conv", ["annotation", "inputs", 0, "qspec", "is_dynamic"], "no"),
        "is_dynamic must be true, false or null",
    ),
    "output-missing": (
        _node_del("conv", ["annotation", "output"]),
        "node 'conv'.annotation: missing field 'output'",
    ),
    "output-mistyped": (
        _node_set("conv", ["annotation", "output"], 1),
        "node 'conv'.annotation.output: qspec must be an object or null",
    ),
    "input-unknown-node": (
        _node_set("conv", ["annotation", "inputs", 0, "node"], "nowhere"),
        "node 'conv': annotation input 'nowhere' is not a node of the graph",
    ),
    "duplicate-node": (_dup_node, "duplicate node name 'x'"),
    "unknown-reference": (_unknown_ref, "node 'q' refers to unknown node 'nowhere'"),
    "unknown-user": (_unknown_user, "node 'output' lists unknown user 'ghost_user'"),
    "users-disagree": (_users_disagree, "users of node 'x' disagree"),
    "cycle": (_cycle, "cycle"),
}


@pytest.mark.parametrize(("mutate", "problem"), STRUCT_CASES.values(), ids=STRUCT_CASES.keys())
def test_bad_graph_structure_in_a_file(tmp_path, mutate, problem):
    d = graph_to_dict(_graph())
    mutate(d)
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(d))
    with pytest.raises(GraphFormatError) as info:
        load_graph(path)
    assert str(info.value).startswith(f"{path}: ")
    assert problem in str(info.value)
    assert "\n" not in str(info.value)
    # the same data without a file: same problem, no file name
    with pytest.raises(GraphFormatError) as info:
        graph_from_dict(d)
    assert info.value.source is None
    assert problem in str(info.value)


def test_an_unknown_op_is_refused_in_one_line_naming_the_node(tmp_path):
    d = graph_to_dict(_graph())
    _node(d, "conv")["op"] = "call_functon"
    path = tmp_path / "g.json"
    path.write_text(json.dumps(d))
    with pytest.raises(GraphFormatError) as info:
        load_graph(path)
    assert str(info.value) == (
        f"{path}: node 'conv': unknown op 'call_functon' "
        "(did you mean 'call_function', 'call_method'?)"
    )


def test_an_annotation_input_that_is_no_node_of_the_file_is_refused_in_one_line(tmp_path):
    d = graph_to_dict(_graph())
    conv = _node(d, "conv")
    assert [i["node"] for i in conv["annotation"]["inputs"]] == ["x", "w", "ghost"]
    d["nodes"].remove(_node(d, "ghost"))  # the erased input, no longer recorded
    path = tmp_path / "g.json"
    path.write_text(json.dumps(d))
    with pytest.raises(GraphFormatError) as info:
        load_graph(path)
    message = str(info.value)
    assert message.startswith(
        f"{path}: node 'conv': annotation input 'ghost' is not a node of the graph; "
    )
    assert "foreign node" in message and "\n" not in message
    # a key that is no FX node at all (is_node false) names nothing: it is read
    conv["annotation"]["inputs"][2]["is_node"] = False
    g = graph_from_dict(d)
    assert portmeta.record(g, "conv").annotation.inputs[2] == QInput(
        "ghost", QSpec("QuantizationSpec", True), is_node=False
    )


def test_a_malformed_node_gets_the_readers_message():
    b = GraphBuilder()
    b.output(b.placeholder("x"))
    data = graph_to_dict(b.build())
    data["nodes"][0]["users"] = ["output", 7]
    with pytest.raises(GraphFormatError) as info:
        graph_from_dict(data, source="g.json")
    assert str(info.value) == "g.json: node 'x': users must be node names (strings)"


def test_deep_nesting_inside_a_value_is_a_format_error():
    d = graph_to_dict(_graph())
    deep = 0
    for _ in range(50000):
        deep = {"$tuple": [deep]}
    _node(d, "x")["meta"]["stack_trace"] = deep
    with pytest.raises(GraphFormatError, match="nested too deeply"):
        graph_from_dict(d, source="deep.json")


def test_boolean_schema_version_is_rejected():
    d = graph_to_dict(_graph())
    d["version"] = True
    with pytest.raises(GraphFormatError, match="version"):
        graph_from_dict(d)


# ------------------------------------------------------------------------------- plans


def _plan():
    return portmeta.plan(_graph(), errors="collect")


def test_plan_round_trip_through_json_and_file(tmp_path):
    p = _plan()
    assert [d.kind for d in p.diagnostics] == ["error"]  # the dynamic 'ghost' input
    assert p.diagnostics[0].error_class == "NoChooseQParamsError"
    assert len(p.deltas) == 0  # collect drops every write of conv
    p2 = portmeta.plan(graph_from_dict(graph_to_dict(_graph())), errors="collect")
    assert Plan.from_json(p2.to_json()) == p2
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    r = b.call("aten.relu.default", dq, name="r", tag=("tuple", 1), stack_trace=None)
    b.annotate(r, inputs={x: static()}, output=static())
    b.output(r, b.call("aten.neg.default", r, name="neg"))
    p3 = portmeta.plan(b.build())
    assert [d.kind for d in p3.diagnostics] == ["user_count", "not_quantize"]
    again = Plan.from_json(p3.to_json(indent=None))
    assert again == p3
    assert again.deltas[1].value == ("tuple", 1)
    path = tmp_path / "plan.json"
    path.write_text(p3.to_json())
    assert Plan.load(str(path)) == p3


def _plan_dict():
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    r = b.call("aten.relu.default", dq, name="r", tag="T")
    b.annotate(r, inputs={x: static()}, output=static())
    b.output(r)
    return portmeta.plan(b.build()).to_dict()


PLAN_CASES = {
    "wrong-format": (lambda d: d.update(format="portmeta.graph"), "not a portmeta plan file"),
    "wrong-version": (lambda d: d.update(version=7), "unsupported plan schema version 7"),
    "fingerprint-missing": (
        lambda d: d.pop("fingerprint"),
        "the plan's fingerprint None is not of scheme v3",
    ),
    "fingerprint-mistyped": (
        lambda d: d.update(fingerprint=3),
        "the plan's fingerprint 3 is not of scheme v3",
    ),
    "fingerprint-v2": (
        lambda d: d.update(fingerprint="v2:" + "0" * 64),
        "the plan's fingerprint 'v2:",
    ),
    "fingerprint-v1": (
        lambda d: d.update(fingerprint="0" * 64),
        "is not of scheme v3 (a plan saved by an older portmeta); plan again",
    ),
    "fingerprint-v3-short": (
        lambda d: d.update(fingerprint=d["fingerprint"][:-1]),
        "is not of scheme v3",
    ),
    "deltas-missing": (lambda d: d.pop("deltas"), "missing field 'deltas'"),
    "deltas-mistyped": (lambda d: d.update(deltas=5), "malformed plan"),
    "delta-not-object": (lambda d: d.update(deltas=["x"]), "malformed plan"),
    "delta-target-missing": (lambda d: d["deltas"][0].pop("target"), "missing field 'target'"),
    "delta-target-mistyped": (lambda d: d["deltas"][0].update(target=1), "malformed plan"),
    "delta-rule-unknown": (lambda d: d["deltas"][0].update(rule="magic"), "malformed plan"),
    "delta-value-bad": (lambda d: d["deltas"][0].update(value={"$x": 1}), "malformed plan"),
    "delta-path-mistyped": (lambda d: d["deltas"][0].update(path=[1]), "malformed plan"),
    "diag-severity-unknown": (
        lambda d: d["diagnostics"][0].update(severity="fatal"),
        "malformed plan",
    ),
    "diag-rule-missing": (lambda d: d["diagnostics"][0].pop("rule"), "missing field 'rule'"),
    "profile-missing": (lambda d: d.pop("profile"), "missing field 'profile'"),
    "profile-malformed": (
        lambda d: d.update(profile={"base": "torchao", "keys": 3}),
        "malformed profile data",
    ),
    "profile-mistyped": (lambda d: d.update(profile=[]), "malformed profile data"),
    "profile-unknown-name": (lambda d: d.update(profile="nope"), "unknown profile 'nope'"),
    "profile-unknown-base": (lambda d: d.update(profile={"base": "x"}), "unknown profile 'x'"),
    "profile-unknown-field": (
        lambda d: d.update(profile={"base": "torchao", "colour": 1}),
        "unknown fields ['colour']",
    ),
    "version-1": (
        lambda d: d.update(version=1),
        "a plan of schema version 1, saved by an older portmeta; plan again",
    ),
    "top-level-array": (lambda d: d.clear(), "not a portmeta plan file"),
}


@pytest.mark.parametrize(("mutate", "problem"), PLAN_CASES.values(), ids=PLAN_CASES.keys())
def test_bad_plan_data(tmp_path, mutate, problem):
    d = _plan_dict()
    assert d["diagnostics"]  # the case list relies on one diagnostic and some deltas
    mutate(d)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(d))
    with pytest.raises(GraphFormatError) as info:
        Plan.load(str(path))
    assert str(info.value).startswith(f"{path}: ")
    assert problem in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(GraphFormatError) as info:
        Plan.from_json(json.dumps(d), source="p.json")
    assert str(info.value).startswith("p.json: ")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"fingerprint": "v2:" + "0123456789abcdef" * 4},
            "the plan's fingerprint 'v2:0123456...789abcdef' is not of scheme v3 "
            "(a plan saved by an older portmeta)",
        ),
        ({"version": 1}, "a plan of schema version 1, saved by an older portmeta"),
    ],
    ids=["v2-fingerprint", "schema-version-1"],
)
def test_a_plan_of_an_older_portmeta_is_refused_in_one_line_saying_to_plan_again(
    tmp_path, change, problem
):
    d = _plan_dict()
    d.update(change)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(d))
    with pytest.raises(GraphFormatError) as info:
        Plan.load(str(path))
    assert str(info.value) == (
        f"{path}: {problem}; plan again (`portmeta plan GRAPH.json -o {path}`)"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "file is empty"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b'{"format": "portmeta.plan", "vers', "not valid JSON"),
        (b"[" * 100000, "nested too deeply"),
        (b"[1, 2]", "expected a JSON object at the top level"),
    ],
    ids=["empty", "binary", "truncated", "deeply-nested", "array"],
)
def test_bad_plan_file(tmp_path, content, problem):
    path = tmp_path / "plan.json"
    path.write_bytes(content)
    with pytest.raises(GraphFormatError) as info:
        Plan.load(str(path))
    assert str(info.value).startswith(f"{path}: ")
    assert problem in str(info.value)
    if content:
        with pytest.raises(GraphFormatError, match=problem.split(" ")[0]):
            Plan.from_json(content.decode("latin-1"), source="plan.json")


def test_plan_round_trip_with_nan_value():
    b = GraphBuilder()
    x = b.placeholder("x")
    _q, dq = b.qdq(x)
    r = b.call("aten.relu.default", dq, name="r", tag=float("nan"))
    b.annotate(r, inputs={x: static()})
    b.output(r)
    p = portmeta.plan(b.build())
    assert Plan.from_json(p.to_json()) == p


# --------------------------------------------------- the reader on odd, tricky and mutated files


def _layout(g: Any) -> Any:
    """A snapshot as comparable text: records (by ``repr``: NaN equals itself there), node
    order, ``succ`` and ``pred`` in their orders, graph attributes (but the fingerprint, kept
    once asked for)."""
    return (
        [repr(rec) for rec in portmeta.records(g)],
        [(u, list(g.succ[u])) for u in g],
        [(u, list(g.pred[u])) for u in g],
        repr(sorted((k, v) for k, v in g.graph.items() if k != "fingerprint")),
    )


@settings(max_examples=40)
@given(graphs(max_blocks=6))
def test_random_graphs_read_back_as_the_very_records(g):
    loaded = graph_from_dict(json.loads(json.dumps(graph_to_dict(g))))
    assert portmeta.records(loaded) == portmeta.records(g)
    assert _layout(loaded) == _layout(g)


_KEYS = st.sampled_from(["quantization_tag", "stack_trace", "k", "val", "nn_module_stack"])
_OPAQUES = st.builds(
    Opaque,
    st.sampled_from(["torch.dtype", "builtins.slice", "torch.memory_format"]),
    st.sampled_from(["torch.int8", "slice(None, 2, None)", "torch.contiguous_format"]),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    _OPAQUES,
)
_HASHABLE = st.one_of(st.text(max_size=3), st.integers(-3, 3), st.none(), _OPAQUES)


def _values(names: list[str]) -> st.SearchStrategy[Any]:
    leaves = _SCALARS | st.sampled_from([NodeRef(n) for n in names]) if names else _SCALARS
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.lists(inner, max_size=3).map(tuple),
            st.dictionaries(_HASHABLE, inner, max_size=2),
        ),
        max_leaves=6,
    )


@st.composite
def _odd_graphs(draw: Any) -> Snapshot:
    """Random graphs with odd values (nested lists, tuples and dicts, opaque constants, NaN and
    infinities, keyword arguments, references in metadata), foreign nodes, shared meta and
    malformed annotations."""
    recs = list(portmeta.records(draw(graphs(max_blocks=3))))
    names = [r.name for r in recs]
    constants, anything = _values([]), _values(names)
    out = []
    for i, rec in enumerate(recs):
        changes: dict[str, Any] = {}
        if draw(st.booleans()):  # references in metadata are no arguments
            extra = draw(st.dictionaries(_KEYS, anything))
            changes["meta"] = tuple({**dict(rec.meta), **extra}.items())
        if draw(st.booleans()):
            changes["args"] = (*rec.args, *draw(st.lists(constants, max_size=2)))
        if draw(st.booleans()):
            extra = draw(st.dictionaries(_KEYS, constants))
            changes["kwargs"] = tuple({**dict(rec.kwargs), **extra}.items())
        if draw(st.integers(0, 5)) == 0:
            changes["foreign"] = True
        if i and draw(st.integers(0, 5)) == 0:
            changes["meta_owner"] = names[0]
        if rec.annotation is not None and draw(st.integers(0, 3)) == 0:
            bad = Malformed("AttributeError", "'dict' object has no attribute 'output_qspec'")
            changes["annotation"] = attrs.evolve(rec.annotation, malformed=bad)
        out.append(attrs.evolve(rec, **changes) if changes else rec)
    if draw(st.booleans()):  # a reference to a foreign node after the graph's own
        at = draw(st.integers(0, len(out) - 1))
        out[at] = attrs.evolve(out[at], args=(*out[at].args, NodeRef("erased")))
        out.append(
            NodeRecord.of(
                "erased", "placeholder", Target.named("erased"), users=[out[at].name], foreign=True
            )
        )
    return build_graph(out)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(_odd_graphs())
def test_odd_graphs_read_back_from_a_file_as_written(g):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "graph.json"
        dump_graph(g, path)
        loaded = load_graph(path)
    assert _layout(loaded) == _layout(g)
    assert portmeta.fingerprint(loaded) == portmeta.fingerprint(g)


#: Plain data shaped like an object of the schema or an encoded value.
TRICKY_DICTS = {
    "node reference": {"$node": "x"},
    "opaque": {"$opaque": "torch.int8", "type": "torch.dtype"},
    "tuple": {"$tuple": [1]},
    "float": {"$float": "nan"},
    "target": {"name": "x", "kind": "name"},
    "qspec": {"kind": "QuantizationSpec", "is_dynamic": False},
    "qspec kind only": {"kind": "QuantizationSpec"},
    "input": {"node": "x", "qspec": None, "is_node": True},
    "input node only": {"node": "x"},
    "annotation": {"inputs": [], "output": None},
    "malformed": {"error": "E", "message": "m"},
    "node": {
        k: "x" for k in ("name", "op", "target", "args", "kwargs", "users", "meta", "annotation")
    },
}


@pytest.mark.parametrize("where", ["meta", "kwargs"])
@pytest.mark.parametrize("shape", TRICKY_DICTS.values(), ids=TRICKY_DICTS.keys())
def test_a_meta_or_kwargs_object_shaped_like_a_schema_object_is_read_as_its_keys(where, shape):
    b = GraphBuilder()
    x = b.placeholder("x")
    y = b.call("aten.relu.default", x, name="y")
    b.output(y)
    data = graph_to_dict(b.build())
    data["nodes"][1][where] = shape  # plain strings, booleans and nulls: valid values
    loaded = graph_from_dict(json.loads(json.dumps(data)))
    assert getattr(portmeta.record(loaded, "y"), where) == tuple(shape.items())


def test_deeply_nested_values_are_read():
    b = GraphBuilder()
    b.output(b.placeholder("x"))
    g = b.build()
    data = graph_to_dict(g)
    for depth in (63, 64, 65, 200):
        deep: Any = 1
        value: Any = 1
        for i in range(depth):
            deep = {"$tuple": [deep, 2]} if i % 2 else [deep]
            value = (value, 2) if i % 2 else [value]
        data["nodes"][0]["meta"] = {"k": deep}
        loaded = graph_from_dict(json.loads(json.dumps(data)))
        assert portmeta.record(loaded, "x").meta == (("k", value),), depth


def test_json_nan_and_infinity_literals_are_read_as_floats():
    b = GraphBuilder()
    b.output(b.call("aten.add.Tensor", b.placeholder("x"), 1.0, name="y"))
    data = graph_to_dict(b.build())
    data["nodes"][1]["args"][1] = math.nan
    data["nodes"][1]["kwargs"] = {"alpha": -math.inf, "beta": [math.inf]}
    text = json.dumps(data)
    assert "NaN" in text and "-Infinity" in text
    y = portmeta.record(graph_from_dict(json.loads(text)), "y")
    assert math.isnan(y.args[1])
    assert y.kwargs == (("alpha", -math.inf), ("beta", [math.inf]))


_JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-2, 2),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["", "x", "q", "dq", "output", "name", "overload", "$node"]),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=4,
)
#: Encoded-looking values with a mistake in them, and values of a shape the schema puts elsewhere.
_MISTAKES: list[Any] = [
    {"$dict": [[1, 2]]},
    {"$dict": [[[1], 2]]},
    {"$float": "big"},
    {"$float": []},
    {"$float": {}},
    {"$node": 1},
    {"$tuple": 1},
    {"$opaque": 1, "type": "t"},
    {"name": "x", "kind": "lambda"},
    {"kind": "Q", "is_dynamic": "no"},
    {"inputs": [{"node": "x"}], "output": None, "malformed": {"error": "E"}},
    [{"$node": "x"}],
]
_TRICKY = st.one_of(
    st.sampled_from(list(TRICKY_DICTS.values())),
    st.sampled_from(_MISTAKES),
    _JSON,
)


def _slots(value: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every ``(container, key)`` of a JSON value, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            out.append((value, key))
            _slots(item, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.append((value, i))
            _slots(item, out)
    return out


def _read_or_refused(d: dict[str, Any]) -> None:
    """A saved file is either refused with a one-line GraphFormatError naming the file, or read
    into a snapshot that is written and read back alike."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "graph.json"
        path.write_text(json.dumps(d), encoding="utf-8")
        try:
            g = load_graph(path)
        except GraphFormatError as exc:
            assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
            assert exc.source == str(path)
            return
    again = graph_from_dict(json.loads(json.dumps(graph_to_dict(g))))
    assert _layout(again) == _layout(g)
    assert portmeta.fingerprint(again) == portmeta.fingerprint(g)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(max_blocks=2), st.data())
def test_mutated_files_are_refused_or_read(g, data):
    d = graph_to_dict(g)
    container, key = data.draw(st.sampled_from(_slots(d, [])))
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    value = data.draw(_TRICKY)
    if action == "replace":
        container[key] = value
    elif action == "delete":
        del container[key]
    elif isinstance(container, dict):
        container[data.draw(st.sampled_from(["extra", "foreign", "meta_owner", "$node"]))] = value
    else:
        container.insert(key, value)
    _read_or_refused(d)


def _small_odd_graph() -> Snapshot:
    b = GraphBuilder()
    x = b.placeholder("x", stack_trace="m.py:1")
    q, dq = b.qdq(x)
    conv = b.call(
        "aten.conv2d.default", dq, [1, (2, None)], kwargs={"pad": (1, 1)}, name="conv", tag="C"
    )
    b.annotate(conv, inputs={x: static(), "ghost": dynamic()}, output=static(), check_inputs=False)
    b.output(conv)
    b.add("placeholder", "ghost", name="ghost", foreign=True)  # an erased input
    recs = [
        attrs.evolve(r, meta_owner=q) if r.name == dq else r for r in portmeta.records(b.build())
    ]
    bad = Annotation((), None, Malformed("TypeError", "object of type 'int' has no len()"))
    recs.append(
        NodeRecord.of("erased", "placeholder", Target.named("erased"), annotation=bad, foreign=True)
    )
    return build_graph(recs)


_DROP = object()
_EVERY_TRICK = [
    *TRICKY_DICTS.values(),
    *_MISTAKES,
    {"inputs": [], "output": None, "malformed": {"error": "E", "message": "m"}},
    [],
    {},
    None,
    True,
    0,
    1.5,
    "",
    "x",
]


def test_every_slot_of_a_small_file_replaced_or_dropped_is_refused_or_read():
    base = graph_to_dict(_small_odd_graph())
    for i in range(len(_slots(base, []))):
        for change in [_DROP, *_EVERY_TRICK]:
            d = copy.deepcopy(base)
            container, key = _slots(d, [])[i]
            if change is _DROP:
                del container[key]
            else:
                container[key] = copy.deepcopy(change)
            try:
                _read_or_refused(d)
            except Exception as exc:
                raise AssertionError((i, key, change)) from exc


@pytest.mark.parametrize("body", [[], {}], ids=["list", "object"])
@pytest.mark.parametrize("where", ["args", "kwargs", "meta"])
def test_a_float_tag_with_an_unhashable_body_is_refused(tmp_path, where, body):
    d = graph_to_dict(_graph())
    slot = _node(d, "conv")[where]
    if where == "args":
        slot.append({"$float": body})
    else:
        slot["k"] = {"$float": body}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(d))
    with pytest.raises(GraphFormatError) as info:
        load_graph(path)
    assert str(info.value).startswith(f"{path}: node 'conv'.{where}")
