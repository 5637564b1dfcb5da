"""Drop-in replacement for torchao's ``PortNodeMetaForQDQ`` pass, and a way to swap it in.

:class:`PortNodeMetaForQDQ` is a ``torch.fx`` ``PassBase``: snapshot, :func:`portmeta.plan`,
write. It leaves every node's metadata exactly as torchao 0.18.0's pass does, raises where it
raises (same class or a subclass), and writes nothing when it raises.

Error mapping
-------------
* portmeta's :class:`~portmeta.UpstreamInternalError` subclasses (where upstream raises
  ``torch._export.error.InternalError``) are re-raised as :class:`PortmetaInternalError`, which
  derives from both, with the same message (``raise ... from`` the portmeta error);
* every other :class:`~portmeta.PlanError` propagates unchanged: they already subclass
  ``ValueError``, ``IndexError`` or ``StopIteration`` like upstream's failure.

Check
-----
``PortNodeMetaForQDQ(check="warn")`` runs :func:`portmeta.check` on every call and issues one
:class:`portmeta.PortingWarning` when it finds partitions whose q/dq nodes end without their
values; ``check="raise"`` raises :class:`portmeta.PortingCheckError` instead, before writing
anything. ``last_findings`` holds the last call's findings. The check never changes the writes.

Example
-------
>>> import torch
>>> from portmeta_fx import PortNodeMetaForQDQ
>>> gm = torch.fx.symbolic_trace(torch.nn.ReLU())
>>> PortNodeMetaForQDQ()(gm).modified
True
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
import torch.fx
from torch._export.error import InternalError
from torch.fx.passes.infra.pass_base import PassBase, PassResult

import portmeta
from portmeta.check import Finding, check_writes
from portmeta.plan import plan_writes

from .apply import write_deltas
from .snapshot import module_path, read_fx, resolve_profile, subgraph_modules

__all__ = ["PortmetaInternalError", "PortNodeMetaForQDQ", "patch_convert_pt2e"]

#: What planning returns: the writes in order and the diagnostics.
_Writes = tuple[tuple[portmeta.MetaDelta, ...], tuple[portmeta.Diagnostic, ...]]


class PortmetaInternalError(InternalError, portmeta.UpstreamInternalError):
    """Where upstream raises ``torch._export.error.InternalError``.

    Both an ``InternalError`` (what code written against upstream catches) and a
    :class:`portmeta.UpstreamInternalError` (``node`` and ``subject`` name the nodes).

    Example
    -------
    >>> err = PortmetaInternalError("boom", node="linear", subject="cq")
    >>> isinstance(err, InternalError), isinstance(err, portmeta.PlanError), str(err)
    (True, True, 'boom')
    """

    def __init__(self, message: str, node: str = "", subject: str = "") -> None:
        portmeta.PlanError.__init__(self, node, subject, message)

    @classmethod
    def from_plan_error(cls, exc: portmeta.UpstreamInternalError) -> PortmetaInternalError:
        """The torch-side error for a portmeta one (same message, node and subject).

        Example
        -------
        >>> from portmeta.errors import ChooseQParamsUsersError
        >>> e = PortmetaInternalError.from_plan_error(ChooseQParamsUsersError("l", "cq", 3))
        >>> e.subject, e.upstream_class
        ('cq', 'InternalError')
        """
        err = cls(str(exc), exc.node, exc.subject)
        err.upstream_class = exc.upstream_class
        return err


class PortNodeMetaForQDQ(PassBase):
    """portmeta's ``PortNodeMetaForQDQ``: same result as torchao's pass, computed as a plan.

    Parameters
    ----------
    profile:
        Op sets and keys (:data:`portmeta.TORCHAO` by default).
    keys:
        The full list of metadata keys to port, replacing the profile's (``None``: the
        profile's).
    errors:
        ``"raise"`` (upstream's behaviour) or ``"collect"``: annotated nodes whose rules fail
        are skipped and reported in ``last_plan.errors`` instead.
    check:
        ``"off"`` (default, upstream's behaviour), ``"warn"`` (one
        :class:`portmeta.PortingWarning` per call with findings: their count and the first
        ones) or ``"raise"`` (:class:`portmeta.PortingCheckError` before anything is written).
        See :func:`portmeta.check`; the writes are the same whatever the setting. Inside
        ``convert_pt2e``, torch's ``PassManager`` wraps the :class:`portmeta.PortingCheckError`
        of ``"raise"`` in a bare ``Exception`` whose ``__cause__`` it is.
    check_keys:
        The keys the check compares (``keys=`` of :func:`portmeta.check`): ``None`` (default)
        compares them all but needs a ``quantization_tag`` difference for a finding; a list
        makes any difference on those keys one.
    graph_name:
        The qualified name of the graph the pass ports (``scan_combine_graph_0``; ``""``, the
        default, for the top level; ``None`` for a subgraph whose name is not known), named in
        the check's warning and error. :func:`patch_convert_pt2e` sets it for the pass of each
        graph ``convert_pt2e`` converts.

    Attributes
    ----------
    last_plan:
        The :class:`portmeta.Plan` of the last call (``None`` before the first, or when it
        raised).
    last_snapshot:
        The snapshot that plan was made from: the graph before porting (save it with
        :func:`portmeta.dump_graph` for torch-free inspection).
    last_findings:
        With ``check`` on, the :class:`portmeta.Finding` records of the last call (also when
        it raised :class:`portmeta.PortingCheckError`); ``None`` otherwise.

    Example
    -------
    >>> import torch
    >>> gm = torch.fx.symbolic_trace(torch.nn.ReLU())
    >>> p = PortNodeMetaForQDQ(keys=["quantization_tag", "custom"])
    >>> result = p(gm)
    >>> result.graph_module is gm, p.last_plan.profile.keys
    (True, ('quantization_tag', 'custom'))
    """

    def __init__(
        self,
        profile: portmeta.Profile = portmeta.TORCHAO,
        keys: Sequence[str] | None = None,
        errors: Literal["raise", "collect"] = "raise",
        check: Literal["off", "warn", "raise"] = "off",
        check_keys: Sequence[str] | None = None,
        *,
        graph_name: str | None = "",
    ) -> None:
        super().__init__()
        self.graph_name = graph_name
        if errors not in ("raise", "collect"):
            raise portmeta.OptionError(f"errors must be 'raise' or 'collect', got {errors!r}")
        if check not in ("off", "warn", "raise"):
            raise portmeta.OptionError(f"check must be 'off', 'warn' or 'raise', got {check!r}")
        self.check: Literal["off", "warn", "raise"] = check
        self.check_keys: tuple[str, ...] | None = None
        self._findings: tuple[_Writes | None, tuple[Finding, ...] | None] = (None, None)
        self.profile = resolve_profile(profile, keys)
        if check_keys is not None:
            if isinstance(check_keys, str):
                raise portmeta.OptionError(
                    f"check_keys must be a list of keys, not the string {check_keys!r}"
                )
            self.check_keys = tuple(check_keys)
            unknown = [k for k in self.check_keys if k not in self.profile.keys]
            if unknown or not self.check_keys:
                raise portmeta.OptionError(
                    f"check_keys must be some of the ported keys {list(self.profile.keys)!r}, "
                    f"got {list(self.check_keys)!r}"
                )
        self.errors: Literal["raise", "collect"] = errors
        self._snapshot: portmeta.Snapshot | None = None
        self._writes_made: _Writes | None = None
        self._last_plan: portmeta.Plan | None = None

    @property
    def last_snapshot(self) -> portmeta.Snapshot | None:
        """The snapshot of the last call: the graph before porting (``None`` before the first)."""
        return self._snapshot

    @property
    def last_plan(self) -> portmeta.Plan | None:
        """The :class:`portmeta.Plan` of the last call (``None`` before it, or if it raised).

        Assembled on first access: the snapshot's fingerprint, which the pass itself never
        needs, is computed then.
        """
        if self._writes_made is None or self._snapshot is None:
            return None
        if self._last_plan is None:
            deltas, diagnostics = self._writes_made
            fp = portmeta.fingerprint(self._snapshot)
            self._last_plan = portmeta.Plan(deltas, diagnostics, fp, self.profile)
        return self._last_plan

    def _writes(
        self, graph_module: torch.fx.GraphModule
    ) -> tuple[_Writes, dict[str, torch.fx.Node]]:
        """Snapshot and plan; remember both; map errors as :meth:`call` documents."""
        self._snapshot = self._writes_made = self._last_plan = None
        self._snapshot, nodes = read_fx(graph_module, self.profile)
        try:
            writes = plan_writes(self._snapshot, self.profile, errors=self.errors)
        except portmeta.UpstreamInternalError as exc:
            if isinstance(exc, InternalError):
                raise
            raise PortmetaInternalError.from_plan_error(exc) from exc
        self._writes_made = writes
        return writes, nodes

    def plan(self, graph_module: torch.fx.GraphModule) -> portmeta.Plan:
        """Snapshot and plan without writing; errors mapped as in :meth:`call`.

        Sets :attr:`last_snapshot` and :attr:`last_plan` (``None`` when planning raises).

        Example
        -------
        >>> import torch
        >>> PortNodeMetaForQDQ().plan(torch.fx.symbolic_trace(torch.nn.ReLU())).deltas
        ()
        """
        self._writes(graph_module)
        assert self.last_plan is not None  # planning succeeded
        return self.last_plan

    @property
    def last_findings(self) -> tuple[Finding, ...] | None:
        """With ``check`` on, the findings of the last call (``None`` before it, when it raised
        a planning error, or with ``check="off"``)."""
        writes, found = self._findings
        return found if writes is not None and writes is self._writes_made else None

    def _check(self) -> None:
        """With ``check`` on: find, remember, and warn about or raise on the last writes.

        The warning points at the first frame out of torch, torchao and portmeta: the user's
        call of the pass, or of ``convert_pt2e`` when the pass runs inside it.
        """
        if self.check == "off" or self._snapshot is None or self._writes_made is None:
            return
        deltas, diagnostics = self._writes_made
        found = check_writes(
            self._snapshot, deltas, diagnostics, self.profile, keys=self.check_keys
        )
        self._findings = (self._writes_made, found)
        if not found:
            return
        if self.check == "raise":
            raise portmeta.PortingCheckError(found, graph=self.graph_name)
        self._warn(self._warning(found))

    def _warning(self, found: tuple[Finding, ...]) -> portmeta.PortingWarning:
        return portmeta.PortingWarning(
            found, where="the pass's last_findings", graph=self.graph_name
        )

    def _warn(self, warning: portmeta.PortingWarning) -> None:
        _warn_at_user(warning)

    def call(self, graph_module: torch.fx.GraphModule) -> PassResult:
        """Port the metadata in place; returns ``PassResult(graph_module, True)`` like upstream.

        Raises where upstream raises (see the module docstring), having written nothing.
        """
        (deltas, _), nodes = self._writes(graph_module)
        self._check()
        write_deltas(deltas, nodes)
        return PassResult(graph_module, True)


_LIBRARIES = ("torch", "torchao", "portmeta", "portmeta_fx", "contextlib")


def _warn_at_user(warning: Warning) -> None:
    """Issue ``warning`` at the first frame out of torch, torchao, portmeta and contextlib: the
    user's line calling the pass, ``convert_pt2e`` or leaving a :func:`patch_convert_pt2e`
    block."""
    level = 1  # warnings.warn's stacklevel 1 is this function's own frame
    frame = inspect.currentframe()
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).split(".")[0] not in _LIBRARIES:
            break
        frame, level = frame.f_back, level + 1
    del frame
    warnings.warn(warning, stacklevel=level)


class _Conversions:
    """``convert_pt2e`` inside one :func:`patch_convert_pt2e` block: torchao's, knowing the
    qualified name of the graph each call converts.

    torchao 0.18's ``convert_pt2e`` converts each scan combine_fn and while_loop body_fn by
    calling ``convert_pt2e`` (the module attribute, which the block sets to this object) on
    the loop body, before it converts the model itself. A call made inside another names its
    model by where it sits in that model (:func:`subgraph_modules`). The outermost call is the
    top level, unless torchao's ``convert_pt2e`` itself made it (the caller's code object
    says so): the user called a reference to ``convert_pt2e`` bound before the block, so the
    top level is converted outside the wrapper. The graphs converted then have no name
    (``None``) until the top level's pass runs: their passes hold their warnings, and the first
    pass with a known name finds their graph modules inside its own, names them and issues the
    warnings. Like a ``functools.wraps`` wrapper, it has ``__wrapped__``: a block inside
    another finds torchao's function through it.
    """

    def __init__(self, original: Any) -> None:
        functools.update_wrapper(self, original)
        self.original = original
        self._torchao_code = getattr(inspect.unwrap(original), "__code__", None)
        self.running: list[tuple[torch.fx.GraphModule, str | None]] = []
        self.unnamed: list[tuple[_ConvertPass, torch.fx.GraphModule]] = []

    def __call__(self, model: torch.fx.GraphModule, *args: Any, **kwargs: Any) -> Any:
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        by_torchao = caller is not None and caller.f_code is self._torchao_code
        del frame, caller
        self.running.append((model, self._name(model, by_torchao)))
        try:
            return self.original(model, *args, **kwargs)
        finally:
            self.running.pop()

    def _name(self, model: torch.fx.GraphModule, by_torchao: bool) -> str | None:
        if not self.running:
            return None if by_torchao else ""
        parent, prefix = self.running[-1]
        if prefix is not None:
            for relative, module in subgraph_modules(parent).items():
                if relative and module is model:
                    return module_path(prefix, relative)
        return None

    def graph_name(self) -> str | None:
        """The name of the graph being converted now (``""`` outside every wrapped call: the
        top level, converted by a reference bound before the block)."""
        return self.running[-1][1] if self.running else ""

    def ported(self, pass_: _ConvertPass, graph_module: torch.fx.GraphModule) -> None:
        """``pass_`` is about to port ``graph_module``: name the unnamed graphs inside it. The
        top level's pass ends a conversion: what is still unnamed then (left by a conversion
        that failed) is issued unnamed."""
        if pass_.graph_name is None:
            self.unnamed.append((pass_, graph_module))
            return
        if not self.unnamed:
            return
        inside = {id(m): name for name, m in subgraph_modules(graph_module).items() if name}
        for entry in list(self.unnamed):
            name = inside.get(id(entry[1]))
            if name is not None:
                self.unnamed.remove(entry)
                entry[0].graph_name = module_path(pass_.graph_name, name)
                entry[0].warn_held()
        if pass_.graph_name == "":
            self.close()

    def close(self, error: BaseException | None = None) -> None:
        """Issue what the graphs never named hold (their ``convert_pt2e`` failed). With
        ``error`` on its way out of the block, a warning made an error is added to its notes
        instead of hiding it."""
        unnamed, self.unnamed = self.unnamed, []
        for pass_, _ in unnamed:
            try:
                pass_.warn_held()
            except Warning as warning:
                if error is None:
                    raise
                error.add_note(f"{type(warning).__name__}: {warning}")


class _ConvertPass(PortNodeMetaForQDQ):
    """The pass the patched ``convert_pt2e`` creates: its graph's name comes from the block's
    :class:`_Conversions`, and it holds its warning while that name is not known."""

    def __init__(self, conversions: _Conversions, *args: Any) -> None:
        super().__init__(*args, graph_name=conversions.graph_name())
        self._conversions = conversions

    def call(self, graph_module: torch.fx.GraphModule) -> PassResult:
        self._conversions.ported(self, graph_module)
        return super().call(graph_module)

    def _warn(self, warning: portmeta.PortingWarning) -> None:
        if self.graph_name is not None:
            _warn_at_user(warning)

    def warn_held(self) -> None:
        """Issue the warning held for the last call, under the graph's name as now known."""
        found = self.last_findings
        if self.check == "warn" and found:
            _warn_at_user(self._warning(found))


