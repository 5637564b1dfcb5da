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


def test_the_reader_reads_nodes_members_only_where_the_properties_return_them(
    monkeypatch,
) -> None:
    """``Node.args`` / ``Node.kwargs`` are read through ``_args`` / ``_kwargs`` only while the
    properties are exactly ``return self._args`` / ``return self._kwargs``; with any other
    getter the reader uses the properties, to the same records."""
    from portmeta_fx import snapshot

    assert snapshot._MEMBERS  # torch 2.13's properties are exactly that

    class Probe:
        def __init__(self) -> None:
            self._args = (1,)

        exact = property(lambda self: self._args)
        copied = property(lambda self: tuple(self._args))
        other = property(lambda self: self._kwargs)

    assert snapshot._property_returns(Probe.exact, "_args")
    assert not snapshot._property_returns(Probe.copied, "_args")
    assert not snapshot._property_returns(Probe.other, "_args")
    assert not snapshot._property_returns(object(), "_args")

    g = torch.fx.Graph()
    x = g.placeholder("x")
    y = g.call_function(torch.ops.aten.add.Tensor, (x, x), {"alpha": 2})
    z = g.call_function(torch.ops.aten.relu.default, (y,))
    g.output(z)
    keys = portmeta.TORCHAO.keys
    with_members = _Reader(g, keys).records()
    monkeypatch.setattr(snapshot, "_MEMBERS", False)
    assert _Reader(g, keys).records() == with_members == [record_of(n, keys) for n in g.nodes]
