"""Object storage (MinIO API; versitygw in tests): code objects, bot state, presigned URLs,
bot logs.

Presigning is local signing with a fixed region, so it makes no request. Storage keys never
leave this process: a pod only ever gets short-lived URLs for its own code object (read) and
its own state object (read and write).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import MinioException, S3Error

from worker.core.buckets import BucketCheck
from worker.core.errors import TemporaryError
from worker.core.logcursor import META_HWM
from worker.core.logday import META_DAY
from worker.core.podspec import SignedUrls, state_object_key

_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"}


class CodeStore:
    def __init__(self, *, endpoint: str, access_key: str, secret_key: str, bucket: str,
                 secure: bool, region: str, public_endpoint: str | None = None,
                 state_bucket: str = "bot-state") -> None:
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=30), maxsize=16,
                                   retries=False)
        self.bucket = bucket
        self.state_bucket = state_bucket
        self.state_bucket_ready = False  # seen to exist by this process
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                            secure=secure, region=region, http_client=http)
        # URLs for pods are signed for the host the pods use (it is part of the signature).
        self.public = self.client if not public_endpoint else Minio(
            public_endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
            region=region, http_client=http)

    def code_exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
            return True
        except S3Error as exc:
            if exc.code in _MISSING:
                return False
            raise TemporaryError(f"s3: stat failed: {exc.code}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TemporaryError(f"s3: stat failed: {type(exc).__name__}") from None

    def code_url(self, key: str, *, ttl_seconds: float) -> str:
        return self.public.presigned_get_object(self.bucket, key, expires=_expiry(ttl_seconds))

    def sign_urls(self, *, bot_id: str, code_path: str, ttl_seconds: float,
                  now: float) -> SignedUrls:
        """The three URLs of one bot's pod: read its code, read and write its state."""
        self.ensure_state_bucket()
        expires = _expiry(ttl_seconds)
        state_key = state_object_key(bot_id)
        return SignedUrls(
            code=self.code_url(code_path, ttl_seconds=ttl_seconds),
            state_get=self.public.presigned_get_object(self.state_bucket, state_key,
                                                       expires=expires),
            state_put=self.public.presigned_put_object(self.state_bucket, state_key,
                                                       expires=expires),
            signed_at=now)

    def ensure_state_bucket(self) -> None:
        """Creates the state bucket once per process: a state upload to a missing bucket
        would fail inside the pod, where nobody sees it."""
        if self.state_bucket_ready:
            return
        try:
            if not self.client.bucket_exists(self.state_bucket):
                try:
                    self.client.make_bucket(self.state_bucket)
                except S3Error as exc:
                    # A racing creator may get an InternalError (versitygw), not "exists".
                    if not self.client.bucket_exists(self.state_bucket):
                        raise TemporaryError(f"s3: make state bucket failed: {exc.code}"
                                             ) from None
        except S3Error as exc:
            raise TemporaryError(f"s3: state bucket check failed: {exc.code}") from None
        except (urllib3.exceptions.HTTPError, OSError, MinioException) as exc:
            raise TemporaryError(f"s3: state bucket check failed: {type(exc).__name__}"
                                 ) from None
        self.state_bucket_ready = True

    def bucket_checks(self) -> dict[str, BucketCheck]:
        """Whether the code and state buckets exist ("code", "state" → check), for the
        operator: at start, in each worker's heartbeat (so `/readyz`) and in `plan`. A missing
        state bucket is created on the first signing; a missing code bucket never is (the
        platform's API writes it), so every bot would get `code_not_found`."""
        return {"code": self._bucket_check(self.bucket), "state": self._bucket_check(
            self.state_bucket, exists=self.state_bucket_ready or None)}

    def _bucket_check(self, name: str, *, exists: bool | None = None) -> BucketCheck:
        if exists:
            return BucketCheck(name=name, exists=True)
        try:
            return BucketCheck(name=name, exists=self.client.bucket_exists(name))
        except S3Error as exc:
            return BucketCheck(name=name, exists=None, error=f"S3 error {exc.code}")
        except (urllib3.exceptions.HTTPError, OSError, MinioException) as exc:
            return BucketCheck(name=name, exists=None, error=type(exc).__name__)



