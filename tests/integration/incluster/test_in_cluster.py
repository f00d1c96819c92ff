"""The shipped image and k8s/ for real: the controller runs in the cluster, on the real node.

An in-cluster stack (Stack(in_cluster=True): kube-proxy on the real node, ServiceAccount tokens,
`kubernetes.default` routed to the API server, the stack's servers on the pod network) gets the
image built from the project's Dockerfile (tools/image, buildah; `make image`), imported into
the node's containerd. k8s/ is applied through a kustomize overlay that changes only what a
real installation changes: the endpoints and credentials (ConfigMap, Secret), the bots' and the
controller's placement on the stack's tainted real node, and the init image's tag. Then the
controller finds its in-cluster config by itself (KUBE_MODE auto), the demo bots run, /readyz
and Flower answer through their Services, a rollout restart of every Deployment keeps the
invariants, and `kubectl delete -k` removes it all.

The only in-cluster stack of a `make test` run (kube-proxy's nftables tables are host-wide:
one such stack per machine; the stack refuses a second), beside the other workers' stacks.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch
from minio import Minio

from tests.support.bots import wait_for
from tests.support.watching import MARK, SELECTOR, Event, bot_of, list_pods, most_at_once
from tools.image import build as image
from tools.stack import hoststate
from tools.stack.paths import REPO_ROOT
from tools.stack.supervisor import Stack, StackEnv
from tools.up import DEMO_BOTS, seed_demo_bots

NAMESPACE = "the0"  # the base's
DEPLOYMENTS = ("the0-worker", "the0-log-worker", "the0-beat", "the0-events", "the0-api",
               "the0-flower")
CODE_BUCKET = "custom-bots"  # k8s/configmap.yaml's MINIO_BUCKET
STATE_BUCKET = "bot-state"
pytestmark = pytest.mark.slow(seconds=300)


def kubectl(stack: Stack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    assert stack.env is not None
    return subprocess.run([str(stack.bins.kubectl), "--kubeconfig", stack.env.admin_kubeconfig,
                           *args], capture_output=True, text=True, timeout=timeout)


def write_overlay(directory: Path, env: StackEnv, flower_login: str) -> Path:
    """k8s/ with the endpoints and credentials of this stack, everything on its real node."""
    directory.mkdir(parents=True, exist_ok=True)
    placement = {"nodeSelector": json.loads(env.real_node_settings()["BOT_NODE_SELECTOR"]),
                 "tolerations": json.loads(env.real_node_settings()["BOT_TOLERATIONS"])}
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        # kustomize refuses an absolute base path.
        "resources": [os.path.relpath(REPO_ROOT / "k8s", directory)],
        "patches": [
            {"patch": json.dumps({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "the0-k8s"},
                "data": {"MINIO_ENDPOINT": env.s3_pod_endpoint,
                         "MINIO_PUBLIC_ENDPOINT": env.s3_pod_endpoint,
                         "INIT_IMAGE": image.image_ref(),
                         **env.real_node_settings()}})},
            {"patch": json.dumps({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "the0-k8s"},
                "stringData": {"MONGO_URI": env.mongo_pod_uri, "REDIS_URL": env.redis_pod_url,
                               "NATS_URL": env.nats_pod_url,
                               "MINIO_ACCESS_KEY": env.s3_access_key,
                               "MINIO_SECRET_KEY": env.s3_secret_key,
                               "FLOWER_BASIC_AUTH": flower_login}})},
            # The stack's only node that runs containers is tainted (kwok nodes beside it).
            {"target": {"kind": "Deployment"}, "patch": json.dumps({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "any"},
                "spec": {"template": {"spec": placement}}})},
        ],
    }
    (directory / "kustomization.yaml").write_text(json.dumps(kustomization, indent=1))
    return directory


class PodWatcher:
    """The checker: every change to bot pods from a list onwards, as admin, in a thread: the
    most pods of each bot at one instant (`most`) and every deletion. `stop()` proves it was
    still watching at the end (a change made then must reach it)."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.events: list[Event] = []
        self.errors: list[str] = []
        self.marks: set[str] = set()
        self._stop = threading.Event()
        self._listed, self._version = list_pods(core, NAMESPACE)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def most(self) -> dict[str, int]:
        return most_at_once(self._listed, self.events)

    @property
    def deleted(self) -> list[str]:
        return [pod.metadata.name for kind, pod in self.events if kind == "DELETED"]

    def _run(self) -> None:
        stream = watch.Watch()
        while not self._stop.is_set():
            try:
                # Bookmarks keep the resume point fresh while bot pods do not change (a
                # rollout of the controllers changes other pods), so no resume is too old.
                for event in stream.stream(self.core.list_namespaced_pod, NAMESPACE,
                                           label_selector=SELECTOR,
                                           resource_version=self._version, timeout_seconds=2,
                                           allow_watch_bookmarks=True, _request_timeout=10):
                    pod = event["object"]
                    self._version = pod.metadata.resource_version
                    if event["type"] == "BOOKMARK":
                        continue
                    self.marks.add((pod.metadata.annotations or {}).get(MARK, ""))
                    self.events.append((event["type"], pod))
            except Exception as exc:  # the test reports it
                self.errors.append(repr(exc))
                return

    def stop(self, pod_name: str) -> None:
        """Marks one bot pod, waits for the watch to see it, then ends the watch."""
        token = secrets.token_hex(4)
        self.core.patch_namespaced_pod(pod_name, NAMESPACE,
                                       {"metadata": {"annotations": {MARK: token}}})
        wait_for(lambda: token in self.marks or bool(self.errors),
                 "the watcher sees a change made at the end", timeout=30)
        self._stop.set()
        self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "the pod watch did not end"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    archive = image.build()  # a no-op after `make image` (make test runs it first)
    host_before = hoststate.nft_objects()
    stack = Stack(tmp_path_factory.mktemp("in-cluster") / "stack", in_cluster=True)
    with stack:
        assert stack.node is not None
        imported = subprocess.run([*stack.node.ctr, "images", "import", str(archive)],
                                  capture_output=True, text=True, timeout=300)
        assert imported.returncode == 0, imported.stderr
        yield stack
    # kube-proxy's rules went with the stack (the node's clean-up deletes its tables).
    assert hoststate.nft_objects() == host_before


