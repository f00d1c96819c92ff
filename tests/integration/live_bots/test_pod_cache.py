"""The watched pod cache (worker/informer.py) against the real API server: it follows changes
made by others, sees its own writes at once, fails closed when the watch or the server fails,
and lists again after."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.bots import bot_doc, cache_sees, run_pass, wait_for
from tools.stack.supervisor import Stack
from worker.core.errors import ReadFailed
from worker.core.planner import observed_pod
from worker.informer import Informer
from worker.reconcile.controller import LiveBotController
from worker.reconcile.pods import POD_SELECTOR


def pod_cache(controller: LiveBotController) -> Informer[Any]:
    caches = [i for i in controller.rt.informers() if i.name == "pods"]
    assert len(caches) == 1, caches
    return caches[0]


def cached_names(controller: LiveBotController) -> list[str]:
    return sorted(p.name for p in controller.rt.read_objects("pods", POD_SELECTOR,
                                                              observed_pod))


def test_the_cache_follows_other_writers_without_listing_again(
        make_controller: Callable[..., LiveBotController], bots: Any, core: Any,
        restricted_namespace: str) -> None:
    bots.insert_many([bot_doc("w1"), bot_doc("w2")])
    writer, reader = make_controller(), make_controller()  # two processes' worth of runtime
    assert cached_names(reader) == []
    run_pass(writer)
    cache_sees(reader, lambda pods: sorted(pods) == ["bot-w1", "bot-w2"], "both pods")
    wait_for(lambda: all(p.assessment.phase == "Running" for p in reader.rt.read_objects(
        "pods", POD_SELECTOR, observed_pod)), "the cache to show both Running (kwok)")
    core.delete_namespaced_pod("bot-w1", restricted_namespace)
    cache_sees(reader, lambda pods: "bot-w1" not in pods, "the deleted pod gone")
    cache = pod_cache(reader)
    assert cache.lists == 1 and cache.events >= 4, (cache.lists, cache.events)


def test_a_pass_sees_its_own_writes_at_once(controller: LiveBotController, bots: Any) -> None:
    bots.insert_many([bot_doc(f"own{i}") for i in range(5)])
    _, outcomes = run_pass(controller)
    assert outcomes == ["created"] * 5
    # No wait: the read waits for the watch to deliver the newest pod this process created.
    assert controller.rt.kube.written_version("pods") > 0
    report, outcomes = run_pass(controller)
    assert outcomes == [] and report.counts["create"] == 0
    assert pod_cache(controller).lists == 1


@pytest.mark.slow(seconds=15)
def test_the_api_server_down_fails_the_read_and_the_cache_lists_again_after(
        stack: Stack, controller: LiveBotController, bots: Any, core: Any,
        restricted_namespace: str) -> None:
    bots.insert_many([bot_doc("r1"), bot_doc("r2")])
    run_pass(controller)
    cache = pod_cache(controller)
    assert cache.synced and cache.lists == 1
    with stack.stopped("kube-apiserver"):
        wait_for(lambda: not cache.synced, "the broken watch to unsync the cache")
        with pytest.raises(ReadFailed):
            controller.rt.read_objects("pods", POD_SELECTOR, observed_pod)
    # Back up: a pod deleted by someone else right away is not in the fresh list.
    wait_for(lambda: _deleted(core, restricted_namespace, "bot-r1"), "the API server back",
             timeout=60, interval=1)
    wait_for(lambda: _gone(core, restricted_namespace, "bot-r1"), "bot-r1 gone")
    assert cached_names(controller) == ["bot-r2"]
    assert cache.lists == 2 and cache.synced
    _, outcomes = run_pass(controller)
    assert outcomes == ["created"]


def _deleted(core: Any, namespace: str, name: str) -> bool:
    try:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        return True
    except Exception:  # the API server still starting
        return False


def _gone(core: Any, namespace: str, name: str) -> bool:
    return name not in {p.metadata.name for p in core.list_namespaced_pod(namespace).items}


def test_a_deletion_by_another_worker_is_not_taken_for_someone_elses(
        make_controller: Callable[..., LiveBotController], bots: Any, core: Any,
        restricted_namespace: str) -> None:
    # Two worker processes each watch every pod. A pod one of them deletes (a replace, a
    # disable) was taken by the other for a deletion by someone else and reconciled again at
    # once — a spare task per deletion, retried while the first still held the bot's lock
    # (the 10,000-bot chaos run: hundreds during its storm). A deletion by anyone else still is.
    bots.insert_many([bot_doc("d1"), bot_doc("d2")])
    acting, watching = make_controller(), make_controller()
    run_pass(acting)
    foreign: list[str] = []
    watching.rt.on_foreign_pod_delete = foreign.append
    cache_sees(watching, lambda pods: sorted(pods) == ["bot-d1", "bot-d2"], "both pods")
    bots.update_one({"id": "d1"}, {"$set": {"enabled": False}})
    assert acting.converge("d1", intent="event") == "deleted"
    cache_sees(watching, lambda pods: "bot-d1" not in pods, "the disabled bot's pod gone")
    core.delete_namespaced_pod("bot-d2", restricted_namespace)
    # The watch thread calls the hook just after it drops the pod, and one event at a time:
    # once d2's call came, d1's is over.
    wait_for(lambda: foreign, "the hand deletion taken for someone else's", timeout=10)
    assert foreign == ["d2"]