@contextlib.contextmanager
def patch_convert_pt2e(
    profile: portmeta.Profile = portmeta.TORCHAO,
    keys: Sequence[str] | None = None,
    errors: Literal["raise", "collect"] = "raise",
    check: Literal["off", "warn", "raise"] = "off",
    check_keys: Sequence[str] | None = None,
) -> Iterator[list[PortNodeMetaForQDQ]]:
    """Make torchao's ``convert_pt2e`` run portmeta's pass instead of its own, for a while.

    Swaps ``torchao.quantization.pt2e.quantize_pt2e.PortNodeMetaForQDQ`` (which ``convert_pt2e``
    looks up by name and calls with no arguments) for a factory of :class:`PortNodeMetaForQDQ`
    with the given ``profile`` / ``keys`` / ``errors`` / ``check`` / ``check_keys``, and restores
    the original on exit, also when the block raises. Yields the list of passes created inside
    the block (their ``last_plan`` tells what each conversion wrote, their ``last_findings``
    what the check found).

    With ``check="warn"`` the :class:`portmeta.PortingWarning` points at the line calling
    ``convert_pt2e``. ``convert_pt2e`` converts each ``scan`` combine_fn and ``while_loop``
    body_fn by calling itself on it; for that the block also wraps
    ``quantize_pt2e.convert_pt2e``, so each pass knows the qualified name of the graph it ports
    (``graph_name``, e.g. ``scan_combine_graph_0``) and its warning and error name the
    subgraph. Call ``convert_pt2e`` as you like: through the module, or through a name imported
    before the block. In the second case the loop bodies are converted before the wrapper
    sees the top level, so their warnings wait until the top level's pass names them (still
    inside the ``convert_pt2e`` call), and a ``check="raise"`` error in a loop body says "in a
    subgraph" without its name. With ``check="raise"``, torch's ``PassManager`` (which
    ``convert_pt2e`` runs the pass in) wraps the :class:`portmeta.PortingCheckError` in a bare
    ``Exception``: catch ``Exception`` and look at its ``__cause__`` (or read
    ``passes[0].last_findings``).

    Example
    -------
    >>> from torchao.quantization.pt2e import quantize_pt2e
    >>> original = quantize_pt2e.PortNodeMetaForQDQ
    >>> with patch_convert_pt2e(keys=["quantization_tag"]) as passes:
    ...     # m = quantize_pt2e.convert_pt2e(prepared_model)  # runs portmeta's pass
    ...     quantize_pt2e.PortNodeMetaForQDQ().profile.keys
    ('quantization_tag',)
    >>> quantize_pt2e.PortNodeMetaForQDQ is original, len(passes)
    (True, 1)
    """
    from torchao.quantization.pt2e import quantize_pt2e  # type: ignore[import-untyped]

    created: list[PortNodeMetaForQDQ] = []
    conversions = _Conversions(quantize_pt2e.convert_pt2e)

    def factory(*args: Any, **kwargs: Any) -> PortNodeMetaForQDQ:
        if args or kwargs:
            raise TypeError(
                "the patched PortNodeMetaForQDQ takes no arguments "
                "(pass profile/keys/errors/check/check_keys to patch_convert_pt2e)"
            )
        instance = _ConvertPass(conversions, profile, keys, errors, check, check_keys)
        created.append(instance)
        return instance

    original = quantize_pt2e.PortNodeMetaForQDQ
    quantize_pt2e.PortNodeMetaForQDQ = factory
    quantize_pt2e.convert_pt2e = conversions
    error: BaseException | None = None
    try:
        yield created
    except BaseException as exc:
        error = exc
        raise
    finally:
        quantize_pt2e.PortNodeMetaForQDQ = original
        quantize_pt2e.convert_pt2e = conversions.original
        conversions.close(error)
