"""Count code lines: not blank, not comments, not docstrings (module/class/function docstrings)."""
import ast, io, sys, tokenize, pathlib
def count(path):
    src = pathlib.Path(path).read_text()
    tree = ast.parse(src)
    doc = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            b = node.body
            if b and isinstance(b[0], ast.Expr) and isinstance(b[0].value, ast.Constant) and isinstance(b[0].value.value, str):
                doc.update(range(b[0].lineno, b[0].end_lineno + 1))
    code = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        for l in range(tok.start[0], tok.end[0] + 1):
            if l not in doc:
                code.add(l)
    return len(code), len(doc)
tot_c = tot_d = 0
for root in sys.argv[1:]:
    for p in sorted(pathlib.Path(root).rglob("*.py")):
        c, d = count(p); tot_c += c; tot_d += d
        if "-v" in sys.argv[0:0]: print(p, c, d)
print(f"code lines {tot_c}, docstring lines {tot_d}")
