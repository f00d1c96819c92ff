"""Appends to day objects on real S3 (versitygw): small rewrite, server-side multipart copy,
conditional writes, and no multipart upload left behind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tools.stack.supervisor import StackEnv
from worker.adapters.s3 import MIN_PART, LogStore, LogWriteConflict


@pytest.fixture
def store(stack_env: StackEnv, log_bucket: str) -> LogStore:
    the_store = LogStore(endpoint=stack_env.s3_endpoint, access_key=stack_env.s3_access_key,
                         secret_key=stack_env.s3_secret_key, bucket=log_bucket, secure=False,
                         region="us-east-1")
    the_store.ensure_bucket()
    the_store.ensure_bucket()  # idempotent
    return the_store


def test_small_appends_rewrite_with_marks(store: LogStore) -> None:
    store.append("logs/b/1.log", b"a\n", expected=None, hwm="m1")
    first = store.head("logs/b/1.log")
    assert first is not None and first.hwm == "m1" and first.size == 2
    store.append("logs/b/1.log", b"b\n", expected=first, hwm="m2")
    second = store.head("logs/b/1.log")
    assert store.read("logs/b/1.log") == b"a\nb\n"
    assert second is not None and second.hwm == "m2" and second.etag != first.etag


def test_conditional_writes_refuse_a_changed_object(store: LogStore) -> None:
    store.append("logs/b/2.log", b"a\n", expected=None, hwm="m1")
    seen = store.head("logs/b/2.log")
    assert seen is not None
    with pytest.raises(LogWriteConflict):
        store.append("logs/b/2.log", b"x\n", expected=None, hwm="m?")  # exists already
    store.append("logs/b/2.log", b"b\n", expected=seen, hwm="m2")
    with pytest.raises(LogWriteConflict):
        store.append("logs/b/2.log", b"c\n", expected=seen, hwm="m3")  # stale ETag
    assert store.read("logs/b/2.log") == b"a\nb\n"


def test_large_object_appends_by_server_side_copy(store: LogStore) -> None:
    big = (b"x" * 99 + b"\n") * (MIN_PART // 100 + 1)
    store.append("logs/b/3.log", big, expected=None, hwm="m1")
    seen = store.head("logs/b/3.log")
    assert seen is not None and seen.size >= MIN_PART
    requests = store.requests
    store.append("logs/b/3.log", b"tail\n", expected=seen, hwm="m2")
    assert store.requests - requests == 4  # create, copy part, new part, complete: no GET
    after = store.head("logs/b/3.log")
    assert after is not None and after.size == seen.size + 5 and after.hwm == "m2"
    data = store.read("logs/b/3.log")
    assert data is not None and data.endswith(b"x\ntail\n") and data[:len(big)] == big
    assert store.list_uploads("logs/") == []
    with pytest.raises(LogWriteConflict):
        store.append("logs/b/3.log", b"again\n", expected=seen, hwm="m3")  # stale ETag
    assert store.list_uploads("logs/") == []  # the failed upload was aborted
    assert store.head("logs/b/3.log") == after


def test_stale_uploads_are_swept(store: LogStore) -> None:
    upload_id = store.client._create_multipart_upload(store.bucket, "logs/b/4.log", {})
    assert store.list_uploads("logs/") == [upload_id]
    assert store.abort_stale_uploads("logs/", older_than=datetime.now(UTC) - timedelta(hours=1)
                                     ) == 0  # young: a live writer may own it
    assert store.abort_stale_uploads("logs/", older_than=datetime.now(UTC) + timedelta(1)) == 1
    assert store.list_uploads("logs/") == []


def test_missing_object(store: LogStore) -> None:
    assert store.head("logs/none/1.log") is None
    assert store.read("logs/none/1.log") is None


