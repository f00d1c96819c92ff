"""Building bot documents and code zips, and driving a controller pass in-process."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable
from typing import Any

from worker.core.errors import TemporaryError
from worker.core.planner import Action, ObservedPod, observed_pod
from worker.reconcile.controller import Controller, LiveBotController
from worker.reconcile.passes import PassReport
from worker.reconcile.pods import POD_SELECTOR

CODE_KEY = "bots/demo/v1.zip"


def code_zip(files: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in (files or {"main.py": "print('trading')\n"}).items():
            archive.writestr(name, text)
    return buffer.getvalue()


def upload_code(s3: Any, bucket: str, key: str = CODE_KEY) -> str:
    data = code_zip()
    s3.put_object(bucket, key, io.BytesIO(data), len(data))
    return key


def bot_doc(bot_id: str, *, runtime: str = "python3.11", code_key: str = CODE_KEY,
            version: str = "1.0.0", **config: Any) -> dict[str, Any]:
    return {
        "id": bot_id,
        "config": {"name": f"bot {bot_id}", "type": "realtime", "version": version,
                   "api_key": f"SECRET-{bot_id}", **config},
        "custom": {"version": version, "filePath": code_key,
                   "config": {"runtime": runtime, "name": "demo",
                              "entrypoints": {"bot": "main.py"}}},
    }


def run_pass(controller: Controller) -> tuple[PassReport, list[str]]:
    """One reconcile pass (either kind) whose per-bot actions run right here, in turn."""
    report, queued = pass_without_actions(controller)
    return report, [run_action(controller, action) for action in queued]


def pass_without_actions(controller: Controller) -> tuple[PassReport, list[Action]]:
    """One reconcile pass; the actions it enqueued are returned, not run: their in-flight
    marks stay taken (as while their tasks wait in the queue) until `run_action` ends them."""
    queued: list[Action] = []
    report = controller.reconcile(enqueue=lambda action, _as_of: queued.append(action))
    return report, queued


def run_action(controller: Controller, action: Action) -> str:
    """One enqueued action, run as the product's action task treats its in-flight mark
    (worker/tasks/base.py): released once the action ends for good (done, or failed for
    good); kept when a temporary error propagates, as while its retry waits in the queue."""
    release = True
    try:
        return controller.converge(action.bot_id, intent=action.kind.value,
                                   pod=action.pod_name)
    except TemporaryError:
        release = False
        raise
    finally:
        if release:
            controller.rt.redis.release_inflight(controller.kind.bot_kind.value, action.bot_id)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0,
             interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def cache_sees(controller: LiveBotController, check: Callable[[dict[str, ObservedPod]], Any],
               what: str) -> None:
    """Waits until the controller's watched pod cache shows a change made by someone else
    (the admin API here): passes read that cache, which follows the watch milliseconds
    behind. The controller's own writes need no wait (read-your-writes)."""
    wait_for(lambda: check({p.name: p for p in controller.rt.read_objects(
        "pods", POD_SELECTOR, observed_pod)}), f"the pod cache to show {what}", timeout=10)


def schedule_doc(bot_id: str, schedule: str = "0 3 * * *", *, timezone: str | None = None,
                 **config: Any) -> dict[str, Any]:
    doc = bot_doc(bot_id, **config)
    doc["config"]["schedule"] = schedule
    doc["config"]["type"] = "scheduled"
    if timezone is not None:
        doc["config"]["timezone"] = timezone
    return doc


class CountedRequests:
    """The adapter's request observer (`Runtime(kube_observer=…)`): counts the requests of one
    verb on one resource ("get", "pods")."""

    def __init__(self, verb: str, resource: str) -> None:
        self.what = (verb, resource)
        self.count = 0

    def __call__(self, verb: str, resource: str, status: int) -> None:
        self.count += (verb, resource) == self.what

    def taken(self) -> int:
        count, self.count = self.count, 0
        return count
