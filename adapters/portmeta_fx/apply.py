"""Apply a :class:`portmeta.Plan` back onto an FX graph module, with an exact undo.

Writes
------
Each delta ``d`` is performed as ``gm_node(d.target).meta[d.key] = gm_node(d.source).meta[d.key]``,
reading the source *live* at that moment. Because the deltas are in upstream's order, this
reproduces what ``PortNodeMetaForQDQ`` leaves object for object (the same ``str`` objects, not
copies). Before the first write to each ``(node, key)`` the previous value (or its absence) is
remembered in an :class:`Undo`.

Staleness and re-application
----------------------------
:func:`apply_plan` snapshots the graph with the plan's profile (and, for a model with
subgraphs, all its graphs merged, subgraph nodes named ``GRAPH:node``) and compares the
fingerprint (:func:`portmeta.fingerprint`) with the plan's:

* equal to ``plan.fingerprint``: the plan is applied;
* equal to the fingerprint of the graph module's snapshot taken right after this module applied
  *the same plan to the same graph module object* (the plan is already applied and nothing
  changed since): nothing is written and an empty :class:`Undo` is returned, so applying twice
  is idempotent;
* anything else: :class:`portmeta.StalePlanError`, nothing written.

The "already applied" record is kept in a weak per-graph-module table, so it does not survive
``copy.deepcopy`` or pickling; a copy of an applied graph is refused (re-plan it instead).

Failure half-way
----------------
If a write raises (a meta dict that refuses a key, a node renamed behind the plan's back, ...)
every key written so far is restored before the exception propagates: the graph is never left
half-written.

Example
-------
>>> import torch, portmeta
>>> from portmeta_fx import from_fx, apply_plan
>>> gm = torch.fx.symbolic_trace(torch.nn.ReLU())
>>> undo = apply_plan(portmeta.plan(from_fx(gm)), gm)
>>> undo.entries
()
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import attrs
import torch
import torch.fx

import portmeta

from .snapshot import model_nodes, read_fx, read_model, subgraph_modules

__all__ = ["UndoEntry", "Undo", "apply_plan", "write_deltas"]

#: A way to read a graph module for a plan: its snapshot and its nodes by snapshot name.
_Read = Callable[[Any, portmeta.Profile], tuple[portmeta.Snapshot, dict[str, torch.fx.Node]]]


class UndoEntry(NamedTuple):
    """What one ``(node, key)`` held before its first write.

    Example
    -------
    >>> UndoEntry("dq", "quantization_tag", False, None).had_value
    False
    """

    node: str
    key: str
    had_value: bool
    previous: Any


def _restore_entry(node: torch.fx.Node, entry: UndoEntry) -> None:
    meta = node.meta
    if entry.had_value:
        if entry.key in meta and meta[entry.key] is entry.previous:
            return
        meta[entry.key] = entry.previous
    elif entry.key in meta:
        del meta[entry.key]


def _restore_all(entries: Sequence[UndoEntry], nodes: Mapping[str, torch.fx.Node]) -> list[str]:
    """Restore in reverse order, best effort; returns a description of each failure."""
    failures = []
    for entry in reversed(entries):
        try:
            _restore_entry(nodes[entry.node], entry)
        except Exception as exc:
            failures.append(f"{entry.node}.meta[{entry.key!r}]: {type(exc).__name__}: {exc}")
    return failures


@attrs.frozen
class Undo:
    """Plain-data record of what :func:`apply_plan` overwrote; :meth:`restore` puts it back.

    ``entries`` holds one :class:`UndoEntry` per written ``(node, key)``, in order of first
    write: the node name, the key, whether the key was present, and the previous value.

    Example
    -------
    >>> import torch
    >>> g = torch.fx.Graph(); x = g.placeholder("x"); _ = g.output(x)
    >>> gm = torch.fx.GraphModule(torch.nn.Module(), g)
    >>> x.meta["quantization_tag"] = "new"
    >>> Undo((UndoEntry("x", "quantization_tag", False, None),)).restore(gm)
    >>> "quantization_tag" in x.meta
    False
    """

    entries: tuple[UndoEntry, ...] = ()

    def restore(self, gm: torch.fx.GraphModule) -> None:
        """Put every recorded key back exactly (deleting keys that were absent).

        Nodes are found by snapshot name; a subgraph's as ``GRAPH:node`` (the undo of a
        model's plan).

        Raises
        ------
        portmeta.UnknownNodeError
            A recorded node is no longer in ``gm`` (checked before anything is restored).
        """
        nodes = model_nodes(gm)
        for entry in self.entries:
            if entry.node not in nodes:
                raise portmeta.UnknownNodeError(entry.node, "the graph module")
        failures = _restore_all(self.entries, nodes)
        if failures:
            raise RuntimeError("could not restore: " + "; ".join(failures))

    def __len__(self) -> int:
        return len(self.entries)


def write_deltas(deltas: Iterable[portmeta.MetaDelta], nodes: Mapping[str, torch.fx.Node]) -> Undo:
    """Perform ``deltas`` in order on ``nodes`` (name -> node), reading sources live.

    The one writer: :func:`apply_plan` and the drop-in pass write with it. No staleness check.
    On any exception the keys written so far are restored, then it propagates.

    Example
    -------
    >>> import torch, portmeta
    >>> g = torch.fx.Graph(); a = g.placeholder("a"); b = g.placeholder("b")
    >>> a.meta["quantization_tag"] = "T"
    >>> d = portmeta.MetaDelta("b", "quantization_tag", "T", "a", "a", portmeta.Rule.STATIC_INPUT, "a", ("a", "b"))
    >>> write_deltas([d], {"a": a, "b": b}).entries[0].had_value, b.meta["quantization_tag"]
    (False, 'T')
    """
    entries: list[UndoEntry] = []
    seen: set[tuple[str, str]] = set()
    try:
        for d in deltas:
            meta = nodes[d.target].meta
            value = nodes[d.source].meta[d.key]
            if (d.target, d.key) not in seen:
                seen.add((d.target, d.key))
                had = d.key in meta
                entries.append(UndoEntry(d.target, d.key, had, meta[d.key] if had else None))
            meta[d.key] = value
    except BaseException as exc:
        failures = _restore_all(entries, nodes)
        if failures:
            exc.add_note("portmeta_fx could not restore: " + "; ".join(failures))
        raise
    return Undo(tuple(entries))


_PlanKey = tuple[str, portmeta.Profile, tuple[tuple[str, str, str], ...]]
_applied: weakref.WeakKeyDictionary[Any, dict[_PlanKey, str]] = weakref.WeakKeyDictionary()


def _plan_key(plan: portmeta.Plan) -> _PlanKey:
    return (
        plan.fingerprint,
        plan.profile,
        tuple((d.target, d.key, d.source) for d in plan.deltas),
    )


def _stale_message(
    plan: portmeta.Plan, readings: Sequence[tuple[str, Mapping[str, torch.fx.Node]]]
) -> str:
    """Why ``plan`` does not fit: the fingerprints of the graph module as read (its own graph,
    then, for a model, all its graphs merged) and the nodes the plan names that are gone."""
    current = " or, all its graphs merged, ".join(fp for fp, _ in readings)
    nodes = readings[-1][1]  # the widest reading: every graph's nodes, GRAPH:node
    named = dict.fromkeys(n for d in plan.deltas for n in (d.target, d.source))
    missing = [n for n in named if n not in nodes]
    text = (
        f"the graph changed since the plan was made: plan fingerprint {plan.fingerprint}, "
        f"graph fingerprint {current} (profile {plan.profile.name!r}, keys "
        f"{list(plan.profile.keys)!r})"
    )
    if missing:
        text += f"; nodes the plan writes or reads are gone: {missing!r}"
    return text + "; take a new snapshot and plan again"


def apply_plan(plan: portmeta.Plan, gm: torch.fx.GraphModule) -> Undo:
    """Write ``plan`` onto ``gm``; return the :class:`Undo` that reverses it.

    The plan may be of ``gm``'s own graph (:func:`from_fx`) or, for a model with ``scan`` /
    ``while_loop`` subgraphs, of all its graphs merged (:func:`portmeta.merge_graphs` of
    :func:`from_fx_graphs`, the plan ``portmeta plan`` makes of a :func:`dump` file, a
    subgraph's nodes named ``GRAPH:node``); the fingerprint tells which. To apply the plan of
    one subgraph alone (``portmeta plan --graph NAME``), give that subgraph:
    ``apply_plan(plan, gm.get_submodule(NAME))``.

    Raises
    ------
    portmeta.StalePlanError
        ``gm``'s snapshot (taken with ``plan.profile``), or that of all its graphs, is neither
        the one the plan was made from nor the state this plan left on this very graph module;
        nothing is written.

    Example
    -------
    >>> import torch, portmeta
    >>> from portmeta_fx import from_fx
    >>> gm = torch.fx.symbolic_trace(torch.nn.ReLU())
    >>> p = portmeta.plan(from_fx(gm))
    >>> gm.graph.call_function(torch.relu, (next(iter(gm.graph.nodes)),))
    relu_1
    >>> apply_plan(p, gm)
    Traceback (most recent call last):
    ...
    portmeta.errors.StalePlanError: the graph changed since the plan was made: ...
    """
    key = _plan_key(plan)
    done = _applied.get(gm, {}).get(key) if not isinstance(gm, torch.fx.Graph) else None
    readings = []
    for read in _readers(gm):
        snapshot, nodes = read(gm, plan.profile)
        current = portmeta.fingerprint(snapshot)
        if current == plan.fingerprint:
            undo = write_deltas(plan.deltas, nodes)
            if not isinstance(gm, torch.fx.Graph):
                _applied.setdefault(gm, {})[key] = portmeta.fingerprint(read(gm, plan.profile)[0])
            return undo
        if current == done:
            return Undo()
        readings.append((current, nodes))
    raise portmeta.StalePlanError(_stale_message(plan, readings))


def _readers(gm: torch.fx.GraphModule | torch.fx.Graph) -> tuple[_Read, ...]:
    """How to read ``gm`` for a plan: its own graph, then, for a model with subgraphs, every
    graph merged (the plan of a model file names a subgraph's nodes ``GRAPH:node``)."""
    if isinstance(gm, torch.fx.GraphModule) and len(subgraph_modules(gm)) > 1:
        return (read_fx, read_model)
    return (read_fx,)
