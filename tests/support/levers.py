"""Real failures of the real stack, made on purpose and scoped to one test: the controller's
rights revoked in its namespace (403), etcd compacted (an expired continue token: 410), and
API Priority and Fairness rejecting the controller's requests in one namespace (429 with
Retry-After). Each is undone by its context manager."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes import client

from tests.support.bots import wait_for
from tools.stack.supervisor import CONTROLLER_GROUPS, CONTROLLER_USER, Stack


def controller_may(admin_api: Any, namespace: str, verb: str, resource: str,
                   group: str = "") -> bool:
    """What the API server's authorizer answers for the controller identity now."""
    review = client.AuthorizationV1Api(admin_api).create_subject_access_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": CONTROLLER_USER, "groups": CONTROLLER_GROUPS.split(","),
                 "resourceAttributes": {"namespace": namespace, "verb": verb,
                                        "resource": resource, "group": group}}})
    return bool(review.status.allowed)


def revoke_controller(admin_api: Any, namespace: str) -> None:
    """Removes the controller's RoleBinding; returns once the authorizer refuses a pod list."""
    client.RbacAuthorizationV1Api(admin_api).delete_namespaced_role_binding(
        "the0-controller", namespace)
    wait_for(lambda: not controller_may(admin_api, namespace, "list", "pods"),
             "the controller's rights to be gone", timeout=10, interval=0.05)


def controller_role_without(stack: Stack, admin_api: Any, namespace: str, *, group: str,
                            resource: str, verb: str) -> None:
    """Applies the shipped Role in `namespace` with `verb` on `group/resource` taken out;
    returns once the authorizer refuses it. `regrant_controller` puts the shipped Role back."""
    role, binding = stack.controller_rbac(namespace)
    for rule in role["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    role["rules"] = [rule for rule in role["rules"] if rule["verbs"]]
    stack.kubectl("apply", "-f", "-", input_text=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [role, binding]}))
    wait_for(lambda: not controller_may(admin_api, namespace, verb, resource, group),
             f"{verb} {resource} to be refused", timeout=10, interval=0.05)


def regrant_controller(stack: Stack, admin_api: Any, namespace: str) -> None:
    stack.grant_controller(namespace)
    wait_for(lambda: all(controller_may(admin_api, namespace, *check) for check in (
        ("list", "pods"), ("list", "jobs", "batch"), ("watch", "pods"))),
        "the controller's rights to be back", timeout=10, interval=0.05)


def etcd_url(stack: Stack) -> str:
    etcd = next(s for s in stack.servers if s.name == "etcd")
    argv = list(etcd.argv)
    return argv[argv.index("--advertise-client-urls") + 1]


