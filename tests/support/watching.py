"""Watching pods from a known point: list first, then replay every change after the list's
resourceVersion until a condition holds. The replay starts at the version, not when the watch
connects, so no change between the list and the watch can be missed, and it ends on the
condition (or fails at its deadline), never after an idle timeout."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from kubernetes import watch

from worker.core.naming import ANNOTATION_BOT_ID

SELECTOR = "managed-by=the0-bot-controller"
MARK = "test.the0.dev/mark"
Event = tuple[str, Any]  # (ADDED | MODIFIED | DELETED, the pod)


def list_pods(core: Any, namespace: str, selector: str = SELECTOR) -> tuple[list[Any], str]:
    """Our pods now and the list's resourceVersion (where a replay starts)."""
    listed = core.list_namespaced_pod(namespace, label_selector=selector)
    return list(listed.items), str(listed.metadata.resource_version)


def events_since(core: Any, namespace: str, version: str, *,
                 until: Callable[[str, Any], bool], timeout: float = 30.0,
                 selector: str = SELECTOR) -> list[Event]:
    """Every change to our pods after `version`, up to and including the first one `until`
    accepts. Fails when the deadline passes first, or when the server no longer keeps that
    version (410: the test took too long)."""
    seen: list[Event] = []
    deadline = time.monotonic() + timeout
    stream = watch.Watch()
    while time.monotonic() < deadline:
        for event in stream.stream(core.list_namespaced_pod, namespace, label_selector=selector,
                                   resource_version=version, allow_watch_bookmarks=False,
                                   timeout_seconds=max(1, int(deadline - time.monotonic()))):
            if event["type"] == "ERROR":
                raise AssertionError(f"the pod watch failed: {event['raw_object']}")
            pod = event["object"]
            seen.append((event["type"], pod))
            version = pod.metadata.resource_version
            if until(event["type"], pod):
                stream.stop()
                return seen
    raise AssertionError(f"no awaited pod event within {timeout} s; saw "
                         f"{[(kind, pod.metadata.name) for kind, pod in seen]}")


def mark_pod(core: Any, namespace: str, name: str) -> Callable[[str, Any], bool]:
    """Annotates a pod with a fresh token: a change made after everything before it. Returns
    the condition that recognises it in a replay (so a replay can end right there)."""
    token = secrets.token_hex(4)
    core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": {MARK: token}}})
    return lambda _kind, pod: (pod.metadata.annotations or {}).get(MARK) == token


def most_at_once(listed: Iterable[Any], events: Iterable[Event]) -> dict[str, int]:
    """Per bot id, the most pods (terminating ones included) that existed at one moment,
    starting from the listed pods and applying the events in order."""
    current = {pod.metadata.uid: bot_of(pod) for pod in listed}
    most: dict[str, int] = {}

    def count() -> None:
        for bot in set(current.values()):
            most[bot] = max(most.get(bot, 0), list(current.values()).count(bot))

    count()
    for kind, pod in events:
        if kind == "DELETED":
            current.pop(pod.metadata.uid, None)
        else:
            current[pod.metadata.uid] = bot_of(pod)
        count()
    return most


def bot_of(pod: Any) -> str:
    return str((pod.metadata.annotations or {}).get(ANNOTATION_BOT_ID, "?"))
