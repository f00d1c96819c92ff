"""Log objects on real S3 (versitygw): appends (small rewrite, server-side multipart copy),
conditional replaces, rotations (server-side copy to a part key), metadata, and no multipart
upload left behind."""

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
    store.append("logs/b/1.log", b"a\n", expected=None, hwm="m1", ledger="[1]")
    first = store.head("logs/b/1.log")
    assert first is not None and first.hwm == "m1" and first.size == 2
    assert first.ledger == "[1]"
    store.append("logs/b/1.log", b"b\n", expected=first, hwm="m2", ledger="[2]")
    assert store.bytes_sent == 2 + 4 and store.bytes_received == 2  # small: GET + PUT
    second = store.head("logs/b/1.log")
    assert store.read("logs/b/1.log") == b"a\nb\n"
    assert second is not None and second.hwm == "m2" and second.etag != first.etag
    assert second.ledger == "[2]"


def test_put_replaces_only_the_version_seen(store: LogStore) -> None:
    store.put("logs/b/5.log", b"one\n", expected=None, hwm="m1")
    seen = store.head("logs/b/5.log")
    assert seen is not None
    with pytest.raises(LogWriteConflict):
        store.put("logs/b/5.log", b"x\n", expected=None, hwm="m?")
    store.put("logs/b/5.log", b"two\n", expected=seen, hwm="m2", ledger="L")
    with pytest.raises(LogWriteConflict):
        store.put("logs/b/5.log", b"three\n", expected=seen, hwm="m3")
    with pytest.raises(LogWriteConflict):
        store.read("logs/b/5.log", expected=seen)  # no longer that version
    after = store.head("logs/b/5.log")
    assert store.read("logs/b/5.log", expected=after) == b"two\n"
    assert after is not None and after.ledger == "L"


def test_archive_copies_server_side_once_and_only_the_version_seen(store: LogStore) -> None:
    store.put("logs/b/6.log", b"day so far\n", expected=None, hwm="m1")
    seen = store.head("logs/b/6.log")
    assert seen is not None
    sent = store.bytes_sent
    store.archive("logs/b/6.log", "logs/b/6.log.00001", expected=seen)
    assert store.read("logs/b/6.log.00001") == b"day so far\n"
    assert store.bytes_sent == sent and store.bytes_copied == seen.size  # nothing uploaded
    store.archive("logs/b/6.log", "logs/b/6.log.00001", expected=seen)  # a redo overwrites
    store.put("logs/b/6.log", b"new\n", expected=seen, hwm="m2")
    with pytest.raises(LogWriteConflict):
        store.archive("logs/b/6.log", "logs/b/6.log.00002", expected=seen)  # source changed
    assert store.head("logs/b/6.log.00002") is None
    # With bytes to add: small objects are read and rewritten, to the part key.
    now = store.head("logs/b/6.log")
    store.archive("logs/b/6.log", "logs/b/6.log.00002", expected=now, extra=b"tail\n")
    assert store.read("logs/b/6.log.00002") == b"new\ntail\n"
    # A source that does not exist: the part holds the extra bytes alone.
    store.archive("logs/b/7.log", "logs/b/7.log.00001", expected=None, extra=b"only\n")
    assert store.read("logs/b/7.log.00001") == b"only\n"


def test_archive_of_a_large_object_with_extra_bytes_is_server_side(store: LogStore) -> None:
    big = (b"z" * 99 + b"\n") * (MIN_PART // 100 + 1)
    store.put("logs/b/8.log", big, expected=None, hwm="m1")
    seen = store.head("logs/b/8.log")
    assert seen is not None
    sent = store.bytes_sent
    store.archive("logs/b/8.log", "logs/b/8.log.00001", expected=seen, extra=b"more\n")
    assert store.bytes_sent - sent == 5  # only the new bytes travel
    data = store.read("logs/b/8.log.00001")
    assert data is not None and data == big + b"more\n"
    assert store.list_uploads("logs/") == []


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


