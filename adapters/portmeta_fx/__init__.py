"""torch.fx side of portmeta: snapshot FX graphs, apply plans, and a drop-in pass.

* :func:`from_fx` / :func:`dump`: ``GraphModule`` -> frozen snapshot (or JSON file);
* :func:`apply_plan` / :class:`Undo`: write a :class:`portmeta.Plan` back, reversibly;
* :class:`PortNodeMetaForQDQ`: a ``PassBase`` that equals torchao's pass node for node;
* :func:`patch_convert_pt2e`: make ``convert_pt2e`` use it;
* :class:`PortmetaInternalError`: what the pass raises where upstream raises ``InternalError``.

Example
-------
>>> import torch, portmeta
>>> from portmeta_fx import from_fx, apply_plan
>>> gm = torch.fx.symbolic_trace(torch.nn.ReLU())
>>> undo = apply_plan(portmeta.plan(from_fx(gm)), gm)
>>> undo.restore(gm)
"""

from .apply import Undo, UndoEntry, apply_plan, write_deltas
from .passes import PortmetaInternalError, PortNodeMetaForQDQ, patch_convert_pt2e
from .snapshot import Q_ANNOTATION_KEY, dump, from_fx

__all__ = [
    "Q_ANNOTATION_KEY",
    "PortNodeMetaForQDQ",
    "PortmetaInternalError",
    "Undo",
    "UndoEntry",
    "apply_plan",
    "dump",
    "from_fx",
    "patch_convert_pt2e",
    "write_deltas",
]
