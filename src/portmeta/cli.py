"""The ``portmeta`` command line: plan, explain, diff, draw and check saved graphs; run the demo.

Everything here works on saved files and never imports torch; ``portmeta demo`` runs the torch
side (:mod:`portmeta_fx.demo`) in a subprocess. Exit status: 0 on success, 2 on bad input
(a message on stderr names the file and the problem), 1 when the demo's check fails, when
``portmeta diff --exit-code`` finds differences or when ``portmeta check`` finds something.

Example
-------
>>> args = build_parser().parse_args(["plan", "graph.json", "--profile", "legacy", "--json"])
>>> args.graph, args.profile, args.json
('graph.json', 'legacy', True)
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Literal, NoReturn

import attrs

from . import __version__
from .check import check, findings_to_json, format_findings, unmatched_writes
from .check import summary as check_summary
from .diff import diff_plans, format_diff
from .draw import FORMATS, write_drawing
from .errors import CliError, GraphFormatError, PlanError, PortmetaError, UnknownNodeError
from .explain import explain
from .fingerprint import fingerprint
from .io import (
    GRAPH_FORMAT,
    MODEL_FORMAT,
    atomic_write_text,
    graph_from_dict,
    load_graphs,
    model_from_dict,
    read_json,
)
from .plan import PLAN_FORMAT, Plan, plan, plan_writes
from .profiles import DYNAMIC_CHAINS, PROFILES, Profile, get_profile
from .report import by_graph, format_diagnostics, format_table, summary
from .snapshot import Snapshot, merge_graphs

__all__ = ["main", "build_parser", "CliError"]

PROG = "portmeta"

#: The picture formats ``portmeta draw -o`` accepts, as the help shows them.
_SUFFIXES = ", ".join(FORMATS)


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors say which command they are about."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _formatter(prog: str) -> argparse.RawDescriptionHelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _epilog(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


# --------------------------------------------------------------------------- helpers


def _profile(args: argparse.Namespace) -> Profile:
    where = f"{args.graph}: " if getattr(args, "graph", None) else ""
    try:
        profile = get_profile(args.profile or "torchao")
    except PortmetaError as exc:
        raise CliError(f"{where}cannot use --profile: {exc}") from None
    if getattr(args, "dynamic_chain", None) is not None:
        profile = attrs.evolve(profile, dynamic_chain=args.dynamic_chain)
    if args.keys is not None:
        keys = [k.strip() for k in args.keys.split(",") if k.strip()]
        if not keys:
            raise CliError(
                f"{where}--keys: give at least one metadata key, e.g. --keys stack_trace"
            )
        try:
            profile = attrs.evolve(profile, keys=tuple(keys))
        except PortmetaError as exc:
            raise CliError(f"{where}--keys: {exc}") from None
    return profile


def _refuse_with_plan(args: argparse.Namespace, *options: str) -> None:
    """Refuse planning options given with ``--plan``: the plan was made already."""
    for option in options:
        if args.plan and getattr(args, option[2:].replace("-", "_")) is not None:
            raise CliError(
                f"{args.plan}: {option} cannot be used with --plan (the plan's profile is used)"
            )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _check_output(out: str, *inputs: str) -> None:
    for src in inputs:
        if _same_file(out, src):
            raise CliError(f"{out}: output file is the input file {src}; choose another name")
    if os.path.isdir(out):
        raise CliError(f"{out}: is a directory; give an output file name")


def _write(out: str, text: str | bytes) -> None:
    try:
        atomic_write_text(out, text)
    except OSError as exc:
        raise CliError(f"{out}: cannot write: {exc.strerror or exc}") from None


def _plan_graph(
    path: str,
    graph: Snapshot,
    profile: Profile,
    errors: Literal["raise", "collect"],
    *,
    shown_only: bool = False,
) -> Plan:
    """``graph``'s plan; ``shown_only`` for a plan only printed as a table, never saved or
    checked, which leaves its fingerprint empty (hashing every node costs about as much as
    planning)."""
    try:
        if shown_only:
            deltas, diagnostics = plan_writes(graph, profile, errors)
            return Plan(deltas, diagnostics, "", profile)
        return plan(graph, profile, errors)
    except PlanError as exc:
        raise CliError(
            f"{path}: planning failed at annotated node {exc.node!r} "
            f"({type(exc).__name__}, upstream {exc.upstream_class}): {exc}"
        ) from None
    except PortmetaError as exc:
        raise CliError(f"{path}: {exc}") from None


def _load(args: argparse.Namespace) -> Snapshot:
    """The graph a command works on: a graph file's graph; for a model file (``portmeta_fx.dump``
    of a model with ``scan`` / ``while_loop`` subgraphs) all its graphs merged, a subgraph's
    nodes named ``GRAPH:node`` (:func:`portmeta.merge_graphs`), or with ``--graph NAME`` that
    graph alone, under its own node names."""
    return _graphs_as_one(load_graphs(args.graph), args.graph, getattr(args, "subgraph", None))


def _graphs_as_one(graphs: dict[str, Snapshot], path: str, name: str | None) -> Snapshot:
    if name is None:
        try:
            return merge_graphs(graphs)
        except PortmetaError as exc:
            raise CliError(f"{path}: {exc}") from None
    if name not in graphs:
        known = ", ".join(repr(n) for n in graphs)
        raise CliError(f"{path}: --graph: no graph named {name!r} (it holds {known})")
    return graphs[name]


def _print(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _print_by_graph(lines: str) -> None:
    """After the summary of a model file's graphs merged, the counts of each graph."""
    if lines:
        _print(lines)


