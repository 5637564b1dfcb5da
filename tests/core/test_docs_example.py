"""The complete example tests of docs/testing-without-torch.md run here, from the page itself.

The page is the single source: its torch-free ```python blocks are executed as written, so
the documentation and the tests cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import attrs
import pytest

import portmeta

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[1] / "docs" / "testing-without-torch.md"
SAVED = HERE / "data" / "conv_relu_graph.json"
TORCH_ROOTS = {"torch", "torchao", "portmeta_fx"}


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)


def _imports(code: str) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _torch_free_blocks() -> list[str]:
    return [code for code in _blocks() if not (_imports(code) & TORCH_ROOTS)]


def _run(code: str, name: str) -> dict:
    namespace = {"__name__": f"docs_example_{name}", "__file__": str(HERE / "test_docs_example.py")}
    exec(compile(code, f"{DOC.name}:{name}", "exec"), namespace)
    return namespace


def test_doc_structure():
    blocks = _blocks()
    assert len(blocks) == 6
    free = _torch_free_blocks()
    assert len(free) == 4  # the third, a pytest file with fixtures: test_testing_docs.py
    assert free[0] == blocks[0]  # the first block is the complete GraphBuilder example
    assert free[3] == blocks[-1] and "@given(graphs(" in free[3]  # section 5's property
    torch_blocks = [b for b in blocks if b not in free]
    for code in torch_blocks:
        compile(code, "torch-block", "exec")
    assert "portmeta_fx.dump(graph_module" in torch_blocks[0]
    assert "last_snapshot" in torch_blocks[1]
    assert "portmeta.load_graph(SAVED)" in free[1]


@pytest.mark.parametrize("index", [0, 1, 3], ids=["graph-builder", "saved-graph", "property"])
def test_doc_example_tests_pass(index):
    namespace = _run(_torch_free_blocks()[index], f"block{index}")
    tests = [fn for name, fn in namespace.items() if name.startswith("test_") and callable(fn)]
    assert len(tests) == 1
    for fn in tests:
        fn()


def test_doc_example_can_fail():
    namespace = _run(_torch_free_blocks()[0], "block0")
    state = portmeta.plan(namespace["conv_relu_graph"](), portmeta.TORCHAO).final_state()
    assert state["w_q"]["quantization_tag"] == "conv.weight"
    # without the weight in the annotation, the weight's q and dq get nothing
    g = namespace["conv_relu_graph"]()
    recs = [
        r
        if r.name != "conv"
        else type(r)(
            r.name,
            r.op,
            r.target,
            r.args,
            r.kwargs,
            r.users,
            r.meta,
            portmeta.Annotation.of({"x": portmeta.testing.static()}, None),
        )
        for r in portmeta.records(g)
    ]
    state = portmeta.plan(portmeta.build_graph(recs)).final_state()
    assert set(state) == {"x_dq", "out_q"}


def test_doc_property_can_fail(monkeypatch):
    """Section 5's property, run on the section 1 graph with a plan that credits x_dq's write
    to 'relu' (which does not read x_dq), must fail; with the true plan it passes."""
    prop = _run(_torch_free_blocks()[3], "block3")
    (test,) = [fn for name, fn in prop.items() if name.startswith("test_")]
    graph = _run(_torch_free_blocks()[0], "block0")["conv_relu_graph"]()
    test.hypothesis.inner_test(graph)
    true_plan = portmeta.plan(graph)
    wrong = [attrs.evolve(d, source="relu") if d.target == "x_dq" else d for d in true_plan.deltas]
    fake = attrs.evolve(true_plan, deltas=tuple(wrong))
    monkeypatch.setattr(portmeta, "plan", lambda g, *a, **k: fake)
    with pytest.raises(AssertionError):
        test.hypothesis.inner_test(graph)


def test_saved_graph_is_the_doc_builder_graph():
    namespace = _run(_torch_free_blocks()[0], "block0")
    built = namespace["conv_relu_graph"]()
    saved = portmeta.load_graph(SAVED)
    assert list(portmeta.records(saved)) == list(portmeta.records(built))
    expected = portmeta.build_graph(portmeta.records(built), meta_keys=portmeta.TORCHAO.keys)
    assert portmeta.fingerprint(saved) == portmeta.fingerprint(expected)


README = HERE.parents[1] / "README.md"


def test_readme_quick_start_runs_and_prints_what_it_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's torch-free quick start, executed as written; its commented output holds."""
    block = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)[0]
    assert not (_imports(block) & TORCH_ROOTS)
    exec(compile(block, str(README), "exec"), {})
    printed = [line.split() for line in capsys.readouterr().out.splitlines()]
    promised = [
        line.lstrip("# ").split()
        for line in block.splitlines()
        if line.startswith("# ") and "<-" in line
    ]
    assert promised and printed[: len(promised)] == promised
