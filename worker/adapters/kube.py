"""Kubernetes API: the few calls the controller makes, on raw JSON (no typed-model parsing).

Lists are paginated and parsed with orjson straight from the response bytes, so a 10,000-pod
read costs a handful of requests and no per-object model construction. A failed or expired
page raises `ReadFailed`: the caller must not act on a partial list. Watches stream the same
raw JSON, one event per line (worker/informer.py keeps a cache from them). Errors are translated:
404 → NotFound, 409 → Conflict, 429/5xx/network → TemporaryError (with Retry-After),
other 4xx → PermanentError.
"""

from __future__ import annotations

import collections
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from worker.adapters.event_sender import EventSender
from worker.core.errors import PermanentError, ReadFailed, TemporaryError

T = TypeVar("T")
Json = dict[str, Any]

# Called as observer(verb, resource, status_code) after every request (metrics hook).
RequestObserver = Callable[[str, str, int], None]


class NotFound(PermanentError):
    """The object does not exist (often the desired outcome of a delete)."""


class BadRequest(PermanentError):
    """400: e.g. a log of a container instance the node no longer has."""


class Conflict(TemporaryError):
    """409: the object exists already / was changed concurrently."""


class Expired(TemporaryError):
    """410 on a watch: the resourceVersion it started from is no longer kept. List again."""


# One watch event: ("ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK", the object as JSON).
WatchEvent = tuple[str, Json]


def resource_version(obj: Json) -> int:
    """An object's (or a list's) resourceVersion as an integer, 0 when absent. Kubernetes calls
    it opaque, but every etcd-backed server gives the store revision, and comparing them is
    what client-go's own integer mutation cache does; we only use it to wait for our writes."""
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def api_client_for(*, mode: str, kubeconfig: str | None, timeout: float) -> k8s.ApiClient:
    """In-cluster config inside a pod (or when forced), else the kubeconfig file."""
    in_cluster = mode == "incluster" or (
        mode == "auto" and os.environ.get("KUBERNETES_SERVICE_HOST") and not kubeconfig)
    configuration = k8s.Configuration()
    if in_cluster:
        k8s_config.load_incluster_config(client_configuration=configuration)
    else:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    # Enough connections for a threaded worker; the API server multiplexes them cheaply.
    configuration.connection_pool_maxsize = 32
    configuration.retries = False  # retries are the task layer's job (with backoff)
    return k8s.ApiClient(configuration)


