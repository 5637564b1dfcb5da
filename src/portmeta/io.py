"""Files and the JSON form of a snapshot: one writer, one strict reader.

:func:`graph_to_dict` is the one writer of a snapshot's JSON form (also what
:func:`portmeta.fingerprint` hashes); :func:`graph_from_dict` is the one reader, strict: every
field is checked and a problem is refused with a one-line :class:`GraphFormatError` naming the
file, the node and the field. :func:`dump_graph` / :func:`load_graph` put them on disk. The file
helpers below them serve plans and the CLI too.

Example
-------
>>> from portmeta.testing import GraphBuilder
>>> b = GraphBuilder(); b.output(b.placeholder("x"))
>>> g = graph_from_dict(graph_to_dict(b.build())); list(g)
['x', 'output']
>>> graph_from_dict({"format": "portmeta.graph", "version": 1, "meta_keys": None, "nodes": [
...     {"name": "x", "op": "placeholdr", "target": {"name": "x", "kind": "name"}, "args": [],
...      "kwargs": {}, "users": [], "meta": {}, "annotation": None}]})
Traceback (most recent call last):
...
portmeta.errors.GraphFormatError: node 'x': unknown op 'placeholdr' (did you mean 'placeholder'?)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import codec
from ._text import did_you_mean
from .errors import CodecError, GraphBuildError, GraphFormatError
from .records import OPS, Annotation, Malformed, NodeRecord, QInput, QSpec, Target, TargetKind
from .snapshot import Snapshot, build_graph, graph_name_problem, meta_keys, records

__all__ = [
    "GRAPH_FORMAT",
    "GRAPH_SCHEMA_VERSION",
    "graph_to_dict",
    "graph_from_dict",
    "dump_graph",
    "load_graph",
    "MODEL_FORMAT",
    "MODEL_SCHEMA_VERSION",
    "model_to_dict",
    "model_from_dict",
    "dump_graphs",
    "load_graphs",
    "atomic_write_text",
    "read_json",
    "read_text",
    "parse_json",
    "json_error",
]

GRAPH_FORMAT = "portmeta.graph"
GRAPH_SCHEMA_VERSION = 1
MODEL_FORMAT = "portmeta.model"
MODEL_SCHEMA_VERSION = 1


def atomic_write_text(path: str | os.PathLike[str], text: str | bytes) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    A reader never sees a half-written file, and a failure leaves ``path`` untouched.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        data = text.encode("utf-8") if isinstance(text, str) else text
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_error(exc: json.JSONDecodeError) -> str:
    """The problem of a JSON parse failure in one phrase, with its line and column.

    Some of Python's messages end with "at" ("Unterminated string starting at"); the
    position then follows it instead of a second "at".

    Example
    -------
    >>> try:
    ...     json.loads('{"a": "b')
    ... except json.JSONDecodeError as exc:
    ...     print(json_error(exc))
    not valid JSON: Unterminated string starting at line 1 column 7
    """
    msg = exc.msg[: -len(" at")] if exc.msg.endswith(" at") else exc.msg
    return f"not valid JSON: {msg} at line {exc.lineno} column {exc.colno}"


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON document, turning every way it can fail into :class:`GraphFormatError`."""
    return parse_json(read_text(path), str(path))


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of a file that should hold JSON; :class:`GraphFormatError` if it cannot be
    read, is empty or is not UTF-8."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except IsADirectoryError:
        raise GraphFormatError("is a directory, not a file", source) from None
    except FileNotFoundError:
        raise GraphFormatError("no such file", source) from None
    except OSError as exc:
        raise GraphFormatError(f"cannot read: {exc.strerror or exc}", source) from None
    if not raw or raw.isspace():  # stops at the first other byte; strip() would copy
        raise GraphFormatError("file is empty", source)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GraphFormatError("not a text file (not UTF-8); expected JSON", source) from None