@pytest.fixture(scope="module")
def api(cluster: Stack) -> k8s.ApiClient:
    assert cluster.env is not None
    return k8s_config.new_client_from_config(config_file=cluster.env.admin_kubeconfig)


@pytest.fixture(scope="module")
def deployed(cluster: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """k8s/ applied through the overlay, every Deployment rolled out, the demo bots seeded."""
    env = cluster.env
    assert env is not None
    s3 = Minio(env.s3_endpoint, access_key=env.s3_access_key, secret_key=env.s3_secret_key,
               secure=False)
    for bucket in (CODE_BUCKET, STATE_BUCKET):  # the platform's buckets
        if not s3.bucket_exists(bucket):
            s3.make_bucket(bucket)
    flower_login = f"operator:{secrets.token_urlsafe(18)}"
    overlay = write_overlay(tmp_path_factory.mktemp("overlay"), env, flower_login)
    started = time.monotonic()
    applied = kubectl(cluster, "apply", "-k", str(overlay))
    assert applied.returncode == 0, applied.stderr
    for name in DEPLOYMENTS:
        rolled = kubectl(cluster, "rollout", "status", f"deployment/{name}", "-n", NAMESPACE,
                         "--timeout=240s")
        assert rolled.returncode == 0, (
            f"{name}: {rolled.stderr}\n"
            + kubectl(cluster, "get", "pods", "-n", NAMESPACE, "-o", "wide").stdout
            + kubectl(cluster, "get", "events", "-n", NAMESPACE).stdout[-3000:])
    ready_s = time.monotonic() - started
    seed_demo_bots(env, bucket=CODE_BUCKET)
    return {"overlay": overlay, "flower_login": flower_login, "ready_s": ready_s,
            "seeded_at": time.monotonic()}


def service_url(cluster: Stack, name: str, path: str) -> str:
    service = json.loads(kubectl(cluster, "get", "service", name, "-n", NAMESPACE,
                                 "-o", "json").stdout)
    port = service["spec"]["ports"][0]["port"]
    return f"http://{service['spec']['clusterIP']}:{port}{path}"


def http_get(url: str, *, login: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def running_bot_pods(api: k8s.ApiClient) -> dict[str, Any]:
    pods = k8s.CoreV1Api(api).list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items
    return {bot_of(p): p for p in pods
            if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
            and all(c.ready for c in p.status.container_statuses or [])}


def test_the_controller_runs_in_the_cluster_and_the_demo_bots_run(
        cluster: Stack, api: k8s.ApiClient, deployed: dict[str, Any]) -> None:
    core = k8s.CoreV1Api(api)
    ours = core.list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/name=the0-k8s")
    by_component: dict[str, set[str]] = {}
    for pod in ours.items:
        assert pod.spec.node_name == cluster.env.real_node_name  # type: ignore[union-attr]
        env_names = {e.name for c in pod.spec.containers for e in c.env or []}
        assert "KUBECONFIG" not in env_names  # the in-cluster config is found, not given
        by_component.setdefault(pod.metadata.labels["app.kubernetes.io/component"],
                                set()).add(pod.spec.service_account_name)
    settings = core.read_namespaced_config_map("the0-k8s", NAMESPACE).data
    assert "KUBECONFIG" not in settings and settings["KUBE_MODE"] == "auto"
    # Only the controller and the log collector carry a token, each its own identity.
    assert by_component.pop("worker") == {"the0-controller"}
    assert by_component.pop("log-worker") == {"the0-log-collector"}
    assert len(by_component) == 4, by_component  # api, beat, events, flower: no token
    assert all(names == {"the0-k8s"} for names in by_component.values()), by_component
    wanted = {bot_id for bot_id, *_ in DEMO_BOTS}
    wait_for(lambda: wanted <= running_bot_pods(api).keys(),
             "every demo bot's pod Running and ready on the real node", timeout=180)
    running = running_bot_pods(api)
    for bot_id in wanted:
        pod = running[bot_id]
        assert pod.spec.node_name == cluster.env.real_node_name  # type: ignore[union-attr]
        assert pod.spec.init_containers[0].image == image.image_ref()
    # The bot's code really runs: the python demo prints its trades.
    name = running["demo-dca-btc"].metadata.name
    wait_for(lambda: "BTC/USDT" in core.read_namespaced_pod_log(name, NAMESPACE,
                                                                container="bot"),
             "the python demo bot's output", timeout=60)
    print(f"apply -> every Deployment ready: {deployed['ready_s']:.1f} s; "
          f"seed -> demo bots running: {time.monotonic() - deployed['seeded_at']:.1f} s")


def test_readyz_answers_through_the_api_service_and_names_the_missing_worker(
        cluster: Stack, api: k8s.ApiClient, deployed: dict[str, Any]) -> None:
    url = service_url(cluster, "the0-api", "/readyz")
    wait_for(lambda: http_get(url)[0] == 200, f"{url} ready", timeout=90)
    apps = k8s.AppsV1Api(api)
    apps.patch_namespaced_deployment_scale("the0-worker", NAMESPACE, {"spec": {"replicas": 0}})
    try:
        wait_for(lambda: http_get(url)[0] == 503, f"{url} not ready without workers",
                 timeout=120)
        _status, body = http_get(url)
        readiness = json.loads(body)
        assert "workers" in readiness["failing"], body
        workers = next(c for c in readiness["checks"] if c["name"] == "workers")
        assert "no live worker takes the reconcile, bots queues" in workers["detail"], body
    finally:
        apps.patch_namespaced_deployment_scale("the0-worker", NAMESPACE,
                                               {"spec": {"replicas": 2}})
    rolled = kubectl(cluster, "rollout", "status", "deployment/the0-worker", "-n", NAMESPACE,
                     "--timeout=180s")
    assert rolled.returncode == 0, rolled.stderr
    wait_for(lambda: http_get(url)[0] == 200, f"{url} ready again", timeout=120)


def test_flower_answers_through_its_service_to_the_operator_only(
        cluster: Stack, deployed: dict[str, Any]) -> None:
    url = service_url(cluster, "the0-flower", "/api/workers")
    wait_for(lambda: http_get(url)[0] in (200, 401), f"{url} answering", timeout=90)
    assert http_get(url)[0] == 401
    user = deployed["flower_login"].split(":")[0]
    assert http_get(url, login=f"{user}:not-the-password-at-all")[0] == 401
    status, _body = http_get(url, login=deployed["flower_login"])
    assert status == 200


def test_a_rollout_restart_of_every_deployment_keeps_the_invariants(
        cluster: Stack, api: k8s.ApiClient, deployed: dict[str, Any]) -> None:
    wanted = {bot_id for bot_id, *_ in DEMO_BOTS}
    wait_for(lambda: wanted <= running_bot_pods(api).keys(), "the demo bots running",
             timeout=180)
    before = {bot: pod.metadata.uid for bot, pod in running_bot_pods(api).items()}
    watcher = PodWatcher(k8s.CoreV1Api(api))
    try:
        restarted = kubectl(cluster, "rollout", "restart", "deployment", "-n", NAMESPACE)
        assert restarted.returncode == 0, restarted.stderr
        for name in DEPLOYMENTS:
            rolled = kubectl(cluster, "rollout", "status", f"deployment/{name}", "-n",
                             NAMESPACE, "--timeout=240s")
            assert rolled.returncode == 0, f"{name}: {rolled.stderr}"
        # The new controllers' first passes (beat fires every RECONCILE_INTERVAL, 30 s).
        time.sleep(40)
    finally:
        watcher.stop(next(iter(running_bot_pods(api).values())).metadata.name)
    assert not watcher.errors, watcher.errors
    assert {bot: n for bot, n in watcher.most.items() if n > 1} == {}
    # Nothing changed in Mongo: no bot pod may have been deleted or replaced.
    assert watcher.deleted == []
    after = {bot: pod.metadata.uid for bot, pod in running_bot_pods(api).items()}
    assert after == before


def test_kubectl_delete_k_removes_everything(cluster: Stack, deployed: dict[str, Any]) -> None:
    deleted = kubectl(cluster, "delete", "-k", str(deployed["overlay"]), "--wait=true",
                      "--timeout=240s")
    assert deleted.returncode == 0, deleted.stderr
    wait_for(lambda: kubectl(cluster, "get", "namespace", NAMESPACE).returncode != 0,
             "namespace the0 gone", timeout=240)
    # Every object the overlay names is gone (the namespace took the bots' pods with it).
    left = kubectl(cluster, "get", "-k", str(deployed["overlay"]), "--ignore-not-found",
                   "-o", "name")
    assert left.returncode == 0 and left.stdout.strip() == "", left