# --------------------------------------------------------------------------- commands


def cmd_plan(args: argparse.Namespace) -> int:
    profile = _profile(args)
    graph = _load(args)
    shown_only = not args.output and not args.json
    p = _plan_graph(args.graph, graph, profile, args.errors, shown_only=shown_only)
    if args.output:
        _check_output(args.output, args.graph)
        _write(args.output, p.to_json() + "\n")
    if args.json and not args.output:
        _print(p.to_json())
        return 0
    if args.json:
        return 0
    _print(format_table(graph, p))
    diags = format_diagnostics(p)
    if diags:
        _print("\n" + diags)
    _print("\n" + summary(graph, p))
    _print_by_graph(by_graph(graph, p))
    if args.output:
        print(f"plan written to {args.output}", file=sys.stderr)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    profile = _profile(args)
    graph = _load(args)
    if args.node not in graph:
        raise UnknownNodeError(args.node, args.graph, known=graph)
    try:
        text = explain(graph, args.node, profile=profile)
    except UnknownNodeError:
        raise UnknownNodeError(args.node, args.graph, known=graph) from None
    except PortmetaError as exc:
        raise CliError(f"{args.graph}: {exc}") from None
    _print(text)
    return 0


def _plan_to_use(
    args: argparse.Namespace,
    graph_path: str,
    graph: Snapshot | None,
    plan_file: str | Plan | None,
    *,
    verb: str,
    aside: str = "",
    say_planned: bool = False,
    refuse_other: bool = False,
) -> Plan:
    """The plan a command works with; for every command that takes ``--plan``.

    ``plan_file`` (a path, or a plan already read from one) is used as saved, with a note on
    stderr when it was planned from another snapshot than ``graph`` ("... than G.json{aside};
    {verb} it anyway"). Without it, ``graph`` is planned now under ``--profile`` / ``--keys``
    with errors collected (so a graph where upstream raises still gives a plan); with
    ``say_planned`` a note says so.
    """
    if plan_file is None:
        if graph is None:
            raise CliError(f"{graph_path}: no graph to plan")
        profile = _profile(args)
        if say_planned:
            print(
                f"{PROG}: note: {graph_path} is a graph file; {verb} the plan made from it now "
                f"(profile {profile.name}, errors collected)",
                file=sys.stderr,
            )
        return _plan_graph(graph_path, graph, profile, "collect")
    p = Plan.load(plan_file) if isinstance(plan_file, str) else plan_file
    if graph is not None and fingerprint(graph) != p.fingerprint:
        where = plan_file if isinstance(plan_file, str) else "the plan"
        if refuse_other:
            raise CliError(
                f"{where}: planned from another graph than {graph_path}{aside}; plan it again "
                f"(portmeta plan {graph_path} -o PLAN.json)"
            )
        print(
            f"{PROG}: note: {where} was planned from a different snapshot than "
            f"{graph_path}{aside}; {verb} it anyway",
            file=sys.stderr,
        )
    return p


