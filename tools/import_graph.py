"""The import graph of a package, measured: its longest import chain and its import circles.

    python -m tools.import_graph [--all] [package dir]      (default: worker)

Edges are the package's own module-level imports (`import a.b`, `from a import b`, relative
ones resolved; `if TYPE_CHECKING:` blocks and imports inside functions left out: neither runs
when the module is imported). `--all` counts those too: a circle closed only by an import in a
function is still two modules that need each other. A circle is a strongly connected
component of more than one module; the longest chain is the longest path through the graph
with each circle taken as one node. Issue 16 asked for both, before and after the reshape of
the shell; tests/unit/deploy/test_import_graph.py keeps the worker free of circles.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _top_level(tree: ast.Module) -> Iterator[ast.stmt]:
    """Statements that run at import: the module's own, into if/try blocks (not TYPE_CHECKING)."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop(0)
        if isinstance(node, ast.If):
            test = node.test
            if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                continue
            stack[:0] = node.body + node.orelse
        elif isinstance(node, ast.Try):
            stack[:0] = node.body + node.orelse + node.finalbody + [
                s for h in node.handlers for s in h.body]
        else:
            yield node


def edges(name: str, path: Path, known: set[str], *, everywhere: bool = False) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    result = set()
    tree = ast.parse(path.read_text())
    for node in (ast.walk(tree) if everywhere else _top_level(tree)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:  # `import a.b.c` imports a.b.c or its parents
                target = target.rpartition(".")[0]
            if target and target != name:
                result.add(target)
    return result


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            components.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def longest_chain(graph: dict[str, set[str]], components: list[list[str]]) -> list[str]:
    """The longest path, a circle counted as one step (named by its members joined by '+')."""
    of = {m: "+".join(c) for c in components for m in c}
    condensed: dict[str, set[str]] = {of[n]: set() for n in graph}
    for node, succs in graph.items():
        condensed[of[node]] |= {of[s] for s in succs if of[s] != of[node]}
    best: dict[str, list[str]] = {}

    def chain(node: str) -> list[str]:
        if node not in best:
            tails = [chain(s) for s in sorted(condensed[node])]
            best[node] = [node, *max(tails, key=len, default=[])]
        return best[node]

    return max((chain(n) for n in sorted(condensed)), key=len)


def main(argv: list[str]) -> int:
    everywhere = "--all" in argv
    paths = [a for a in argv if a != "--all"]
    root = Path(paths[0] if paths else "worker").resolve()
    found = modules(root)
    graph = {name: edges(name, path, set(found), everywhere=everywhere)
             for name, path in found.items()}
    circles = [c for c in strongly_connected(graph) if len(c) > 1]
    chain = longest_chain(graph, strongly_connected(graph))
    print(f"{len(found)} modules, {sum(map(len, graph.values()))} imports between them")
    print(f"longest import chain: {len(chain)} modules")
    for step in chain:
        print(f"  {step}")
    print(f"import circles: {len(circles)}")
    for circle in circles:
        print(f"  {' <-> '.join(circle)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
