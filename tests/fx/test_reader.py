"""The one FX reader's records, field by field, against the public per-value conversions.

``from_fx`` reads every node in one walk (:class:`portmeta_fx.snapshot._Reader`) and builds its
records with the plain constructor, unchecked (``build_graph(check=False)``). On random FX
graphs (odd arguments, foreign nodes, shared meta dicts, hand edits) every record must be what
the checked factory makes of the node's fields converted one by one (:func:`target_of`,
:func:`arg_of`, :func:`annotation_of`), and the records must pass every check of
``build_graph``.
"""

from __future__ import annotations

import fxgen
import torch
from hypothesis import given, settings

import portmeta
from portmeta.records import NodeRecord
from portmeta_fx import from_fx
from portmeta_fx.snapshot import annotation_of, arg_of, snapshot_nodes, target_of


def _expected(
    node: torch.fx.Node, name: str, names: dict[torch.fx.Node, str], foreign: bool, owner: str
) -> NodeRecord:
    """The record of ``node`` built field by field through the checked factory."""
    ann = None if foreign else node.meta.get("quantization_annotation")
    return NodeRecord.of(
        name,
        node.op,
        target_of(node),
        args=arg_of(tuple(node.args), names),
        kwargs=[(k, arg_of(v, names)) for k, v in node.kwargs.items()],
        users=[names[u] for u in node.users],
        meta=[(k, node.meta[k]) for k in portmeta.TORCHAO.keys if k in node.meta],
        annotation=None if ann is None else annotation_of(ann, names),
        foreign=foreign,
        meta_owner=None if owner == name else owner,
    )


@settings(max_examples=60)
@given(recipe=fxgen.recipes())
def test_reader_records_equal_the_checked_field_by_field_conversion(
    recipe: fxgen.Recipe,
) -> None:
    gm = fxgen.build(recipe)
    snap = from_fx(gm)
    nodes = snapshot_nodes(gm)
    names = {node: name for name, node in nodes.items()}
    recs = portmeta.records(snap)
    own = list(gm.graph.nodes)
    assert [r.name for r in recs] == list(nodes)
    assert [r.name for r in recs[: len(own)]] == [names[n] for n in own]
    owners: dict[int, str] = {}
    for i, rec in enumerate(recs):
        node = nodes[rec.name]
        foreign = i >= len(own)
        owner = owners.setdefault(id(node.meta), rec.name)
        assert rec == _expected(node, rec.name, names, foreign, owner), rec.name
    # the records pass every check of build_graph (the reader skips them)
    checked = portmeta.build_graph(recs, meta_keys=portmeta.TORCHAO.keys, allow_cycles=True)
    assert portmeta.fingerprint(checked) == portmeta.fingerprint(snap)


def test_empty_annotations_are_read_as_upstream_reads_them() -> None:
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
    snap = from_fx(g)
    names = {n: n.name for n in g.nodes}
    recs = portmeta.records(snap)
    assert list(recs) == [_expected(n, n.name, names, False, n.name) for n in g.nodes]
    assert recs[1].annotation == portmeta.Annotation()
    assert not recs[1].annotation.is_valid
    assert recs[2].annotation == portmeta.Annotation((), portmeta.QSpec("QuantizationSpec", None))
    assert portmeta.annotated_nodes(snap) == ("w", y.name)
    assert portmeta.annotated_nodes(portmeta.build_graph(recs)) == ("w", y.name)
