"""k8s/ as the real API server sees it: the kustomize base applies (server-side dry run, so
validation and admission run) and every pod we ship is admitted under PodSecurity `restricted`."""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest

from tools.stack.paths import REPO_ROOT
from tools.stack.supervisor import Stack

K8S = REPO_ROOT / "k8s"


def kubectl(stack: Stack, *args: str, input_text: str | None = None,
            kubeconfig: str | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl with stdout AND stderr kept (warnings go to stderr), never raising."""
    assert stack.env is not None
    return subprocess.run([str(stack.bins.kubectl), "--kubeconfig",
                           kubeconfig or stack.env.admin_kubeconfig, *args],
                          input=input_text, capture_output=True, text=True, timeout=120)


def pod_from_template(name: str, template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": template["metadata"].get("labels", {})},
            "spec": copy.deepcopy(template["spec"])}


def deployments(stack: Stack) -> list[dict[str, Any]]:
    return [o for o in stack.kustomize_base() if o["kind"] == "Deployment"]


def test_the_base_holds_every_object_the_issue_asks_for(stack: Stack) -> None:
    kinds: dict[str, set[str]] = {}
    for obj in stack.kustomize_base():
        kinds.setdefault(obj["kind"], set()).add(obj["metadata"]["name"])
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "the0"
    assert kinds["Deployment"] == {"the0-worker", "the0-log-worker", "the0-beat",
                                   "the0-events", "the0-api", "the0-flower"}
    assert kinds["Service"] == {"the0-api", "the0-flower"}
    assert kinds["PodDisruptionBudget"] == {"the0-worker", "the0-api"}
    assert kinds["NetworkPolicy"] == {"the0-bots", "the0-api", "the0-flower", "the0-redis"}
    assert {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap",
            "Secret"} <= set(kinds)
    namespace = next(o for o in stack.kustomize_base() if o["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_server_side_dry_run_of_the_base_succeeds_without_warnings(stack: Stack) -> None:
    # A server-side dry run cannot create the namespace it then puts objects in, so the
    # namespace (the base's own file) is applied for real first — as an operator previewing
    # an upgrade would have it.
    stack.kubectl("apply", "-f", str(K8S / "namespace.yaml"))
    try:
        result = kubectl(stack, "apply", "--dry-run=server", "-k", str(K8S))
        assert result.returncode == 0, result.stderr
        # The namespace warns on PodSecurity `restricted`: a Deployment whose pods would be
        # refused prints "Warning: would violate PodSecurity" here.
        assert "Warning" not in result.stderr, result.stderr
        applied = [line for line in result.stdout.splitlines() if line.strip()]
        assert len(applied) == len(stack.kustomize_base())
        assert all(line.endswith("(server dry run)") for line in applied), applied
    finally:
        stack.kubectl("delete", "namespace", "the0", "--wait=false", check=False)


def test_every_shipped_pod_is_admitted_under_restricted(stack: Stack,
                                                        restricted_namespace: str) -> None:
    for deployment in deployments(stack):
        name = deployment["metadata"]["name"]
        pod = pod_from_template(name, deployment["spec"]["template"])
        result = kubectl(stack, "create", "--dry-run=server", "-n", restricted_namespace,
                         "-f", "-", input_text=json.dumps(pod))
        assert result.returncode == 0, f"{name}: {result.stderr}"
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            assert container["resources"]["limits"], name


@pytest.mark.parametrize("weaken", [
    lambda spec: spec["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
    lambda spec: spec["containers"][0]["securityContext"].update(capabilities={"add": ["NET_RAW"]}),
    lambda spec: spec["securityContext"].update(runAsUser=0),
    lambda spec: spec["securityContext"].pop("seccompProfile")
    and spec["containers"][0]["securityContext"].pop("seccompProfile"),
])
def test_a_weakened_shipped_pod_is_refused(stack: Stack, restricted_namespace: str,
                                           weaken: Any) -> None:
    # The admission check above can fail: the same pod, one hardening removed, is refused.
    worker = next(d for d in deployments(stack) if d["metadata"]["name"] == "the0-worker")
    pod = pod_from_template("weakened", worker["spec"]["template"])
    weaken(pod["spec"])
    result = kubectl(stack, "create", "--dry-run=server", "-n", restricted_namespace,
                     "-f", "-", input_text=json.dumps(pod))
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr, result.stderr


def test_the_bot_network_policy_selects_the_pods_the_controller_generates(stack: Stack) -> None:
    from worker.core import naming

    policy = next(o for o in stack.kustomize_base()
                  if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "the0-bots")
    assert policy["spec"]["podSelector"]["matchLabels"] == {naming.LABEL_APP: naming.APP_BOT}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == []
    internet = [peer["ipBlock"] for rule in policy["spec"]["egress"] for peer in rule["to"]
                if "ipBlock" in peer]
    v4 = next(block for block in internet if block["cidr"] == "0.0.0.0/0")
    # Private ranges (pod, service and node networks; the API server's service IP), shared
    # address space and link-local (cloud metadata) stay closed.
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
            "169.254.0.0/16", "127.0.0.0/8"} <= set(v4["except"])
