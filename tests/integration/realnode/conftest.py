"""Bots that really run: the stack's real node (kubelet + containerd + runc) executes the pods.

The controller runs as the restricted identity with the real-node placement settings (the
node's taint is tolerated, its label selected), so every pod here lands on the real node and
runs the production pod spec: the project's image as init container and state-sync sidecar,
the plain language image for the bot.
"""

from __future__ import annotations

import io
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.bots import wait_for
from tools.stack.supervisor import StackEnv
from worker.reconcile.controller import LiveBotController, ScheduleController
from worker.runtime import Runtime
from worker.settings import load_settings

PYTHON_BOT = '''\
import logging
import os
import time

from helper import greeting  # a module beside the entry file: the code dir is on sys.path


def main(bot_id, config):
    path = os.path.join(os.environ["STATE_DIR"], "count.txt")
    count = int(open(path).read()) if os.path.exists(path) else 0
    count += 1
    # A new file renamed over the old, as the SDKs' state API writes: the sidecar's snapshot
    # of a file truncated and not yet written again would save an empty count (it did once).
    with open(path + ".new", "w") as out:
        out.write(str(count))
    os.replace(path + ".new", path)
    print(f"{greeting()} {bot_id} run {count} symbol={config['symbol']} "
          f"amount={config['amount']} cwd={os.getcwd()}", flush=True)
    logging.info("logging reaches the log too")
    if config.get("crash"):
        time.sleep(config.get("crash_after", 0))
        raise RuntimeError("the bot failed on purpose")
    if config.get("hog"):
        hoard = []
        while True:
            hoard.append(bytearray(8 * 2**20))
    if config.get("once"):
        return {"trades": 1}
    while True:
        time.sleep(1)
'''

NODE_BOT = '''\
async function main(botId, config) {
  console.log(`node bot ${botId} symbol=${config.symbol} node=${process.version}`);
  setInterval(() => {}, 1000);  // a real bot holds a socket or a timer
  return new Promise(() => {});
}
module.exports = { main };
'''

C_BOT = r'''
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
    printf("c bot %s config %s\n", getenv("BOT_ID"), getenv("BOT_CONFIG"));
    fflush(stdout);
    for (;;) sleep(1);
}
'''


def code_zip(files: dict[str, bytes | str], *, executable: frozenset[str] = frozenset()
             ) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100755 if name in executable else 0o100644) << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def live_doc(bot_id: str, *, code_key: str, runtime: str = "python3.11",
             entry: str | None = None, version: str = "1.0.0", **config: Any) -> dict[str, Any]:
    code_config: dict[str, Any] = {"runtime": runtime, "name": "real"}
    if entry is not None:
        code_config["entrypoints"] = {"bot": entry}
    return {"id": bot_id,
            "config": {"name": f"bot {bot_id}", "type": "realtime", "version": version,
                       "symbol": "BTC/USDT", "amount": 25, **config},
            "custom": {"version": version, "filePath": code_key, "config": code_config}}


