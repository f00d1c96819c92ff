"""The log worker as shipped: its own ServiceAccount bound to its own Role from k8s/ (pods list,
pods/log get — nothing else), settings under the `logs` role (no Mongo URI at all). A whole
collection pass works under exactly that, on the real API server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.logs.conftest import run_pass
from tests.support.botlogs import LoggedPod, messages, now_ts, shipped
from tools.stack.supervisor import Stack
from worker.core import logcursor as lc
from worker.log_collector import LogCollector
from worker.runtime import Runtime
from worker.settings import load_settings

NAME = "the0-log-collector"


@pytest.fixture
def log_worker_kubeconfig(stack: Stack, restricted_namespace: str, tmp_path: Path) -> str:
    """A kubeconfig for the log worker's ServiceAccount in the test's namespace, bound to the
    Role k8s/log-worker.yaml ships (a real token from the TokenRequest API)."""
    assert stack.env is not None
    objects = {(o["kind"], o["metadata"]["name"]): o for o in stack.kustomize_base()}
    items = [objects["ServiceAccount", NAME], objects["Role", NAME],
             objects["RoleBinding", NAME]]
    for obj in items:
        obj["metadata"]["namespace"] = restricted_namespace
    for subject in items[2]["subjects"]:
        subject["namespace"] = restricted_namespace
    stack.kubectl("apply", "-f", "-", input_text=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": items}))
    token = stack.kubectl("create", "token", NAME, "-n", restricted_namespace).strip()
    config = yaml.safe_load(Path(stack.env.admin_kubeconfig).read_text())
    config["users"] = [{"name": NAME, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = NAME
    path = tmp_path / "log-worker.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def log_worker(log_env: dict[str, str], log_worker_kubeconfig: str) -> Iterator[LogCollector]:
    env = {k: v for k, v in log_env.items() if k != "MONGO_URI"}
    rt = Runtime(load_settings(env={**env, "KUBECONFIG": log_worker_kubeconfig}, role="logs"))
    yield LogCollector(rt)
    rt.close()


def can_i(stack: Stack, kubeconfig: str, namespace: str, verb: str, *resource: str) -> str:
    return stack.kubectl("auth", "can-i", verb, *resource, "-n", namespace,
                         kubeconfig=kubeconfig, check=False).strip()


def test_a_pass_runs_under_exactly_the_log_workers_role_without_mongo(
        stack: Stack, log_worker: LogCollector, log_worker_kubeconfig: str,
        restricted_namespace: str, make_pod: Callable[..., LoggedPod], s3: Any,
        log_bucket: str) -> None:
    assert log_worker.settings.MONGO_URI is None
    pod = make_pod("ident1")
    sent = pod.write("as the log worker", "nothing more", ts=now_ts())
    results = run_pass(log_worker)
    assert sum(r.errors for r in results) == 0
    assert messages(shipped(s3, log_bucket, lc.object_key("ident1", lc.day_of(now_ts())))) \
        == sent
    for allowed in (("list", "pods"), ("get", "pods", "--subresource=log")):
        assert can_i(stack, log_worker_kubeconfig, restricted_namespace, *allowed) == "yes"
    for refused in (("get", "pods"), ("delete", "pods"), ("create", "pods"),
                    ("watch", "pods"), ("get", "secrets"), ("list", "cronjobs.batch"),
                    ("create", "events")):
        assert can_i(stack, log_worker_kubeconfig, restricted_namespace, *refused) == "no", \
            refused
