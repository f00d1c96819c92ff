"""Object storage (MinIO API; versitygw in tests): code objects and presigned code URLs.

Presigning is local signing with a fixed region, so it makes no request. Storage keys never
leave this process: pods only ever get a short-lived URL for their one code object.
"""

from __future__ import annotations

from datetime import timedelta

import urllib3
from minio import Minio
from minio.error import S3Error

from worker.core.errors import TemporaryError

_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"}


class CodeStore:
    def __init__(self, *, endpoint: str, access_key: str, secret_key: str, bucket: str,
                 secure: bool, region: str, public_endpoint: str | None = None) -> None:
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=30), maxsize=16,
                                   retries=False)
        self.bucket = bucket
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
        seconds = max(60, min(int(ttl_seconds), 7 * 24 * 3600))  # SigV4 allows up to 7 days
        return self.public.presigned_get_object(self.bucket, key,
                                                expires=timedelta(seconds=seconds))
