"""Exception classes raised by portmeta.

Every failure portmeta reports is a :class:`PortmetaError`. Planning failures mirror the
upstream pass: where ``PortNodeMetaForQDQ`` raises ``ValueError`` the portmeta class subclasses
``ValueError``; where it raises ``torch._export.error.InternalError`` the class is an
:class:`UpstreamInternalError` (the FX adapter re-raises it as a subclass of torch's class);
where upstream crashes by accident (``IndexError`` / ``StopIteration``) the portmeta class
subclasses that built-in so ``except IndexError`` written against upstream still works.

Example
-------
>>> from portmeta.errors import NoChooseQParamsError
>>> err = NoChooseQParamsError("linear", "x")
>>> isinstance(err, ValueError), err.node
(True, 'linear')
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable

from ._text import did_you_mean

__all__ = [
    "PortmetaError",
    "GraphFormatError",
    "GraphBuildError",
    "CodecError",
    "ProfileError",
    "OptionError",
    "UnknownNodeError",
    "RenderError",
    "CliError",
    "StalePlanError",
    "PlanError",
    "NoChooseQParamsError",
    "NonNodeQuantArgError",
    "NotANodeInputError",
    "CyclicWalkError",
    "MalformedAnnotationError",
    "AnnotationAttributeError",
    "AnnotationTypeError",
    "UpstreamInternalError",
    "ChooseQParamsUsersError",
    "DynamicQuantUsersError",
    "MissingArgumentError",
    "NoUserError",
    "ScaleWithoutUsersError",
]


class PortmetaError(Exception):
    """Base class of every error portmeta raises.

    Example
    -------
    >>> issubclass(StalePlanError, PortmetaError)
    True
    """


class GraphFormatError(PortmetaError, ValueError):
    """A saved graph or plan file (or its parsed dict) is not valid.

    The message names the file (when there is one) and the problem.

    Example
    -------
    >>> str(GraphFormatError("not JSON", source="g.json"))
    'g.json: not JSON'
    """

    def __init__(self, problem: str, source: str | None = None) -> None:
        self.problem = problem
        self.source = source
        super().__init__(f"{source}: {problem}" if source else problem)


class GraphBuildError(PortmetaError, ValueError):
    """Node records do not form a valid graph (duplicate names, dangling references, cycles...).

    Example
    -------
    >>> str(GraphBuildError("duplicate node name 'x'"))
    "duplicate node name 'x'"
    """


class CodecError(PortmetaError, ValueError):
    """An encoded value in a saved file is not one :func:`portmeta.codec.decode` can read.

    Example
    -------
    >>> from portmeta.codec import decode
    >>> decode({"$nope": 1})
    Traceback (most recent call last):
    ...
    portmeta.errors.CodecError: unknown encoded value {'$nope': 1}
    """


class ProfileError(PortmetaError, ValueError):
    """A profile is unknown or does not fit the graph it is used with.

    Example
    -------
    >>> isinstance(ProfileError("unknown profile 'x'"), ValueError)
    True
    """


class OptionError(PortmetaError, ValueError):
    """An argument of a portmeta function has a value it does not accept.

    Example
    -------
    >>> isinstance(OptionError("errors must be 'raise' or 'collect'"), ValueError)
    True
    """


class UnknownNodeError(PortmetaError, LookupError):
    """A node name asked for is not in the graph.

    Parameters
    ----------
    node:
        The name asked for.
    where:
        What was searched (a file name, or "the graph").
    known:
        The names that do exist; up to three that look like ``node`` are suggested.

    Example
    -------
    >>> print(UnknownNodeError("conv", "g.json", known=["conv2d", "relu"]))
    no node named 'conv' in g.json (did you mean 'conv2d'?)
    """

    def __init__(self, node: str, where: str = "the graph", known: Iterable[str] = ()) -> None:
        self.node = node
        super().__init__(f"no node named {node!r} in {where}{did_you_mean(node, known)}")


class RenderError(PortmetaError):
    """Graphviz is missing or failed, or a picture's output format is not supported.

    Example
    -------
    >>> isinstance(RenderError("dot not found"), PortmetaError)
    True
    """


class CliError(PortmetaError):
    """A problem with the ``portmeta`` command's input, reported as ``portmeta: error: ...``
    with exit status 2 (it never escapes :func:`portmeta.cli.main`).

    Example
    -------
    >>> isinstance(CliError("out.svg: is a directory"), PortmetaError)
    True
    """


class StalePlanError(PortmetaError):
    """A plan was given with a graph it was not made from: applied to a graph that changed since
    the plan's snapshot was taken, or checked or drawn over another graph.

    Example
    -------
    >>> StalePlanError("fingerprint mismatch").args[0]
    'fingerprint mismatch'
    """


class PlanError(PortmetaError):
    """Planning stopped at an annotated node where the upstream pass raises.

    Attributes
    ----------
    node:
        Name of the annotated node whose rule failed.
    subject:
        Name of the node the broken expectation is about (may equal ``node``).

    Example
    -------
    >>> e = ChooseQParamsUsersError("linear", "choose_qparams", 3)
    >>> e.node, e.subject
    ('linear', 'choose_qparams')
    """

    upstream_class = "Exception"

    def __init__(self, node: str, subject: str, message: str) -> None:
        self.node = node
        self.subject = subject
        super().__init__(message)


class NoChooseQParamsError(PlanError, ValueError):
    """A dynamic input has no choose_qparams node downstream (upstream: ``ValueError``).

    Example
    -------
    >>> print(NoChooseQParamsError("linear", "x"))
    no choose_qparams node is reachable from input 'x' of dynamically quantized node 'linear'
    """

    upstream_class = "ValueError"

    def __init__(self, node: str, input_node: str) -> None:
        super().__init__(
            node,
            input_node,
            f"no choose_qparams node is reachable from input {input_node!r} "
            f"of dynamically quantized node {node!r}",
        )


class NonNodeQuantArgError(PlanError, ValueError):
    """A quant-workflow op's first argument is a constant, not a node (upstream: ``ValueError``).

    Example
    -------
    >>> print(NonNodeQuantArgError("conv", "dq", "1.0"))
    args[0] of quant-workflow op 'dq' (reached from annotated node 'conv') must be a node, found 1.0
    """

    upstream_class = "ValueError"

    def __init__(self, node: str, subject: str, found: str) -> None:
        super().__init__(
            node,
            subject,
            f"args[0] of quant-workflow op {subject!r} (reached from annotated node {node!r}) "
            f"must be a node, found {found}",
        )


class NotANodeInputError(PlanError, AttributeError):
    """A dynamic input's annotation key is not a node (upstream: ``AttributeError``).

    Example
    -------
    >>> print(NotANodeInputError("linear", "'x'"))
    the input_qspec_map key 'x' of dynamically quantized node 'linear' is not a node
    """

    upstream_class = "AttributeError"

    def __init__(self, node: str, key: str) -> None:
        super().__init__(
            node,
            key,
            f"the input_qspec_map key {key} of dynamically quantized node {node!r} is not a node",
        )


class CyclicWalkError(PlanError, RuntimeError):
    """A rule's walk up ``args[0]`` came back to a node it had passed: the graph has a cycle.

    Upstream's walk never ends on such a graph; portmeta stops and says where.

    Example
    -------
    >>> print(CyclicWalkError("conv", "dq"))
    the walk up args[0] from annotated node 'conv' came back to node 'dq': the graph has a cycle
    """

    def __init__(self, node: str, subject: str) -> None:
        super().__init__(
            node,
            subject,
            f"the walk up args[0] from annotated node {node!r} came back to node {subject!r}: "
            "the graph has a cycle",
        )


class MalformedAnnotationError(PlanError):
    """A node's ``quantization_annotation`` is not an object upstream can read.

    Raised as :class:`AnnotationAttributeError` or :class:`AnnotationTypeError`, matching the
    built-in error upstream fails with; :meth:`of` picks the class.

    Example
    -------
    >>> e = MalformedAnnotationError.of("conv", "AttributeError", "no attribute 'output_qspec'")
    >>> isinstance(e, AttributeError), str(e)
    (True, "the quantization_annotation of node 'conv' cannot be read: no attribute 'output_qspec'")
    """

    def __init__(self, node: str, message: str) -> None:
        super().__init__(
            node, node, f"the quantization_annotation of node {node!r} cannot be read: {message}"
        )

    @staticmethod
    def of(node: str, error: str, message: str) -> MalformedAnnotationError:
        """An instance that also subclasses the built-in exception named ``error``.

        ``AttributeError`` and ``TypeError`` (the usual ones) have named classes; any other
        built-in exception gets a class made once and cached; an unknown name gets the base.
        """
        return _malformed_class(error)(node, message)


class AnnotationAttributeError(MalformedAnnotationError, AttributeError):
    """Upstream reads an attribute the annotation object lacks (``AttributeError``)."""

    upstream_class = "AttributeError"


class AnnotationTypeError(MalformedAnnotationError, TypeError):
    """Upstream calls ``len()`` on an ``input_qspec_map`` that has none (``TypeError``)."""

    upstream_class = "TypeError"


_MALFORMED_CLASSES: dict[str, type[MalformedAnnotationError]] = {
    "AttributeError": AnnotationAttributeError,
    "TypeError": AnnotationTypeError,
}


def _malformed_class(error: str) -> type[MalformedAnnotationError]:
    cls = _MALFORMED_CLASSES.get(error)
    if cls is None:
        builtin = getattr(builtins, error, None)
        if not (isinstance(builtin, type) and issubclass(builtin, Exception)):
            return MalformedAnnotationError
        try:
            cls = type(f"Annotation{error}", (MalformedAnnotationError, builtin), {})
        except TypeError:  # a built-in whose layout cannot be combined
            return MalformedAnnotationError
        cls.upstream_class = error
        _MALFORMED_CLASSES[error] = cls
    return cls


class UpstreamInternalError(PlanError):
    """Base of the failures upstream reports as ``torch._export.error.InternalError``.

    The core cannot import torch; :mod:`portmeta_fx` re-raises these as a class that derives
    from both this class and torch's ``InternalError``.

    Example
    -------
    >>> issubclass(DynamicQuantUsersError, UpstreamInternalError)
    True
    """

    upstream_class = "InternalError"


class ChooseQParamsUsersError(UpstreamInternalError):
    """A choose_qparams node does not have exactly two (non sym-size) users.

    Example
    -------
    >>> print(ChooseQParamsUsersError("linear", "cq", 1))
    choose_qparams node 'cq' (for dynamic input of 'linear') must have exactly 2 non-sym-size users, found 1
    """

    def __init__(self, node: str, subject: str, count: int) -> None:
        super().__init__(
            node,
            subject,
            f"choose_qparams node {subject!r} (for dynamic input of {node!r}) must have "
            f"exactly 2 non-sym-size users, found {count}",
        )


class DynamicQuantUsersError(UpstreamInternalError):
    """A dynamic quantize node has more than one (non sym-size) user.

    Example
    -------
    >>> print(DynamicQuantUsersError("linear", "q", 2))
    dynamic quantize node 'q' (for dynamic input of 'linear') must have a single non-sym-size user, found 2
    """

    def __init__(self, node: str, subject: str, count: int) -> None:
        super().__init__(
            node,
            subject,
            f"dynamic quantize node {subject!r} (for dynamic input of {node!r}) must have "
            f"a single non-sym-size user, found {count}",
        )


class MissingArgumentError(PlanError, IndexError):
    """A node the rules must look through has no positional arguments.

    Upstream crashes with a bare ``IndexError`` on ``node.args[0]``.

    Example
    -------
    >>> print(MissingArgumentError("conv", "v"))
    node 'v' (reached from annotated node 'conv') has no positional argument to follow
    """

    upstream_class = "IndexError"

    def __init__(self, node: str, subject: str) -> None:
        super().__init__(
            node,
            subject,
            f"node {subject!r} (reached from annotated node {node!r}) has no positional "
            "argument to follow",
        )


class NoUserError(PlanError, IndexError):
    """A node the rules expect a (non sym-size) user for has none.

    Upstream crashes with ``IndexError: pop from empty list``.

    Example
    -------
    >>> print(NoUserError("conv", "conv", "output"))
    node 'conv' has no non-sym-size user (output rule of annotated node 'conv')
    """

    upstream_class = "IndexError"

    def __init__(self, node: str, subject: str, rule: str) -> None:
        super().__init__(
            node,
            subject,
            f"node {subject!r} has no non-sym-size user ({rule} rule of annotated node {node!r})",
        )


class ScaleWithoutUsersError(PlanError, StopIteration):
    """The scale output of a choose_qparams node has no users.

    Upstream crashes with a bare ``StopIteration``.

    Example
    -------
    >>> print(ScaleWithoutUsersError("linear", "scale"))
    scale node 'scale' (for dynamic input of 'linear') has no user; expected the dynamic quantize node
    """

    upstream_class = "StopIteration"

    def __init__(self, node: str, subject: str) -> None:
        super().__init__(
            node,
            subject,
            f"scale node {subject!r} (for dynamic input of {node!r}) has no user; "
            "expected the dynamic quantize node",
        )


# --------------------------------------------------------------------------- portmeta.check

__all__ += ["PortingWarning", "PortingCheckError"]


def _inside(graph: str | None) -> str:
    """Which graph of the model the findings are in, for a check message."""
    if graph is None:
        return " in a subgraph (its name is not known)"
    return f" in subgraph {graph!r}" if graph else ""


def _first_findings(findings: tuple[object, ...], where: str | None, limit: int = 5) -> str:
    """The first ``limit`` findings, one per line with what to do, then where the rest are."""
    lines = []
    for f in findings[:limit]:
        line = f"\n  - {getattr(f, 'message', f)}"
        remedy, docs = getattr(f, "remedy", None), getattr(f, "docs", None)
        if remedy:
            line += f"\n    to fix: {remedy} ({docs})"
        lines.append(line)
    rest = len(findings) - limit
    if rest > 0:
        lines.append(f"\n  ... and {rest} more" + (f": see {where}" if where else ""))
    elif where:
        lines.append(f"\n  (all of them in {where})")
    return "".join(lines)


class PortingWarning(UserWarning):
    """The drop-in pass (``check="warn"``) found partitions whose q/dq nodes miss their values.

    ``findings`` holds the :class:`portmeta.check.Finding` records; the message gives their
    count, the subgraph whose pass found them (``graph``: a qualified name such as
    ``scan_combine_graph_0``; ``""`` for the top level, not named; ``None`` for a subgraph
    whose name is not known), the first ones one per line with what to do about each, then
    where to find them all (``where``, when given).

    Example
    -------
    >>> print(PortingWarning(("f1",), where="the pass's last_findings"))
    portmeta check: 1 finding
      - f1
      (all of them in the pass's last_findings)
    >>> print(PortingWarning(("f1",), graph="scan_combine_graph_0"))  # a loop body's pass
    portmeta check: 1 finding in subgraph 'scan_combine_graph_0'
      - f1
    >>> w = PortingWarning(tuple(f"f{i}" for i in range(7)))
    >>> print(w)
    portmeta check: 7 findings
      - f0
      - f1
      - f2
      - f3
      - f4
      ... and 2 more
    """

    def __init__(
        self, findings: tuple[object, ...], where: str | None = None, graph: str | None = ""
    ) -> None:
        self.findings = tuple(findings)
        self.graph = graph
        n = len(self.findings)
        super().__init__(
            f"portmeta check: {n} finding{'s' if n != 1 else ''}{_inside(graph)}"
            f"{_first_findings(self.findings, where)}"
        )


class PortingCheckError(PortmetaError):
    """The drop-in pass (``check="raise"``) found partitions whose q/dq nodes miss their values.

    Raised before anything is written; ``findings`` holds the
    :class:`portmeta.check.Finding` records and ``graph`` names the graph as
    :class:`PortingWarning` does.

    Example
    -------
    >>> e = PortingCheckError(("f1",))
    >>> print(e)
    portmeta check: 1 finding, nothing written
      - f1
      (all of them in the pass's last_findings)
    >>> print(str(PortingCheckError(("f1",), graph="scan_combine_graph_0")).splitlines()[0])
    portmeta check: 1 finding in subgraph 'scan_combine_graph_0', nothing written
    """

    def __init__(self, findings: tuple[object, ...], graph: str | None = "") -> None:
        self.findings = tuple(findings)
        self.graph = graph
        n = len(self.findings)
        super().__init__(
            f"portmeta check: {n} finding{'s' if n != 1 else ''}{_inside(graph)}, nothing written"
            + _first_findings(self.findings, where="the pass's last_findings")
        )
