"""One way to show a value, one way to suggest a name, one home for every error class."""

from __future__ import annotations

import importlib

import pytest

import portmeta
from portmeta import codec, draw, errors
from portmeta._text import did_you_mean, short_value
from portmeta.diff import diff_plans, format_diff
from portmeta.report import format_table
from portmeta.rules.base import show
from portmeta.testing import GraphBuilder, assert_ported, static

LONG = "<" + "x" * 200 + ">"
TRACE = 'File "/home/me/model.py", line 7, in forward\n    x = self.conv(x)'


def _overwritten_dq() -> portmeta.Snapshot:
    """A dq claimed by two annotated consumers with long, different tags."""
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    a = b.call("aten.relu.default", dq, name="a", tag=LONG, stack_trace=TRACE)
    c = b.call("aten.relu.default", dq, name="c", tag=LONG + "!")
    b.annotate(a, inputs={x: static()})
    b.annotate(c, inputs={x: static()})
    b.output(a, c)
    return b.build()


def test_short_value_cuts_in_the_middle_and_keeps_both_ends() -> None:
    text = short_value(LONG, 21)
    assert len(text) == 21 and text.startswith("'<xxxxxxx") and text.endswith("xxxxxxx>'")
    assert "..." in text
    assert short_value("short") == "'short'"
    assert short_value("a\n  b", trace=False) == "'a\\n b'"  # the repr's runs of spaces: one
    assert short_value(("a", "b")) == "('a', 'b')"
    assert short_value(" a  b ") == "' a b '"
    assert short_value(portmeta.Opaque("torch.dtype", "torch.int8")) == "torch.int8"


def test_short_value_shows_a_stack_trace_as_its_own_frame_unless_told_not_to() -> None:
    lib = 'File "/usr/lib/python3/site-packages/torch/nn/m.py", line 1, in _call\n'
    assert short_value(TRACE + "\n" + lib) == "model.py:7 in forward"
    assert short_value(lib) == "m.py:1 in _call"
    assert short_value(TRACE, 200, trace=False) == " ".join(repr(TRACE).split())


def test_short_value_survives_a_repr_that_raises() -> None:
    class Bad:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert short_value(Bad()) == "<Bad whose repr raised RuntimeError>"


def test_every_view_of_a_value_uses_the_one_shortener() -> None:
    g = _overwritten_dq()
    p = portmeta.plan(g)
    # the overwrite diagnostic (kept in plan files): 40 characters, traces as text
    (diag,) = p.diagnostics
    assert f"({short_value(LONG, trace=False)} from 'a' becomes" in diag.message
    # explain: 60 characters
    assert f"  quantization_tag: {short_value(LONG + '!', 60, trace=False)}" in (
        portmeta.explain(g, "dq").splitlines()
    )
    # the plan table and diff: 40 characters, a trace as its frame
    table = format_table(g, p)
    assert short_value(LONG) in table and "model.py:7 in forward" in table
    other = portmeta.Plan(p.deltas[:1], (), p.fingerprint, p.profile)
    assert f"{short_value(LONG + '!')} from c (static_input)" in format_diff(diff_plans(p, other))
    # assert_ported's failure message: 300 characters, so all 203 of LONG show
    with pytest.raises(AssertionError) as info:
        assert_ported(g, {"dq": {"quantization_tag": "T"}})
    assert f"planned   {short_value(LONG + '!', 300, trace=False)}" in str(info.value)
    # a drawing's written values
    assert f"quantization_tag = {short_value(LONG + '!', draw.VALUE_WIDTH)}" in draw.to_dot(g, p)
    # a codec error and a rule's "found a constant" text
    with pytest.raises(errors.CodecError) as bad:
        codec.decode({"$what": LONG})
    assert (
        str(bad.value) == f"unknown encoded value {short_value({'$what': LONG}, 80, trace=False)}"
    )
    assert show(LONG) == short_value(LONG, 60, trace=False)


def _traced(trace: str) -> portmeta.Plan:
    b = GraphBuilder()
    x = b.placeholder("x")
    _, dq = b.qdq(x)
    y = b.call("aten.relu.default", dq, name="relu", tag="P0", stack_trace=trace)
    b.annotate(y, inputs={x: static()})
    b.output(y)
    return portmeta.plan(b.build())


def test_diff_tells_apart_two_traces_whose_short_forms_are_equal() -> None:
    inner = 'File "/a/m.py", line 7, in forward\n  x'
    train, evaluate = (f'File "/a/{f}.py", line 3, in main\n  m()\n{inner}' for f in "te")
    d = diff_plans(_traced(train), _traced(evaluate))
    (line,) = (ln for ln in format_diff(d).splitlines() if ln.startswith("differs"))
    assert f"A {short_value(train, 1000, trace=False)} from relu" in line
    assert f"B {short_value(evaluate, 1000, trace=False)} from relu" in line
    (changed,) = d.to_dict()["changed"]
    assert changed["a"]["value"] != changed["b"]["value"]
    # traces whose short forms differ keep the short form
    other = _traced(inner.replace("line 7", "line 8"))
    line = format_diff(diff_plans(_traced(inner), other)).splitlines()[0]
    assert "A m.py:7 in forward from relu (static_input) | B m.py:8 in forward" in line


def test_did_you_mean() -> None:
    assert did_you_mean("w_dqq", ["x", "w_dq", "q"]) == " (did you mean 'w_dq'?)"
    assert did_you_mean("zzz", ["x", "w_dq"]) == ""
    assert did_you_mean("dq_3", ["dq", "dq_1", "dq_2", "relu"]) == (
        " (did you mean 'dq_2', 'dq_1', 'dq'?)"
    )


@pytest.mark.parametrize(
    ("name", "old_home"),
    [
        ("CodecError", "codec"),
        ("OptionError", "plan"),
        ("RenderError", "draw"),
        ("CliError", "cli"),
    ],
)
def test_error_classes_live_in_errors_and_still_import_from_their_old_module(
    name: str, old_home: str
) -> None:
    cls = getattr(errors, name)
    assert cls.__module__ == "portmeta.errors" and name in errors.__all__
    assert getattr(importlib.import_module(f"portmeta.{old_home}"), name) is cls
    assert issubclass(cls, errors.PortmetaError)


def test_every_exception_class_of_the_core_lives_in_errors() -> None:
    import pkgutil

    homes = {}
    for info in pkgutil.walk_packages(portmeta.__path__, "portmeta."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            own = isinstance(value, type) and value.__module__.startswith("portmeta")
            if own and issubclass(value, BaseException):
                homes[value.__name__] = value.__module__
    assert "CliError" in homes and "PortingCheckError" in homes
    assert {n: m for n, m in homes.items() if m != "portmeta.errors"} == {}


def test_codec_error_is_a_portmeta_error_and_still_a_value_error() -> None:
    with pytest.raises(portmeta.PortmetaError):
        codec.decode({"$tuple": 1})
    with pytest.raises(ValueError):
        codec.decode({"$tuple": 1})
    assert portmeta.OptionError is errors.OptionError


def test_removed_helpers_stay_removed() -> None:
    assert not hasattr(draw, "describe_flow")
    assert not hasattr(portmeta.NodeRecord, "kwargs_dict")
    assert not hasattr(portmeta.NodeRecord, "first_arg")