def parse_json(text: str, source: str) -> Any:
    """Parse :func:`read_text`'s text; :class:`GraphFormatError` (naming ``source``) if it is
    not JSON or is nested too deeply."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GraphFormatError(json_error(exc), source) from None
    except RecursionError:
        raise GraphFormatError("JSON is nested too deeply", source) from None


# --------------------------------------------------------------------------- writing


def _qspec_to_data(spec: QSpec | None) -> Any:
    return None if spec is None else {"kind": spec.kind, "is_dynamic": spec.is_dynamic}


def _annotation_to_data(ann: Annotation | None) -> Any:
    if ann is None:
        return None
    data: dict[str, Any] = {
        "inputs": [
            {"node": i.node, "qspec": _qspec_to_data(i.qspec), "is_node": i.is_node}
            for i in ann.inputs
        ],
        "output": _qspec_to_data(ann.output),
    }
    if ann.malformed is not None:
        data["malformed"] = {"error": ann.malformed.error, "message": ann.malformed.message}
    return data


def record_to_data(rec: NodeRecord) -> dict[str, Any]:
    """One record's JSON form (the ``nodes`` entries of :func:`graph_to_dict`).

    Example
    -------
    >>> record_to_data(NodeRecord.of("x", "placeholder", Target.named("x"), meta={"t": "T"}))
    {'name': 'x', 'op': 'placeholder', 'target': {'name': 'x', 'kind': 'name'}, 'args': [], 'kwargs': {}, 'users': [], 'meta': {'t': 'T'}, 'annotation': None}
    """
    encode = codec.encode
    data = {
        "name": rec.name,
        "op": rec.op,
        "target": {"name": rec.target.name, "kind": rec.target.kind.value},
        "args": [encode(a) for a in rec.args],
        "kwargs": {k: encode(v) for k, v in rec.kwargs},
        "users": list(rec.users),
        "meta": {k: encode(v) for k, v in rec.meta},
        "annotation": _annotation_to_data(rec.annotation),
    }
    if rec.foreign:
        data["foreign"] = True
    if rec.meta_owner is not None:
        data["meta_owner"] = rec.meta_owner
    return data


def graph_to_dict(graph: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON-ready data (the versioned schema :func:`load_graph` reads).

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x"))
    >>> d = graph_to_dict(b.build())
    >>> d["format"], d["version"], [n["name"] for n in d["nodes"]]
    ('portmeta.graph', 1, ['x', 'output'])
    """
    keys = meta_keys(graph)
    return {
        "format": GRAPH_FORMAT,
        "version": GRAPH_SCHEMA_VERSION,
        "meta_keys": None if keys is None else list(keys),
        "nodes": [record_to_data(rec) for rec in records(graph)],
    }


def dump_graph(graph: Snapshot, path: str | os.PathLike[str]) -> None:
    """Write a snapshot to ``path`` as JSON (atomically: temporary file, then rename).

    Example
    -------
    >>> import tempfile, os
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x"))
    >>> path = os.path.join(tempfile.mkdtemp(), "g.json")
    >>> dump_graph(b.build(), path); list(load_graph(path).nodes)
    ['x', 'output']
    """
    atomic_write_text(path, json.dumps(graph_to_dict(graph), indent=1) + "\n")


# --------------------------------------------------------------------------- reading


def load_graph(path: str | os.PathLike[str]) -> Snapshot:
    """Read a snapshot written by :func:`dump_graph` (or by ``portmeta_fx.dump``).

    Raises
    ------
    GraphFormatError
        Naming the file and the problem: unreadable, empty, not UTF-8, not JSON, nested too
        deeply, wrong format or schema version, or any problem :func:`graph_from_dict` finds.
    """
    return graph_from_dict(read_json(path), source=str(path))


