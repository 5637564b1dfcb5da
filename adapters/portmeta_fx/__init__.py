"""torch.fx side of portmeta: snapshot FX graphs, apply plans, and a drop-in pass.

* :func:`from_fx` / :func:`dump`: ``GraphModule`` -> frozen snapshot (or JSON file);
  :func:`from_fx_graphs`: every graph of a model (``scan`` / ``while_loop`` subgraphs too);
* :func:`apply_plan` / :class:`Undo`: write a :class:`portmeta.Plan` back, reversibly;
* :class:`PortNodeMetaForQDQ`: a ``PassBase`` that equals torchao's pass node for node;
* :func:`patch_convert_pt2e`: make ``convert_pt2e`` use it;
* :class:`PortmetaInternalError`: what the pass raises where upstream raises ``InternalError``;
* :class:`TagPartitions` / :func:`tag_partitions`: tag the partitions of any torchao quantizer
  (``quantization_tag`` per annotated node, as a backend does), so the pass has tags to port.

``import portmeta_fx`` needs torch alone: ``TagPartitions`` and ``tag_partitions`` (from
:mod:`portmeta_fx.quantizer`) import torchao when first used, and ``from portmeta_fx import *``
leaves them out.

Example
-------
>>> import torch, portmeta
>>> from portmeta_fx import from_fx, apply_plan
>>> gm = torch.fx.symbolic_trace(torch.nn.ReLU())
>>> undo = apply_plan(portmeta.plan(from_fx(gm)), gm)
>>> undo.restore(gm)
"""

from typing import TYPE_CHECKING, Any

from .apply import Undo, UndoEntry, apply_plan, write_deltas
from .passes import PortmetaInternalError, PortNodeMetaForQDQ, patch_convert_pt2e
from .snapshot import Q_ANNOTATION_KEY, dump, from_fx, from_fx_graphs, subgraph_modules

if TYPE_CHECKING:
    from .quantizer import TagPartitions as TagPartitions
    from .quantizer import tag_partitions as tag_partitions

__all__ = [
    "Q_ANNOTATION_KEY",
    "PortNodeMetaForQDQ",
    "PortmetaInternalError",
    "Undo",
    "UndoEntry",
    "apply_plan",
    "dump",
    "from_fx",
    "from_fx_graphs",
    "patch_convert_pt2e",
    "subgraph_modules",
    "write_deltas",
]

#: Names served from :mod:`portmeta_fx.quantizer`, which imports torchao.
_NEEDS_TORCHAO = ("TagPartitions", "tag_partitions")


def __getattr__(name: str) -> Any:
    if name in _NEEDS_TORCHAO:
        from . import quantizer

        return getattr(quantizer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_NEEDS_TORCHAO})
