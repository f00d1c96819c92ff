"""charts/the0-k8s against k8s/: the Helm chart renders the kustomize base's objects, object for
object (kinds, names, namespace, labels, specs), with its default values and with the same
settings given to both; what it renders passes `helm lint --strict` and a server-side dry run on
the real API server under PodSecurity `restricted`; Flower's login and the app Secret can come
from Secrets that exist already.

Both sides are normalised the same way, through `kubectl create --dry-run=client -o json`
(as `Stack.kustomize_base()` does), so YAML spelling (flow style, quoting, order) never counts.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tools.stack.paths import REPO_ROOT, binaries
from tools.stack.supervisor import Stack

CHART = REPO_ROOT / "charts" / "the0-k8s"
K8S = REPO_ROOT / "k8s"

Key = tuple[str, str, str]  # (kind, namespace, name)

# The same three changes, as a kustomize overlay and as Helm values.
IMAGE = "registry.example/the0:1.2.3"
MINIO_ENDPOINT = "minio.storage.svc.cluster.local:9000"
OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {base}
images:
  - name: the0/the0-k8s
    newName: registry.example/the0
    newTag: "1.2.3"
replicas:
  - name: the0-worker
    count: 3
patches:
  - target: {{kind: ConfigMap, name: the0-k8s}}
    patch: |-
      - op: replace
        path: /data/MINIO_ENDPOINT
        value: {endpoint}
"""
HELM_SETS = ["--set", "image.repository=registry.example/the0", "--set", "image.tag=1.2.3",
             "--set", "worker.replicas=3", "--set", f"config.MINIO_ENDPOINT={MINIO_ENDPOINT}"]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    executable = binaries().helm
    assert executable.exists(), (f"{executable} is missing: build it with "
                                 "`tools/stack/build.sh helm` (HELM_VERSION in versions.env)")
    return subprocess.run([str(executable), *args], capture_output=True, text=True, timeout=120)


