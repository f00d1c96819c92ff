"""Least privilege, proven: the Role in k8s/ grants exactly the API calls the code makes
(derived from worker/adapters/kube.py and kubelog.py and the Kubernetes client's own endpoint
table), and the controller identity the tests run as holds exactly that Role — nothing else,
nowhere else."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable
from typing import Any

import pytest
from kubernetes import client

from tools.stack.paths import REPO_ROOT
from tools.stack.supervisor import Stack

KUBE_ADAPTER = REPO_ROOT / "worker" / "adapters" / "kube.py"
# Container logs, streamed (`kube.api_client.call_api(…)` on the KubeClient it is given).
KUBE_LOG_ADAPTER = REPO_ROOT / "worker" / "adapters" / "kubelog.py"
Permission = tuple[str, str, str]  # (api group, resource[/subresource], verb)

# Granted ahead of its use (none now). Once kube.py makes such a call, the test below asks
# for the entry to be removed from here.
PENDING_USE: set[Permission] = set()

# Rules every authenticated user has (system:basic-user): self-reviews.
SELF_REVIEW_GROUPS = {"authorization.k8s.io", "authentication.k8s.io"}

_ENDPOINT = re.compile(r"call_api\(\s*'(?P<path>/[^']+)',\s*'(?P<method>[A-Z]+)'")
_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)/namespaces/\{namespace\}/"
                   r"(?P<resource>[a-z]+)(?P<name>/\{name\})?(?:/(?P<sub>[a-z]+))?$")
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def permission_of(api_class: type, method: str) -> Permission:
    """The RBAC (group, resource, verb) a namespaced client method needs, read from the
    endpoint the generated client calls (path and HTTP method)."""
    source = inspect.getsource(getattr(api_class, f"{method}_with_http_info"))
    endpoint = _ENDPOINT.search(source)
    assert endpoint, f"{api_class.__name__}.{method}: no endpoint found"
    return permission_of_endpoint(endpoint["path"], endpoint["method"],
                                  f"{api_class.__name__}.{method}")


def permission_of_endpoint(raw_path: str, http: str, where: str) -> Permission:
    path = _PATH.match(raw_path)
    assert path, f"{where}: not a namespaced path: {raw_path}"
    resource = path["resource"] + (f"/{path['sub']}" if path["sub"] else "")
    if http == "GET":
        verb = "get" if path["name"] else "list"
    elif http == "DELETE":
        verb = "delete" if path["name"] else "deletecollection"
    else:
        verb = _VERBS[http]
    return (path["group"] or "", resource, verb)


def raw_calls(path: Any) -> set[Permission]:
    """The permissions of the raw `….call_api("<path>", "<METHOD>", …)` calls in one file."""
    used: set[Permission] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "call_api" and len(node.args) >= 2
                and all(isinstance(a, ast.Constant) and isinstance(a.value, str)
                        for a in node.args[:2])):
            raw_path, http = (a.value for a in node.args[:2])  # type: ignore[attr-defined]
            used.add(permission_of_endpoint(raw_path, http, f"{path.name} call_api"))
    return used


def used_by_log_reads() -> set[Permission]:
    """What the streamed log read (worker/adapters/kubelog.py) calls."""
    return raw_calls(KUBE_LOG_ADAPTER)


def used_by_kube_adapter() -> set[Permission]:
    """Every client method kube.py refers to (`self.core.<method>`, `self.batch.<method>`),
    mapped to its permission; a list method handed to `self._watch(…)` (the one place that
    passes `watch=True`) also needs `watch`; plus the raw calls of kube.py and kubelog.py."""
    tree = ast.parse(KUBE_ADAPTER.read_text())
    apis: dict[str, type] = {}
    for node in ast.walk(tree):  # self.core = k8s.CoreV1Api(api_client)
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute)
                and node.value.func.attr.endswith("Api") and node.value.func.attr != "ApiClient"
                and isinstance(node.targets[0], ast.Attribute)):
            apis[node.targets[0].attr] = getattr(client, node.value.func.attr)
    assert apis, "no Kubernetes API objects found in kube.py"
    used: set[Permission] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"
                and node.value.attr in apis):
            used.add(permission_of(apis[node.value.attr], node.attr))
        # self._watch("pods", self.core.list_namespaced_pod, …): list → watch.
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "_watch" and len(node.args) >= 2
                and isinstance(node.args[1], ast.Attribute)
                and isinstance(node.args[1].value, ast.Attribute)
                and node.args[1].value.attr in apis):
            group, resource, verb = permission_of(apis[node.args[1].value.attr],
                                                  node.args[1].attr)
            assert verb == "list", f"_watch of a non-list method: {node.args[1].attr}"
            used.add((group, resource, "watch"))
    for function in ast.walk(tree):  # `watch=` anywhere but in _watch escapes the rule above
        if isinstance(function, ast.FunctionDef) and function.name != "_watch":
            for node in ast.walk(function):
                if isinstance(node, ast.keyword) and node.arg == "watch":
                    raise AssertionError(f"{function.name} passes watch=: route it via _watch")
    return used | raw_calls(KUBE_ADAPTER) | used_by_log_reads()


def granted(rules: Iterable[dict[str, Any]]) -> set[Permission]:
    return {(group, resource, verb) for rule in rules for group in rule.get("apiGroups", [])
            for resource in rule.get("resources", []) for verb in rule.get("verbs", [])}


def test_the_derivation_reads_the_client_correctly() -> None:
    assert permission_of(client.CoreV1Api, "read_namespaced_pod_log") == ("", "pods/log", "get")
    assert permission_of(client.CoreV1Api, "list_namespaced_pod") == ("", "pods", "list")
    assert permission_of(client.CoreV1Api, "patch_namespaced_pod_status") == (
        "", "pods/status", "patch")
    assert permission_of(client.CoreV1Api, "delete_collection_namespaced_secret") == (
        "", "secrets", "deletecollection")
    assert permission_of(client.BatchV1Api, "replace_namespaced_cron_job") == (
        "batch", "cronjobs", "update")
    assert permission_of(client.BatchV1Api, "create_namespaced_job") == ("batch", "jobs", "create")


def test_the_role_grants_exactly_what_the_code_calls(stack: Stack) -> None:
    role = stack.controller_rbac("any")[0]
    assert role["kind"] == "Role"
    rules = granted(role["rules"])
    used = used_by_kube_adapter()
    assert used - rules == set(), "kube.py calls the API without a grant in k8s/role.yaml"
    assert rules - used - PENDING_USE == set(), "k8s/role.yaml grants what no code uses"
    assert PENDING_USE & used == set(), (
        "now used by kube.py: remove it from PENDING_USE in this test")
    assert not any("*" in permission for permission in rules), "no wildcards"


def _effective(controller_api: Any, namespace: str) -> set[Permission]:
    review = client.AuthorizationV1Api(controller_api).create_self_subject_rules_review(
        {"spec": {"namespace": namespace}})
    rules = [{"apiGroups": r.api_groups or [], "resources": r.resources or [],
              "verbs": r.verbs} for r in review.status.resource_rules]
    return {p for p in granted(rules) if p[0] not in SELF_REVIEW_GROUPS}


def test_the_controller_identity_holds_exactly_the_shipped_role(
        stack: Stack, namespace: str, controller_api: Any) -> None:
    role = stack.controller_rbac(namespace)[0]
    assert _effective(controller_api, namespace) == granted(role["rules"])
    # Nothing outside a namespace bound for it: no cluster-wide grant hides anywhere.
    assert _effective(controller_api, "default") == set()


@pytest.mark.parametrize(("verb", "resource"), [
    ("list", "secrets"), ("watch", "secrets"), ("patch", "pods"), ("create", "configmaps"),
    ("delete", "jobs"), ("create", "jobs"), ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("list", "nodes"), ("create", "pods --subresource=exec"), ("get", "deployments.apps"),
    ("patch", "pods --subresource=status"), ("get", "pods --subresource=attach"),
])
def test_the_controller_identity_is_refused_everything_else(
        stack: Stack, namespace: str, verb: str, resource: str) -> None:
    assert stack.env is not None
    # `pods/exec` would read as the pod named "exec": subresources go in --subresource.
    answer = stack.kubectl("auth", "can-i", verb, *resource.split(), "-n", namespace,
                           kubeconfig=stack.env.controller_kubeconfig, check=False).strip()
    assert answer == "no", f"{verb} {resource}: {answer}"


@pytest.mark.parametrize(("verb", "resource"), [
    ("get", "pods --subresource=log"), ("delete", "pods"), ("update", "secrets"),
    ("update", "cronjobs.batch"), ("list", "jobs.batch"), ("watch", "pods"),
    ("watch", "cronjobs.batch"), ("watch", "jobs.batch"),
])
def test_the_controller_identity_is_allowed_what_the_role_grants(
        stack: Stack, namespace: str, verb: str, resource: str) -> None:
    # The refusals above are not an authentication failure: the same question gets a yes.
    assert stack.env is not None
    answer = stack.kubectl("auth", "can-i", verb, *resource.split(), "-n", namespace,
                           kubeconfig=stack.env.controller_kubeconfig, check=False).strip()
    assert answer == "yes", f"{verb} {resource}: {answer}"


# --------------------------------------------------------------------------- the log worker
LOG_COLLECTOR = REPO_ROOT / "worker" / "log_collector.py"
# Runs in the main worker (under the controller's Role), just before it deletes a pod.
MAIN_WORKER_ONLY = {"collect_before_delete"}


def kube_method_permissions() -> dict[str, set[Permission]]:
    """KubeClient method → the permissions its body's `self.core.…` / `self.batch.…` calls
    need."""
    tree = ast.parse(KUBE_ADAPTER.read_text())
    found: dict[str, set[Permission]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "KubeClient":
            for method in node.body:
                if not isinstance(method, ast.FunctionDef):
                    continue
                found[method.name] = {
                    permission_of({"core": client.CoreV1Api, "batch": client.BatchV1Api}[
                        sub.value.attr], sub.attr)
                    for sub in ast.walk(method) if isinstance(sub, ast.Attribute)
                    and isinstance(sub.value, ast.Attribute)
                    and isinstance(sub.value.value, ast.Name) and sub.value.value.id == "self"
                    and sub.value.attr in ("core", "batch")}
    return found


def used_by_log_worker() -> set[Permission]:
    """What the log worker's tasks call: the KubeClient methods LogCollector uses
    (`self.rt.kube.<method>`, outside MAIN_WORKER_ONLY) and the streamed log read."""
    per_method = kube_method_permissions()
    used = used_by_log_reads()
    for node in ast.walk(ast.parse(LOG_COLLECTOR.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name not in MAIN_WORKER_ONLY:
            for sub in ast.walk(node):
                if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Attribute)
                        and sub.value.attr == "kube" and sub.attr in per_method):
                    used |= per_method[sub.attr]
    return used


def test_the_log_workers_role_grants_exactly_what_log_collection_calls(stack: Stack) -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in stack.kustomize_base()}
    role = objects["Role", "the0-log-collector"]
    binding = objects["RoleBinding", "the0-log-collector"]
    rules = granted(role["rules"])
    used = used_by_log_worker()
    assert used == {("", "pods", "list"), ("", "pods/log", "get")}  # the derivation works
    assert rules == used
    assert rules <= granted(objects["Role", "the0-controller"]["rules"])
    assert binding["roleRef"]["name"] == "the0-log-collector"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "the0-log-collector",
                                    "namespace": "the0"}]
    deployment = objects["Deployment", "the0-log-worker"]["spec"]["template"]["spec"]
    assert deployment["serviceAccountName"] == "the0-log-collector"