@dataclass
class RealNode:
    """What a real-node test needs: controllers placed on the real node, code upload, pods,
    their logs, and the saved state."""

    env: dict[str, str]
    s3: Any
    core: Any
    namespace: str
    code_bucket: str
    state_bucket: str
    runtimes: list[Runtime] = field(default_factory=list)

    def controller(self, **overrides: Any) -> LiveBotController:
        self.runtimes.append(Runtime(load_settings(env={**self.env, **{
            k: str(v) for k, v in overrides.items()}})))
        return LiveBotController(self.runtimes[-1])

    def schedule_controller(self, **overrides: Any) -> ScheduleController:
        self.runtimes.append(Runtime(load_settings(env={**self.env, **{
            k: str(v) for k, v in overrides.items()}})))
        return ScheduleController(self.runtimes[-1])

    def upload(self, key: str, files: dict[str, bytes | str],
               executable: frozenset[str] = frozenset()) -> str:
        data = code_zip(files, executable=executable)
        self.s3.put_object(self.code_bucket, key, io.BytesIO(data), len(data))
        return key

    def upload_python_bot(self, key: str = "bots/py/1.0.0.zip") -> str:
        return self.upload(key, {"main.py": PYTHON_BOT,
                                 "helper.py": "def greeting():\n    return 'python bot'\n"})

    def pod(self, name: str) -> Any | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.core.read_namespaced_pod(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def container_status(self, name: str, container: str = "bot") -> Any | None:
        pod = self.pod(name)
        statuses = (pod.status.container_statuses or []) if pod else []
        return next((s for s in statuses if s.name == container), None)

    def log(self, name: str, *, previous: bool = False) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            return str(self.core.read_namespaced_pod_log(name, self.namespace, container="bot",
                                                         previous=previous))
        except ApiException:
            return ""

    def wait_log(self, name: str, text: str, timeout: float = 90) -> str:
        """Waits until the bot container's log (via the API server and the kubelet) has
        `text`; fails with the pod's status when it never comes."""
        try:
            return str(wait_for(lambda: text in (log := self.log(name)) and log,
                                f"{text!r} in the log of {name}", timeout=timeout,
                                interval=0.5))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe(name)}") from None

    def describe(self, name: str) -> str:
        """Each container's state and the tail of its log: why a pod did not do its job."""
        pod = self.pod(name)
        if pod is None:
            return "no pod"
        lines = [f"pod {name}: phase {pod.status.phase}"]
        for status in [*(pod.status.init_container_statuses or []),
                       *(pod.status.container_statuses or [])]:
            lines.append(f"  {status.name}: {status.state} last: {status.last_state}")
            for previous in (False, True):
                try:
                    text = self.core.read_namespaced_pod_log(
                        name, self.namespace, container=status.name, previous=previous,
                        tail_lines=15)
                except Exception:
                    continue
                lines.append(f"  --- {status.name} log{' (previous)' if previous else ''}:\n"
                             f"{text}")
        return "\n".join(lines)

    def wait_crash_loop(self, name: str, timeout: float = 120) -> None:
        """Waits until the kubelet holds the bot container in CrashLoopBackOff."""
        wait_for(lambda: (s := self.container_status(name)) is not None
                 and s.state.waiting is not None and s.state.waiting.reason == "CrashLoopBackOff",
                 f"{name} in CrashLoopBackOff", timeout=timeout, interval=1)

    def saved_state(self, bot_id: str) -> dict[str, bytes] | None:
        """The files of the bot's state object in S3 (None when it has none)."""
        try:
            response = self.s3.get_object(self.state_bucket, f"{bot_id}/state.tar.gz")
        except Exception as exc:
            if getattr(exc, "code", "") in ("NoSuchKey", "NoSuchObject"):
                return None
            raise
        try:
            data = response.read()
        finally:
            response.close()
            response.release_conn()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            return {m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
                    for m in archive.getmembers() if m.isfile()}

    def wait_saved_count(self, bot_id: str, at_least: int, timeout: float = 60) -> int:
        def count() -> int:
            files = self.saved_state(bot_id) or {}
            raw = next((v for k, v in files.items() if k.endswith("count.txt")), b"0")
            return int(raw or b"0")

        return int(wait_for(lambda: (c := count()) >= at_least and c,
                            f"state of {bot_id} saved with count >= {at_least}",
                            timeout=timeout, interval=0.5))


@pytest.fixture
def real(stack_env: StackEnv, settings_env: dict[str, str], s3: Any, bucket: str,
         test_id: str, core: Any, restricted_namespace: str, log_bucket: str
         ) -> Iterator[RealNode]:
    state_bucket = f"t-{test_id}-state"
    env = {**settings_env, **stack_env.real_node_settings(),
           "STATE_BUCKET": state_bucket, "STATE_SYNC_INTERVAL": "1s",
           "BOT_TERMINATION_GRACE": "15s", "LOG_BUCKET": log_bucket,
           "CRASH_BACKOFF_BASE": "1s"}
    node = RealNode(env=env, s3=s3, core=core, namespace=restricted_namespace,
                    code_bucket=bucket, state_bucket=state_bucket)
    yield node
    for rt in node.runtimes:
        rt.close()
    # Pods first (their sidecars upload on the way out), then the state bucket.
    core.delete_collection_namespaced_pod(restricted_namespace, grace_period_seconds=0)
    deadline = time.monotonic() + 30
    while core.list_namespaced_pod(restricted_namespace).items and time.monotonic() < deadline:
        time.sleep(0.5)
    # A pod gone from the API may still be stopping on the node (grace 0 is the API's word,
    # not the kubelet's): its sidecar's last upload can land after the bucket was listed.
    for attempt in range(20):
        if not s3.bucket_exists(state_bucket):
            break
        for obj in s3.list_objects(state_bucket, recursive=True):
            s3.remove_object(state_bucket, obj.object_name)
        try:
            s3.remove_bucket(state_bucket)
        except Exception as error:
            if getattr(error, "code", "") != "BucketNotEmpty" or attempt == 19:
                raise
            time.sleep(0.5)


@pytest.fixture
def batch(admin_api: Any) -> Any:
    from kubernetes import client

    return client.BatchV1Api(admin_api)
