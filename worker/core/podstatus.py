"""Classify a pod (Kubernetes API JSON, camelCase) as pending, running, terminating or broken.

Pure: no I/O. Tolerates missing keys and nulls anywhere, since it reads whatever a light list
returned. Reads only `metadata.deletionTimestamp` and `status`: never the spec, whose env could
be copied into a message.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from worker.core.text import excerpt

MESSAGE_LIMIT = 200

BROKEN_WAITING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
"""Waiting reasons from which a container will not recover on its own."""

LAST_EXIT_REASONS = frozenset({"OOMKilled"})
"""A crash-looping container whose last run ended so is reported with that reason."""

_BROKEN_PHASES = {"Failed": "PodFailed", "Succeeded": "PodSucceeded", "Unknown": "PodUnknown"}


class PodHealth(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    TERMINATING = "terminating"
    BROKEN = "broken"


@dataclass(frozen=True, kw_only=True)
class PodAssessment:
    """What a pod's status says. `reason` is a short code; `message` a status text ≤ 200 chars."""

    health: PodHealth
    reason: str
    message: str
    restarts: int
    phase: str


def assess_pod(pod: Mapping[str, Any]) -> PodAssessment:
    """Classify one pod; the first matching rule wins: terminating, broken, running, pending."""
    status = _mapping(pod.get("status"))
    phase = _text(status.get("phase"))
    init_statuses = _mappings(status.get("initContainerStatuses"))
    main_statuses = _mappings(status.get("containerStatuses"))
    # Init containers count too: a crash-looping init container restarts like any other.
    restarts = sum(_count(s.get("restartCount")) for s in (*init_statuses, *main_statuses))

    def assessment(health: PodHealth, reason: str, message: str = "") -> PodAssessment:
        return PodAssessment(
            health=health,
            reason=reason,
            message=excerpt(message, limit=MESSAGE_LIMIT),
            restarts=restarts,
            phase=phase,
        )

    if _mapping(pod.get("metadata")).get("deletionTimestamp"):
        return assessment(PodHealth.TERMINATING, "Terminating")
    if phase in _BROKEN_PHASES:
        pod_reason = _text(status.get("reason"))
        pod_message = _text(status.get("message"))
        return assessment(PodHealth.BROKEN, _BROKEN_PHASES[phase], _join(pod_reason, pod_message))
    for container_status in (*init_statuses, *main_statuses):
        waiting = _mapping(_mapping(container_status.get("state")).get("waiting"))
        reason = _text(waiting.get("reason"))
        if reason in BROKEN_WAITING_REASONS:
            # Why the last run ended is what an operator needs: "OOMKilled" beats "back-off".
            last = _mapping(_mapping(container_status.get("lastState")).get("terminated"))
            last_reason = _text(last.get("reason"))
            exit_text = (f"last exit {last_reason or 'Error'} (code {_count(last.get('exitCode'))})"
                         if last else "")
            message = _join(f"container {_text(container_status.get('name')) or '?'}", reason,
                            exit_text, _text(waiting.get("message")))
            if last_reason in LAST_EXIT_REASONS:
                reason = last_reason
            return assessment(PodHealth.BROKEN, reason, message)
    for container_status in init_statuses:
        terminated = _mapping(_mapping(container_status.get("state")).get("terminated"))
        if _count(terminated.get("exitCode")) != 0:
            return assessment(
                PodHealth.BROKEN, "InitContainerFailed", _in_container(container_status, terminated)
            )
    if phase == "Running":
        return assessment(PodHealth.RUNNING, "Running")
    return assessment(PodHealth.PENDING, phase or "Pending", _text(status.get("message")))


def _in_container(container_status: Mapping[str, Any], state: Mapping[str, Any]) -> str:
    name = _text(container_status.get("name")) or "?"
    return _join(f"container {name}", _text(state.get("reason")), _text(state.get("message")))


def _join(*parts: str) -> str:
    return ": ".join(part for part in parts if part)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _mappings(value: object) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return ()
    return tuple(item for item in value if isinstance(item, Mapping))


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _count(value: object) -> int:
    # bool is an int, but never a count.
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
