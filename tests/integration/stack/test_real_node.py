"""The real node: real containers beside the kwok nodes, reached only the authenticated way,
and a host left exactly as it was found.

The session stack's node holds slot 0 (cni-the0, 10.89.0.0/24). The host-state tests start
further stacks beside it — each takes the next free slot — and compare host snapshots taken
before and after, leaving out what the session stack owns (`Stack.footprint()`).
"""

from __future__ import annotations

import io
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tools.stack import __main__ as cli
from tools.stack import hoststate, realnode
from tools.stack.paths import REPO_ROOT
from tools.stack.process import ServerFailed, same_process, start_time
from tools.stack.realnode import NodeConfig, RealNode
from tools.stack.supervisor import Stack, StackEnv

IMAGE = "python:3.11-slim-bookworm"


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def real_pod(name: str, command: list[str], *, settings: dict[str, str] | None = None,
             restart: str = "Never") -> dict[str, Any]:
    """A PodSecurity-restricted pod (uid 1000, read-only root); with `settings` (the product's
    BOT_TOLERATIONS / BOT_NODE_SELECTOR), placed the way the product places bot pods."""
    spec: dict[str, Any] = {
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 1,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "main", "image": IMAGE, "imagePullPolicy": "Never", "command": command,
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
        }],
    }
    if settings:
        spec["tolerations"] = json.loads(settings["BOT_TOLERATIONS"])
        spec["nodeSelector"] = json.loads(settings["BOT_NODE_SELECTOR"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def restricted(stack: Stack, namespace: str) -> str:
    stack.kubectl("label", "--overwrite", "namespace", namespace,
                  "pod-security.kubernetes.io/enforce=restricted")
    return namespace


def host_snapshot() -> dict[str, list[str]]:
    """The host minus what every running stack owns — the session's, and any other stack on
    the machine (another `make test`, `make up`), each known by its node record."""
    return hoststate.snapshot(realnode.live_footprint())


def host_diff(before: dict[str, list[str]], timeout: float = 10.0) -> list[str]:
    """The difference once it settles (the kernel frees netns and veths asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        changes = hoststate.diff(before, host_snapshot())
        if not changes or time.monotonic() > deadline:
            return [_explained(change) for change in changes]
        time.sleep(0.5)


def _explained(change: str) -> str:
    """A leftover process with its state and command line (which stack it came from)."""
    if not change.startswith("+ processes: "):
        return change
    pid = change.split()[3]
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return change
    return f"{change} (state {stat[0]}, parent {stat[1]}: {argv[:300]})"


# ---------------------------------------------------------------------------- the node itself
def test_real_node_is_ready_tainted_and_labelled(admin_api: Any, stack_env: StackEnv) -> None:
    node = client.CoreV1Api(admin_api).read_node(stack_env.real_node_name)
    assert node.metadata.labels["type"] == "real"
    assert "kwok.x-k8s.io/node" not in (node.metadata.annotations or {})
    assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [
        ("the0.dev/real-node", "true", "NoSchedule")]
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "True", ready.message
    assert stack_env.as_env()["MINIO_PUBLIC_ENDPOINT"] == stack_env.s3_pod_endpoint
    assert stack_env.s3_pod_endpoint.startswith(stack_env.pod_gateway + ":")
    assert stack_env.real_node_settings() == {
        "BOT_TOLERATIONS": '[{"key": "the0.dev/real-node", "operator": "Exists", '
                           '"effect": "NoSchedule"}]',
        "BOT_NODE_SELECTOR": '{"type": "real"}'}


def test_the_gateway_keeps_its_mac_when_pod_interfaces_come_and_go(stack: Stack) -> None:
    """A bridge without a set address takes its lowest port's MAC: every pod veth that came or
    went moved the gateway's MAC under the other pods' ARP caches (a job pod's state upload
    timed out for ~50 s). A port with the lowest possible MAC joins and leaves; nothing moves."""
    assert stack.node is not None and stack.node.slot is not None
    bridge = stack.node.slot.bridge
    sysfs = Path("/sys/class/net") / bridge

    def mac() -> str:
        return (sysfs / "address").read_text().strip()

    before = mac()
    assert before == stack.node.slot.bridge_mac
    assert (sysfs / "addr_assign_type").read_text().strip() == "3"  # NET_ADDR_SET
    port, peer = f"t0mac{os.getpid() % 10000}", f"t1mac{os.getpid() % 10000}"
    subprocess.run(["ip", "link", "add", port, "address", "00:00:00:00:00:01", "type", "veth",
                    "peer", "name", peer], check=True)
    try:
        subprocess.run(["ip", "link", "set", port, "master", bridge], check=True)
        joined = mac()
        subprocess.run(["ip", "link", "set", port, "nomaster"], check=True)
        left = mac()
    finally:
        subprocess.run(["ip", "link", "del", port], check=False)
    assert (joined, left) == (before, before)


def test_tolerating_pod_runs_for_real_and_reaches_s3_through_the_gateway(
        stack: Stack, stack_env: StackEnv, admin_api: Any, namespace: str, s3: Any,
        bucket: str) -> None:
    """uid 1000, read-only root, a presigned URL fetched via the bridge gateway's forwarder
    (the signed Host header survives), `kubectl logs` through the API server."""
    from minio import Minio

    s3.put_object(bucket, "hello.txt", io.BytesIO(b"hello through the gateway"), length=25)
    public = Minio(stack_env.s3_pod_endpoint, access_key=stack_env.s3_access_key,
                   secret_key=stack_env.s3_secret_key, secure=False, region="us-east-1")
    url = public.presigned_get_object(bucket, "hello.txt")
    script = ("import os, urllib.request\n"
              "print('uid', os.getuid(), 'gid', os.getgid())\n"
              f"print(urllib.request.urlopen({url!r}, timeout=10).read().decode())\n"
              "try:\n    open('/written', 'w')\n"
              "except OSError as exc:\n    print('root fs:', exc)\n")
    core = client.CoreV1Api(admin_api)
    core.create_namespaced_pod(restricted(stack, namespace), real_pod(
        "real", ["python3", "-c", script], settings=stack_env.real_node_settings()))
    pod = wait_for(lambda: (p := core.read_namespaced_pod("real", namespace)).status.phase
                   in ("Succeeded", "Failed") and p, "pod finished", timeout=90)
    logs = core.read_namespaced_pod_log("real", namespace)
    assert pod.status.phase == "Succeeded", logs
    assert pod.spec.node_name == stack_env.real_node_name
    assert pod.status.pod_ip.startswith("10.89.")
    assert "uid 1000 gid 1000" in logs
    assert "hello through the gateway" in logs
    assert "Read-only file system" in logs


def test_exec_goes_through_the_api_server(stack: Stack, stack_env: StackEnv, admin_api: Any,
                                          namespace: str) -> None:
    core = client.CoreV1Api(admin_api)
    core.create_namespaced_pod(restricted(stack, namespace), real_pod(
        "sleeper", ["python3", "-c", "import time; time.sleep(3600)"],
        settings=stack_env.real_node_settings(), restart="Always"))
    wait_for(lambda: core.read_namespaced_pod("sleeper", namespace).status.phase == "Running",
             "pod Running", timeout=90)
    out = stack.kubectl("exec", "-n", namespace, "sleeper", "--", "python3", "-c",
                        "import os; print(6 * 7, os.getuid())")
    assert out.split() == ["42", "1000"]


def test_pods_without_the_toleration_never_land_on_the_real_node(
        admin_api: Any, namespace: str, stack_env: StackEnv) -> None:
    core = client.CoreV1Api(admin_api)
    for i in range(12):
        core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"kwok-{i}"},
            "spec": {"containers": [{"name": "bot", "image": "busybox"}]}})
    # Even one that asks for the real node by label, without tolerating its taint.
    selecting = real_pod("selects-only", ["true"])
    selecting["spec"]["nodeSelector"] = {"type": "real"}
    core.create_namespaced_pod(namespace, selecting)

    def placed() -> list[str] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="").items
        kwok = [p.spec.node_name for p in pods if p.metadata.name.startswith("kwok-")]
        return kwok if all(kwok) else None

    nodes = wait_for(placed, "kwok pods scheduled", timeout=30)
    assert all(n.startswith("kwok-node-") for n in nodes), nodes

    def unschedulable() -> bool:
        pod = core.read_namespaced_pod("selects-only", namespace)
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable"
                   for c in pod.status.conditions or [])

    wait_for(unschedulable, "selects-only reported Unschedulable", timeout=30)
    assert core.read_namespaced_pod("selects-only", namespace).spec.node_name is None
    assert stack_env.real_node_name not in nodes


# ---------------------------------------------------------------------------- authentication
def _kubelet_url(admin_api: Any, stack_env: StackEnv) -> str:
    node = client.CoreV1Api(admin_api).read_node(stack_env.real_node_name)
    address = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    return f"https://{address}:{node.status.daemon_endpoints.kubelet_endpoint.port}/pods"


def _kubelet_get(url: str, stack_env: StackEnv, *, token: str | None = None,
                 cert: tuple[str, str] | None = None) -> int:
    # Verifies the kubelet's serving certificate against the stack CA (IP SAN = node IP).
    context = ssl.create_default_context(cafile=stack_env.ca_file)
    if cert:
        context.load_cert_chain(*cert)
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_kubelet_refuses_anonymous_requests(admin_api: Any, stack_env: StackEnv) -> None:
    url = _kubelet_url(admin_api, stack_env)
    admin_token = json.loads(Path(stack_env.admin_kubeconfig).read_text()
                             )["users"][0]["user"]["token"]
    assert _kubelet_get(url, stack_env) == 401  # anonymous
    assert _kubelet_get(url, stack_env, token=admin_token) == 401  # even cluster-admin's token
    pki = Path(stack_env.workdir) / "pki"
    assert _kubelet_get(url, stack_env, cert=(str(pki / "kubelet-client.crt"),
                                              str(pki / "kubelet-client.key"))) == 200


def test_kubelet_uses_its_own_restricted_node_identity(stack: Stack, stack_env: StackEnv) -> None:
    assert stack.node is not None
    kubeconfig = json.loads((stack.node.workdir / "kubelet.kubeconfig").read_text())
    assert kubeconfig["users"][0]["name"] == stack_env.real_node_name
    api = config.new_client_from_config_dict(kubeconfig)
    core = client.CoreV1Api(api)
    assert core.read_node(stack_env.real_node_name).metadata.name == stack_env.real_node_name
    with pytest.raises(ApiException) as info:  # NodeRestriction: another node is not its own
        core.patch_node("kwok-node-0", {"metadata": {"labels": {"hijacked": "yes"}}})
    assert info.value.status == 403
    with pytest.raises(ApiException) as info:  # Node authorizer: no secrets of unbound pods
        core.list_secret_for_all_namespaces()
    assert info.value.status == 403


# ---------------------------------------------------------------------------- host state
KILLED_STACK = """
import os, signal, sys, json
from pathlib import Path
from tools.stack.supervisor import Stack
from tools.stack.realnode import NodeConfig
stack = Stack(Path(sys.argv[1]), real_node=NodeConfig(name="real-node-killed"))
env = stack.start()
pod = json.loads(sys.argv[2])
stack.kubectl("create", "namespace", "killed")
stack.kubectl("apply", "-n", "killed", "-f", "-", input_text=json.dumps(pod))
stack.kubectl("wait", "-n", "killed", "--for=condition=Ready", "pod/sleeper", "--timeout=90s")
print("UP", stack.node.record_path, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no clean-up at all: every server and the pod live on
"""


def test_a_killed_stacks_node_is_cleaned_by_the_next_start(
        stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp_path = tmp_path_factory.mktemp("k")  # short: unix sockets live under it
    before = host_snapshot()
    assert stack.env is not None
    pod = real_pod("sleeper", ["python3", "-c", "import time; time.sleep(3600)"],
                   settings=stack.env.real_node_settings(), restart="Always")
    killed = subprocess.run([sys.executable, "-c", KILLED_STACK, str(tmp_path / "killed"),
                             json.dumps(pod)], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=240, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    record = Path(killed.stdout.split()[-1])
    leftover = json.loads(record.read_text())
    alive = [p["name"] for p in leftover["processes"] + leftover["stack_processes"]
             if start_time(p["pid"]) == p["start"]]
    assert {"kubelet", "containerd", "kube-apiserver", "redis"} <= set(alive)

    second = Stack(tmp_path / "second", real_node=NodeConfig(name="real-node-2"))
    second.start()  # cleans the killed stack's leftovers first
    try:
        assert not record.exists() or json.loads(record.read_text()) != leftover
        assert all(start_time(p["pid"]) != p["start"]
                   for p in leftover["processes"] + leftover["stack_processes"])
    finally:
        second.stop()
    changes = host_diff(before)
    assert changes == [], "\n".join(changes)


def test_stack_cli_up_down_leaves_the_host_as_found(
        stack: Stack, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m tools.stack up` / `down` (what make stack-up/stack-down and make up's Ctrl-C
    run), with a pod running on its real node — redis-server (which retitles itself) too."""
    tmp_path = tmp_path_factory.mktemp("c")
    before = host_snapshot()
    state_dir = tmp_path / "s"
    monkeypatch.setattr(cli, "STATE_DIR", state_dir)
    monkeypatch.setattr(cli, "STATE_FILE", state_dir / "state.json")
    monkeypatch.setattr(cli, "ENV_FILE", state_dir / "env")
    monkeypatch.setenv("NAMESPACE", "the0-cli-test")
    assert cli.cmd_up() == 0
    state = json.loads((state_dir / "state.json").read_text())
    try:
        env = StackEnv(**state["env"])
        redis = next(s for s in state["servers"] if s["name"] == "redis")
        argv0 = Path(f"/proc/{redis['pid']}/cmdline").read_bytes().split(b"\0")[0].decode()
        assert argv0 != "/usr/bin/redis-server"  # retitled: why argv[0] could not identify it
        api = config.new_client_from_config(config_file=env.admin_kubeconfig)
        core = client.CoreV1Api(api)
        core.create_namespaced_pod("the0-cli-test", real_pod(
            "sleeper", ["python3", "-c", "import time; time.sleep(3600)"],
            settings=env.real_node_settings(), restart="Always"))
        wait_for(lambda: core.read_namespaced_pod("sleeper", "the0-cli-test").status.phase
                 == "Running", "pod Running on the CLI stack's node", timeout=90)
    finally:
        assert cli.cmd_down() == 0
    assert not state_dir.exists()
    left = [(s["name"], s["pid"], Path(f"/proc/{s['pid']}/stat").read_text())
            for s in state["servers"] if same_process(s["pid"], s["start"])]
    assert left == []
    changes = host_diff(before)
    assert changes == [], "\n".join(changes)


def test_a_broken_node_fails_naming_the_component_and_its_log(
        stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp_path = tmp_path_factory.mktemp("b")
    before = host_snapshot()
    node = RealNode(NodeConfig(name="real-node-broken", containerd_extra="[plugins.broken"),
                    tmp_path, kubelet=stack.bins.kubelet)
    node.reserve()
    try:
        with pytest.raises(ServerFailed) as info:
            node.start_runtime(s3_port=1)
    finally:
        node.stop()
    message = str(info.value)
    print(message)  # what a developer sees (pytest -s)
    assert message.startswith("real node real-node-broken: containerd exited with code")
    assert f"--- last lines of {tmp_path / 'logs' / 'containerd.log'} ---" in message
    assert "toml" in message.lower()
    changes = host_diff(before)
    assert changes == [], "\n".join(changes)
    assert not any(r.get("node_name") == "real-node-broken"
                   for _p, r in realnode._records())


def test_pid_and_start_time_identify_a_retitled_process(tmp_path: Path) -> None:
    """redis-server rewrites its argv; `down` must still recognise (and stop) it."""
    from tools.stack.process import free_port

    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: b"127.0.0.1" in Path(f"/proc/{proc.pid}/cmdline").read_bytes(),
                 "redis retitled", timeout=10)
        record = {"name": "redis", "pid": proc.pid, "start": start_time(proc.pid)}
        assert cli._alive(record)
        assert not cli._alive({**record, "start": record["start"] + 1})  # a reused pid
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not cli._alive(record)


# The product's default images, each run the way bot pods run: uid 1000, read-only root.
IMAGE_CHECKS = {
    "python:3.11-slim-bookworm": ["python", "-c", "import sys, os; print(sys.version_info[:2],"
                                  " os.getuid())"],
    "node:20-bookworm-slim": ["node", "-e", "console.log(process.versions.node.split('.')[0],"
                              " process.getuid())"],
    "gcc:13-bookworm": ["sh", "-c", "ldd --version | head -n1; id -u"],
    "the0/the0-k8s:latest": ["python3", "-c", "import botpod, os; print(botpod.__file__,"
                             " os.getuid())"],
}
IMAGE_EXPECTED = {
    "python:3.11-slim-bookworm": "(3, 11) 1000",
    "node:20-bookworm-slim": "20 1000",
    "gcc:13-bookworm": "GLIBC",
    "the0/the0-k8s:latest": "/opt/the0/lib/botpod/__init__.py 1000",
}


def test_every_image_runs_as_uid_1000_with_a_read_only_root(
        stack: Stack, stack_env: StackEnv, admin_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(admin_api)
    restricted(stack, namespace)
    names = {}
    for i, (image, command) in enumerate(IMAGE_CHECKS.items()):
        pod = real_pod(f"image-{i}", command, settings=stack_env.real_node_settings())
        pod["spec"]["containers"][0]["image"] = image
        core.create_namespaced_pod(namespace, pod)
        names[image] = f"image-{i}"
    for image, name in names.items():
        pod = wait_for(lambda n=name: (p := core.read_namespaced_pod(n, namespace)).status.phase
                       in ("Succeeded", "Failed") and p, f"{image} pod finished", timeout=90)
        logs = core.read_namespaced_pod_log(name, namespace)
        assert pod.status.phase == "Succeeded", f"{image}: {logs}"
        assert IMAGE_EXPECTED[image] in logs, f"{image}: {logs}"