def _json_kind(data: object) -> str:
    """What a JSON document that is not an object is, in words."""
    if isinstance(data, list):
        return "a JSON list"
    if isinstance(data, str):
        return "a JSON string"
    if isinstance(data, bool):
        return f"JSON {str(data).lower()}"
    if isinstance(data, (int, float)):
        return "a JSON number"
    return "JSON null" if data is None else f"a JSON {type(data).__name__}"


def _read_plan_or_graph(path: str) -> Plan | Snapshot:
    """A plan file or a graph file, read and checked (nothing is planned yet)."""
    data = read_json(path)
    expected = f"expected {PLAN_FORMAT!r} or {GRAPH_FORMAT!r}"
    if not isinstance(data, dict):
        raise GraphFormatError(
            f"not a portmeta plan or graph file (it holds {_json_kind(data)}; {expected} "
            "in an object's 'format')",
            path,
        )
    fmt = data.get("format")
    if fmt == PLAN_FORMAT:
        return Plan.from_dict(data, source=path)
    if fmt == GRAPH_FORMAT:
        return graph_from_dict(data, source=path)
    if fmt == MODEL_FORMAT:
        return _graphs_as_one(model_from_dict(data, source=path), path, None)
    raise GraphFormatError(
        f"not a portmeta plan or graph file (format is {fmt!r}, {expected})", path
    )


def cmd_diff(args: argparse.Namespace) -> int:
    paths = (args.plan_a, args.plan_b)
    read = [_read_plan_or_graph(path) for path in paths]  # both files, before planning either
    a, b = (
        _plan_to_use(args, path, None, item, verb="comparing")
        if isinstance(item, Plan)
        else _plan_to_use(args, path, item, None, verb="comparing", say_planned=True)
        for path, item in zip(paths, read, strict=True)
    )
    d = diff_plans(a, b)
    if args.json:
        _print(json.dumps(d.to_dict(), indent=1))
    else:
        _print(format_diff(d, "A", "B"))
    return 1 if (args.exit_code and not d.agree) else 0


