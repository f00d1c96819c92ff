"""compose.yaml against the Compose Specification's JSON schema (vendored, see
tests/support/schemas/README.md), plus the rules of this project the schema cannot express.
The full `docker compose config` load (interpolation, env files, consistency) runs in
tests/integration/deploy/test_compose_config.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((REPO / "tests" / "support" / "schemas" / "compose-spec.json").read_text())
SERVERS = {"redis", "mongo", "minio", "nats", "k3s"}
CONTROLLER = {"worker", "log-worker", "beat", "api", "flower", "events"}
KUBE_CLIENTS = {"worker", "log-worker"}  # the processes that call Kubernetes
ONE_SHOTS = {"minio-buckets", "kubeconfig"}
# The events consumer has no health signal of its own yet (its NATS subscription is the work).
WITHOUT_HEALTHCHECK = {"events"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return loaded


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = Draft202012Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]


def test_schema_itself_is_valid() -> None:
    Draft202012Validator.check_schema(SCHEMA)


def test_compose_file_follows_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


@pytest.mark.parametrize("mutate", [
    lambda c: c["services"]["redis"].update(restrat="always"),          # unknown key
    lambda c: c["services"]["worker"].update(read_only=["yes"]),        # wrong type
    lambda c: c["services"]["mongo"]["healthcheck"].update(test=42),
    lambda c: c.update(servises={}),
])
def test_the_schema_check_rejects_a_broken_file(mutate: Any) -> None:
    broken = copy.deepcopy(compose())
    mutate(broken)
    assert schema_errors(broken)


def test_every_process_and_server_is_there() -> None:
    assert set(compose()["services"]) == SERVERS | CONTROLLER | ONE_SHOTS


def test_long_running_services_have_healthchecks_and_dependencies_wait_for_them() -> None:
    services = compose()["services"]
    for name in (SERVERS | CONTROLLER) - WITHOUT_HEALTHCHECK:
        assert "test" in services[name].get("healthcheck", {}), f"{name} has no healthcheck"
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            expected = ("service_completed_successfully" if dependency in ONE_SHOTS
                        else "service_healthy")
            assert rule["condition"] == expected, f"{name} → {dependency}"


def test_controller_processes_share_one_image_one_env_file_and_run_locked_down() -> None:
    services = compose()["services"]
    for name in CONTROLLER:
        service = services[name]
        assert service["image"] == "the0-k8s:dev" and service["build"]["context"] == "."
        assert [f["path"] for f in service["env_file"]] == [".env.example", ".env"]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert "privileged" not in service


def test_the_controller_reads_the_kubeconfig_k3s_wrote() -> None:
    services = compose()["services"]
    env = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    mount = next(v for v in services["worker"]["volumes"] if v.startswith("kubeconfig:"))
    # Only the workers call Kubernetes; the k3s admin kubeconfig stays out of the others.
    assert all("volumes" not in services[name] for name in CONTROLLER - KUBE_CLIENTS)
    for name in KUBE_CLIENTS:
        assert mount in services[name]["volumes"], name
        assert services[name]["depends_on"]["kubeconfig"]["condition"] == (
            "service_completed_successfully"), name
    assert env["KUBECONFIG"].startswith(mount.split(":")[1] + "/")
    assert "kubeconfig:/kube" in services["kubeconfig"]["volumes"]
    assert any(v.startswith("k3s-output:/output") for v in services["kubeconfig"]["volumes"])
    assert services["k3s"]["environment"]["K3S_KUBECONFIG_OUTPUT"].startswith("/output/")
    # Bot pods reach MinIO by its fixed address on the compose network.
    address = services["minio"]["networks"]["the0"]["ipv4_address"]
    assert env["MINIO_PUBLIC_ENDPOINT"] == f"{address}:9000"
