"""Pod classification from raw status JSON: each rule, precedence, and robustness to junk."""

from typing import Any

import pytest

from worker.core.podstatus import PodAssessment, PodHealth, assess_pod

# Waiting reasons a container does not recover from by itself, written out here (not read from
# the product): the kubelet's back-off and image errors, and its container set-up errors.
STUCK_WAITING_REASONS = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
]


def pod(
    phase: str | None = "Running",
    *,
    init: list[dict[str, Any]] | None = None,
    main: list[dict[str, Any]] | None = None,
    deleting: bool = False,
    **status: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "bot-a", "annotations": {"the0.dev/bot-id": "a"}}
    if deleting:
        metadata["deletionTimestamp"] = "2024-06-01T00:00:00Z"
    return {
        "metadata": metadata,
        "spec": {"containers": [{"name": "bot", "env": [{"name": "K", "value": "SPEC-SECRET"}]}]},
        "status": {
            "phase": phase,
            "initContainerStatuses": init,
            "containerStatuses": main,
            **status,
        },
    }


def waiting(reason: str, message: str = "", name: str = "bot", restarts: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "restartCount": restarts,
        "state": {"waiting": {"reason": reason, "message": message}},
    }


def running(name: str = "bot", restarts: int = 0) -> dict[str, Any]:
    return {"name": name, "restartCount": restarts, "state": {"running": {"startedAt": "t"}}}


def terminated(exit_code: int, reason: str = "", name: str = "fetch-code") -> dict[str, Any]:
    return {
        "name": name,
        "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": reason}},
    }


def test_a_running_pod() -> None:
    assert assess_pod(pod("Running", init=[terminated(0, "Completed")], main=[running()])) == (
        PodAssessment(
            health=PodHealth.RUNNING, reason="Running", message="", restarts=0, phase="Running"
        )
    )


@pytest.mark.parametrize("phase", ["Pending", None, "", "SomethingNew"])
def test_anything_not_yet_running_is_pending(phase: str | None) -> None:
    result = assess_pod(pod(phase))
    assert result.health is PodHealth.PENDING
    assert result.reason == (phase or "Pending")


@pytest.mark.parametrize("reason", ["ContainerCreating", "PodInitializing"])
def test_ordinary_waiting_reasons_are_pending(reason: str) -> None:
    assert assess_pod(pod("Pending", main=[waiting(reason)])).health is PodHealth.PENDING


def test_a_deleting_pod_is_terminating_whatever_else_it_says() -> None:
    result = assess_pod(pod("Failed", main=[waiting("CrashLoopBackOff")], deleting=True))
    assert (result.health, result.reason) == (PodHealth.TERMINATING, "Terminating")


@pytest.mark.parametrize(
    ("phase", "reason"),
    [("Failed", "PodFailed"), ("Succeeded", "PodSucceeded"), ("Unknown", "PodUnknown")],
)
def test_final_or_lost_phases_are_broken(phase: str, reason: str) -> None:
    result = assess_pod(pod(phase))
    assert (result.health, result.reason, result.phase) == (PodHealth.BROKEN, reason, phase)


def test_an_eviction_keeps_its_status_reason_and_message() -> None:
    result = assess_pod(pod("Failed", reason="Evicted", message="The node was low on memory."))
    assert result.message == "Evicted: The node was low on memory."


@pytest.mark.parametrize("reason", STUCK_WAITING_REASONS)
@pytest.mark.parametrize("where", ["init", "main"])
def test_stuck_waiting_reasons_are_broken(reason: str, where: str) -> None:
    stuck = [waiting(reason, "back-off 5m0s restarting", name="c1")]
    raw = pod("Pending", init=stuck) if where == "init" else pod("Pending", main=stuck)
    result = assess_pod(raw)
    assert (result.health, result.reason) == (PodHealth.BROKEN, reason)
    assert result.message == f"container c1: {reason}: back-off 5m0s restarting"


def test_a_crash_looping_main_container_in_a_running_pod_is_broken() -> None:
    result = assess_pod(pod("Running", main=[waiting("CrashLoopBackOff", restarts=7)]))
    assert (result.health, result.reason, result.restarts) == (
        PodHealth.BROKEN,
        "CrashLoopBackOff",
        7,
    )