def _etcd(stack: Stack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(etcd_url(stack) + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def compact_etcd(stack: Stack, admin_api: Any, namespace: str) -> int:
    """Makes every resourceVersion read so far too old: one write (so the store revision
    moves past them), then an etcd compaction up to it. Returns the compacted revision."""
    client.CoreV1Api(admin_api).create_namespaced_config_map(
        namespace, {"metadata": {"name": f"compact-{secrets.token_hex(3)}"}})
    revision = int(_etcd(stack, "/v3/kv/range",
                         {"key": base64.b64encode(b"/").decode()})["header"]["revision"])
    _etcd(stack, "/v3/kv/compaction", {"revision": str(revision), "physical": True})
    return revision


@contextmanager
def apiserver_rejects_controller(admin_api: Any, controller_api: Any,
                                 namespace: str) -> Iterator[None]:
    """A real 429 with Retry-After from the API server for every request of the controller
    identity on objects in `namespace`, until the block ends; other namespaces (other tests)
    and other users are untouched.

    How: API Priority and Fairness puts those requests in a priority level of their own with
    no nominal seats, which rejects rather than queues (it still runs one request at a time);
    one request of the controller identity that a validating webhook holds (the webhook's
    address accepts connections and never answers, failurePolicy Ignore) keeps that one seat
    taken, so every other request is rejected at once."""
    name = f"the0-test-reject-{secrets.token_hex(3)}"
    with _priority_level(admin_api, namespace, name) as flow_schema_uid:
        wait_for(lambda: _classified_by(controller_api, namespace) == flow_schema_uid,
                 "the API server to apply the test's FlowSchema", timeout=15, interval=0.1)
        with _held_seat(admin_api, controller_api, namespace, name):
            wait_for(lambda: _classified_by(controller_api, namespace) == "429",
                     "the API server to reject the controller", timeout=15, interval=0.1)
            yield


@contextmanager
def _priority_level(admin_api: Any, namespace: str, name: str) -> Iterator[str]:
    flow = client.FlowcontrolApiserverV1Api(admin_api)
    flow.create_priority_level_configuration({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name},
        "spec": {"type": "Limited", "limited": {
            "nominalConcurrencyShares": 0, "lendablePercent": 0, "borrowingLimitPercent": 0,
            "limitResponse": {"type": "Reject"}}}})
    try:
        schema = flow.create_flow_schema({
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
            "metadata": {"name": name},
            "spec": {"priorityLevelConfiguration": {"name": name}, "matchingPrecedence": 100,
                     "distinguisherMethod": {"type": "ByUser"},
                     "rules": [{"subjects": [{"kind": "User", "user": {"name": CONTROLLER_USER}}],
                                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"],
                                                   "resources": ["*"],
                                                   "namespaces": [namespace]}]}]}})
        try:
            yield str(schema.metadata.uid)
        finally:
            flow.delete_flow_schema(name)
    finally:
        flow.delete_priority_level_configuration(name)


def _classified_by(controller_api: Any, namespace: str) -> str:
    """The uid of the FlowSchema that classified a probe request, or "429"."""
    try:
        _, _, headers = client.CoreV1Api(controller_api).list_namespaced_pod_with_http_info(
            namespace, limit=1)
    except client.ApiException as exc:
        return "429" if exc.status == 429 else f"error {exc.status}"
    return str(headers.get("X-Kubernetes-Pf-Flowschema-Uid", ""))


@contextmanager
def _held_seat(admin_api: Any, controller_api: Any, namespace: str,
               name: str) -> Iterator[None]:
    """One request of the controller identity (an Event create, which its Role allows) held
    in the API server by a webhook that never answers, until the block ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True, name="webhook-that-never-answers").start()
    admission = client.AdmissionregistrationV1Api(admin_api)
    admission.create_validating_webhook_configuration({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration", "metadata": {"name": name},
        "webhooks": [{
            "name": "hold.test.the0.dev", "admissionReviewVersions": ["v1"],
            "sideEffects": "None", "failurePolicy": "Ignore", "timeoutSeconds": 30,
            "clientConfig": {"url": f"https://127.0.0.1:{listener.getsockname()[1]}/"},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["events"]}]}]})
    holders: list[threading.Thread] = []
    try:
        def hold() -> None:
            with contextlib.suppress(client.ApiException):
                client.CoreV1Api(controller_api).create_namespaced_event(namespace, {
                    "metadata": {"name": f"seat-holder.{secrets.token_hex(4)}"},
                    "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "none",
                                       "namespace": namespace},
                    "reason": "Holding", "message": "test", "type": "Normal"})

        def holding() -> bool:
            if not any(t.is_alive() for t in holders):  # done before the webhook applied
                holders.append(threading.Thread(target=hold, daemon=True))
                holders[-1].start()
            return bool(accepted)

        wait_for(holding, "a request held by the webhook", timeout=15, interval=0.05)
        yield
    finally:
        admission.delete_validating_webhook_configuration(name)
        listener.close()
        for connection in accepted:
            connection.close()  # the held request goes on (failurePolicy Ignore) and ends
        for holder in holders:
            holder.join(timeout=35)
