"""The layering of lxpy's modules (docs/internals.md, DESIGN.md): dependencies point down,
so the module-level import graph has no cycle, and nothing below the CLI imports lxpy.cli."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "lxpy"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(tree: ast.Module):
    """Import statements that run when the module is imported: at module level, also inside
    module-level if/try blocks, never inside functions or classes' methods, and not under
    `if TYPE_CHECKING:`."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if "TYPE_CHECKING" not in test:
                todo += node.body
            todo += node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody
            for h in node.handlers:
                todo += h.body
        elif isinstance(node, ast.ClassDef):
            todo += [n for n in node.body if not isinstance(n, (ast.FunctionDef,
                                                                 ast.AsyncFunctionDef))]


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    packages = {m for m, p in files.items() if p.name == "__init__.py"}
    graph: dict[str, set[str]] = {m: set() for m in files}

    def add(src: str, target: str, itself: bool = True) -> None:
        # importing a.b.c runs a, a.b and a.b.c; the packages that hold src are running
        # already (importing src ran them), so only an explicit use of one counts
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            t = ".".join(parts[:i])
            if t not in files or t == src:
                continue
            if t == target and itself or not src.startswith(t + "."):
                graph[src].add(t)

    for mod, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        here = mod if mod in packages else mod.rpartition(".")[0]
        for node in _top_level_imports(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    add(mod, a.name)
                continue
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in files]
            # from pkg import submodule needs the submodule; any other name, pkg itself
            add(mod, target, itself=len(subs) < len(node.names))
            for sub in subs:
                add(mod, sub)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = GREY
        stack.append(n)
        for m in sorted(graph[n]):
            if color[m] == GREY:
                return stack[stack.index(m):] + [m]
            if color[m] == WHITE:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        color[n] = BLACK
        return None

    for n in sorted(graph):
        if color[n] == WHITE:
            found = visit(n)
            if found:
                return found
    return None


def test_the_module_import_graph_has_no_cycle():
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_nothing_below_the_cli_imports_it():
    graph = import_graph()
    offenders = sorted(m for m, deps in graph.items()
                       if not m.startswith("lxpy.cli") and m != "lxpy.__main__"
                       and any(d.startswith("lxpy.cli") for d in deps))
    assert offenders == []


def test_linux_imports_nothing_of_lxpy_above_it():
    graph = import_graph()
    bad = {m: sorted(d for d in deps if not d.startswith("lxpy.linux") and d != "lxpy")
           for m, deps in graph.items() if m.startswith("lxpy.linux")}
    assert {m: d for m, d in bad.items() if d} == {}


# Imports inside functions: only of heavy third-party packages, or on the paths that must
# stay lean (the monitor, PID 1), and then with a reason on the line or the comment above.
HEAVY = {"pyroute2", "jinja2", "tomlkit", "sh"}


def local_imports_without_a_reason() -> list[str]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        lines = path.read_text().splitlines()
        for f in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(f):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                names = ({a.name.split(".")[0] for a in node.names}
                         if isinstance(node, ast.Import) else {(node.module or "").split(".")[0]})
                if not getattr(node, "level", 0) and names <= HEAVY:
                    continue
                i = node.lineno - 1
                reason = "#" in lines[i]
                above = ("from ", "import ", "#")
                while not reason and i > 0 and (lines[i - 1].strip().startswith(above)
                                                or not lines[i - 1].strip()):
                    i -= 1
                    reason = lines[i].strip().startswith("#")
                if not reason:
                    out.append(f"{path.relative_to(PKG.parent)}:{node.lineno}: "
                               f"{lines[node.lineno - 1].strip()}")
    return out


def test_imports_inside_functions_are_heavy_packages_or_say_why():
    assert local_imports_without_a_reason() == []
