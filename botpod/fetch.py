"""HTTP to presigned URLs: one GET into a file, one PUT from a file, and a bounded retry loop.

Every attempt asks its `UrlReader` for the URL afresh (the Secret is re-signed in place).

Must NOT: let a URL escape — urllib's own exceptions can carry it (`ValueError: unknown url
type: '…'`, `InvalidURL` messages, `HTTPError.url`), so each one is caught here and replaced,
`from None`, by a BotpodError built from the status code, the S3 error code and the error type;
retry without a deadline; read the URL files itself (the caller passes the reader).
"""

import http.client
import re
import select
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import BinaryIO, TypeVar

from botpod.errors import BotpodError
from botpod.urls import UrlReader

CHUNK = 64 * 1024
MAX_ATTEMPT_TIMEOUT = 10.0  # seconds per socket operation: short enough to end within a grace
ABORT_POLL = 0.1  # seconds between two looks at `should_abort` while a PUT's socket is stuck
_S3_CODE = re.compile(rb"<Code>([A-Za-z]{1,64})</Code>")

T = TypeVar("T")


class HttpStatusError(BotpodError):
    """The server answered with a non-2xx status."""

    def __init__(self, what: str, status: int, s3_code: str | None) -> None:
        detail = f"HTTP {status}" + (f" ({s3_code})" if s3_code else "")
        super().__init__(f"{what} failed: {detail}")
        self.status = status
        self.s3_code = s3_code

    @property
    def is_temporary(self) -> bool:
        """5xx and 429 are worth another try; other 4xx are not (until the URL is re-signed)."""
        return self.status >= 500 or self.status == 429


class NetworkError(BotpodError):
    """No HTTP answer: connection refused, DNS failure, timeout, connection cut mid-body."""


class TooLargeError(BotpodError):
    """The body is larger than the caller's cap."""


class Aborted(BotpodError):
    """The caller asked to stop (a signal, or its deadline passed) while the body was sent."""