def _expiry(ttl_seconds: float) -> timedelta:
    return timedelta(seconds=max(60, min(int(ttl_seconds), 7 * 24 * 3600)))  # SigV4: ≤ 7 days


# ============================================================================ bot logs
# S3 has no append. An append is a conditional rewrite of the object it appends to: small objects
# are read and rewritten (If-Match on the ETag we saw, If-None-Match: * for a new one); objects of
# at least `copy_threshold` bytes are rebuilt server-side by a multipart upload whose first
# part(s) copy the existing object (UploadPartCopy, x-amz-copy-source-if-match) and whose last
# part is the new bytes, completed with If-Match. Either way the client moves at most
# `copy_threshold` + the new bytes, and a concurrent writer makes the write fail (412) instead
# of being overwritten. The objects appended to are a day's CURRENT part, which the collector
# keeps below LOG_PART_BYTES by rotating it out (`archive`: a server-side copy to the next part
# key, once per part) — so no append re-copies a whole day (worker/core/logday.py). Multipart
# uploads are aborted on any failure; uploads left by a killed worker are swept by
# `abort_stale_uploads`.

MIN_PART = 5 * 1024 * 1024
MAX_COPY_PART = 5 * 1024 * 1024 * 1024
_META = "x-amz-meta-"
_HWM_HEADER = _META + META_HWM
_DAY_HEADER = _META + META_DAY
_NDJSON = "application/x-ndjson"
_Headers = dict[str, str | list[str] | tuple[str]]  # what minio's request calls take


class LogWriteConflict(TemporaryError):
    """The object changed since we looked at it (another writer): nothing was written."""


@dataclass(frozen=True)
class ObjectState:
    etag: str
    size: int
    hwm: str | None  # our high-water-mark metadata, raw
    ledger: str | None = None  # the day's ledger metadata, raw