def graph_from_dict(data: Any, *, source: str | None = None) -> Snapshot:
    """Build a snapshot from :func:`graph_to_dict` data, checking every field.

    Raises
    ------
    GraphFormatError
        On a wrong format or version, a missing or mistyped field, an unknown ``op`` or target
        kind, or records that do not form a graph (duplicates, unknown references, disagreeing
        users, an annotation input that is no node of the file, cycles). The message names
        ``source`` (a file name) when given, the node, and the problem.

    Example
    -------
    >>> graph_from_dict({"format": "portmeta.graph", "version": 99, "nodes": []})
    Traceback (most recent call last):
    ...
    portmeta.errors.GraphFormatError: unsupported graph schema version 99 (this portmeta reads version 1)
    """
    reader = _Reader(source)
    try:
        if not isinstance(data, dict):
            raise reader.fail(f"expected a JSON object at the top level, got {_json_type(data)}")
        fmt = data.get("format")
        if fmt != GRAPH_FORMAT:
            hint = ""
            if fmt == "portmeta.plan":
                hint = " (a plan file: give the graph it was made from)"
            elif fmt == MODEL_FORMAT:
                hint = " (a model file of several graphs: read it with load_graphs)"
            raise reader.fail(
                f"not a portmeta graph file (format is {fmt!r}, expected {GRAPH_FORMAT!r}){hint}"
            )
        version = data.get("version")
        if type(version) is not int or version != GRAPH_SCHEMA_VERSION:
            raise reader.fail(
                f"unsupported graph schema version {version!r} "
                f"(this portmeta reads version {GRAPH_SCHEMA_VERSION})"
            )
        keys = data.get("meta_keys")
        if keys is not None and not (
            isinstance(keys, list) and all(isinstance(k, str) for k in keys)
        ):
            raise reader.fail("field 'meta_keys' must be a list of strings or null")
        nodes = reader.field(data, "nodes", list, "graph")
        recs = [reader.node(item, i) for i, item in enumerate(nodes)]
        return build_graph(recs, meta_keys=keys)
    except GraphBuildError as exc:
        raise GraphFormatError(str(exc), source) from None
    except RecursionError:
        raise GraphFormatError("data is nested too deeply", source) from None


# --------------------------------------------------------------------------- models


def model_to_dict(graphs: Mapping[str, Snapshot]) -> dict[str, Any]:
    """A model's graphs as JSON-ready data: ``{"format": "portmeta.model", "version": 1,
    "graphs": {name: graph_to_dict(graph), ...}}``, the top level (``""``) first.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x")); g = b.build()
    >>> d = model_to_dict({"scan_combine_graph_0": g, "": g})
    >>> d["format"], list(d["graphs"])
    ('portmeta.model', ['', 'scan_combine_graph_0'])
    """
    names = _model_names(graphs, None)
    return {
        "format": MODEL_FORMAT,
        "version": MODEL_SCHEMA_VERSION,
        "graphs": {name: graph_to_dict(graphs[name]) for name in names},
    }


def _model_names(graphs: Mapping[str, Any], source: str | None) -> list[str]:
    """The graph names, top level first; :class:`GraphFormatError` on a bad name or no top."""
    for name in graphs:
        problem = graph_name_problem(name)
        if problem is not None:
            raise GraphFormatError(problem, source)
    if "" not in graphs:
        raise GraphFormatError("the model has no top-level graph (named '')", source)
    return ["", *(n for n in graphs if n)]


