"""tools/image's view of the build context: the files it hashes into the image's cache key are
the ones Docker's .dockerignore lets through, and the key moves with them and only with them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tools.image import build

# The pattern shapes build._excluded implements as Docker does.
SUPPORTED = re.compile(r"^!?(\*|[\w.-]+/?|\*\*/[\w.*-]+)$")


def test_dockerignore_uses_only_the_pattern_shapes_the_key_understands() -> None:
    lines = [line.strip() for line in build.DOCKERIGNORE.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines and all(SUPPORTED.match(line) for line in lines), lines


@pytest.mark.parametrize(("path", "excluded"), [
    ("worker/app.py", False),
    ("worker/core/podspec.py", False),
    ("worker/__pycache__/app.cpython-311.pyc", True),
    ("worker/core/x.pyc", True),
    ("requirements.lock", False),
    ("requirements-dev.lock", True),
    (".env", True),
    ("tests/unit/test_x.py", True),
    ("k8s/worker.yaml", True),
])
def test_the_ignore_rules_match_as_docker_does(path: str, excluded: bool) -> None:
    rules = build._ignore_rules(build.REPO_ROOT)
    assert build._excluded(path, rules) is excluded


@pytest.fixture()
def context(tmp_path: Path) -> Path:
    """A copy of the real build context, plus files Docker would ignore."""
    root = build._snapshot(tmp_path / "ctx")
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text("ignored\n")
    return root


def test_the_key_moves_with_every_file_copied_into_the_image(context: Path) -> None:
    before = build.content_key(context)
    assert build.content_key(context) == before
    (context / "worker" / "app.py").write_text("changed\n")
    assert build.content_key(context) != before


def test_the_key_ignores_what_the_build_cannot_see(context: Path) -> None:
    before = build.content_key(context)
    (context / "tests" / "test_x.py").write_text("changed too\n")
    (context / "worker" / "__pycache__").mkdir(exist_ok=True)
    (context / "worker" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    assert build.content_key(context) == before


def test_a_snapshot_holds_exactly_the_context_and_keys_as_the_tree(tmp_path: Path) -> None:
    root = build._snapshot(tmp_path / "ctx")
    copied = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    wanted = {p.relative_to(build.REPO_ROOT).as_posix() for p in build.context_files()}
    assert copied == wanted | {"Dockerfile", ".dockerignore"}
    assert build.content_key(root) == build.content_key()
    shutil.rmtree(root)
