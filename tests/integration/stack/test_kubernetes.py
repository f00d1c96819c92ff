"""The Kubernetes part of the stack is real: scheduling, Jobs, GC, logs, RBAC, PodSecurity."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tools.stack.supervisor import StackEnv


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def simple_pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "bot", "image": "busybox"}], **spec},
    }


def test_version_is_the_pinned_one(admin_api: Any, stack_env: StackEnv) -> None:
    info = client.VersionApi(admin_api).get_code()
    assert info.git_version == stack_env.kubernetes_version
    assert info.major == "1" and info.minor == stack_env.kubernetes_version.split(".")[1]


def test_pod_is_scheduled_to_a_kwok_node_and_runs(admin_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(admin_api)
    core.create_namespaced_pod(namespace, simple_pod("runner"))
    pod = wait_for(lambda: (p := core.read_namespaced_pod("runner", namespace)).status.phase
                   == "Running" and p, "pod Running")
    assert pod.spec.node_name.startswith("kwok-node-")
    assert pod.status.pod_ip


def test_a_pod_recreated_under_the_same_name_is_left_alone_by_kwok(
        admin_api: Any, namespace: str) -> None:
    """The controller gives each bot's pod a fixed name: a replace deletes the pod, waits until
    it is gone and creates its successor at once. kwok (patched, tools/stack/patches/) deletes
    a terminating pod only while it is still that pod, as a kubelet does; unpatched, its queued
    deletions landed on successors (12 of 100 replaced bots in one benchmark run)."""
    from concurrent.futures import ThreadPoolExecutor

    core = client.CoreV1Api(admin_api)
    names = [f"same-{i}" for i in range(40)]

    def uid_of(name: str, *, live: bool = False) -> str | None:
        """The pod's uid (None: no pod; with `live`, also None while it terminates)."""
        try:
            pod = core.read_namespaced_pod(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return None if live and pod.metadata.deletion_timestamp else str(pod.metadata.uid)

    def replace(name: str) -> str:
        old = uid_of(name)
        core.delete_namespaced_pod(name, namespace)
        wait_for(lambda: uid_of(name) != old, f"{name} gone")
        return str(core.create_namespaced_pod(namespace, simple_pod(name)).metadata.uid)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: core.create_namespaced_pod(namespace, simple_pod(n)), names))
        wait_for(lambda: all(core.read_namespaced_pod(n, namespace).status.phase == "Running"
                             for n in names), "the pods Running", timeout=60)
        for _round in range(2):
            successors = dict(zip(names, pool.map(replace, names), strict=True))
            time.sleep(3)
            lost = [n for n in names if uid_of(n, live=True) != successors[n]]
            assert lost == [], f"successors deleted by kwok: {lost}"


def test_job_from_cronjob_template_succeeds(admin_api: Any, namespace: str) -> None:
    batch = client.BatchV1Api(admin_api)
    cron = batch.create_namespaced_cron_job(namespace, {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"backoffLimit": 0,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "bot", "image": "busybox"}]}}}}},
    })
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "nightly-manual", "ownerReferences": [{
               "apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
               "uid": cron.metadata.uid}]},
           "spec": client.ApiClient().sanitize_for_serialization(cron.spec.job_template.spec)}
    batch.create_namespaced_job(namespace, job)
    wait_for(lambda: (batch.read_namespaced_job("nightly-manual", namespace).status.succeeded
                      or 0) >= 1, "job succeeded", timeout=60)
    pods = client.CoreV1Api(admin_api).list_namespaced_pod(
        namespace, label_selector="job-name=nightly-manual").items
    assert [p.status.phase for p in pods] == ["Succeeded"]


def test_deleting_owner_garbage_collects_dependent(admin_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(admin_api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "dependent", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]},
        "stringData": {"k": "v"}})
    core.delete_namespaced_config_map("owner", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_secret("dependent", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, "dependent secret garbage-collected", timeout=60)


def test_pod_logs_current_and_previous(admin_api: Any, namespace: str, tmp_path: Path) -> None:
    current, previous = tmp_path / "current.log", tmp_path / "previous.log"
    current.write_text("2026-11-28T10:00:00.000000001Z stdout F hello from now\n"
                       "2026-11-28T10:00:01.000000001Z stderr F second line\n")
    previous.write_text("2026-11-28T09:00:00.000000001Z stdout F last words before crash\n")
    client.CustomObjectsApi(admin_api).create_namespaced_custom_object(
        "kwok.x-k8s.io", "v1alpha1", namespace, "logs", {
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
            "metadata": {"name": "talker", "namespace": namespace},
            "spec": {"logs": [{"containers": ["bot"], "logsFile": str(current),
                               "previousLogsFile": str(previous)}]}})
    core = client.CoreV1Api(admin_api)
    core.create_namespaced_pod(namespace, simple_pod("talker"))
    wait_for(lambda: core.read_namespaced_pod("talker", namespace).status.phase == "Running",
             "pod Running")
    text = wait_for(lambda: _logs_or_empty(core, namespace), "logs served", timeout=30)
    assert text == "hello from now\nsecond line\n"
    assert core.read_namespaced_pod_log("talker", namespace, container="bot",
                                        previous=True) == "last words before crash\n"
    stamped = core.read_namespaced_pod_log("talker", namespace, container="bot", timestamps=True)
    assert stamped.splitlines()[0].startswith("2026-11-28T10:00:00.000000001Z hello")


def _logs_or_empty(core: client.CoreV1Api, namespace: str) -> str:
    try:
        return str(core.read_namespaced_pod_log("talker", namespace, container="bot"))
    except ApiException:
        return ""  # kwok may not have picked up the Logs object yet


def test_controller_identity_is_restricted_by_its_role(
        controller_api: Any, admin_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(controller_api)
    core.create_namespaced_pod(namespace, simple_pod("allowed"))   # granted by k8s/role.yaml
    assert [p.metadata.name for p in core.list_namespaced_pod(namespace).items] == ["allowed"]
    refused = [
        lambda: core.list_node(),                                           # cluster scope
        lambda: core.list_namespaced_pod("default"),                        # other namespace
        lambda: core.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}}),
        lambda: client.AppsV1Api(controller_api).list_namespaced_deployment(namespace),
    ]
    for call in refused:
        with pytest.raises(ApiException) as info:
            call()
        assert info.value.status == 403


def test_pod_security_restricted_rejects_privileged_pod(admin_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(admin_api)
    core.patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})
    privileged = simple_pod("root")
    privileged["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    # The admission plugin reads the label from its own cache of namespaces: on a loaded
    # machine a pod created right after the patch was once admitted. Dry runs (nothing is
    # stored) until the label is in effect; the real create must then be refused.
    def refused() -> bool:
        try:
            core.create_namespaced_pod(namespace, privileged, dry_run="All")
        except ApiException as exc:
            return exc.status == 403
        return False
    wait_for(refused, "the restricted label in effect", timeout=30)
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod(namespace, privileged)
    assert info.value.status == 403
    assert "violates PodSecurity" in info.value.body