def model_from_dict(data: Any, *, source: str | None = None) -> dict[str, Snapshot]:
    """A model's graphs by qualified name, top level (``""``) first, from
    :func:`model_to_dict` data or from a single graph's :func:`graph_to_dict` data (read as
    ``{"": graph}``); each graph is read by :func:`graph_from_dict`.

    Raises
    ------
    GraphFormatError
        One line naming ``source``, the graph (for a model) and the problem: neither format,
        another model version, ``graphs`` not a non-empty object, no top-level graph, a graph
        name with ``:`` in it, or whatever :func:`graph_from_dict` refuses in a graph.

    Example
    -------
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x")); g = b.build()
    >>> list(model_from_dict(graph_to_dict(g)))
    ['']
    >>> model_from_dict({"format": "portmeta.model", "version": 1, "graphs": {"a": None}})
    Traceback (most recent call last):
    ...
    portmeta.errors.GraphFormatError: the model has no top-level graph (named '')
    """
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt != MODEL_FORMAT:
        return {"": graph_from_dict(data, source=source)}
    version = data.get("version")
    if type(version) is not int or version != MODEL_SCHEMA_VERSION:
        raise GraphFormatError(
            f"unsupported model schema version {version!r} "
            f"(this portmeta reads version {MODEL_SCHEMA_VERSION})",
            source,
        )
    graphs = data.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise GraphFormatError(
            f"field 'graphs' must be a non-empty object, got {_json_type(graphs)}", source
        )
    out: dict[str, Snapshot] = {}
    for name in _model_names(graphs, source):
        try:
            out[name] = graph_from_dict(graphs[name])
        except GraphFormatError as exc:
            raise GraphFormatError(f"graph {name!r}: {exc.problem}", source) from None
    return out


def dump_graphs(graphs: Mapping[str, Snapshot], path: str | os.PathLike[str]) -> None:
    """Write a model's graphs to ``path`` (atomically): a model file
    (:func:`model_to_dict`) when there are subgraphs, a plain graph file
    (:func:`dump_graph`) when there is only the top level (``{"": graph}``).

    Example
    -------
    >>> import tempfile, os
    >>> from portmeta.testing import GraphBuilder
    >>> b = GraphBuilder(); b.output(b.placeholder("x")); g = b.build()
    >>> path = os.path.join(tempfile.mkdtemp(), "m.json")
    >>> dump_graphs({"": g, "scan_combine_graph_0": g}, path); list(load_graphs(path))
    ['', 'scan_combine_graph_0']
    """
    if list(graphs) == [""]:
        dump_graph(graphs[""], path)
        return
    atomic_write_text(path, json.dumps(model_to_dict(graphs), indent=1) + "\n")


def load_graphs(path: str | os.PathLike[str]) -> dict[str, Snapshot]:
    """Read the graphs :func:`dump_graphs` (or ``portmeta_fx.dump``) wrote, by qualified
    name, top level (``""``) first; a single-graph file gives ``{"": graph}``.

    Raises
    ------
    GraphFormatError
        As :func:`load_graph`, and on what :func:`model_from_dict` refuses.
    """
    return model_from_dict(read_json(path), source=str(path))


_KINDS = {k.value: k for k in TargetKind}


