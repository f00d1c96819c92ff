"""A 429 from the real API server (API Priority and Fairness rejecting the controller in this
test's namespace, tests/support/levers.py): a task's request becomes a TemporaryError carrying
the server's Retry-After, a pass's read fails with nothing written, and once the server
accepts requests again the bot converges. (That a task waits at least Retry-After before its
retry is shown with a real worker in tests/e2e/test_celery_live_bots.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.support.bots import bot_doc, run_pass
from tests.support.levers import apiserver_rejects_controller
from worker.core.errors import ReadFailed, TemporaryError
from worker.core.metrics import KUBE_REQUESTS, decode_counter
from worker.reconcile.controller import LiveBotController


def test_a_429_is_a_temporary_error_with_the_servers_retry_after(
        controller: LiveBotController, bots: Any, statuses: Any, core: Any, admin_api: Any,
        controller_api: Any, restricted_namespace: str, redis_client: Any) -> None:
    bots.insert_one(bot_doc("patient"))
    with apiserver_rejects_controller(admin_api, controller_api, restricted_namespace):
        # What the API server answers the controller identity, read without our adapter.
        with pytest.raises(client.ApiException) as raw:
            client.CoreV1Api(controller_api).read_namespaced_pod("bot-patient",
                                                                 restricted_namespace)
        assert raw.value.status == 429 and float(raw.value.headers["Retry-After"]) >= 1

        with pytest.raises(TemporaryError) as refused:
            controller.converge("patient", intent="create")
        assert "429" in str(refused.value)
        retry_after = refused.value.retry_after
        assert retry_after is not None and retry_after >= 1 and retry_after == int(retry_after)

        with pytest.raises(ReadFailed, match=r"listing pods failed after 0 items: .*429"):
            run_pass(controller)
    assert core.list_namespaced_pod(restricted_namespace).items == []
    assert statuses.count_documents({}) == 0
    assert redis_client.keys("the0:inflight:*") == []
    counted = dict(decode_counter(KUBE_REQUESTS, {
        field.encode(): repr(amount).encode()
        for (family, field), amount in controller.rt.metrics.drain().items()
        if family == KUBE_REQUESTS.name}))
    assert counted[("get", "pods", "429")] >= 1 and counted[("list", "pods", "429")] >= 1

    _, outcomes = run_pass(controller)  # the server takes requests again: converges
    assert outcomes == ["created"]
