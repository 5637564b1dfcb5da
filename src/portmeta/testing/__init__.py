"""Test quantizers and backends without torch: graph builder, assertions, golden plans.

* :class:`GraphBuilder` and the specs :func:`static`, :func:`dynamic`, :func:`shared`,
  :func:`derived`, :func:`fixed` build the converted graph around a pattern in ten lines;
* :func:`assert_ported` checks which keys land on which node (:data:`NOTHING`: none), with a
  failure message that shows expected and planned values, the rule and the source;
* :func:`assert_matches_golden` compares a plan with a JSON plan file kept beside the test;
* :func:`assert_no_findings` fails when :func:`portmeta.check` finds q/dq nodes left without
  their partition's values (or with another's);
* :mod:`portmeta.testing.strategies` draws random quantization-shaped graphs (needs
  hypothesis);
* :mod:`portmeta.testing.plugin` is a pytest plugin (active whenever portmeta is installed):
  the fixtures ``portmeta_builder``, ``portmeta_load_graph`` and ``portmeta_golden`` and the
  option ``--portmeta-update-golden``.

Nothing here imports torch. See ``docs/testing-without-torch.md``.

Example
-------
>>> from portmeta.testing import GraphBuilder, NOTHING, assert_ported, static
>>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
>>> y = b.call("aten.relu.default", dq, name="relu", tag="P0"); b.annotate(y, inputs={x: static()})
>>> b.output(y)
>>> _ = assert_ported(b.build(), {"dq": {"quantization_tag": "P0"}, "q": NOTHING})
"""

from ._assertions import NOTHING, Nothing, assert_ported
from ._builder import (
    DynamicChain,
    GraphBuilder,
    derived,
    dynamic,
    fixed,
    shared,
    static,
    target,
)
from ._check import assert_no_findings
from ._golden import GoldenPlans, assert_matches_golden, golden_path

__all__ = [
    "GraphBuilder",
    "DynamicChain",
    "static",
    "dynamic",
    "shared",
    "derived",
    "fixed",
    "target",
    "NOTHING",
    "Nothing",
    "assert_ported",
    "assert_matches_golden",
    "golden_path",
    "GoldenPlans",
    "assert_no_findings",
]