def cmd_draw(args: argparse.Namespace) -> int:
    graph = _load(args)
    _refuse_with_plan(args, "--profile", "--dynamic-chain", "--keys")
    p = _plan_to_use(args, args.graph, graph, args.plan, verb="drawing", refuse_other=True)
    _check_output(args.output, args.graph, *([args.plan] if args.plan else []))
    try:
        fmt = write_drawing(graph, p, args.output)
    except OSError as exc:
        raise CliError(f"{args.output}: cannot write: {exc.strerror or exc}") from None
    except PortmetaError as exc:
        text = str(exc)
        raise CliError(text if args.output in text else f"{args.output}: {text}") from None
    print(f"wrote {args.output} ({fmt})", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``portmeta check``: the findings of :func:`portmeta.check`; exit 1 when there are any."""
    graph = _load(args)
    _refuse_with_plan(args, "--profile", "--dynamic-chain")
    if args.ported:
        how = " (fine with --ported, for a snapshot taken after porting)"
    else:
        how = " (give --ported if the graph was taken after porting)"
    # --keys names the keys the check compares, not a derived profile: plan with the profile alone
    plain = argparse.Namespace(
        graph=args.graph,
        profile=args.profile or "torchao",
        dynamic_chain=args.dynamic_chain,
        keys=None,
    )
    p = _plan_to_use(
        plain,
        args.graph,
        graph,
        args.plan,
        verb="checking",
        aside=how,
        refuse_other=not args.ported,
    )
    keys = _check_keys(args, p.profile)
    try:
        found = check(graph, plan=p, ported=args.ported, keys=keys)
    except UnknownNodeError as exc:
        raise CliError(f"{args.plan}: {exc}") from None
    except PortmetaError as exc:
        raise CliError(f"{args.graph}: {exc}") from None
    skipped = unmatched_writes(graph, p.deltas)
    if skipped:
        n = len(skipped)
        print(
            f"{PROG}: note: skipped {n} write{'s' if n != 1 else ''} of {args.plan} to or from "
            f"nodes {args.graph} lacks (weight quantize nodes folded after porting, say)",
            file=sys.stderr,
        )
    if args.format == "json":
        _print(findings_to_json(found))
    else:
        if found:
            _print(format_findings(found) + "\n\n")
        _print(check_summary(found, graph, p.profile, keys))
        _print_by_graph(by_graph(graph, p, findings=[f.node for f in found]))
    return 1 if found else 0


def _check_keys(args: argparse.Namespace, profile: Profile) -> tuple[str, ...] | None:
    """The keys ``--keys`` asks the check to compare (``None``: the check's default)."""
    if args.keys is None:
        return None
    keys = tuple(k.strip() for k in args.keys.split(",") if k.strip())
    unknown = [k for k in keys if k not in profile.keys]
    if not keys or unknown:
        raise CliError(
            f"{args.graph}: --keys: give some of the profile's keys "
            f"{','.join(profile.keys)} (got {args.keys!r})"
        )
    return keys


def _add_check_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "check",
        help="find q/dq nodes the pass leaves without their partition's values",
        description="Find where the porting rules leave a partition's quantize / dequantize / "
        "choose_qparams nodes without the values of the annotated node they belong to "
        "(unported_input, unported_output), or with the values of an annotated node whose "
        "q/dq chain they are not on (foreign_write). Works on a snapshot taken before porting, or with --ported on one "
        "taken after it.",
        formatter_class=_formatter,
        epilog=_epilog(
            """
            examples:
              portmeta check graph.json
              portmeta check graph.json --plan plan.json --format json
              portmeta check converted.json --ported --keys stack_trace,quantization_tag

            output (a table, each finding's message, then a summary line):
              node  kind            anchor  cause      keys
              ----  --------------  ------  ---------  ----------------
              dq_1  unported_input  cat     container  quantization_tag

            exit status: 0 no findings, 1 findings, 2 bad input
            """
        ),
    )
    p.add_argument("graph", metavar="GRAPH.json", help="saved graph snapshot (or model file)")
    _add_graph_option(p)
    p.add_argument(
        "--plan", metavar="PLAN.json", help="plan to check with (default: plan the graph now)"
    )
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="a table and a summary line (text, default) or a JSON document (json)",
    )
    p.add_argument(
        "--ported",
        action="store_true",
        help="the graph was taken after porting (from_fx of the converted model, maybe edited "
        "by later passes): its values are final; the plan only explains them",
    )
    p.add_argument(
        "--profile",
        metavar="{" + ",".join(PROFILES) + "}",
        help="upstream version to plan with (default: torchao; not with --plan, whose "
        "profile is used)",
    )
    _add_dynamic_chain_option(p, "not with --plan; ")
    p.add_argument(
        "--keys",
        metavar="K1,K2",
        help="comma-separated keys to compare, any difference on them being a finding "
        "(default: all the profile's keys, a finding needing a quantization_tag difference)",
    )
    p.set_defaults(func=cmd_check)


def cmd_demo(args: argparse.Namespace) -> int:
    missing = [m for m in ("torch", "torchao") if _find_spec(m) is None]
    if not _has_demo_module():
        missing.append("portmeta_fx.demo")
    if missing:
        raise CliError(
            f"demo needs {', '.join(missing)} (not installed in {sys.executable}); install "
            "torch==2.13.0 first, then pip install -e '.[fx,torchao]' (or run `make demo`)"
        )
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CliError(f"{args.out}: exists and is not a directory; give --out a folder")
    cmd = [sys.executable, "-m", "portmeta_fx.demo", "--out", args.out]
    if args.dynamic:
        cmd.append("--dynamic")
    env = dict(os.environ)
    # torch warns at import when numpy is missing; the demo does not need numpy.
    quiet = "ignore:Failed to initialize NumPy"
    env["PYTHONWARNINGS"] = ",".join(filter(None, (env.get("PYTHONWARNINGS"), quiet)))
    return subprocess.call(cmd, env=env)


def _has_demo_module() -> bool:
    """Whether ``portmeta_fx/demo.py`` is installed, without importing ``portmeta_fx`` (torch)."""
    spec = _find_spec("portmeta_fx")
    folders = getattr(spec, "submodule_search_locations", None) or ()
    return any(os.path.isfile(os.path.join(f, "demo.py")) for f in folders)


def _find_spec(name: str) -> object | None:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


# --------------------------------------------------------------------------- parser


def _add_graph_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--graph",
        dest="subgraph",
        metavar="NAME",
        help="of a model file, work on graph NAME alone, under its own node names ('' the top "
        "level; default: every graph, a subgraph's nodes named GRAPH:node)",
    )