class _Reader:
    """The checks of :func:`graph_from_dict`, with messages that say where."""

    def __init__(self, source: str | None) -> None:
        self.source = source
        # a file names a few operators many times over: each (name, kind) is one Target
        self.targets: dict[tuple[str, str], Target] = {}

    def fail(self, problem: str) -> GraphFormatError:
        return GraphFormatError(problem, self.source)

    def field(self, obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
        if key not in obj:
            raise self.fail(f"{where}: missing field {key!r}")
        value = obj[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(
                f"{where}: field {key!r} must be {_KINDS_TEXT[kind]}, got {_json_type(value)}"
            )
        return value

    def value(self, data: Any, where: str) -> Any:
        try:
            return codec.decode(data)
        except CodecError as exc:
            raise self.fail(f"{where}: {exc}") from None

    def values(self, items: list[Any], where: str) -> tuple[Any, ...]:
        """Decoded ``items``; the message of the first that fails names ``where``."""
        try:
            return tuple(map(codec.decode, items))
        except CodecError as exc:
            raise self.fail(f"{where}: {exc}") from None

    def pairs(self, mapping: dict[str, Any], where: str) -> tuple[tuple[str, Any], ...]:
        """``(key, decoded value)`` pairs; the message of the first that fails names its key."""
        try:
            return tuple(zip(mapping, map(codec.decode, mapping.values()), strict=True))
        except CodecError:
            for key, data in mapping.items():
                self.value(data, f"{where}[{key!r}]")
            raise

    def target(self, data: dict[str, Any], where: str) -> Target:
        name = self.field(data, "name", str, f"{where}.target")
        kind = self.field(data, "kind", str, f"{where}.target")
        found = self.targets.get((name, kind))
        if found is None:
            if kind not in _KINDS:
                raise self.fail(
                    f"{where}.target: unknown kind {kind!r} (expected one of {sorted(_KINDS)})"
                )
            found = self.targets[name, kind] = Target(name, _KINDS[kind])
        return found

    def qspec(self, data: Any, where: str) -> QSpec | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            raise self.fail(f"{where}: qspec must be an object or null, got {_json_type(data)}")
        kind = self.field(data, "kind", str, where)
        dyn = data.get("is_dynamic")
        if dyn is not None and not isinstance(dyn, bool):
            raise self.fail(f"{where}: is_dynamic must be true, false or null")
        return QSpec(kind, dyn)

    def annotation(self, data: Any, where: str) -> Annotation | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            raise self.fail(f"{where}: annotation must be an object or null")
        inputs = []
        for i, item in enumerate(self.field(data, "inputs", list, where)):
            iw = f"{where}.inputs[{i}]"
            if not isinstance(item, dict):
                raise self.fail(f"{iw}: must be an object, got {_json_type(item)}")
            is_node = self.field(item, "is_node", bool, iw) if "is_node" in item else True
            inputs.append(
                QInput(
                    self.field(item, "node", str, iw), self.qspec(item.get("qspec"), iw), is_node
                )
            )
        if "output" not in data:
            raise self.fail(f"{where}: missing field 'output'")
        malformed = None
        bad = data.get("malformed")
        if bad is not None:
            mw = f"{where}.malformed"
            if not isinstance(bad, dict):
                raise self.fail(f"{mw}: must be an object or null, got {_json_type(bad)}")
            malformed = Malformed(
                self.field(bad, "error", str, mw), self.field(bad, "message", str, mw)
            )
        return Annotation(tuple(inputs), self.qspec(data["output"], f"{where}.output"), malformed)

    def node(self, data: Any, index: int) -> NodeRecord:
        if not isinstance(data, dict):
            raise self.fail(f"nodes[{index}]: must be an object, got {_json_type(data)}")
        name = self.field(data, "name", str, f"nodes[{index}]")
        where = f"node {name!r}"
        op = self.field(data, "op", str, where)
        if op not in OPS:
            raise self.fail(f"{where}: unknown op {op!r}{did_you_mean(op, OPS) or _OPS_TEXT}")
        target = self.target(self.field(data, "target", dict, where), where)
        args = self.values(self.field(data, "args", list, where), f"{where}.args")
        kwargs = self.pairs(self.field(data, "kwargs", dict, where), f"{where}.kwargs")
        user_list = self.field(data, "users", list, where)
        if not all(type(u) is str for u in user_list):
            raise self.fail(f"{where}: users must be node names (strings)")
        meta = self.pairs(self.field(data, "meta", dict, where), f"{where}.meta")
        if "annotation" not in data:
            raise self.fail(f"{where}: missing field 'annotation'")
        foreign = self.field(data, "foreign", bool, where) if "foreign" in data else False
        meta_owner = data.get("meta_owner")
        if meta_owner is not None and not isinstance(meta_owner, str):
            raise self.fail(f"{where}: field 'meta_owner' must be a node name or null")
        return NodeRecord(
            name=name,
            op=op,
            target=target,
            args=args,
            kwargs=kwargs,
            users=tuple(user_list),
            meta=meta,
            annotation=self.annotation(data["annotation"], f"{where}.annotation"),
            foreign=foreign,
            meta_owner=meta_owner,
        )


_OPS_TEXT = f" (expected one of {', '.join(sorted(OPS))})"
_KINDS_TEXT: dict[type, str] = {
    str: "a string",
    list: "an array",
    dict: "an object",
    bool: "a boolean",
    int: "an integer",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
