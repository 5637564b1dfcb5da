"""Count code lines under folders: lines that are not blank, comments or docstrings.

A docstring is the first statement of a module, class or function when it is a string
literal; a line holding both code and a comment counts as code. ``make lines`` runs it on
``src`` and ``adapters``; docs/performance.md quotes its figures.

    python bench/lines.py src adapters [--per-file]
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import tokenize
from pathlib import Path

_NOT_CODE = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}


def count(path: Path) -> tuple[int, int]:
    """The code lines and docstring lines of one Python file."""
    source = path.read_text(encoding="utf-8")
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    code: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in _NOT_CODE:
            code.update(n for n in range(token.start[0], token.end[0] + 1) if n not in docstrings)
    return len(code), len(docstrings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--per-file", action="store_true", help="a line per file too")
    args = parser.parse_args(argv)
    total_code = total_doc = 0
    for folder in args.folders:
        for path in sorted(folder.rglob("*.py")):
            code, doc = count(path)
            total_code, total_doc = total_code + code, total_doc + doc
            if args.per_file:
                print(f"{code:6} {doc:6} {path}")
    print(f"code lines {total_code}, docstring lines {total_doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
