"""The house's import rules (STYLE.md, "The shape of the house"), read from the source with `ast`.

Every `import` and `from ... import` in every module under src/pixiu counts, at module level and inside
functions alike (a lazy import is still a dependency). An edge A -> B means module A imports module B (a name
imported from a package resolves to its submodule when there is one). The rules:
- train/, serve/ and eval/ stand side by side: none imports another;
- the lower layers (model, engine, chat, data, losses, config, batch, feedback, ...) import none of train/,
  serve/, eval/, pipeline, cli;
- model/ does not import data/ (batches come from pixiu/batch.py);
- no cycle between modules (a package's __init__ importing its own submodules is how packages work; a submodule
  importing its own package back closes a cycle and counts).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
TOP = ("train", "serve", "eval")  # side by side
ABOVE = ("train", "serve", "eval", "pipeline", "cli")  # what the lower layers must not reach up to


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the pixiu package."""
    out = {}
    for path in sorted((SRC / "pixiu").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The pixiu modules `name` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    out = set()
    for t in targets:
        while t and t not in known:  # pixiu.x.Name -> pixiu.x
            t = t.rpartition(".")[0]
        if t.startswith("pixiu") and t != name:
            out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def layer(module: str) -> str:
    """pixiu.train.rm -> 'train'; pixiu.cli -> 'cli'; pixiu -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def forbidden(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            la, lb = layer(a), layer(b)
            if la in TOP and lb in TOP and la != lb:
                bad.append(f"{a} -> {b}: {la}/ and {lb}/ stand side by side")
            elif la not in ABOVE and la and lb in ABOVE:
                bad.append(f"{a} -> {b}: a lower layer ({la}) imports {lb}")
            elif la == "model" and lb == "data":
                bad.append(f"{a} -> {b}: model/ must not import data/")
    return bad


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), ignoring a package's __init__ importing
    its own submodules (re-exports)."""
    kept = {a: {b for b in bs if not b.startswith(a + ".")} for a, bs in edges.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(kept.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    for v in sorted(kept):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pixiu"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from pixiu.a.x import f\n")
    (pkg / "a" / "x.py").write_text("def f():\n    from pixiu import b\n    from . import y\n")
    (pkg / "a" / "y.py").write_text("import pixiu.b.z as q\n")
    (pkg / "b.py").write_text("from pixiu.a import x\n")
    known = {"pixiu": pkg / "__init__.py", "pixiu.a": pkg / "a" / "__init__.py", "pixiu.a.x": pkg / "a" / "x.py",
             "pixiu.a.y": pkg / "a" / "y.py", "pixiu.b": pkg / "b.py"}  # fmt: skip
    edges = {name: imported(name, path, known) for name, path in known.items()}
    assert edges["pixiu.a.x"] == {"pixiu.b", "pixiu.a.y"}
    assert edges["pixiu.a.y"] == {"pixiu.b"}  # pixiu.b.z is not a module: the nearest one that is
    assert edges["pixiu.a"] == {"pixiu.a.x"}
    assert cycles(edges) == [["pixiu.a.x", "pixiu.a.y", "pixiu.b"]]  # b -> a.x -> a.y -> b
    assert forbidden({"pixiu.eval.x": {"pixiu.serve.y"}, "pixiu.model.m": {"pixiu.data.d", "pixiu.cli"}}) == [
        "pixiu.eval.x -> pixiu.serve.y: eval/ and serve/ stand side by side",
        "pixiu.model.m -> pixiu.cli: a lower layer (model) imports cli",
        "pixiu.model.m -> pixiu.data.d: model/ must not import data/",
    ]


def test_no_forbidden_import():
    bad = forbidden(graph())
    assert not bad, "forbidden imports:\n  " + "\n  ".join(bad)


def test_no_import_cycle():
    found = cycles(graph())
    edges = graph()
    lines = [" <-> ".join(c) + ": " + ", ".join(f"{a} -> {b}" for a in c for b in sorted(edges[a]) if b in c)
             for c in found]  # fmt: skip
    assert not found, "import cycles:\n  " + "\n  ".join(lines)
