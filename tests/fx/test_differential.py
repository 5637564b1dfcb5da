"""Differential test: torchao 0.18.0's PortNodeMetaForQDQ vs portmeta's drop-in, on random graphs.

Hypothesis draws a plain-data :class:`fxgen.Recipe` (static q/dq pairs, dynamic choose_qparams
chains with random breakage, get_attr weights behind view ops, sym-size users, fan-out,
diamonds, kwargs and list arguments, erased nodes, random annotations, random
``stack_trace`` / ``quantization_tag`` values), builds it three times and runs

* torchao's pass (``.call``) on copy A, portmeta's ``PortNodeMetaForQDQ().call`` on copy B;
* if torchao finishes, portmeta must finish and leave, on every node, the same keys present
  with equal values (and the same object sharing: upstream copies references);
* if torchao raises ``U``, portmeta must raise an instance of ``U`` and leave B exactly as the
  untouched copy C.

``PORTMETA_DIFF_EXAMPLES`` raises the number of examples (default 500).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import fxgen
import pytest
import torch
from hypothesis import HealthCheck, event, given, note, settings
from torchao.quantization.pt2e.quantizer.port_metadata_pass import (
    PortNodeMetaForQDQ as Upstream,
)

import portmeta
from portmeta.plan import same_value
from portmeta_fx import PortNodeMetaForQDQ as Ours

MAX_EXAMPLES = max(500, int(os.environ.get("PORTMETA_DIFF_EXAMPLES", "500")))

#: Outcome counters of the last run of :func:`_differential` (checked by the wrapping test).
OUTCOMES: Counter[str] = Counter()

_MISSING = object()
_NOTES: list[str] = []


def _show(value: Any) -> str:
    if value is _MISSING:
        return "<absent>"
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"


def _diff(state_a: dict[str, dict[str, Any]], state_b: dict[str, dict[str, Any]]) -> list[str]:
    """Every (node, key) whose presence or value differs, as text."""
    assert list(state_a) == list(state_b), (list(state_a), list(state_b))
    problems = []
    for name in state_a:
        for key in fxgen.KEYS:
            a = state_a[name].get(key, _MISSING)
            b = state_b[name].get(key, _MISSING)
            if a is _MISSING and b is _MISSING:
                continue
            if a is _MISSING or b is _MISSING or not same_value(a, b):
                show_a, show_b = _show(a), _show(b)
                problems.append(f"{name}.meta[{key!r}]: upstream {show_a}, portmeta {show_b}")
    return problems


def _sharing(state: dict[str, dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str]]:
    """For each present (node, key): the first (node, key) that holds the very same object."""
    first: dict[int, tuple[str, str]] = {}
    return {
        (name, key): first.setdefault(id(value), (name, key))
        for name, values in state.items()
        for key, value in values.items()
    }


def _run(pass_obj: Any, gm: torch.fx.GraphModule) -> BaseException | None:
    try:
        pass_obj.call(gm)
    except Exception as exc:  # StopIteration included
        return exc
    return None


def check_recipe(recipe: fxgen.Recipe, profile: portmeta.Profile = portmeta.TORCHAO) -> str:
    """Run both passes on copies of ``recipe`` and assert they agree; returns the outcome kind.

    ``profile`` is portmeta's (torchao's pass is always itself)."""
    gm_a, gm_b, gm_c = fxgen.build(recipe), fxgen.build(recipe), fxgen.build(recipe)
    before = fxgen.meta_state(gm_c)
    theirs = _run(Upstream(), gm_a)
    ours = _run(Ours(profile=profile, keys=None), gm_b)
    state_a, state_b = fxgen.meta_state(gm_a), fxgen.meta_state(gm_b)
    _NOTES.append(f"upstream: {theirs!r}; portmeta: {ours!r}")
    if theirs is None:
        assert ours is None, f"upstream finished, portmeta raised {ours!r}"
        problems = _diff(state_a, state_b)
        assert not problems, "metadata differs:\n" + "\n".join(problems)
        sa, sb = _sharing(state_a), _sharing(state_b)
        shared_diff = [k for k in sa if sa[k] != sb.get(k)]
        assert not shared_diff, f"object sharing differs at {shared_diff[:10]!r}"
        # C and A are separate builds: compare values (each "own" value names its node)
        kind = "ported" if _diff(before, state_a) else "no-op"
        return kind
    upstream_class = type(theirs)
    assert ours is not None, f"upstream raised {theirs!r}, portmeta finished"
    assert isinstance(ours, upstream_class), (
        f"upstream raised {upstream_class.__name__}: {theirs}; "
        f"portmeta raised {type(ours).__name__}: {ours}"
    )
    problems = _diff(before, state_b)
    assert not problems, "portmeta wrote metadata before raising:\n" + "\n".join(problems)
    return f"raised {upstream_class.__name__}"


@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(recipe=fxgen.recipes())
def _differential(recipe: fxgen.Recipe) -> None:
    _NOTES.clear()
    try:
        kind = check_recipe(recipe)
    finally:
        for text in _NOTES:
            note(text)
    event(kind)
    OUTCOMES[kind] += 1


def test_differential_upstream_vs_portmeta() -> None:
    OUTCOMES.clear()
    start = time.perf_counter()
    _differential()
    elapsed = time.perf_counter() - start
    total = sum(OUTCOMES.values())
    print(f"differential: {total} examples in {elapsed:.1f}s: {dict(OUTCOMES)}")
    assert total >= MAX_EXAMPLES
    raised = sum(v for k, v in OUTCOMES.items() if k.startswith("raised"))
    # the generator must exercise both sides: graphs that port, graphs where upstream raises
    assert OUTCOMES["ported"] >= total // 4, dict(OUTCOMES)
    assert raised >= total // 10, dict(OUTCOMES)


@settings(
    max_examples=max(100, MAX_EXAMPLES // 5),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(recipe=fxgen.recipes(max_blocks=5, odd_keys=True))
def test_differential_odd_annotation_keys(recipe: fxgen.Recipe) -> None:
    """Annotation input keys that are not this graph's nodes.

    * nodes of another graph (``copy.deepcopy`` of a prepared model shares the annotation
      objects): upstream's dynamic rule walks the foreign node's users *in the other graph*,
      finds its choose_qparams chain there and writes onto that graph; the other graph's
      metadata is compared too (``fxgen.meta_state``);
    * a node name (``str``) or an edge (tuple of nodes): upstream's dynamic rule fails with
      ``AttributeError`` (``.users``), the static rule never connects.
    portmeta raises ``NotANodeInputError`` (an ``AttributeError``) for the latter.
    """
    _NOTES.clear()
    try:
        check_recipe(recipe)
    finally:
        for text in _NOTES:
            note(text)


# --------------------------------------------------------------------------- fixed cases


def _r(*nodes: fxgen.NodeSpec, **kw: Any) -> fxgen.Recipe:
    meta = kw.pop("meta", tuple(("own", "own") for _ in nodes))
    return fxgen.Recipe(nodes=tuple(nodes), meta=meta, **kw)


N = fxgen.NodeSpec
TAIL = (("c", 0.1), ("c", 0), ("c", -128), ("c", 127))


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        pytest.param(
            _r(
                N("placeholder", "x", (), (), "x"),
                N("call_function", "q_aff", (("n", 0), *TAIL), (), "q"),
                N("call_function", "dq_aff", (("n", 1), *TAIL), (), "dq"),
                N("call_function", "relu", (("n", 2),), (), "relu"),
                N("output", "output", (("l", [("n", 3)]),), (), "output"),
                anns=((3, ((0, ("qs", False)),), ("qs", False)),),
            ),
            "ported",
            id="static-affine-packet",
        ),
        pytest.param(
            _r(
                N("placeholder", "x", (), (), "x"),
                N("call_function", "dq_pt", (("c", 1.0), *TAIL), (), "dq"),
                N("call_function", "relu", (("n", 1),), (), "relu"),
                N("output", "output", (("l", [("n", 2)]),), (), "output"),
                anns=((2, ((0, ("qs", False)),), None),),
            ),
            "raised ValueError",
            id="dq-of-constant",
        ),
        pytest.param(
            _r(
                N("placeholder", "x", (), (), "x"),
                N("call_function", "cq", (("n", 0),), (), "cq"),
                N("call_function", "getitem", (("n", 1), ("c", 0)), (), "s"),
                N("call_function", "getitem", (("n", 1), ("c", 1)), (), "zp"),
                N("call_function", "q_pt_t", (("n", 0), ("n", 2), ("c", 0)), (), "q"),
                N("call_function", "dq_pt_t", (("n", 4), ("n", 2), ("c", 0)), (), "dq"),
                N("call_function", "linear", (("n", 5),), (), "lin"),
                N("output", "output", (("l", [("n", 6)]),), (), "output"),
                anns=((6, ((0, ("qs", True)),), None),),
            ),
            "raised StopIteration",
            id="dynamic-scale-without-users",
        ),
        pytest.param(
            _r(
                N("placeholder", "x", (), (), "x"),
                N("call_function", "cq_aff", (("n", 0),), (), "cq"),
                N("call_function", "getitem", (("n", 1), ("c", 0)), (), "s"),
                N("call_function", "sym_size_int", (("n", 1), ("c", 0)), (), "sz"),
                N("call_function", "getitem", (("n", 1), ("c", 1)), (), "zp"),
                N("output", "output", (("l", [("n", 2), ("n", 3), ("n", 4)]),), (), "output"),
                anns=((0, ((0, ("fixed", True)),), None),),
            ),
            "raised InternalError",
            id="dynamic-sym-size-int-not-filtered",
        ),
        pytest.param(
            _r(
                N("placeholder", "x", (), (), "x"),
                N("call_function", "cq", (("n", 0),), (), "cq"),
                N("call_function", "getitem", (("n", 1), ("c", 0)), (), "s"),
                N("call_function", "getitem", (("n", 1), ("c", 1)), (), "zp"),
                N("call_function", "q_pt_t", (("n", 0), ("n", 2), ("n", 3)), (), "q"),
                N("call_function", "dq_pt_t", (("n", 4), ("n", 2), ("n", 3)), (), "dq"),
                N("call_function", "linear", (("n", 5),), (), "lin"),
                N("output", "output", (("l", [("n", 6)]),), (), "output"),
                anns=((6, ((("f", 0), ("qs", True)),), None),),
            ),
            # upstream finds the chain in the *other* graph and writes there (cq, q, dq of the
            # other graph get lin's metadata); portmeta must do the same
            "ported",
            id="dynamic-key-from-another-graph",
        ),
        pytest.param(
            _r(
                N("placeholder", "x", (), (), "x"),
                N("call_function", "relu", (("n", 0),), (), "relu"),
                N("output", "output", (("l", [("n", 1)]),), (), "output"),
                anns=((1, ((("s", 0), ("qs", True)),), None),),
            ),
            # upstream: AttributeError: 'str' object has no attribute 'users';
            # portmeta: NotANodeInputError, an AttributeError
            "raised AttributeError",
            id="dynamic-key-not-a-node",
        ),
    ],
)
def test_fixed_recipes(recipe: fxgen.Recipe, expected: str) -> None:
    assert check_recipe(recipe) == expected
