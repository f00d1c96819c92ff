"""Object storage (MinIO API; versitygw in tests): code objects, bot state, presigned URLs,
bot logs.

Presigning is local signing with a fixed region, so it makes no request. Storage keys never
leave this process: a pod only ever gets short-lived URLs for its own code object (read) and
its own state object (read and write).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import MinioException, S3Error

from worker.core.buckets import BucketCheck
from worker.core.errors import TemporaryError
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
# S3 has no append. An append is a conditional rewrite of the day object: small objects are
# read and rewritten (If-Match on the ETag we saw, If-None-Match: * for a new one); objects of
# at least `copy_threshold` bytes are rebuilt server-side by a multipart upload whose first
# part(s) copy the existing object (UploadPartCopy, x-amz-copy-source-if-match) and whose last
# part is the new bytes, completed with If-Match. Either way the client moves at most
# `copy_threshold` + the new bytes, and a concurrent writer makes the write fail (412) instead
# of being overwritten. The multipart upload is aborted on any failure; uploads left by a
# killed worker are swept by `abort_stale_uploads`.

MIN_PART = 5 * 1024 * 1024
MAX_COPY_PART = 5 * 1024 * 1024 * 1024
_HWM_HEADER = "x-amz-meta-the0-hwm"
_NDJSON = "application/x-ndjson"


class LogWriteConflict(TemporaryError):
    """The day object changed since we looked at it (another writer): nothing was written."""


@dataclass(frozen=True)
class ObjectState:
    etag: str
    size: int
    hwm: str | None  # our high-water-mark metadata, raw


def _copy_ranges(size: int) -> list[tuple[int, int]]:
    """Byte ranges (inclusive) of ≤ 5 GiB, each ≥ 5 MiB, covering an object of `size` ≥ 5 MiB."""
    count = max(1, -(-size // MAX_COPY_PART))
    step = -(-size // count)
    return [(start, min(size, start + step) - 1) for start in range(0, size, step)]


class LogStore:
    """The `bot-logs` bucket: conditional appends to day objects, their metadata, cleanup."""

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
        self.bucket_ready = False  # seen to exist by this process

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
        headers = stat.metadata or {}
        hwm = next((str(v) for k, v in headers.items() if k.lower() == _HWM_HEADER), None)
        return ObjectState(etag=str(stat.etag).strip('"'), size=int(stat.size or 0), hwm=hwm)

    def read(self, key: str) -> bytes | None:
        with self._translated("get"):
            try:
                response = self.client.get_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in _MISSING:
                    return None
                raise
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

    def append(self, key: str, data: bytes, *, expected: ObjectState | None, hwm: str) -> None:
        """Appends `data` to the object last seen as `expected` (None: it must not exist),
        setting its high-water-mark metadata in the same write. LogWriteConflict when the
        object is no longer what we saw."""
        headers = {"Content-Type": _NDJSON, _HWM_HEADER: hwm}
        if expected is None:
            with self._translated("put"):
                self.client._put_object(self.bucket, key, data,
                                        headers={**headers, "If-None-Match": "*"})
        elif expected.size < self.copy_threshold:
            with self._translated("get"):
                response = self.client.get_object(self.bucket, key,
                                                  request_headers={"If-Match": expected.etag})
                try:
                    existing = bytes(response.read())
                finally:
                    response.close()
                    response.release_conn()
            with self._translated("put"):
                self.client._put_object(self.bucket, key, existing + data,
                                        headers={**headers, "If-Match": expected.etag})
        else:
            self._append_multipart(key, data, expected, headers)

    def _append_multipart(self, key: str, data: bytes, expected: ObjectState,
                          headers: dict[str, str]) -> None:
        with self._translated("create multipart upload"):
            upload_id = self.client._create_multipart_upload(self.bucket, key, dict(headers))
        completed = False
        try:
            parts: list[Part] = []
            source = quote(f"/{self.bucket}/{key}")
            for number, (start, end) in enumerate(_copy_ranges(expected.size), start=1):
                with self._translated("upload part copy"):
                    etag, _ = self.client._upload_part_copy(self.bucket, key, upload_id, number, {
                        "x-amz-copy-source": source,
                        "x-amz-copy-source-if-match": expected.etag,
                        "x-amz-copy-source-range": f"bytes={start}-{end}"})
                parts.append(Part(number, str(etag).strip('"')))
            with self._translated("upload part"):
                etag = self.client._upload_part(self.bucket, key, data, None, upload_id,
                                                len(parts) + 1)
            parts.append(Part(len(parts) + 1, str(etag).strip('"')))
            body = b"<CompleteMultipartUpload>" + b"".join(
                f"<Part><PartNumber>{p.part_number}</PartNumber><ETag>\"{p.etag}\"</ETag>"
                f"</Part>".encode() for p in parts) + b"</CompleteMultipartUpload>"
            with self._translated("complete multipart upload"):
                response = self.client._execute(
                    "POST", self.bucket, key, body=body,
                    headers={"Content-Type": "application/xml",
                             "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
                             "If-Match": expected.etag},
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
