"""Bot pods whose container logs are files the test appends to (kwok `Logs` objects), and
helpers to read what the collector wrote to S3."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from worker.core import naming

_RESTRICTED_POD = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"}},
}
_RESTRICTED_CONTAINER = {
    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
}


def cri(ts: str, text: str, stream: str = "stdout", tag: str = "F") -> str:
    """One line of a container log file in the CRI format the kubelet (and kwok) read."""
    return f"{ts} {stream} {tag} {text}\n"


def now_ts(offset: float = 0.0) -> str:
    return datetime.fromtimestamp(time.time() + offset, tz=UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%f") + "000Z"


class LoggedPod:
    """A bot pod (our labels) with a current and a previous log file under `directory`."""

    def __init__(self, admin_api: Any, namespace: str, directory: Path, bot_id: str, *,
                 name: str | None = None, managed_by: str = naming.MANAGED_BY_BOT) -> None:
        self.admin_api = admin_api
        self.core = client.CoreV1Api(admin_api)
        self.namespace = namespace
        self.bot_id = bot_id
        self.name = name or naming.pod_name(bot_id)
        self.current = directory / f"{self.name}.log"
        self.previous = directory / f"{self.name}.previous.log"
        self.current.touch()
        self.previous.touch()
        self.managed_by = managed_by

    def create(self) -> LoggedPod:
        client.CustomObjectsApi(self.admin_api).create_namespaced_custom_object(
            "kwok.x-k8s.io", "v1alpha1", self.namespace, "logs", {
                "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"logs": [{"containers": ["bot"], "logsFile": str(self.current),
                                   "previousLogsFile": str(self.previous)}]}})
        self.core.create_namespaced_pod(self.namespace, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self.name, "labels": {
                naming.LABEL_APP: naming.APP_BOT,
                naming.LABEL_BOT_ID: naming.label_value(self.bot_id),
                naming.LABEL_MANAGED_BY: self.managed_by},
                "annotations": {naming.ANNOTATION_BOT_ID: self.bot_id}},
            "spec": {**_RESTRICTED_POD, "restartPolicy": "Always", "containers": [
                {"name": "bot", "image": "the0/python311:latest", **_RESTRICTED_CONTAINER}]}})
        self.wait_running()
        return self

    def wait_running(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pod = self.core.read_namespaced_pod(self.name, self.namespace)
            if pod.status.phase == "Running" and pod.status.container_statuses \
                    and self._logs_served():
                return
            time.sleep(0.2)
        raise AssertionError(f"pod {self.name} not Running with logs served in {timeout} s")

    def _logs_served(self) -> bool:
        try:
            self.core.read_namespaced_pod_log(self.name, self.namespace, container="bot")
            return True
        except client.ApiException:
            return False  # kwok has not loaded the Logs object yet

    @property
    def uid(self) -> str:
        return str(self.core.read_namespaced_pod(self.name, self.namespace).metadata.uid)

    def write(self, *texts: str, ts: str | None = None, to_previous: bool = False) -> list[str]:
        """Appends lines (all with the same timestamp when `ts` is given)."""
        path = self.previous if to_previous else self.current
        with path.open("a") as out:
            for text in texts:
                out.write(cri(ts or now_ts(), text))
        return list(texts)

    def restart(self, *, exit_code: int, restarts: int = 1) -> None:
        """The container died and was restarted: its file becomes the previous one, and the
        status says so (kwok leaves a Running pod's status alone)."""
        self.previous.write_text(self.current.read_text())
        self.current.write_text("")
        self.set_status({"restartCount": restarts, "state": {"running": {
            "startedAt": now_ts()[:19] + "Z"}},
            "lastState": {"terminated": {"exitCode": exit_code, "reason": "Error",
                                         "finishedAt": now_ts()[:19] + "Z"}}})

    def terminate(self, *, exit_code: int) -> None:
        self.set_status({"restartCount": 0, "state": {"terminated": {
            "exitCode": exit_code, "reason": "Error" if exit_code else "Completed",
            "finishedAt": now_ts()[:19] + "Z"}}}, phase="Failed" if exit_code else "Succeeded")

    def set_status(self, container: dict[str, Any], *, phase: str = "Running") -> None:
        self.core.patch_namespaced_pod_status(self.name, self.namespace, {"status": {
            "phase": phase,
            "containerStatuses": [{"name": "bot", "image": "the0/python311:latest",
                                   "imageID": "", "ready": phase == "Running", **container}]}})


def shipped(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    try:
        response = s3.get_object(bucket, key)
    except Exception as exc:
        # No bucket yet: the log worker creates it before its first upload.
        if getattr(exc, "code", "") in ("NoSuchKey", "NoSuchObject", "NoSuchBucket"):
            return []
        raise
    try:
        data = response.read()
    finally:
        response.close()
        response.release_conn()
    return [json.loads(line) for line in data.decode().splitlines()]


def messages(records: list[dict[str, Any]]) -> list[str]:
    return [str(r.get("message")) for r in records]
