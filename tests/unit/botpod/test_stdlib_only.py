"""botpod runs on the pod image's bare python3: it may import the standard library only."""

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "botpod"
NODE_BUILTINS = {"fs", "path", "url"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_module_imports_only_the_standard_library_and_botpod() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) >= 14
    for source in sources:
        outside = _imports(source) - set(sys.stdlib_module_names) - {"botpod"}
        assert not outside, f"{source.relative_to(PACKAGE)} imports {outside}"


def test_the_wrappers_stand_alone() -> None:
    # They run in the bot's image, where botpod is not installed.
    assert "botpod" not in _imports(PACKAGE / "wrappers" / "wrapper.py")
    required = set(
        re.findall(r"require\('([^']+)'\)", (PACKAGE / "wrappers" / "wrapper.cjs").read_text())
    )
    assert required == NODE_BUILTINS


def test_every_module_imports_without_site_packages() -> None:
    # -I -S: no user site, no site-packages, no PYTHONPATH: only the stdlib and the repo root.
    modules = sorted(
        "botpod." + p.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        for p in PACKAGE.glob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import importlib\n"
        "for name in sys.argv[2:]: importlib.import_module(name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] not in sys.stdlib_module_names"
        " and m.split('.')[0] not in ('botpod', '__main__')]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(PACKAGE.parent), *modules],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "botpod"], capture_output=True, text=True, cwd=PACKAGE.parent
    )
    assert done.returncode == 2
    assert "usage: python3 -m botpod init | sync" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "botpod", "--help"],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
    )
    assert done.returncode == 0 and "sync" in done.stdout
