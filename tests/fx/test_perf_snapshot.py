"""The FX reader's fast paths (issue 12) against the careful per-node conversion.

:meth:`portmeta_fx.snapshot._Reader.records` reads the usual node inline (a target met before,
no keyword arguments, users of its own graph), annotated or not, reads the usual annotation
(a dict of the graph's nodes to specs met before) without a call per input, and converts a
node's arguments with one lookup per argument; :func:`portmeta_fx.record_of` converts a node field by field through the checked
record constructor. On random FX graphs (odd arguments, foreign nodes, shared meta dicts,
hand edits) both give the same records.
"""

from __future__ import annotations

import attrs
import fxgen
import torch
from hypothesis import given, settings

import portmeta
from portmeta_fx.snapshot import _Reader, record_of


@settings(max_examples=60)
@given(recipe=fxgen.recipes())
def test_reader_records_equal_the_careful_conversion(recipe: fxgen.Recipe) -> None:
    gm = fxgen.build(recipe)
    keys = portmeta.TORCHAO.keys
    reader = _Reader(gm.graph, keys)
    fast = reader.records()
    names = reader.names
    own = list(gm.graph.nodes)
    for node, rec in zip(own, fast, strict=False):
        careful = record_of(node, keys, names)
        assert attrs.evolve(rec, meta_owner=None) == careful, node.name
    assert [r.name for r in fast[: len(own)]] == [names[n] for n in own]


def test_empty_annotations_read_as_the_careful_conversion_reads_them() -> None:
    """A quantizer's "handled, nothing to quantize" mark (torchao's leave it on weights and
    biases) and an output-only annotation, both with an empty input map."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    from torchao.testing.pt2e._xnnpack_quantizer import get_symmetric_quantization_config

    spec = get_symmetric_quantization_config().output_activation
    g = torch.fx.Graph()
    x = g.placeholder("x")
    w = g.placeholder("w")
    y = g.call_function(torch.ops.aten.relu.default, (x,))
    g.output((y, w))
    w.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
    y.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=spec)
    keys = portmeta.TORCHAO.keys
    reader = _Reader(g, keys)
    fast = reader.records()
    assert fast == [record_of(n, keys, reader.names) for n in g.nodes]
    assert fast[1].annotation == portmeta.Annotation()
    assert fast[2].annotation.inputs == () and fast[2].annotation.output is not None
    assert portmeta.annotated_nodes(portmeta.build_graph(fast)) == ("w", y.name)