def get_to_file(url: UrlReader, out: BinaryIO, *, what: str, max_bytes: int, timeout: float) -> int:
    """GET `url()` into `out` (truncated first); return the byte count. One attempt."""
    out.seek(0)
    out.truncate()
    address = url()
    try:
        request = urllib.request.Request(address, method="GET")  # its ValueError quotes the URL
        with urllib.request.urlopen(request, timeout=_bounded(timeout)) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise TooLargeError(f"{what}: the object is larger than {max_bytes} bytes")
            total = 0
            while chunk := response.read(CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise TooLargeError(f"{what}: the object is larger than {max_bytes} bytes")
                out.write(chunk)
    except BotpodError:
        raise
    except BaseException as error:  # every other error may quote the URL
        raise _sanitized(error, what) from None
    out.flush()
    return total


def put_file(
    url: UrlReader,
    body: BinaryIO,
    size: int,
    *,
    what: str,
    content_type: str,
    timeout: float,
    should_abort: Callable[[], bool],
    deadline: float | None = None,
    answer_grace: float = 0.0,
) -> None:
    """PUT `size` bytes of `body` (from its start) to `url()`. One attempt.

    `should_abort` is polled every ABORT_POLL seconds while the body is sent and the answer
    awaited — also while a stuck server keeps the socket from taking more — so a signal or a
    passed deadline stops the upload at once, not after a socket timeout. With `deadline`
    (time.monotonic()), no socket operation may last past it. The connection is closed
    however the attempt ends: an upload stopped halfway must not leave a socket open (the
    server would wait for the rest of its body) while the next attempt starts.

    Once the whole body is sent, an abort still waits up to `answer_grace` seconds for the
    answer: the server has the body and stores it whether or not anyone listens, so a caller
    that hung up and uploaded again at once could see the older upload land after the newer.
    """
    op_timeout = _bounded(timeout)

    def wait_for_socket(event: int, *, grace: float = 0.0) -> None:
        # Up to `op_timeout` without progress (the deadline's end at the latest), in short
        # slices: a SIGTERM during a stuck regular upload must not eat the final sync's budget.
        assert connection is not None and connection.sock is not None
        poller = select.poll()
        poller.register(connection.sock, event)
        give_up = time.monotonic() + op_timeout
        abort_seen: float | None = None
        while True:
            if should_abort():
                abort_seen = abort_seen if abort_seen is not None else time.monotonic()
                if time.monotonic() - abort_seen >= grace:
                    raise Aborted(f"{what}: stopped before the upload finished")
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise Aborted(f"{what}: its time ran out before the upload finished")
            if now >= give_up:
                raise TimeoutError("timed out")
            left = min(give_up, deadline if deadline is not None else give_up) - now
            if poller.poll(max(1, round(min(ABORT_POLL, left) * 1000))):
                return

    def send_all(chunk: bytes) -> None:
        assert connection is not None and connection.sock is not None
        view = memoryview(chunk)
        while view:
            wait_for_socket(select.POLLOUT)
            view = view[connection.sock.send(view):]

    body.seek(0)
    address = url()
    connection: http.client.HTTPConnection | None = None
    try:
        parts = urllib.parse.urlsplit(address)  # its ValueError may quote the URL
        connection_class = {"http": http.client.HTTPConnection,
                            "https": http.client.HTTPSConnection}.get(parts.scheme)
        if connection_class is None or not parts.hostname:
            raise NetworkError(f"{what} failed: the URL is not an http(s) URL")
        connection = connection_class(parts.hostname, parts.port, timeout=op_timeout)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        # Host exactly as the URL spells it (an explicit default port too): it is signed.
        connection.putrequest("PUT", target, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", parts.netloc.rpartition("@")[2])
        connection.putheader("Content-Length", str(size))
        connection.putheader("Content-Type", content_type)
        connection.endheaders()
        while chunk := body.read(CHUNK):
            send_all(chunk)
        # The answer's first bytes; the rest come at once.
        wait_for_socket(select.POLLIN, grace=answer_grace)
        if deadline is not None and connection.sock is not None:
            connection.sock.settimeout(max(min(op_timeout, deadline - time.monotonic()), 0.01))
        response = connection.getresponse()
        answer = response.read(4096)  # S3 answers 200 with an empty body, errors with XML
        if not 200 <= response.status < 300:
            match = _S3_CODE.search(answer)
            raise HttpStatusError(what, response.status,
                                  match.group(1).decode("ascii") if match else None)
    except BotpodError:
        raise
    except BaseException as error:  # every other error may quote the URL
        raise _sanitized(error, what) from None
    finally:
        if connection is not None:
            connection.close()


def with_retries(
    attempt: Callable[[float], T],
    *,
    deadline: float,
    wait: Callable[[float], bool] | None = None,
    first_backoff: float = 0.5,
) -> T:
    """Call `attempt(timeout)` until it succeeds, retrying temporary failures with backoff.

    Temporary: network errors, 5xx and 429. Stops at `deadline` (time.monotonic) or when
    `wait(seconds)` returns True (a stop was requested); the last error is raised.
    """
    sleep = wait or _sleep
    backoff = first_backoff
    while True:
        remaining = deadline - time.monotonic()
        try:
            return attempt(max(remaining, 1.0))
        except (NetworkError, HttpStatusError) as error:
            temporary = isinstance(error, NetworkError) or (
                isinstance(error, HttpStatusError) and error.is_temporary
            )
            if not temporary or time.monotonic() + backoff >= deadline or sleep(backoff):
                raise
            backoff = min(backoff * 2, 8.0)


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def _bounded(timeout: float) -> float:
    return max(0.5, min(timeout, MAX_ATTEMPT_TIMEOUT))


def _sanitized(error: BaseException, what: str) -> BotpodError:
    if isinstance(error, urllib.error.HTTPError):
        code = _s3_code(error)
        error.close()
        return HttpStatusError(what, error.code, code)
    if isinstance(error, KeyboardInterrupt | SystemExit):
        return Aborted(f"{what}: interrupted")
    return NetworkError(f"{what} failed: {_describe(error)}")


def _describe(error: BaseException) -> str:
    # Only the error type and the operating system's text: neither ever holds the URL.
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        return _describe(error.reason)
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(error, OSError) and isinstance(error.strerror, str):
        return f"{type(error).__name__}: {error.strerror}"
    if isinstance(error, http.client.IncompleteRead):
        return "connection closed before the whole body arrived"
    return type(error).__name__


def _s3_code(error: urllib.error.HTTPError) -> str | None:
    try:
        match = _S3_CODE.search(error.read(4096))
    except Exception:  # the body is only a hint
        return None
    return match.group(1).decode("ascii") if match else None
