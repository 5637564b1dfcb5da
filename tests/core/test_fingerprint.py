"""Fingerprint scheme v3: the SHA-256 of the compact JSON form, what it keeps apart,
live == loaded, big graphs, other processes, and plans saved with an older scheme (refused)."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import portmeta
from portmeta import GraphFormatError, NodeRecord, NodeRef, Opaque, Snapshot, Target, build_graph
from portmeta.fingerprint import FINGERPRINT_SCHEME, is_fingerprint
from portmeta.io import graph_from_dict, graph_to_dict
from portmeta.records import Annotation, Malformed, QInput, QSpec
from portmeta.testing import GraphBuilder, static
from portmeta.testing.strategies import graphs

DATA = Path(__file__).resolve().parent / "data"


def _round_trip(g: Snapshot) -> Snapshot:
    return graph_from_dict(json.loads(json.dumps(graph_to_dict(g))))


def _scheme_v3(g: Snapshot) -> str:
    """The fingerprint as its scheme defines it, computed here."""
    text = json.dumps(graph_to_dict(g), separators=(",", ":"), ensure_ascii=True)
    return "v3:" + hashlib.sha256(text.encode("ascii")).hexdigest()


class Text(str):
    """A str subclass: its JSON round trip is a str as an argument name, an opaque value."""


class Mode(enum.IntEnum):
    A = 1


NEGATIVE_NAN = -math.nan
PAYLOAD_NAN = struct.unpack("<d", bytes.fromhex("010000000000f87f"))[0]


# --------------------------------------------------------------------------- what it keeps apart

VALUES = [
    NodeRef("x"),
    "x",
    Text("x"),
    Opaque("builtins.str", "'x'"),
    Opaque("x", ""),
    Opaque("", "x"),
    Opaque("torch.dtype", "torch.int8"),
    ("torch.dtype", "torch.int8"),
    1,
    1.0,
    True,
    Mode.A,
    None,
    0.0,
    -0.0,
    math.inf,
    math.nan,
    "",
    (),
    [],
    {},
    [1],
    (1,),
    [[1]],
    [(1,)],
    [NodeRef("x")],
    ["x"],
    {"k": 1},
    {1: 1},
    {"k": [1]},
    [("k", 1)],
    (..., "node", "x"),
    ("a\0b",),
    ("a", "b"),
    Fraction(1, 3),
]


def _with_value(where: str, value: Any) -> str:
    args: tuple[Any, ...] = (value,) if where == "args" else ()
    kwargs = {"k": value} if where == "kwargs" else {}
    meta = {"k": value} if where == "meta" else {}
    rec = NodeRecord.of(
        "n", "call_function", Target.overload("a.b.c"), args=args, kwargs=kwargs, meta=meta
    )
    return portmeta.fingerprint(build_graph([rec], check=False))


@pytest.mark.parametrize("where", ["args", "kwargs", "meta"])
def test_values_of_other_types_or_texts_fingerprint_apart(where: str) -> None:
    fingerprints = [_with_value(where, v) for v in VALUES]
    assert len(set(fingerprints)) == len(VALUES)


def test_every_nan_is_one_nan_and_zeros_keep_their_sign() -> None:
    for where in ("args", "kwargs", "meta"):
        nan = _with_value(where, math.nan)
        assert _with_value(where, NEGATIVE_NAN) == nan == _with_value(where, PAYLOAD_NAN)
        assert _with_value(where, [NEGATIVE_NAN]) == _with_value(where, [math.nan])
        assert _with_value(where, 0.0) != _with_value(where, -0.0)


def _graph(**changed: Any) -> Snapshot:
    """x -> q -> dq -> relu (annotated) -> output; ``changed`` replaces one part."""
    spec = changed.get("spec", QSpec("QuantizationSpec", False))
    ann = changed.get("annotation", Annotation((QInput("x", spec, changed.get("is_node", True)),)))
    recs = [
        NodeRecord(changed.get("name", "x"), "placeholder", Target.named("x"), users=("q",)),
        NodeRecord(
            "q",
            changed.get("op", "call_function"),
            changed.get("target", Target.overload("quantized_decomposed.quantize_per_tensor")),
            changed.get("q_args", (NodeRef(changed.get("name", "x")), 0.1)),
            users=("dq",),
        ),
        NodeRecord(
            "dq",
            "call_function",
            Target.overload("quantized_decomposed.dequantize_per_tensor.default"),
            changed.get("dq_args", (NodeRef("q"), 0)),
            users=("relu",),
            meta=tuple(changed.get("dq_meta", {}).items()),
            meta_owner=changed.get("meta_owner"),
        ),
        NodeRecord(
            "relu",
            "call_function",
            Target.overload("aten.relu.default"),
            (NodeRef("dq"),),
            users=("output",),
            meta=(("quantization_tag", "P0"),),
            annotation=ann,
            foreign=changed.get("foreign", False),
        ),
        NodeRecord("output", "output", Target.named("output"), ((NodeRef("relu"),),)),
    ]
    return build_graph(recs, meta_keys=changed.get("meta_keys"), check=False)


@pytest.mark.parametrize(
    "changed",
    [
        {"name": "x\0"},
        {"op": "call_method"},
        {"target": Target.packet("quantized_decomposed.quantize_per_tensor")},
        {"target": Target.named("quantized_decomposed.quantize_per_tensor")},
        {"q_args": (NodeRef("x"), 0.1, 0)},
        {"q_args": (NodeRef("x"),), "dq_args": (0.1, NodeRef("q"), 0)},
        {"dq_meta": {"quantization_tag": "P0"}},
        {"dq_meta": {"tag": "P0"}},
        {"meta_owner": "relu"},
        {"foreign": True},
        {"annotation": None},
        {"annotation": Annotation()},
        {"annotation": Annotation((), QSpec("QuantizationSpec", False))},
        {"annotation": Annotation((QInput("x", None),))},
        {"annotation": Annotation(malformed=Malformed("TypeError", "no len"))},
        {"annotation": Annotation(malformed=Malformed("TypeError", "no len()"))},
        {"spec": None},
        {"spec": QSpec("QuantizationSpec", None)},
        {"spec": QSpec("QuantizationSpec", True)},
        {"spec": QSpec("SharedQuantizationSpec", False)},
        {"is_node": False},
        {"meta_keys": ()},
        {"meta_keys": ("quantization_tag",)},
    ],
)
def test_every_part_of_the_snapshot_counts(changed: dict[str, Any]) -> None:
    assert portmeta.fingerprint(_graph(**changed)) != portmeta.fingerprint(_graph())


def test_strings_joined_into_one_text_keep_their_boundaries() -> None:
    def graph(a: str, b: str) -> Snapshot:
        recs = [
            NodeRecord(a, "placeholder", Target.named(a)),
            NodeRecord(b, "output", Target.named(b)),
        ]
        return build_graph(recs, check=False)

    assert portmeta.fingerprint(graph("a\0b", "c")) != portmeta.fingerprint(graph("a", "b\0c"))
    assert portmeta.fingerprint(graph("a", "b\0c")) == portmeta.fingerprint(
        _round_trip(graph("a", "b\0c"))
    )


# --------------------------------------------------------------------------- live == loaded

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.sampled_from([NEGATIVE_NAN, PAYLOAD_NAN, -0.0]),
    st.text(max_size=6),
    st.text(alphabet="\0\ud800ab", max_size=3),
    st.builds(Opaque, st.text(max_size=4), st.text(max_size=4)),
    st.sampled_from(
        [Fraction(1, 3), Mode.A, Text("t"), b"x", 1j, ..., frozenset({1, 2}), range(2), object]
    ),
)
VALUES_STRATEGY = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(
            st.one_of(st.text(max_size=3), st.integers(), st.tuples(st.integers())),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=8,
)


@st.composite
def unusual_graphs(draw: Any) -> Snapshot:
    """A random graph whose records get extra arguments, keyword arguments and metadata
    values of any kind, and node references wrapped in containers."""
    g = draw(graphs(max_blocks=4))
    recs = []
    for rec in portmeta.records(g):
        args, kwargs, meta = list(rec.args), dict(rec.kwargs), dict(rec.meta)
        if draw(st.booleans()):
            args.append(draw(VALUES_STRATEGY))
        if args and type(args[0]) is NodeRef and draw(st.booleans()):
            wrap = draw(
                st.sampled_from(
                    [lambda r: [r], lambda r: (r,), lambda r: {"k": r}, lambda r: [(r, 1.5)]]
                )
            )
            args[0] = wrap(args[0])
        if draw(st.booleans()):
            kwargs[draw(st.sampled_from(["k", "dim"]))] = draw(VALUES_STRATEGY)
        if draw(st.booleans()):
            meta[draw(st.sampled_from(["quantization_tag", "nn_module_stack", "x"]))] = draw(
                VALUES_STRATEGY
            )
        recs.append(
            attrs.evolve(
                rec, args=tuple(args), kwargs=tuple(kwargs.items()), meta=tuple(meta.items())
            )
        )
    return build_graph(recs)


@settings(max_examples=80, deadline=None)
@given(unusual_graphs())
def test_a_live_snapshot_and_its_json_round_trip_fingerprint_alike(g):
    loaded = _round_trip(g)
    assert portmeta.fingerprint(loaded) == portmeta.fingerprint(g) == _scheme_v3(g)
    assert _scheme_v3(loaded) == _scheme_v3(g)


@settings(max_examples=40)
@given(graphs(max_blocks=6))
def test_random_graphs_fingerprint_as_their_scheme_and_round_trip_says(g):
    assert portmeta.fingerprint(g) == _scheme_v3(g)
    assert portmeta.fingerprint(_round_trip(g)) == portmeta.fingerprint(g)


def test_str_subclasses_fingerprint_as_their_text() -> None:
    def graph(kind: type[str]) -> Snapshot:
        x, q = kind("x"), kind("q")
        recs = [
            NodeRecord(x, kind("placeholder"), Target.named(kind("x")), users=(q,)),
            NodeRecord(
                q,
                "call_function",
                Target.overload("quantized_decomposed.quantize_per_tensor.default"),
                (NodeRef(x), Opaque(kind("torch.dtype"), kind("torch.int8"))),
                meta=((kind("quantization_tag"), "T"),),
                annotation=Annotation((QInput(x, QSpec(kind("QuantizationSpec"), False)),)),
                meta_owner=None,
            ),
        ]
        return build_graph(recs, meta_keys=(kind("quantization_tag"),), check=False)

    plain, odd = graph(str), graph(Text)
    assert portmeta.fingerprint(odd) == portmeta.fingerprint(plain) == _scheme_v3(odd)
    assert portmeta.fingerprint(_round_trip(odd)) == portmeta.fingerprint(plain)


def test_odd_objects_in_unchecked_fields_do_not_break_the_fingerprint() -> None:
    g = _graph()
    recs = list(portmeta.records(g))
    recs[0] = attrs.evolve(recs[0], users=(Text("q"),))
    assert portmeta.fingerprint(build_graph(recs, check=False)) == portmeta.fingerprint(g)
    for ann in (
        Annotation((QInput("x", None, Mode.A),)),  # type: ignore[arg-type]
        Annotation(malformed=Malformed("TypeError", 3)),  # type: ignore[arg-type]
        Annotation(malformed=Malformed(Text("TypeError"), "no len()")),
    ):
        odd = _graph(annotation=ann)
        assert portmeta.fingerprint(odd) == _scheme_v3(odd) != portmeta.fingerprint(g)


def test_graphs_of_many_nodes() -> None:
    g = _many_nodes(1500)
    assert len(g) > 2 * 1024
    loaded = _round_trip(g)
    assert portmeta.fingerprint(loaded) == portmeta.fingerprint(g) == _scheme_v3(g)
    recs = list(portmeta.records(g))
    recs[-3] = attrs.evolve(recs[-3], meta=(("quantization_tag", "other"),))
    assert portmeta.fingerprint(build_graph(recs)) != portmeta.fingerprint(g)


def _many_nodes(linears: int) -> Snapshot:
    b = GraphBuilder()
    x = b.placeholder("x")
    _, cur = b.qdq(x)
    for i in range(linears):
        lin = b.call("aten.linear.default", cur, name="linear", tag=f"lin{i}")
        b.annotate(lin, inputs={x: static()}, output=static(), check_inputs=False)
        _, cur = b.qdq(lin)
        x = lin
    b.output(cur)
    return b.build()


# --------------------------------------------------------------------------- other processes


def test_the_fingerprint_is_the_same_in_other_processes() -> None:
    g = portmeta.load_graph(DATA / "conv_relu_graph.json")
    code = (
        "import portmeta, sys; "
        f"print(portmeta.fingerprint(portmeta.load_graph({str(DATA / 'conv_relu_graph.json')!r})))"
    )
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        assert out.stdout.strip() == portmeta.fingerprint(g)


# --------------------------------------------------------------------------- schemes


def test_only_fingerprints_of_scheme_v3_are_fingerprints() -> None:
    assert FINGERPRINT_SCHEME == "v3"
    assert is_fingerprint(portmeta.fingerprint(_graph()))
    assert is_fingerprint("v3:" + "0123456789abcdef" * 4)
    for other in (
        "",
        "v3:",
        "v2:" + "0" * 64,  # scheme v2
        "0" * 64,  # scheme v1: a bare digest
        "V3:" + "0" * 64,
        "v3:" + "0" * 63,
        "v3:" + "0" * 65,
        "v3:" + "A" * 64,
        "v3:" + "g" * 64,
        b"v3:" + b"0" * 64,
        None,
        3,
    ):
        assert not is_fingerprint(other), other


@pytest.mark.parametrize(
    "old",
    ["v2:" + "5" * 64, "8" * 64],
    ids=["v2", "v1"],
)
def test_a_plan_saved_with_an_older_fingerprint_is_refused_saying_to_plan_again(old: str) -> None:
    p = portmeta.plan(_graph())
    text = attrs.evolve(p, fingerprint=old).to_json()
    with pytest.raises(GraphFormatError) as info:
        portmeta.Plan.from_json(text, source="old.plan.json")
    assert str(info.value) == (
        f"old.plan.json: the plan's fingerprint {old[:10]!r}"[:-1]
        + f"...{old[-9:]}' is not of scheme v3 (a plan saved by an older portmeta); "
        "plan again (`portmeta plan GRAPH.json -o old.plan.json`)"
    )
    assert portmeta.Plan.from_json(p.to_json()) == p  # the same plan, of scheme v3, is read


def test_the_saved_plan_of_an_older_portmeta_is_refused_in_one_line() -> None:
    path = DATA / "conv_relu_v1.plan.json"
    saved = json.loads(path.read_text())
    assert saved["version"] == 1 and not is_fingerprint(saved["fingerprint"])
    with pytest.raises(GraphFormatError) as info:
        portmeta.Plan.load(str(path))
    assert str(info.value) == (
        f"{path}: a plan of schema version 1, saved by an older portmeta; "
        f"plan again (`portmeta plan GRAPH.json -o {path}`)"
    )
    # its graph still loads, and a plan made again is read back
    g = portmeta.load_graph(DATA / "conv_relu_graph.json")
    p = portmeta.plan(g)
    assert portmeta.Plan.from_json(p.to_json()) == p and p.fingerprint == portmeta.fingerprint(g)