def _retry_after(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _api_error_message(exc: ApiException) -> str:
    try:
        body = orjson.loads(exc.body or b"{}")
        message = body.get("message") or exc.reason
    except orjson.JSONDecodeError:
        message = exc.reason
    return f"{exc.status} {str(message)[:300]}"


class KubeClient:
    """Namespaced access to bot pods, their secrets, events and cronjobs."""

    def __init__(self, api_client: k8s.ApiClient, *, namespace: str, page_size: int = 1000,
                 timeout: float = 30.0, observer: RequestObserver | None = None) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.page_size = page_size
        self.timeout = timeout
        self.core = k8s.CoreV1Api(api_client)
        self.batch = k8s.BatchV1Api(api_client)
        self.observer = observer
        self.list_requests = 0  # requests made by list_*; the benchmark reads it
        self.log_requests = 0   # container-log reads (worker/adapters/kubelog.py)
        self.watch_requests = 0
        # resource → the highest resourceVersion a write of this process returned, so a cache
        # can wait until its watch has delivered our own writes (read-your-writes).
        self._written: dict[str, int] = {}
        self._written_lock = threading.Lock()
        # uids of pods this process deleted (bounded): their DELETED events are ours.
        self._deleted_pods: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._events = EventSender(self._post_event)

    # ------------------------------------------------------------------ plumbing
    def _call(self, verb: str, resource: str, fn: Callable[..., Any], *args: Any,
              **kwargs: Any) -> Any:
        """One request, raw response body parsed as JSON; errors translated."""
        status = 0
        try:
            response = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
            status = int(response.status)
            data = response.data
            return orjson.loads(data) if data else {}
        except ApiException as exc:
            status = int(exc.status or 0)
            raise self._translate(exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TemporaryError(f"kubernetes {verb} {resource}: {type(exc).__name__}") from None
        finally:
            if self.observer is not None:
                self.observer(verb, resource, status)

    @staticmethod
    def _translate(exc: ApiException) -> Exception:
        message = f"kubernetes: {_api_error_message(exc)}"
        if exc.status == 404:
            return NotFound(message)
        if exc.status == 409:
            return Conflict(message)
        if exc.status == 429 or (exc.status or 0) >= 500 or exc.status == 0:
            return TemporaryError(message, retry_after=_retry_after(exc))
        if exc.status == 400:
            return BadRequest(message)
        return PermanentError(message)

    def _list_all(self, resource: str, fn: Callable[..., Any], *,
                  keep: Callable[[Json], T | None] | None = None, **kwargs: Any) -> list[Any]:
        return self._list_versioned(resource, fn, keep=keep, **kwargs)[0]

    def _list_versioned(self, resource: str, fn: Callable[..., Any], *,
                        keep: Callable[[Json], T | None] | None = None, **kwargs: Any
                        ) -> tuple[list[Any], str]:
        """Every page of a list and the resourceVersion it was read at (every page of one
        list is served from the same snapshot), or ReadFailed. A 410 (expired continue token)
        is a failed read. `keep` turns each raw item into what the caller needs (None drops
        it) page by page, so 10,000 raw pods never sit in memory at once."""
        items: list[Any] = []
        token: str | None = None
        while True:
            self.list_requests += 1
            try:
                page = self._call("list", resource, fn, self.namespace, limit=self.page_size,
                                  _continue=token, **kwargs)
            except (TemporaryError, PermanentError) as exc:
                raise ReadFailed(f"listing {resource} failed after {len(items)} items: {exc}"
                                 ) from None
            token = (page.get("metadata") or {}).get("continue")
            version = str((page.get("metadata") or {}).get("resourceVersion") or "")
            raw = page.get("items") or []
            if keep is None:
                items.extend(raw)
            else:
                items.extend(kept for kept in map(keep, raw) if kept is not None)
            del page, raw
            if not token:
                return items, version

    def _watch(self, resource: str, fn: Callable[..., Any], *, resource_version: str,
               timeout_s: int, on_open: Callable[[Any], None] | None = None,
               **kwargs: Any) -> Iterator[WatchEvent]:
        """The changes after `resource_version`, one (type, object) per event, with bookmarks,
        until the server ends the watch (after ~timeout_s: a normal end; watch again from the
        last version seen). 410 → Expired; any other failure → TemporaryError. `on_open`
        receives the open response, so another thread can close it to stop the watch."""
        self.watch_requests += 1
        status = 0
        try:
            response = fn(self.namespace, watch=True, resource_version=resource_version,
                          allow_watch_bookmarks=True, timeout_seconds=timeout_s,
                          _preload_content=False,
                          # A silent connection is dead once the server's own end is overdue.
                          _request_timeout=(self.timeout, timeout_s + 30), **kwargs)
            status = int(response.status)
        except ApiException as exc:
            status = int(exc.status or 0)
            raise (Expired(f"kubernetes watch {resource}: {_api_error_message(exc)}")
                   if exc.status == 410 else self._translate(exc)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TemporaryError(f"kubernetes watch {resource}: {type(exc).__name__}") from None
        finally:
            if self.observer is not None:
                self.observer("watch", resource, status)
        if on_open is not None:
            on_open(response)
        try:
            pending = b""
            for chunk in response.stream(1 << 16, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _watch_event(resource, line)
            if pending.strip():
                yield _watch_event(resource, pending)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            # ValueError: urllib3 reading a response another thread closed (stop()).
            raise TemporaryError(f"kubernetes watch {resource}: {type(exc).__name__}") from None
        finally:
            response.release_conn()

    def _wrote(self, resource: str, obj: Json) -> None:
        version = resource_version(obj)
        with self._written_lock:
            if version > self._written.get(resource, 0):
                self._written[resource] = version

    def _remember_deleted(self, uid: str) -> None:
        if not uid:
            return
        with self._written_lock:
            self._deleted_pods[uid] = None
            while len(self._deleted_pods) > 10_000:
                self._deleted_pods.popitem(last=False)

    def deleted_by_us(self, uid: str) -> bool:
        """Whether this process deleted the pod with this uid (recently)."""
        with self._written_lock:
            return uid in self._deleted_pods

    def written_version(self, resource: str) -> int:
        """The highest resourceVersion this process's writes of `resource` (or of what a write
        named `watched_as`) returned (0: none)."""
        with self._written_lock:
            return self._written.get(resource, 0)

    # ------------------------------------------------------------------ pods
    def list_pods(self, label_selector: str, *, keep: Callable[[Json], T | None] | None = None
                  ) -> list[Any]:
        return self._list_all("pods", self.core.list_namespaced_pod, keep=keep,
                              label_selector=label_selector)

    def list_pods_versioned(self, label_selector: str, *,
                            keep: Callable[[Json], T | None] | None = None
                            ) -> tuple[list[Any], str]:
        return self._list_versioned("pods", self.core.list_namespaced_pod, keep=keep,
                                    label_selector=label_selector)

    def watch_pods(self, label_selector: str, *, resource_version: str, timeout_s: int,
                   on_open: Callable[[Any], None] | None = None) -> Iterator[WatchEvent]:
        return self._watch("pods", self.core.list_namespaced_pod,
                           resource_version=resource_version, timeout_s=timeout_s,
                           on_open=on_open, label_selector=label_selector)

    def get_pod(self, name: str) -> Json | None:
        try:
            result: Json = self._call("get", "pods", self.core.read_namespaced_pod, name,
                                      self.namespace)
            return result
        except NotFound:
            return None

    def create_pod(self, body: Json) -> Json:
        result: Json = self._call("create", "pods", self.core.create_namespaced_pod,
                                  self.namespace, body)
        self._wrote("pods", result)
        return result

    def delete_pod(self, name: str, *, uid: str | None = None, watched_as: str = "pods"
                   ) -> bool:
        """Deletes (background propagation). False when already gone. `uid` guards against
        deleting a newer pod of the same name. `watched_as`: the watched cache this write must
        show in before a read of it answers (`written_version`); the original runtime's pods
        have a cache of their own, which never sees our pods' writes."""
        options: Json = {"propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            deleted = self._call("delete", "pods", self.core.delete_namespaced_pod, name,
                                 self.namespace, body=options)
            self._wrote(watched_as, deleted)
            self._remember_deleted(str((deleted.get("metadata") or {}).get("uid") or uid or ""))
            return True
        except NotFound:
            return False
        except Conflict:
            return False  # uid precondition failed: that pod is already gone and replaced

    # ------------------------------------------------------------------ secrets
    def create_owned_secret(self, body: Json) -> None:
        """Creates the per-pod Secret. One left by an earlier pod of the same name (not yet
        garbage-collected) is deleted and created anew, so it is owned by the new pod; one
        that vanishes meanwhile (the garbage collector was quicker) is simply created."""
        name = body["metadata"]["name"]
        owner_uid = body["metadata"]["ownerReferences"][0]["uid"]
        for _attempt in range(3):
            try:
                self._call("create", "secrets", self.core.create_namespaced_secret,
                           self.namespace, body)
                return
            except Conflict:
                pass
            try:
                existing = self._call("get", "secrets", self.core.read_namespaced_secret, name,
                                      self.namespace)
            except NotFound:
                continue  # removed since our create was refused: create it now
            owners = existing.get("metadata", {}).get("ownerReferences") or []
            if any(owner.get("uid") == owner_uid for owner in owners):
                return  # ours already (a repeated task)
            self.delete_secret(name)
        raise TemporaryError(f"kubernetes: secret {name} keeps being re-created by someone else")

    def delete_owned_secret(self, name: str, *, owner_uid: str) -> bool:
        """Deletes the Secret `name` only while it belongs to the pod `owner_uid`: a stale
        delete (its pod already replaced) must never take its successor's Secret, without which
        the new pod cannot start. The delete is conditional on the Secret read, so a Secret
        made again in between is left too."""
        try:
            existing = self._call("get", "secrets", self.core.read_namespaced_secret, name,
                                  self.namespace)
        except NotFound:
            return False
        metadata = existing.get("metadata") or {}
        if not any(owner.get("uid") == owner_uid
                   for owner in metadata.get("ownerReferences") or []):
            return False
        try:
            self._call("delete", "secrets", self.core.delete_namespaced_secret, name,
                       self.namespace, body={"preconditions": {"uid": metadata.get("uid")}})
            return True
        except (NotFound, Conflict):
            return False

    def delete_secret(self, name: str) -> bool:
        try:
            self._call("delete", "secrets", self.core.delete_namespaced_secret, name,
                       self.namespace)
            return True
        except NotFound:
            return False

    # ------------------------------------------------------------------ events
    def record_event(self, *, involved: Json, reason: str, message: str,
                     event_type: str = "Normal", component: str) -> None:
        """A core/v1 Event about `involved` (a pod or cronjob dict), posted in the
        background (worker/adapters/event_sender.py). Best effort by design: a lost event must
        neither fail nor slow the action it describes."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        metadata = involved.get("metadata", {})
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{metadata.get('name', 'the0')}.{secrets.token_hex(8)}",
                         "namespace": self.namespace},
            "involvedObject": {"apiVersion": involved.get("apiVersion", "v1"),
                               "kind": involved.get("kind", "Pod"),
                               "name": metadata.get("name"), "namespace": self.namespace,
                               "uid": metadata.get("uid")},
            "reason": reason, "message": message[:1000], "type": event_type,
            "source": {"component": component}, "reportingComponent": component,
            "reportingInstance": os.environ.get("HOSTNAME", "the0-controller"),
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        self._events.send(body)

    def _post_event(self, body: Json) -> None:
        try:
            self._call("create", "events", self.core.create_namespaced_event, self.namespace,
                       body)
        except (TemporaryError, PermanentError):
            pass

    def flush_events(self, timeout: float = 5.0) -> bool:
        """Waits until the events recorded so far are posted (shutdown, tests)."""
        return self._events.flush(timeout)

    @property
    def events_dropped(self) -> int:
        return self._events.dropped

    # ------------------------------------------------------------------ cronjobs and jobs
    def list_cronjobs_versioned(self, label_selector: str, *,
                                keep: Callable[[Json], T | None] | None = None
                                ) -> tuple[list[Any], str]:
        return self._list_versioned("cronjobs", self.batch.list_namespaced_cron_job, keep=keep,
                                    label_selector=label_selector)

    def watch_cronjobs(self, label_selector: str, *, resource_version: str, timeout_s: int,
                       on_open: Callable[[Any], None] | None = None) -> Iterator[WatchEvent]:
        return self._watch("cronjobs", self.batch.list_namespaced_cron_job,
                           resource_version=resource_version, timeout_s=timeout_s,
                           on_open=on_open, label_selector=label_selector)

    def get_cronjob(self, name: str) -> Json | None:
        try:
            result: Json = self._call("get", "cronjobs", self.batch.read_namespaced_cron_job,
                                      name, self.namespace)
            return result
        except NotFound:
            return None

    def create_cronjob(self, body: Json) -> Json:
        result: Json = self._call("create", "cronjobs", self.batch.create_namespaced_cron_job,
                                  self.namespace, body)
        self._wrote("cronjobs", result)
        return result

    def replace_cronjob(self, body: Json) -> Json:
        """Updates in place (same uid, running Jobs untouched). `body` must carry the current
        metadata.resourceVersion: a concurrent change gives 409 and the task retries."""
        result: Json = self._call("update", "cronjobs", self.batch.replace_namespaced_cron_job,
                                  body["metadata"]["name"], self.namespace, body)
        self._wrote("cronjobs", result)
        return result

    def delete_cronjob(self, name: str, *, uid: str | None = None,
                       propagation: str = "Background", watched_as: str = "cronjobs") -> bool:
        """Deletes the CronJob; the garbage collector removes its Jobs, their pods and its
        Secret (all owned by it) in the background — or, with `propagation="Foreground"`,
        first: the CronJob stays (terminating) until its Jobs and their pods are gone.
        `watched_as`: as for `delete_pod`."""
        options: Json = {"propagationPolicy": propagation}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            deleted = self._call("delete", "cronjobs", self.batch.delete_namespaced_cron_job,
                                 name, self.namespace, body=options)
            self._wrote(watched_as, deleted)
            return True
        except (NotFound, Conflict):
            return False

    def secret_exists(self, name: str) -> bool:
        try:
            self._call("get", "secrets", self.core.read_namespaced_secret, name, self.namespace)
            return True
        except NotFound:
            return False

    def put_secret(self, body: Json) -> None:
        """Creates or overwrites a (mutable) Secret."""
        try:
            self._call("create", "secrets", self.core.create_namespaced_secret, self.namespace,
                       body)
        except Conflict:
            self._call("update", "secrets", self.core.replace_namespaced_secret,
                       body["metadata"]["name"], self.namespace, body)

    def list_jobs_versioned(self, label_selector: str, *,
                            keep: Callable[[Json], T | None] | None = None
                            ) -> tuple[list[Any], str]:
        return self._list_versioned("jobs", self.batch.list_namespaced_job, keep=keep,
                                    label_selector=label_selector)

    def watch_jobs(self, label_selector: str, *, resource_version: str, timeout_s: int,
                   on_open: Callable[[Any], None] | None = None) -> Iterator[WatchEvent]:
        return self._watch("jobs", self.batch.list_namespaced_job,
                           resource_version=resource_version, timeout_s=timeout_s,
                           on_open=on_open, label_selector=label_selector)


def _watch_event(resource: str, line: bytes) -> WatchEvent:
    """One line of a watch stream → (type, object); an ERROR event raises (410 → Expired)."""
    event = orjson.loads(line)
    kind, obj = str(event.get("type") or ""), event.get("object") or {}
    if kind == "ERROR":
        message = f"kubernetes watch {resource}: {obj.get('code')} {obj.get('message', '')}"[:400]
        raise Expired(message) if obj.get("code") == 410 else TemporaryError(message)
    return kind, obj


@contextmanager
def translated() -> Iterator[None]:
    """For the rare direct use of the typed client (tests, CLI)."""
    try:
        yield
    except ApiException as exc:
        raise KubeClient._translate(exc) from None
