"""The Python dependencies are hash-locked, and the locks cover what pyproject.toml asks for:
`make setup` and the image install only from them (--require-hashes)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^ \\]+) \\$")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pins(lock: str) -> dict[str, str]:
    lines = (ROOT / lock).read_text().splitlines()
    pins = {}
    for i, line in enumerate(lines):
        match = PIN.match(line)
        if match:
            assert lines[i + 1].strip().startswith("--hash=sha256:"), f"{lock}: {line} unhashed"
            pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


def test_every_dependency_is_pinned_with_hashes_in_both_locks() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]} | {"setuptools", "wheel"}
    test = {_name(r) for r in project["optional-dependencies"]["test"]}
    image, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert runtime <= image.keys(), f"not in requirements.lock: {runtime - image.keys()}"
    missing = (runtime | test) - dev.keys()
    assert not missing, f"not in requirements-dev.lock: {missing}"
    # The image runs what the tests ran.
    assert {name: dev[name] for name in image} == image
    # Test tools stay out of the image (cryptography and PyYAML are also runtime dependencies
    # of the kubernetes client, so they are there anyway).
    assert not {"pytest", "mypy", "ruff", "import-linter"} & image.keys()


def test_make_and_the_image_install_only_from_the_locks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements-dev.lock" in makefile
    assert "--require-hashes -r requirements.lock" in dockerfile
    for text in (makefile, dockerfile):
        installs = [line for line in text.splitlines() if "pip install" in line]
        assert all("--require-hashes" in line or "--no-deps" in line for line in installs), installs


def test_the_mutation_tool_runs_the_suites_own_versions() -> None:
    """`make mutate` installs requirements-mutate.lock in its own virtualenv: mutmut and its
    dependencies added, everything the suite uses at the dev lock's version."""
    dev, mutate = _pins("requirements-dev.lock"), _pins("requirements-mutate.lock")
    assert "mutmut" in mutate
    assert not dev.keys() - mutate.keys(), dev.keys() - mutate.keys()
    assert {name: mutate[name] for name in dev} == dev
    assert "--require-hashes -r requirements-mutate.lock" in (ROOT / "Makefile").read_text()
