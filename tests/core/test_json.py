"""Graph and plan files: round trips, and every way a file can be wrong -> GraphFormatError."""

from __future__ import annotations

import copy
import json

import pytest

import portmeta
from portmeta import GraphFormatError, Plan, dump_graph, graph_from_dict, graph_to_dict, load_graph
from portmeta.records import Opaque
from portmeta.testing import GraphBuilder, dynamic, static

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
    "op-empty": (_node_set("q", ["op"], ""), "node 'q': op must not be empty"),
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
    # the same data without a file: same problem, no file name
    with pytest.raises(GraphFormatError) as info:
        graph_from_dict(d)
    assert info.value.source is None
    assert problem in str(info.value)


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
    "fingerprint-missing": (lambda d: d.pop("fingerprint"), "missing field 'fingerprint'"),
    "fingerprint-mistyped": (lambda d: d.update(fingerprint=3), "malformed plan"),
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
    "v1-profile-malformed": (
        lambda d: d.update(version=1, profile={"name": "torchao"}),
        "malformed profile data",
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
    with pytest.raises(GraphFormatError) as info:
        Plan.from_json(json.dumps(d), source="p.json")
    assert str(info.value).startswith("p.json: ")


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