def render(*args: str) -> str:
    """`helm template` of the chart (release name `the0`) with `args` (--set ...)."""
    result = helm("template", "the0", str(CHART), *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def normalised(stack: Stack, manifests: str) -> list[dict[str, Any]]:
    """The objects as `kubectl apply -f` would send them, as Stack.kustomize_base() has them."""
    return stack.normalised(manifests)


def by_key(objects: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    keyed = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
             for o in objects}
    assert len(keyed) == len(objects), "two objects of the same kind, namespace and name"
    return keyed


def assert_same_objects(expected: list[dict[str, Any]], actual: list[dict[str, Any]],
                        expected_name: str = "kustomize", actual_name: str = "helm") -> None:
    want, got = by_key(expected), by_key(actual)
    assert sorted(want) == sorted(got), (
        f"only in {expected_name}: {sorted(set(want) - set(got))}; "
        f"only in {actual_name}: {sorted(set(got) - set(want))}")
    for key in sorted(want):
        if want[key] != got[key]:
            diff = difflib.unified_diff(
                json.dumps(want[key], indent=2, sort_keys=True).splitlines(),
                json.dumps(got[key], indent=2, sort_keys=True).splitlines(),
                fromfile=f"{expected_name} {'/'.join(key)}",
                tofile=f"{actual_name} {'/'.join(key)}", lineterm="")
            pytest.fail("the first object that differs:\n" + "\n".join(diff))


def kubectl(stack: Stack, *args: str, input_text: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    """kubectl with stdout AND stderr kept (warnings go to stderr), never raising."""
    assert stack.env is not None
    return subprocess.run([str(stack.bins.kubectl), "--kubeconfig",
                           stack.env.admin_kubeconfig, *args],
                          input=input_text, capture_output=True, text=True, timeout=120)


def deployment(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found: dict[str, Any] = by_key(objects)[("Deployment", "the0", name)]
    return found


def env_of(deployment_object: dict[str, Any]) -> dict[str, Any]:
    container = deployment_object["spec"]["template"]["spec"]["containers"][0]
    return {entry["name"]: entry for entry in container["env"]}


def test_helm_lint_strict_passes() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout, result.stdout


def test_default_values_render_exactly_the_kustomize_base(stack: Stack) -> None:
    base = stack.kustomize_base()
    chart = normalised(stack, render())
    assert len(chart) == len(base)
    assert_same_objects(base, chart)


def test_server_side_dry_run_of_the_chart_succeeds_without_warnings(stack: Stack,
                                                                    test_id: str) -> None:
    # In a namespace of its own (the chart's namespace.name), so it never meets the `the0` that
    # test_kustomize.py applies and deletes. A server-side dry run cannot create the namespace it
    # then puts objects in: the chart's Namespace (PodSecurity `restricted` enforced and warned)
    # is applied for real first.
    namespace = f"t-{test_id}-helm"
    rendered = render("--set", f"namespace.name={namespace}")
    objects = normalised(stack, rendered)
    namespace_object = next(o for o in objects if o["kind"] == "Namespace")
    assert namespace_object["metadata"]["name"] == namespace
    stack.kubectl("apply", "-f", "-", input_text=json.dumps(namespace_object))
    try:
        result = kubectl(stack, "apply", "--dry-run=server", "-f", "-", input_text=rendered)
        assert result.returncode == 0, result.stderr
        # A Deployment whose pods `restricted` would refuse prints
        # "Warning: would violate PodSecurity" here.
        assert "Warning" not in result.stderr, result.stderr
        applied = [line for line in result.stdout.splitlines() if line.strip()]
        assert len(applied) == len(objects)
        assert all(line.endswith("(server dry run)") for line in applied), applied
    finally:
        stack.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_the_same_settings_give_the_same_objects_as_a_kustomize_overlay(
        stack: Stack, tmp_path: Path) -> None:
    # kustomize takes a base by relative path only.
    base = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(OVERLAY.format(base=base,
                                                                endpoint=MINIO_ENDPOINT))
    overlay = normalised(stack, stack.kubectl("kustomize", str(tmp_path)))
    chart = normalised(stack, render(*HELM_SETS))
    # The three changes took effect (on both sides, since they are equal below).
    worker = deployment(overlay, "the0-worker")
    assert worker["spec"]["replicas"] == 3
    assert {d["spec"]["template"]["spec"]["containers"][0]["image"]
            for d in overlay if d["kind"] == "Deployment"} == {IMAGE}
    config = by_key(overlay)[("ConfigMap", "the0", "the0-k8s")]
    assert config["data"]["MINIO_ENDPOINT"] == MINIO_ENDPOINT
    assert_same_objects(overlay, chart, expected_name="kustomize overlay",
                        actual_name="helm --set")


def test_flower_reads_its_login_from_an_existing_secret(stack: Stack) -> None:
    default = normalised(stack, render())
    chart = normalised(stack, render("--set", "flower.auth.existingSecret=my-flower-auth"))
    flower = env_of(deployment(chart, "the0-flower"))
    assert flower["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": "my-flower-auth", "key": "FLOWER_BASIC_AUTH"}
    # Only the login moved: Redis still comes from the app Secret.
    assert flower["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "the0-k8s", "key": "REDIS_URL"}
    # The chart renders no Secret for Flower's login, nor the login in its own Secret.
    secrets = [o for o in chart if o["kind"] == "Secret"]
    assert [s["metadata"]["name"] for s in secrets] == ["the0-k8s"]
    assert "FLOWER_BASIC_AUTH" not in secrets[0].get("stringData", {})
    assert "FLOWER_BASIC_AUTH" not in secrets[0].get("data", {})
    default_secret = by_key(default)[("Secret", "the0", "the0-k8s")]
    assert set(secrets[0]["stringData"]) == set(default_secret["stringData"]) - {
        "FLOWER_BASIC_AUTH"}
    # By default (as k8s/flower.yaml) the login is the app Secret's key ...
    assert env_of(deployment(default, "the0-flower"))["FLOWER_BASIC_AUTH"]["valueFrom"][
        "secretKeyRef"] == {"name": "the0-k8s", "key": "FLOWER_BASIC_AUTH"}
    # ... and nothing but the Flower Deployment and the Secret changes.
    changed = {key for key, obj in by_key(chart).items() if by_key(default)[key] != obj}
    assert changed == {("Deployment", "the0", "the0-flower"), ("Secret", "the0", "the0-k8s")}


def secret_refs(objects: list[dict[str, Any]]) -> list[str]:
    """The Secret each secretKeyRef of each Deployment names."""
    return [entry["valueFrom"]["secretKeyRef"]["name"]
            for d in objects if d["kind"] == "Deployment"
            for entry in env_of(d).values() if "secretKeyRef" in entry.get("valueFrom", {})]


def test_an_existing_app_secret_replaces_the_charts_own(stack: Stack) -> None:
    default = normalised(stack, render())
    chart = normalised(stack, render("--set", "secret.existingSecret=my-app-secret"))
    assert not [o for o in chart if o["kind"] == "Secret"]
    assert set(secret_refs(default)) == {"the0-k8s"}
    assert secret_refs(chart) == ["my-app-secret"] * len(secret_refs(default))