def test_a_failed_init_container_is_broken() -> None:
    result = assess_pod(pod("Pending", init=[terminated(1, "Error")]))
    assert (result.health, result.reason) == (PodHealth.BROKEN, "InitContainerFailed")
    assert result.message == "container fetch-code: Error"


def test_a_finished_init_container_is_fine() -> None:
    assert assess_pod(pod("Pending", init=[terminated(0, "Completed")])).health is PodHealth.PENDING


def test_a_non_zero_main_container_exit_alone_is_not_broken() -> None:
    # With restartPolicy Always it restarts; CrashLoopBackOff is what marks it broken.
    main = [terminated(137, "OOMKilled", name="bot")]
    assert assess_pod(pod("Running", main=main)).health is PodHealth.RUNNING


def test_init_containers_are_checked_before_main_containers() -> None:
    result = assess_pod(
        pod("Pending", init=[waiting("ErrImagePull", name="fetch-code")], main=[waiting("X")])
    )
    assert result.reason == "ErrImagePull"


def test_restarts_add_up_over_all_containers() -> None:
    result = assess_pod(
        pod("Running", init=[waiting("PodInitializing", restarts=2)], main=[running(restarts=3)])
    )
    assert result.restarts == 5


def test_the_message_is_truncated_and_single_line() -> None:
    result = assess_pod(pod("Failed", reason="Evicted", message="line\n" * 100))
    assert len(result.message) <= 200
    assert "\n" not in result.message


def test_the_spec_never_reaches_the_message() -> None:
    for candidate in [
        pod("Failed", reason="Evicted"),
        pod("Pending", main=[waiting("CreateContainerConfigError", "secret not found")]),
        pod("Pending", init=[terminated(2, "Error")]),
        pod("Pending", message="waiting"),
    ]:
        result = assess_pod(candidate)
        assert "SPEC-SECRET" not in repr(result)


@pytest.mark.parametrize(
    "junk",
    [
        {},
        {"metadata": None, "status": None},
        {"status": {"phase": None, "containerStatuses": None}},
        {"status": {"containerStatuses": [None, 5, "x", {"state": None}]}},
        {"status": {"containerStatuses": [{"state": {"waiting": None}}]}},
        {"status": {"containerStatuses": "CrashLoopBackOff"}},
        {"status": {"initContainerStatuses": [{"state": {"terminated": {"exitCode": None}}}]}},
        {"status": {"containerStatuses": [{"restartCount": "3"}, {"restartCount": True}]}},
        {"status": {"phase": 5, "message": ["x"], "reason": {}}},
        {"metadata": {"deletionTimestamp": None}},
    ],
)
def test_missing_or_odd_fields_never_crash(junk: dict[str, Any]) -> None:
    result = assess_pod(junk)
    assert result.health is PodHealth.PENDING
    assert result.restarts == 0


def test_a_waiting_state_without_reason_is_not_broken() -> None:
    junk = {"status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {}}}]}}
    assert assess_pod(junk).health is PodHealth.PENDING


def test_a_broken_container_without_a_name_still_has_a_message() -> None:
    status = {"state": {"waiting": {"reason": "ImagePullBackOff"}}}
    result = assess_pod({"status": {"phase": "Pending", "containerStatuses": [status]}})
    assert result.message == "container ?: ImagePullBackOff"


def test_a_crash_loop_names_how_the_last_run_ended() -> None:
    status = waiting("CrashLoopBackOff", restarts=3)
    status["lastState"] = {"terminated": {"reason": "Error", "exitCode": 1}}
    result = assess_pod(pod("Running", main=[status]))
    assert result.reason == "CrashLoopBackOff"
    assert "last exit Error (code 1)" in result.message


def test_an_oom_killed_crash_loop_is_reported_as_oom_killed() -> None:
    status = waiting("CrashLoopBackOff", restarts=2)
    status["state"]["waiting"]["message"] = "back-off 20s restarting failed container=" + "x" * 300
    status["lastState"] = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
    result = assess_pod(pod("Running", main=[status]))
    assert result.health is PodHealth.BROKEN
    assert result.reason == "OOMKilled"
    assert "last exit OOMKilled (code 137)" in result.message  # survives the 200-char excerpt