def _add_profile_options(p: argparse.ArgumentParser, scope: str = "") -> None:
    p.add_argument(
        "--profile",
        metavar="{" + ",".join(PROFILES) + "}",
        help=f"{scope}upstream version to reproduce (default: torchao)",
    )
    _add_dynamic_chain_option(p, scope)
    p.add_argument(
        "--keys",
        metavar="K1,K2",
        help=f"{scope}comma-separated metadata keys to copy, replacing the profile's list "
        "(default: stack_trace,quantization_tag)",
    )


def _add_dynamic_chain_option(p: argparse.ArgumentParser, scope: str = "") -> None:
    p.add_argument(
        "--dynamic-chain",
        choices=DYNAMIC_CHAINS,
        help=f"{scope}which choose_qparams chain a dynamically quantized input's values go to: "
        "'search' (upstream's search from the input, the profile's default) or 'feeding' (the "
        "chain feeding each consumer, for graphs whose shared chains a later pass duplicated)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``portmeta`` command."""
    parser = _Parser(
        prog=PROG,
        formatter_class=_formatter,
        description="Plan, explain, compare and draw the metadata PT2E quantization's "
        "PortNodeMetaForQDQ pass ports onto quantize/dequantize nodes.",
        epilog=_epilog(
            """
            examples:
              portmeta demo --out portmeta-out        # quantize a small model, save its graph
              portmeta plan portmeta-out/graph.json   # what the pass writes, as a table
              portmeta explain portmeta-out/graph.json dequantize_per_tensor_default
              portmeta diff a.json b.json
              portmeta draw portmeta-out/graph.json -o plan.svg
              portmeta check portmeta-out/graph.json  # q/dq nodes left without their values

            exit status: 0 success, 1 demo check failed (or diff --exit-code found
            differences, or check found something), 2 bad input (message on stderr names the file and the problem)
            """
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "plan",
        help="plan a saved graph: the writes the pass performs",
        description="Compute the metadata writes PortNodeMetaForQDQ performs on a saved graph "
        "(a portmeta graph JSON, e.g. the demo's graph.json) and print them as a table.",
        formatter_class=_formatter,
        epilog=_epilog(
            """
            examples:
              portmeta plan graph.json
              portmeta plan graph.json --profile legacy --errors collect
              portmeta plan graph.json --keys stack_trace --json
              portmeta plan graph.json -o plan.json
              portmeta plan model.json                  # every graph: subgraph nodes GRAPH:node
              portmeta plan model.json --graph scan_combine_graph_0 -o body.plan.json

            output (table, then diagnostics, then a summary line):
              target  op                     key               value   source  rule
              ------  ---------------------  ----------------  ------  ------  ------------
              dq      dequantize_per_tensor  quantization_tag  'P0'    relu    static_input
            """
        ),
    )
    p.add_argument("graph", metavar="GRAPH.json", help="saved graph snapshot (or model file)")
    _add_graph_option(p)
    _add_profile_options(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON instead of a table")
    p.add_argument(
        "--errors",
        choices=("raise", "collect"),
        default="raise",
        help="where upstream raises: stop with exit 2 (raise, default) or record an error "
        "diagnostic and go on (collect)",
    )
    p.add_argument("-o", "--output", metavar="PLAN.json", help="write the plan JSON to this file")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "explain",
        help="explain why a node gets (or does not get) each key",
        description="Explain, key by key, what the plan writes on NODE and why, or why nothing.",
        formatter_class=_formatter,
        epilog=_epilog(
            """
            examples:
              portmeta explain model.json scan_combine_graph_0:dequantize_per_tensor_default
              portmeta explain graph.json dq
              node 'dq': call_function quantized_decomposed.dequantize_per_tensor.default (dequantize)
                stack_trace: not written: source 'relu' has no 'stack_trace'
                quantization_tag: 'P0'
                  <- 'relu' by static_input (annotated node 'relu'; path x -> q -> dq -> relu)
            """
        ),
    )
    p.add_argument("graph", metavar="GRAPH.json", help="saved graph snapshot (or model file)")
    p.add_argument("node", metavar="NODE", help="node name (GRAPH:node for a node of a subgraph)")
    _add_graph_option(p)
    _add_profile_options(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser(
        "diff",
        help="compare two plans (or the plans of two graphs)",
        description="Compare two plans by their final state: writes only in A, only in B, "
        "(node, key) pairs whose final value, source or rule differ, and diagnostics. A and B "
        "are plan files (portmeta plan -o) or graph files; a graph is planned now, with "
        "--profile and --keys and with errors collected (a note on stderr says so).",
        formatter_class=_formatter,
        epilog=_epilog(
            """
            examples:
              portmeta plan graph.json -o a.json
              portmeta plan graph.json --profile legacy -o b.json
              portmeta diff a.json b.json
              note: profiles differ: torchao vs legacy
              plans agree
              portmeta diff before/graph.json after/graph.json   # graphs: planned now

            exit status 0 whether or not the plans agree (1 on differences with --exit-code)
            """
        ),
    )
    p.add_argument("plan_a", metavar="A.json", help="plan file, or graph file (planned now)")
    p.add_argument("plan_b", metavar="B.json", help="plan file, or graph file (planned now)")
    _add_profile_options(p, "for graph files: ")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.add_argument(
        "--exit-code", action="store_true", help="exit with status 1 when the plans differ"
    )
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "draw",
        help=f"draw a graph and its plan ({_SUFFIXES})",
        description="Draw the graph with each written node colored by rule and labelled with "
        "the values the plan leaves on it, annotated nodes marked and a dashed metadata-flow "
        "arrow from each source to its targets. The format follows the extension of -o: .svg "
        "and .png need Graphviz 'dot'; .dot and .gv (DOT text) do not.",
        formatter_class=_formatter,
        epilog=_epilog(
            """
            examples:
              portmeta draw graph.json -o plan.svg
              portmeta draw graph.json --plan plan.json -o plan.png
              portmeta draw graph.json --profile legacy -o plan.dot
              portmeta draw graph.json -o plan.gv
            """
        ),
    )
    p.add_argument("graph", metavar="GRAPH.json", help="saved graph snapshot (or model file)")
    _add_graph_option(p)
    p.add_argument("--plan", metavar="PLAN.json", help="plan to draw (default: plan the graph now)")
    _add_profile_options(p, "without --plan: ")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help=_SUFFIXES)
    p.set_defaults(func=cmd_draw)

    _add_check_parser(sub)

    p = sub.add_parser(
        "demo",
        help="quantize a small model with torchao and show the plan (needs torch)",
        description="Export conv -> adaptive avg pool -> hardtanh -> view -> linear, quantize it "
        "with torchao's prepare_pt2e/convert_pt2e and portmeta's pass swapped in, print the plan, "
        "check it against torchao's own pass, and write graph.json, plan.json, plan.dot and "
        "plan.svg to DIR.",
        formatter_class=_formatter,
        epilog=_epilog(
            """
            examples:
              portmeta demo
              portmeta demo --out /tmp/pm --dynamic

            exit status: 0 the plan agrees with torchao, 1 it does not, 2 torch missing
            """
        ),
    )
    p.add_argument(
        "--out", metavar="DIR", default="portmeta-out", help="output folder (default: portmeta-out)"
    )
    p.add_argument("--dynamic", action="store_true", help="quantize the linear's input dynamically")
    p.set_defaults(func=cmd_demo)
    return parser


# --------------------------------------------------------------------------- entry point


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    # one command is one short pass over data that lives until it ends: the cyclic collector
    # would only walk the whole loaded graph again and again (on a 120k-node file, `plan` took
    # 6.6 s with it and 4.2 s without); restored for callers that run main() in their process
    collecting = gc.isenabled()
    gc.disable()
    try:
        return func(args)
    except CliError as exc:
        return _fail(str(exc))
    except PortmetaError as exc:
        return _fail(str(exc))
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            _quiet_stdout()
            return 0
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except RecursionError:
        files = [getattr(args, a, None) for a in ("graph", "plan", "plan_a", "plan_b")]
        named = ", ".join(f for f in files if isinstance(f, str))
        return _fail(f"{named or 'input'}: data is nested too deeply")
    except Exception as exc:
        if os.environ.get("PORTMETA_DEBUG"):
            raise
        return _fail(
            f"internal error: {type(exc).__name__}: {exc} "
            "(set PORTMETA_DEBUG=1 for a traceback, and please report it)"
        )
    finally:
        if collecting:
            gc.enable()


def _quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so interpreter shutdown stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
