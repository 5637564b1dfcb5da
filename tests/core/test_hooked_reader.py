"""``load_graph``'s hooked reader (decoding while ``json.loads`` parses) against the careful one.

* on random graphs with odd values (nested lists, tuples and dicts, opaque constants, slices,
  NaN and infinities, keyword arguments, references in metadata, foreign nodes, shared meta,
  malformed annotations) it reads the very snapshot the careful reader reads, itself;
* a metadata or keyword dict shaped like something the hook decodes, a value nested deeper
  than it decodes, and a reference to a later node still give that snapshot (read again by
  the careful reader, or checked by networkx);
* any mutation of a saved file (a value replaced, a key dropped or added) gives the careful
  reader's snapshot or its error message.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import portmeta
from portmeta import NodeRecord, NodeRef, Opaque, Target, build_graph, load_graph
from portmeta.graph import (
    _HookedDecoder,
    _parse_hooked,
    _Reader,
    graph_from_dict,
    graph_to_dict,
)
from portmeta.records import Annotation, Malformed
from portmeta.testing import GraphBuilder, dynamic, static
from portmeta.testing.strategies import graphs


def _layout(g: portmeta.graph.Snapshot) -> Any:
    """A snapshot as comparable text: records (by ``repr``: NaN equals itself there), node
    order, ``_succ`` and ``_pred`` in their orders, graph attributes."""
    return (
        [repr(rec) for rec in portmeta.records(g)],
        [(u, list(d)) for u, d in g._succ.items()],
        [(u, list(d)) for u, d in g._pred.items()],
        repr(sorted(g.graph.items())),
    )


def _outcome(load: Any) -> Any:
    try:
        return ("ok", _layout(load()))
    except Exception as exc:  # the careful reader's TypeError on {"$float": []} included
        return ("error", type(exc).__name__, str(exc))


def _careful(text: str, source: str) -> Any:
    """What the careful reader makes of ``text``: every node through ``_Reader.node``."""
    with mock.patch.object(_Reader, "fast_node", lambda self, data: None):
        return _outcome(lambda: graph_from_dict(json.loads(text), source=source))


def _both(text: str) -> tuple[Any, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "graph.json"
        path.write_text(text, encoding="utf-8")
        return _outcome(lambda: load_graph(path)), _careful(text, str(path))


def _hooked(text: str) -> Any:
    decoder = _HookedDecoder()
    return decoder.nodes(_parse_hooked(text, decoder))


# ------------------------------------------------------------------- odd, valid graphs

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
def _odd_graphs(draw: Any) -> portmeta.graph.Snapshot:
    recs = list(portmeta.records(draw(graphs(max_blocks=3))))
    names = [r.name for r in recs]
    constants, anything = _values([]), _values(names)
    out = []
    for i, rec in enumerate(recs):
        changes: dict[str, Any] = {}
        if draw(st.booleans()):  # references in metadata are no arguments
            changes["meta"] = (*rec.meta, *draw(st.dictionaries(_KEYS, anything)).items())
        if draw(st.booleans()):
            changes["args"] = (*rec.args, *draw(st.lists(constants, max_size=2)))
        if draw(st.booleans()):
            changes["kwargs"] = (*rec.kwargs, *draw(st.dictionaries(_KEYS, constants)).items())
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
            NodeRecord(
                "erased", "placeholder", Target.named("erased"), users=(out[at].name,), foreign=True
            )
        )
    return build_graph(out)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(_odd_graphs())
def test_hooked_reader_reads_odd_graphs_as_the_careful_reader(g):
    text = json.dumps(graph_to_dict(g), indent=1)
    assert _hooked(text) is not None  # read by the hook itself, not read again
    fast, careful = _both(text)
    assert fast == careful == ("ok", _layout(g))


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
def test_a_dict_shaped_like_a_decoded_object_is_still_read(where, shape):
    b = GraphBuilder()
    x = b.placeholder("x")
    y = b.call("aten.relu.default", x, name="y")
    b.output(y)
    data = graph_to_dict(b.build())
    data["nodes"][1][where] = shape  # plain strings and nulls: valid values
    text = json.dumps(data)
    fast, careful = _both(text)
    assert fast == careful and fast[0] == "ok"


def test_values_nested_deeper_than_the_hook_reads_go_to_the_careful_reader():
    b = GraphBuilder()
    b.output(b.placeholder("x"))
    data = graph_to_dict(b.build())
    for depth in (63, 64, 65, 200):
        deep: Any = 1
        for i in range(depth):
            deep = {"$tuple": [deep, 2]} if i % 2 else [deep]
        data["nodes"][0]["meta"] = {"k": deep}
        text = json.dumps(data)
        fast, careful = _both(text)
        assert fast == careful and fast[0] == "ok", depth
        assert (_hooked(text) is None) == (depth > 64), depth


def test_json_nan_and_infinity_literals_are_read_alike():
    b = GraphBuilder()
    b.output(b.call("aten.add.Tensor", b.placeholder("x"), 1.0, name="y"))
    data = graph_to_dict(b.build())
    data["nodes"][1]["args"][1] = math.nan
    data["nodes"][1]["kwargs"] = {"alpha": -math.inf, "beta": [math.inf]}
    text = json.dumps(data)
    assert "NaN" in text and "-Infinity" in text
    fast, careful = _both(text)
    assert fast == careful and fast[0] == "ok"


# ------------------------------------------------------------------ mutated saved files

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


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(max_blocks=2), st.data())
def test_mutated_files_get_the_careful_readers_snapshot_or_message(g, data):
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
    fast, careful = _both(json.dumps(d))
    assert fast == careful


def _small_odd_graph() -> portmeta.graph.Snapshot:
    b = GraphBuilder()
    x = b.placeholder("x", stack_trace="m.py:1")
    q, dq = b.qdq(x)
    conv = b.call(
        "aten.conv2d.default", dq, [1, (2, None)], kwargs={"pad": (1, 1)}, name="conv", tag="C"
    )
    b.annotate(conv, inputs={x: static(), "ghost": dynamic()}, output=static(), check_inputs=False)
    b.output(conv)
    recs = [
        attrs.evolve(r, meta_owner=q) if r.name == dq else r for r in portmeta.records(b.build())
    ]
    bad = Annotation((), None, Malformed("TypeError", "object of type 'int' has no len()"))
    recs.append(
        NodeRecord("erased", "placeholder", Target.named("erased"), annotation=bad, foreign=True)
    )
    return build_graph(recs)


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


def test_every_slot_of_a_small_file_replaced_or_dropped_reads_as_carefully():
    base = graph_to_dict(_small_odd_graph())
    assert _hooked(json.dumps(base)) is not None
    for i in range(len(_slots(base, []))):
        for change in [_DROP, *_EVERY_TRICK]:
            d = copy.deepcopy(base)
            container, key = _slots(d, [])[i]
            if change is _DROP:
                del container[key]
            else:
                container[key] = copy.deepcopy(change)
            fast, careful = _both(json.dumps(d))
            assert fast == careful, (i, key, change)


_DROP = object()
