"""compose.yaml loaded the way `docker compose config` loads it. The docker CLI here has no
compose plugin, so tools/compose-config (built by `make stack-build`) runs the same loader,
compose-go: schema, interpolation, env files, normalisation and consistency checks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tools.stack.paths import REPO_ROOT, compose_config
from worker.settings import Settings

REQUIRED = {name for name, field in Settings.model_fields.items() if field.is_required()}
CONTROLLER = ("worker", "log-worker", "beat", "events", "api", "flower")


def load(compose_file: Path) -> subprocess.CompletedProcess[str]:
    binary = compose_config()
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `make stack-build` "
                    "(tools/stack/build.sh compose-config)")
    return subprocess.run([str(binary), str(compose_file)], capture_output=True, text=True,
                          timeout=60, cwd=compose_file.parent)


def project(compose_file: Path) -> dict[str, Any]:
    result = load(compose_file)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


@pytest.fixture
def copy_of_repo_files(tmp_path: Path) -> Path:
    for name in ("compose.yaml", ".env.example", "Dockerfile"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    (tmp_path / "k8s").mkdir()
    shutil.copy(REPO_ROOT / "k8s" / "namespace.yaml", tmp_path / "k8s" / "namespace.yaml")
    return tmp_path / "compose.yaml"


def test_compose_config_accepts_the_file_and_resolves_the_env_file(
        copy_of_repo_files: Path) -> None:
    services = project(copy_of_repo_files)["services"]
    for name in CONTROLLER:
        environment = services[name]["environment"]
        assert set(environment) >= REQUIRED, name
        assert environment["KUBECONFIG"] == "/kube/kubeconfig"
    # No default login ships: Flower refuses to start until the operator's .env sets one.
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == ""


def test_a_dot_env_file_overrides_the_example(copy_of_repo_files: Path) -> None:
    (copy_of_repo_files.parent / ".env").write_text("MINIO_SECRET_KEY=from-dot-env\n")
    services = project(copy_of_repo_files)["services"]
    assert services["worker"]["environment"]["MINIO_SECRET_KEY"] == "from-dot-env"


@pytest.mark.parametrize(("edit", "complaint"), [
    (lambda text: text.replace("minio-buckets: {condition", "minio-bucketz: {condition"),
     "undefined service"),
    (lambda text: text.replace("    restart: unless-stopped\n", "    restrat: unless-stopped\n",
                               1), "restrat"),
    (lambda text: text.replace("interval: 5s", "interval: five", 1), "invalid duration"),
    (lambda text: text.replace("- mongo-data:/data/db", "- nowhere:/data/db"), "nowhere"),
])
def test_compose_config_refuses_a_broken_file(copy_of_repo_files: Path, edit: Any,
                                              complaint: str) -> None:
    copy_of_repo_files.write_text(edit(copy_of_repo_files.read_text()))
    result = load(copy_of_repo_files)
    assert result.returncode != 0
    assert complaint in result.stderr, result.stderr


def test_compose_config_refuses_a_missing_env_file(copy_of_repo_files: Path) -> None:
    (copy_of_repo_files.parent / ".env.example").unlink()
    result = load(copy_of_repo_files)
    assert result.returncode != 0 and ".env.example" in result.stderr
