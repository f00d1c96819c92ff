"""Container logs from the Kubernetes API, streamed: the bytes arrive chunk by chunk, never as
one body (an 8 MiB read of 1-byte lines held whole, then split, cost ~14 times its size).

One call: GET pods/{name}/log (RBAC: `pods/log` get) with `timestamps=true`, `sinceTime` and
`limitBytes`. Errors are translated as in worker/adapters/kube.py: 404 → NotFound, 400 (no such
instance, e.g. no previous one) → BadRequest, 429/5xx/network → LogReadFailed (temporary),
other 4xx → LogReadRefused (permanent) — also while the body is being read. Distinct classes,
because the caller writes to S3 between chunks and must tell a failed read from a failed write.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import urllib3
from kubernetes.client.rest import ApiException

from worker.adapters.kube import BadRequest, KubeClient, NotFound
from worker.core.errors import PermanentError, TemporaryError

CHUNK = 64 * 1024  # bytes read from the socket at a time


class LogReadFailed(TemporaryError):
    """The log read failed (network, 429/5xx): try again next pass."""


class LogReadRefused(PermanentError):
    """The log read was refused (401/403 and the like: an RBAC or token change)."""


def _translated(exc: ApiException) -> Exception:
    error = KubeClient._translate(exc)
    if isinstance(error, NotFound | BadRequest):
        return error
    if isinstance(error, TemporaryError):
        return LogReadFailed(str(error))
    return LogReadRefused(str(error))


class LogBody:
    """The body of one log read, as it arrives. `truncated` (once read to the end): the body
    reached `limit_bytes`, so the instance may have more."""

    def __init__(self, response: Any, limit_bytes: int) -> None:
        self._response = response
        self.limit_bytes = limit_bytes
        self.received = 0
        self.finished = False

    def chunks(self) -> Iterator[bytes]:
        try:
            for chunk in self._response.stream(CHUNK, decode_content=True):
                self.received += len(chunk)
                yield chunk
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise LogReadFailed(f"kubernetes get pods/log: {type(exc).__name__}") from None
        self.finished = True

    @property
    def truncated(self) -> bool:
        return self.received >= self.limit_bytes


@contextmanager
def open_log(kube: KubeClient, pod: str, *, container: str, previous: bool, since: str | None,
             limit_bytes: int) -> Iterator[LogBody]:
    """One container instance's log with RFC 3339 nano timestamps, from `since` (an RFC 3339
    second, inclusive) or from its start, at most `limit_bytes`. The connection is closed (not
    returned to the pool half-read) when the caller stops early."""
    query: list[tuple[str, Any]] = [("container", container), ("timestamps", "true"),
                                    ("limitBytes", str(limit_bytes))]
    if previous:
        query.append(("previous", "true"))
    if since:
        query.append(("sinceTime", since))
    status = 0
    kube.log_requests += 1
    try:
        response = kube.api_client.call_api(
            "/api/v1/namespaces/{namespace}/pods/{name}/log", "GET",
            path_params={"namespace": kube.namespace, "name": pod}, query_params=query,
            header_params={"Accept": "*/*"}, auth_settings=["BearerToken"],
            _preload_content=False, _request_timeout=kube.timeout, _return_http_data_only=True)
        status = int(response.status)
    except ApiException as exc:
        status = int(exc.status or 0)
        raise _translated(exc) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise LogReadFailed(f"kubernetes get pods/log: {type(exc).__name__}") from None
    finally:
        if kube.observer is not None:
            kube.observer("get", "pods/log", status)
    body = LogBody(response, limit_bytes)
    try:
        yield body
    finally:
        if not body.finished:
            response.close()  # unread bytes left: this connection cannot be reused
        response.release_conn()
