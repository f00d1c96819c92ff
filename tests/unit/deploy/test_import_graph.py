"""No import circles in the worker, counting imports inside functions too (issue 16), and the
tool that says so (tools/import_graph.py) finds the circles and chains it should."""

from __future__ import annotations

from pathlib import Path

from tools.import_graph import edges, longest_chain, modules, strongly_connected

ROOT = Path(__file__).resolve().parents[3]


def graph_of(root: Path, *, everywhere: bool) -> dict[str, set[str]]:
    found = modules(root)
    return {name: edges(name, path, set(found), everywhere=everywhere)
            for name, path in found.items()}


def test_the_worker_has_no_import_circle_even_through_imports_in_functions() -> None:
    graph = graph_of(ROOT / "worker", everywhere=True)
    assert len(graph) > 50
    assert [c for c in strongly_connected(graph) if len(c) > 1] == []


def test_a_circle_closed_in_a_function_is_found_and_a_chain_measured(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("from .sub import c\n")
    (pkg / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"
        "def late():\n    from .. import a\n")
    module_level = graph_of(pkg, everywhere=False)
    assert module_level["pkg.a"] == {"pkg", "pkg.b"} and module_level["pkg.sub.c"] == set()
    assert [c for c in strongly_connected(module_level) if len(c) > 1] == []
    assert module_level["pkg.b"] == {"pkg.sub", "pkg.sub.c"}  # the relative import resolved
    assert longest_chain(module_level, strongly_connected(module_level)) == [
        "pkg.a", "pkg.b", "pkg.sub"]
    everywhere = graph_of(pkg, everywhere=True)
    assert [c for c in strongly_connected(everywhere) if len(c) > 1] == [
        ["pkg.a", "pkg.b", "pkg.sub.c"]]
