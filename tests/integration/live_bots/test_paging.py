"""Paginated pod lists on the real API server, LIST_PAGE_SIZE lowered to 50 with 60 bots: two
pages. A pass sees every page; a page after the first that fails (the controller's rights
revoked) or whose continue token has expired (etcd compacted, the API server restarted so its
cache cannot serve the old snapshot) ends the pass with nothing written — with the watched
cache (KUBE_WATCH, the default) and without it.

The failure is made between two pages through the adapter's request observer
(`Runtime(kube_observer=…)`, the metrics hook): it runs after each response, before the
next request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.bots import bot_doc, run_pass, wait_for
from tests.support.levers import compact_etcd, regrant_controller, revoke_controller
from tools.stack.supervisor import Stack
from worker.core.errors import ReadFailed
from worker.reconcile.controller import LiveBotController
from worker.runtime import Runtime
from worker.settings import load_settings

PAGE = 50
IDS = [f"p{i:02d}" for i in range(60)]  # two pages


class BetweenPages:
    """The adapter's request observer: `act` runs once, right after the first page of a pod
    list came back, before the next page is asked for."""

    def __init__(self) -> None:
        self.act: Callable[[], None] | None = None
        self.pod_lists = 0

    def __call__(self, verb: str, resource: str, status: int) -> None:
        if (verb, resource) != ("list", "pods"):
            return
        self.pod_lists += 1
        act, self.act = self.act, None
        if act is not None and status == 200:
            act()


@pytest.fixture
def paged(settings_env: dict[str, str], bucket_code: str
          ) -> Iterator[Callable[..., tuple[LiveBotController, BetweenPages]]]:
    runtimes: list[Runtime] = []

    def build(**overrides: str) -> tuple[LiveBotController, BetweenPages]:
        hook = BetweenPages()
        settings = load_settings(env={**settings_env, "LIST_PAGE_SIZE": str(PAGE), **overrides})
        runtimes.append(Runtime(settings, kube_observer=hook))
        return LiveBotController(runtimes[-1]), hook

    yield build
    for rt in runtimes:
        rt.close()


def sixty_running(controller: LiveBotController, bots: Any, core: Any, namespace: str) -> None:
    bots.insert_many([bot_doc(bot_id) for bot_id in IDS])
    _, outcomes = run_pass(controller)
    assert outcomes == ["created"] * len(IDS)
    wait_for(lambda: sum(p.status.phase == "Running"
                         for p in core.list_namespaced_pod(namespace).items) == len(IDS),
             "60 pods Running", timeout=60, interval=0.5)
    run_pass(controller)  # records their Running status


def world(core: Any, statuses: Any, redis_client: Any, namespace: str) -> dict[str, Any]:
    """What a pass could have written: pods, Secrets, status documents, in-flight marks."""
    return {"pods": sorted((p.metadata.name, p.metadata.uid)
                           for p in core.list_namespaced_pod(namespace).items),
            "secrets": sorted(s.metadata.uid
                              for s in core.list_namespaced_secret(namespace).items),
            "statuses": sorted((d["id"], str(d)) for d in statuses.find({}, {"_id": False})),
            "inflight": sorted(redis_client.keys("the0:inflight:*"))}


def change_the_world(bots: Any) -> None:
    """Changes a pass would act on: three bots removed, two added, one reconfigured."""
    bots.delete_many({"id": {"$in": ["p01", "p30", "p59"]}})
    bots.insert_many([bot_doc("q1"), bot_doc("q2")])
    bots.update_one({"id": "p10"}, {"$set": {"config.risk": "high"}})


def fails_with_nothing_written(controller: LiveBotController, match: str, *, core: Any,
                               statuses: Any, redis_client: Any, namespace: str) -> None:
    before = world(core, statuses, redis_client, namespace)
    queued: list[Any] = []
    with pytest.raises(ReadFailed, match=match):
        controller.reconcile(enqueue=lambda action, _as_of: queued.append(action))
    assert queued == []
    assert world(core, statuses, redis_client, namespace) == before


@pytest.mark.parametrize("kube_watch", ["true", "false"])
def test_a_pass_reads_every_page(
        kube_watch: str, paged: Callable[..., tuple[LiveBotController, BetweenPages]],
        bots: Any, core: Any, restricted_namespace: str) -> None:
    creator, _ = paged(KUBE_WATCH=kube_watch)
    sixty_running(creator, bots, core, restricted_namespace)
    reader, hook = paged(KUBE_WATCH=kube_watch)  # a fresh process: its first read lists
    requests_before = reader.rt.kube.list_requests
    report, outcomes = run_pass(reader)
    assert outcomes == [] and sum(report.counts.values()) == 0, report.counts
    assert report.bots["desired"] == len(IDS) and report.bots["running"] == len(IDS)
    # Two pages of ours (50 + 10), besides the one-page list of the original runtime's pods.
    assert reader.rt.kube.list_requests - requests_before >= 2 and hook.pod_lists >= 2


@pytest.mark.parametrize("kube_watch", ["true", "false"])
def test_a_refused_second_page_ends_the_pass_with_nothing_written(
        kube_watch: str, paged: Callable[..., tuple[LiveBotController, BetweenPages]],
        controller: LiveBotController, stack: Stack, admin_api: Any, bots: Any, core: Any,
        statuses: Any, redis_client: Any, restricted_namespace: str) -> None:
    sixty_running(controller, bots, core, restricted_namespace)
    change_the_world(bots)
    reader, hook = paged(KUBE_WATCH=kube_watch)
    hook.act = lambda: revoke_controller(admin_api, restricted_namespace)
    try:
        fails_with_nothing_written(
            reader, rf"listing pods failed after {PAGE} items: kubernetes: 403", core=core,
            statuses=statuses, redis_client=redis_client, namespace=restricted_namespace)
    finally:
        regrant_controller(stack, admin_api, restricted_namespace)
    assert hook.act is None, "the second page was never asked for"
    # The changes were real: the next pass, with its rights back, acts on them.
    _, outcomes = run_pass(reader)
    assert sorted(outcomes) == ["created", "created", "deleted", "deleted", "deleted",
                                "replaced"], outcomes


@pytest.mark.slow(seconds=25)
def test_an_expired_continue_token_ends_the_pass_with_nothing_written(
        paged: Callable[..., tuple[LiveBotController, BetweenPages]],
        controller: LiveBotController, stack: Stack, admin_api: Any, bots: Any, core: Any,
        statuses: Any, redis_client: Any, restricted_namespace: str) -> None:
    sixty_running(controller, bots, core, restricted_namespace)
    change_the_world(bots)
    reader, hook = paged()

    def expire_the_token() -> None:
        compact_etcd(stack, admin_api, restricted_namespace)
        # A fresh API server has no snapshot of the first page's version in its cache: the
        # next page must come from etcd, which no longer has it.
        with stack.stopped("kube-apiserver"):
            pass

    hook.act = expire_the_token
    fails_with_nothing_written(
        reader, rf"listing pods failed after {PAGE} items: kubernetes: 410 .*continue",
        core=core, statuses=statuses, redis_client=redis_client,
        namespace=restricted_namespace)
    _, outcomes = run_pass(reader)
    assert sorted(outcomes) == ["created", "created", "deleted", "deleted", "deleted",
                                "replaced"], outcomes