def _copy_ranges(size: int) -> list[tuple[int, int]]:
    """Byte ranges (inclusive) of ≤ 5 GiB, each ≥ 5 MiB, covering an object of `size` ≥ 5 MiB."""
    count = max(1, -(-size // MAX_COPY_PART))
    step = -(-size // count)
    return [(start, min(size, start + step) - 1) for start in range(0, size, step)]


def _meta_headers(hwm: str, ledger: str | None) -> _Headers:
    headers: _Headers = {"Content-Type": _NDJSON, _HWM_HEADER: hwm}
    if ledger is not None:
        headers[_DAY_HEADER] = ledger
    return headers


T = TypeVar("T")
MoveObserver = Callable[[str, int], None]
"""Called as observer(operation, bytes moved) after each read, put, append and archive."""


def _observed(operation: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Reports what one LogStore operation moved (nested reads included) to its observer."""
    def wrap(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def run(self: LogStore, *args: Any, **kwargs: Any) -> T:
            before = self.bytes_moved
            try:
                return method(self, *args, **kwargs)
            finally:
                if self.observer is not None:
                    self.observer(operation, self.bytes_moved - before)
        return run
    return wrap


class LogStore:
    """The `bot-logs` bucket: conditional appends, replaces and rotations of log objects, their
    metadata, cleanup. Counts what it moves (`requests`, `bytes_sent`, `bytes_received`,
    `bytes_copied` server-side) for tests and benchmarks, and reports each operation's share
    to `observer` when one is set."""

    def __init__(self, *, endpoint: str, access_key: str, secret_key: str, bucket: str,
                 secure: bool, region: str, copy_threshold: int = MIN_PART,
                 pool_size: int = 32) -> None:
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=60), maxsize=pool_size,
                                   retries=False)
        self.bucket = bucket
        self.copy_threshold = max(MIN_PART, copy_threshold)
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                            secure=secure, region=region, http_client=http)
        self.requests = 0  # S3 requests made (the benchmark reads it)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.bytes_copied = 0
        self.observer: MoveObserver | None = None
        self.bucket_ready = False  # seen to exist by this process

    @property
    def bytes_moved(self) -> int:
        return self.bytes_sent + self.bytes_received + self.bytes_copied

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        self.requests += 1
        try:
            yield
        except S3Error as exc:
            if exc.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise LogWriteConflict(f"s3: {what}: object changed concurrently") from None
            raise TemporaryError(f"s3: {what} failed: {exc.code}") from None
        except (urllib3.exceptions.HTTPError, OSError, MinioException) as exc:
            # MinioException: e.g. a 5xx with an empty or non-XML body (a proxy in between).
            raise TemporaryError(f"s3: {what} failed: {type(exc).__name__}") from None

    def ensure_bucket(self) -> None:
        with self._translated("make bucket"):
            try:
                self.client.make_bucket(self.bucket)
            except S3Error as exc:
                # Two creators racing may get an InternalError (versitygw) rather than
                # "already exists": what matters is that the bucket is there now.
                if (exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
                        and not self.client.bucket_exists(self.bucket)):
                    raise
        self.bucket_ready = True

    def ensure_bucket_once(self) -> None:
        """ensure_bucket, skipped once this process has seen the bucket exist."""
        if not self.bucket_ready:
            self.ensure_bucket()

    def head(self, key: str) -> ObjectState | None:
        with self._translated("stat"):
            try:
                stat = self.client.stat_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in _MISSING:
                    return None
                raise
        headers = {str(k).lower(): str(v) for k, v in (stat.metadata or {}).items()}
        return ObjectState(etag=str(stat.etag).strip('"'), size=int(stat.size or 0),
                           hwm=headers.get(_HWM_HEADER), ledger=headers.get(_DAY_HEADER))

    @_observed("read")
    def read(self, key: str, *, expected: ObjectState | None = None) -> bytes | None:
        """The object's content (None when missing); with `expected`, only if it is still that
        version (else LogWriteConflict)."""
        headers: _Headers | None = {"If-Match": expected.etag} if expected is not None else None
        with self._translated("get"):
            try:
                response = self.client.get_object(self.bucket, key, request_headers=headers)
            except S3Error as exc:
                if exc.code in _MISSING and expected is None:
                    return None
                if exc.code in _MISSING:
                    raise LogWriteConflict(f"s3: get {key}: gone") from None
                raise
            try:
                data = bytes(response.read())
            finally:
                response.close()
                response.release_conn()
        self.bytes_received += len(data)
        return data

    def _put(self, key: str, data: bytes, headers: _Headers) -> None:
        with self._translated("put"):
            self.client._put_object(self.bucket, key, data, headers=headers)
        self.bytes_sent += len(data)

    @_observed("put")
    def put(self, key: str, data: bytes, *, expected: ObjectState | None, hwm: str,
            ledger: str | None = None) -> None:
        """Replaces the object last seen as `expected` (None: it must not exist) by `data`."""
        condition: _Headers = ({"If-None-Match": "*"} if expected is None
                               else {"If-Match": expected.etag})
        self._put(key, data, {**_meta_headers(hwm, ledger), **condition})

    @_observed("append")
    def append(self, key: str, data: bytes, *, expected: ObjectState | None, hwm: str,
               ledger: str | None = None) -> None:
        """Appends `data` to the object last seen as `expected` (None: it must not exist),
        setting its metadata in the same write. LogWriteConflict when the object is no longer
        what we saw."""
        headers = _meta_headers(hwm, ledger)
        if expected is None:
            self._put(key, data, {**headers, "If-None-Match": "*"})
        elif expected.size < self.copy_threshold:
            existing = self.read(key, expected=expected) or b""
            self._put(key, existing + data, {**headers, "If-Match": expected.etag})
        else:
            self._compose(key, key, expected, data, headers, complete_if_match=expected.etag)

    @_observed("archive")
    def archive(self, key: str, to_key: str, *, expected: ObjectState | None,
                extra: bytes = b"") -> None:
        """Writes the object last seen as `expected` (None: it does not exist), followed by
        `extra`, to `to_key` (overwriting it: a leftover of an interrupted rotation). The copy
        is server-side from `copy_threshold` bytes on; it fails (LogWriteConflict) if `key` is
        no longer what we saw."""
        headers: _Headers = {"Content-Type": _NDJSON}
        if expected is None or expected.size == 0:
            self._put(to_key, extra, headers)
        elif not extra and expected.size <= MAX_COPY_PART:
            with self._translated("copy"):
                response = self.client._execute(
                    "PUT", self.bucket, to_key,
                    headers={"x-amz-copy-source": quote(f"/{self.bucket}/{key}"),
                             "x-amz-copy-source-if-match": expected.etag})
                if b"<Error>" in (response.data or b"")[:512]:
                    raise TemporaryError("s3: copy failed")
            self.bytes_copied += expected.size
        elif expected.size < self.copy_threshold:
            existing = self.read(key, expected=expected) or b""
            self._put(to_key, existing + extra, headers)
        else:
            self._compose(to_key, key, expected, extra, headers, complete_if_match=None)

    def _compose(self, key: str, source_key: str, source: ObjectState, data: bytes,
                 headers: _Headers, *, complete_if_match: str | None) -> None:
        """`key` := the object `source_key` (as `source`) + `data`, by a multipart upload whose
        parts copy the source server-side."""
        with self._translated("create multipart upload"):
            upload_id = self.client._create_multipart_upload(self.bucket, key, dict(headers))
        completed = False
        try:
            parts: list[Part] = []
            copy_source = quote(f"/{self.bucket}/{source_key}")
            for number, (start, end) in enumerate(_copy_ranges(source.size), start=1):
                with self._translated("upload part copy"):
                    etag, _ = self.client._upload_part_copy(self.bucket, key, upload_id, number, {
                        "x-amz-copy-source": copy_source,
                        "x-amz-copy-source-if-match": source.etag,
                        "x-amz-copy-source-range": f"bytes={start}-{end}"})
                parts.append(Part(number, str(etag).strip('"')))
            self.bytes_copied += source.size
            if data:
                with self._translated("upload part"):
                    etag = self.client._upload_part(self.bucket, key, data, None, upload_id,
                                                    len(parts) + 1)
                self.bytes_sent += len(data)
                parts.append(Part(len(parts) + 1, str(etag).strip('"')))
            body = b"<CompleteMultipartUpload>" + b"".join(
                f"<Part><PartNumber>{p.part_number}</PartNumber><ETag>\"{p.etag}\"</ETag>"
                f"</Part>".encode() for p in parts) + b"</CompleteMultipartUpload>"
            complete_headers: _Headers = {
                "Content-Type": "application/xml",
                "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}
            if complete_if_match is not None:
                complete_headers["If-Match"] = complete_if_match
            with self._translated("complete multipart upload"):
                response = self.client._execute(
                    "POST", self.bucket, key, body=body, headers=complete_headers,
                    query_params={"uploadId": upload_id})
                if b"<Error>" in (response.data or b"")[:512]:
                    raise TemporaryError("s3: complete multipart upload failed")
            completed = True
        finally:
            if not completed:
                self._abort(key, upload_id)

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            with self._translated("abort multipart upload"):
                self.client._abort_multipart_upload(self.bucket, key, upload_id)
        except TemporaryError:
            pass  # swept later by abort_stale_uploads

    def abort_stale_uploads(self, prefix: str, *, older_than: datetime, limit: int = 1000) -> int:
        """Aborts multipart uploads under `prefix` started before `older_than` (left by a
        killed worker). Returns how many were aborted."""
        with self._translated("list multipart uploads"):
            result = self.client._list_multipart_uploads(self.bucket, prefix=prefix,
                                                         max_uploads=limit)
        aborted = 0
        for upload in result.uploads:
            started = upload.initiated_time
            if started is not None and started < older_than and upload.upload_id:
                self._abort(upload.object_name, upload.upload_id)
                aborted += 1
        return aborted

    def list_uploads(self, prefix: str) -> list[str]:
        """Upload ids in progress under `prefix` (tests assert none is left behind)."""
        with self._translated("list multipart uploads"):
            result = self.client._list_multipart_uploads(self.bucket, prefix=prefix)
        return [u.upload_id for u in result.uploads if u.upload_id]
