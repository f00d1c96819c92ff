"""worker.core.logcursor: cursors over kubelet log streams, records, day split (plain values)."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import pytest

from worker.core import logcursor as lc

T0 = "2026-11-28T10:00:00.000000001Z"


def ts(second: int, nanos: int = 0, day: int = 28, hour: int = 10) -> str:
    minute, sec = divmod(second, 60)
    return f"2026-11-{day:02d}T{hour:02d}:{minute:02d}:{sec:02d}.{nanos:09d}Z"


# ---------------------------------------------------------------------------- a fake kubelet
def serve(lines: list[tuple[str, str]], since: str | None, limit: int = 10**9
          ) -> tuple[bytes, bool]:
    """What the kubelet logs API returns with timestamps=true, sinceTime and limitBytes."""
    body = b"".join(f"{t} {c}\n".encode() for t, c in lines
                    if since is None or t[:19] >= since[:19])
    return body[:limit], len(body) >= limit and limit < 10**9


def running(key: str = "#0", restarts: int = 0) -> lc.Instance:
    return lc.Instance(key=key, restarts=restarts, previous=False, terminated=None)


def ended(key: str, restarts: int, code: int, *, previous: bool, at: str | None = None
          ) -> lc.Instance:
    return lc.Instance(key=key, restarts=restarts, previous=previous,
                       terminated=lc.Termination(code, at))


def pod(current: lc.Instance | None = None, last: lc.Instance | None = None,
        uid: str = "u1") -> lc.LogPod:
    return lc.LogPod(bot_id="bot1", name="bot-bot1", uid=uid, last=last,
                     current=current or (None if last else running()))


def ship(position: lc.Position | None, the_pod: lc.LogPod,
         files: dict[bool, list[tuple[str, str]]], limit: int = 10**9
         ) -> tuple[list[dict[str, Any]], lc.Position | None, list[lc.Mismatch]]:
    """One collection of one pod: plan, read, consume. Returns records, end position."""
    steps = lc.plan_steps(position, the_pod)
    assert not isinstance(steps, lc.Stale)
    if not steps:
        return [], position, []
    batch = lc.StreamBatch(the_pod.stream, start=position or steps[0].start)
    problems = []
    for step in steps:
        body, truncated = serve(files[step.instance.previous], step.start.since, limit)
        out = lc.consume(batch, step, body, truncated=truncated, bot_id="bot1", pod="bot-bot1",
                         observed_at=T0)
        if isinstance(out, lc.Mismatch):
            problems.append(out)
            break
        if not out.done:
            break
    records = [json.loads(text) for _, text in batch.records]
    return records, (batch.end if batch.end is not None else position), problems


# ---------------------------------------------------------------------------- timestamps
@pytest.mark.parametrize(("raw", "expected"), [
    ("2026-11-28T10:00:00.000000001Z", "2026-11-28T10:00:00.000000001Z"),
    ("2026-11-28T10:00:00Z", "2026-11-28T10:00:00.000000000Z"),
    ("2026-11-28T10:00:00.5Z", "2026-11-28T10:00:00.500000000Z"),
    ("2026-11-28T10:00:00.1234567891Z", "2026-11-28T10:00:00.123456789Z"),
    ("2026-11-28T01:30:00.000000000+02:00", "2026-11-27T23:30:00.000000000Z"),
    ("2026-11-28T23:30:00.25-01:00", "2026-11-29T00:30:00.250000000Z"),
    ("2026-11-28t10:00:00z", "2026-11-28T10:00:00.000000000Z"),
])
def test_canonical_ts(raw: str, expected: str) -> None:
    assert lc.canonical_ts(raw) == expected


@pytest.mark.parametrize("raw", ["", "hello", "2026-13-01T00:00:00Z", "2026-11-28 10:00",
                                 "2026-11-28T25:00:00Z", "1764324000"])
def test_canonical_ts_rejects(raw: str) -> None:
    assert lc.canonical_ts(raw) is None


def test_second_and_day() -> None:
    assert lc.second_of(T0) == "2026-11-28T10:00:00Z"
    assert lc.day_of(T0) == "20261128"


# ---------------------------------------------------------------------------- records
def test_plain_line_becomes_timestamp_and_message() -> None:
    assert json.loads(lc.to_record(T0, "hello world")) == {"timestamp": T0,
                                                           "message": "hello world"}


@pytest.mark.parametrize("content", ["", "  padded  ", "[1,2]", '"text"', "42", "{not json}",
                                     '{"a": NaN}', "{", "ünïcødé ✓", 'quote " and \\ back',
                                     "\x00\x1f control"])
def test_non_object_lines_are_messages(content: str) -> None:
    record = json.loads(lc.to_record(T0, content))
    assert record == {"timestamp": T0, "message": content}


def test_trailing_carriage_return_is_dropped() -> None:
    assert json.loads(lc.to_record(T0, "windows\r"))["message"] == "windows"


def test_json_object_keeps_fields_and_gains_timestamp() -> None:
    text = lc.to_record(T0, '{"level":"info","price":1.10,"big":123456789012345678901234}')
    assert text.startswith('{"timestamp":"' + T0 + '",')
    assert '"price":1.10' in text and "123456789012345678901234" in text  # exact text kept
    assert json.loads(text)["level"] == "info"


def test_json_object_with_timestamp_is_kept_verbatim() -> None:
    line = '{"timestamp": "yesterday", "message": "mine"}'
    assert lc.to_record(T0, "  " + line + " ") == line


def test_empty_json_object() -> None:
    assert json.loads(lc.to_record(T0, "{}")) == {"timestamp": T0}
    assert json.loads(lc.to_record(T0, "{ }")) == {"timestamp": T0}


def test_crash_record() -> None:
    record = json.loads(lc.crash_record(exit_code=3, ts=T0, bot_id="b", pod="bot-b"))
    assert record == {"level": "error", "message": "Bot crashed with exit code 3",
                      "exit_code": 3, "timestamp": T0, "bot_id": "b", "pod": "bot-b"}


@pytest.mark.parametrize(("bot_id", "expected"), [
    ("abc123", "logs/abc123/20261128.log"),
    ("Mixed_Case.id-1", "logs/Mixed_Case.id-1/20261128.log"),
])
def test_object_key(bot_id: str, expected: str) -> None:
    assert lc.object_key(bot_id, "20261128") == expected


@pytest.mark.parametrize("bot_id", ["a/b", "..", "a..b", "x" * 300, "new\nline", "sp ace", ".x"])
def test_object_key_of_awkward_ids_is_one_safe_segment(bot_id: str) -> None:
    key = lc.object_key(bot_id, "20261128")
    segment = key.split("/")[1]
    assert key == f"logs/{segment}/20261128.log" and segment not in (".", "..")
    assert segment[0].isalnum() and all(c.isalnum() or c in "._-" for c in segment)
    assert lc.object_key(bot_id, "20261128") == key  # stable


# ---------------------------------------------------------------------------- pod status
def status(**fields: Any) -> dict[str, Any]:
    return {"name": "bot", "restartCount": 0, **fields}


def test_instances_running() -> None:
    last, current = lc.instances(status(state={"running": {}}))
    assert last is None and current == running("#0", 0)


def test_instances_restarted_with_container_ids() -> None:
    last, current = lc.instances(status(
        restartCount=2, containerID="containerd://c", state={"running": {}},
        lastState={"terminated": {"exitCode": 1, "containerID": "containerd://b",
                                  "finishedAt": "2026-11-28T10:00:00Z"}}))
    assert current == running("containerd://c", 2)
    assert last == ended("containerd://b", 1, 1, previous=True,
                         at="2026-11-28T10:00:00.000000000Z")


def test_instances_waiting_after_crash_serves_the_crashed_one_as_last() -> None:
    last, current = lc.instances(status(
        restartCount=3, state={"waiting": {"reason": "CrashLoopBackOff"}},
        lastState={"terminated": {"exitCode": 137}}))
    assert current is None
    assert last == ended("#3", 3, 137, previous=True)


def test_instances_completed_job() -> None:
    last, current = lc.instances(status(state={"terminated": {"exitCode": 0,
                                                              "reason": "Completed"}}))
    assert last is None and current == ended("#0", 0, 0, previous=False)


def test_log_pod_from_raw_pod() -> None:
    raw = {"metadata": {"name": "bot-x", "uid": "u", "annotations": {"the0.dev/bot-id": "X/y"},
                        "labels": {"bot-id": "X-y-hash"}},
           "status": {"containerStatuses": [status(state={"running": {}})]}}
    found = lc.log_pod(raw)
    assert found is not None and found.bot_id == "X/y" and found.stream == "u/bot"
    assert lc.LogPod.from_message(json.loads(json.dumps(found.to_message()))) == found


@pytest.mark.parametrize("raw", [
    {"metadata": {"name": "p", "uid": "u"}, "status": {}},  # no bot id
    {"metadata": {"name": "p", "uid": "u", "labels": {"bot-id": "b"}},
     "status": {"containerStatuses": [status(state={"waiting": {}})]}},  # never started
    {"metadata": {"name": "p", "uid": "u", "labels": {"bot-id": "b"}}, "status": {}},
])
def test_log_pod_skips(raw: dict[str, Any]) -> None:
    assert lc.log_pod(raw) is None


# ---------------------------------------------------------------------------- planning reads
def test_new_stream_reads_previous_then_current() -> None:
    p = pod(current=running("#1", 1), last=ended("#0", 0, 2, previous=True))
    steps = lc.plan_steps(None, p)
    assert not isinstance(steps, lc.Stale)
    assert [s.instance.key for s in steps] == ["#0", "#1"]
    assert all(s.start.since is None and s.start.skip == 0 for s in steps)


def test_cursor_on_current_reads_only_current() -> None:
    position = lc.Position("#0", 0, "2026-11-28T10:00:00Z", 3)
    steps = lc.plan_steps(position, pod(running("#0")))
    assert not isinstance(steps, lc.Stale) and [s.start for s in steps] == [position]


def test_cursor_on_previous_finishes_it_then_starts_current() -> None:
    position = lc.Position("#0", 0, "2026-11-28T10:00:00Z", 3, seq=7)
    steps = lc.plan_steps(position, pod(running("#1", 1), ended("#0", 0, 1, previous=True)))
    assert not isinstance(steps, lc.Stale)
    assert [(s.instance.key, s.start.since) for s in steps] == [("#0", position.since),
                                                                ("#1", None)]
    assert steps[1].start.seq == 7


def test_finished_instance_is_not_read_again() -> None:
    position = lc.Position("#0", 0, "s", 3, crash=True, done=True)
    assert lc.plan_steps(position, pod(last=ended("#0", 0, 1, previous=True))) == []
    steps = lc.plan_steps(position, pod(running("#1", 1), ended("#0", 0, 1, previous=True)))
    assert not isinstance(steps, lc.Stale) and [s.instance.key for s in steps] == ["#1"]


def test_status_older_than_cursor_waits() -> None:
    position = lc.Position("#2", 2, "s", 1)
    assert isinstance(lc.plan_steps(position, pod(running("#1", 1))), lc.Stale)


def test_missed_instances_read_what_is_left() -> None:
    position = lc.Position("#0", 0, "s", 1)
    steps = lc.plan_steps(position, pod(running("#5", 5), ended("#4", 4, 1, previous=True)))
    assert not isinstance(steps, lc.Stale)
    assert [s.instance.key for s in steps] == ["#4", "#5"]


# ---------------------------------------------------------------------------- consuming reads
def test_identical_timestamps_are_neither_lost_nor_repeated() -> None:
    same = ts(5, 7)
    log = [(same, f"line {i}") for i in range(5)]
    p = pod()
    records, position, _ = ship(None, p, {False: log})
    assert [r["message"] for r in records] == [f"line {i}" for i in range(5)]
    log += [(same, "line 5"), (same, "line 6")]
    records, position, _ = ship(position, p, {False: log})
    assert [r["message"] for r in records] == ["line 5", "line 6"]
    assert position is not None and position.skip == 7 and position.lines == 7
    records, _, _ = ship(position, p, {False: log})
    assert records == []


def test_partial_last_line_waits_until_complete() -> None:
    step = lc.Step(running(), lc.fresh(running(), 0))
    batch = lc.StreamBatch("u1/bot", start=step.start)
    body = f"{ts(1)} whole\n{ts(2)} half of a li".encode()
    position = lc.consume(batch, step, body, truncated=False, bot_id="b", pod="p",
                          observed_at=T0)
    assert isinstance(position, lc.Position) and position.lines == 1
    batch2 = lc.StreamBatch("u1/bot", start=position)
    body += b"ne\n"
    position2 = lc.consume(batch2, lc.Step(running(), position), body, truncated=False,
                           bot_id="b", pod="p", observed_at=T0)
    assert isinstance(position2, lc.Position)
    assert [json.loads(t)["message"] for _, t in batch2.records] == ["half of a line"]


def test_finished_instance_ships_its_unterminated_last_line_and_crash_line() -> None:
    instance = ended("#0", 0, 9, previous=False, at=ts(30))
    step = lc.Step(instance, lc.fresh(instance, 0))
    batch = lc.StreamBatch("u1/bot", start=step.start)
    position = lc.consume(batch, step, f"{ts(1)} a\n{ts(2)} last words".encode(),
                          truncated=False, bot_id="b", pod="p", observed_at=T0)
    assert isinstance(position, lc.Position) and position.done and position.crash
    records = [json.loads(t) for _, t in batch.records]
    assert [r["message"] for r in records] == ["a", "last words", "Bot crashed with exit code 9"]
    assert records[-1]["timestamp"] == ts(30) and records[-1]["exit_code"] == 9


def test_crash_line_even_when_the_bot_printed_nothing() -> None:
    records, position, _ = ship(None, pod(last=ended("#0", 0, 1, previous=True)),
                                {True: [], False: []})
    assert [r["message"] for r in records] == ["Bot crashed with exit code 1"]
    assert records[0]["timestamp"] == T0  # no finishedAt: when it was observed
    assert position is not None and position.crash and position.done
    again, _, _ = ship(position, pod(last=ended("#0", 0, 1, previous=True)), {True: []})
    assert again == []


def test_zero_exit_writes_no_crash_line() -> None:
    records, position, _ = ship(None, pod(ended("#0", 0, 0, previous=False)),
                                {False: [(ts(1), "done")]})
    assert [r["message"] for r in records] == ["done"]
    assert position is not None and position.done and not position.crash


def test_restart_reads_previous_tail_then_new_instance() -> None:
    old = [(ts(i), f"old {i}") for i in range(3)]
    records, position, _ = ship(None, pod(), {False: old})
    old.append((ts(3), "old last words"))
    new = [(ts(10), "new 0")]
    restarted = pod(running("#1", 1), ended("#0", 0, 2, previous=True, at=ts(4)))
    records, position, _ = ship(position, restarted, {True: old, False: new})
    assert [r["message"] for r in records] == ["old last words", "Bot crashed with exit code 2",
                                               "new 0"]
    assert position is not None and position.instance == "#1"


def test_a_different_stream_under_the_cursor_ships_nothing() -> None:
    records, position, _ = ship(None, pod(), {False: [(ts(1), "a"), (ts(1), "b")]})
    # The kubelet now serves another instance (restarted under us, status not yet updated).
    records, same, problems = ship(position, pod(), {False: [(ts(1), "x"), (ts(1), "y"),
                                                             (ts(2), "z")]})
    assert records == [] and problems and same == position
    records, same, problems = ship(position, pod(), {False: [(ts(1), "x")]})
    assert records == [] and problems


def test_line_longer_than_the_read_limit_is_cut_not_stuck() -> None:
    log = [(ts(1), "short"), (ts(1), "x" * 500), (ts(2), "after")]
    records, position, _ = ship(None, pod(), {False: log}, limit=200)
    assert [r["message"] for r in records] == ["short"]
    records, position, _ = ship(position, pod(), {False: log}, limit=200)
    assert len(records) == 1 and records[0]["message"].startswith("x" * 100)
    records, position, _ = ship(position, pod(), {False: log}, limit=200)
    assert records == [] and position is not None and position.since == "2026-11-28T10:00:02Z"
    records, position, _ = ship(position, pod(), {False: log}, limit=200)
    assert [r["message"] for r in records] == ["after"]


@pytest.mark.parametrize("seed", range(40))
def test_random_appends_and_reads_ship_every_line_exactly_once(seed: int) -> None:
    """A bot writing bursts with repeated and out-of-order timestamps, read at random moments
    with a small read limit: every line arrives once, in order."""
    rng = random.Random(seed)
    log: list[tuple[str, str]] = []
    shipped: list[str] = []
    position = None
    second = 0
    limit = rng.choice([10**9, 2000, 4000])  # > a second of this log
    for round_ in range(60):
        for _ in range(rng.randint(0, 12)):
            second += rng.choice([0, 0, 0, 1, 2])
            jitter = rng.choice([0, 0, -1]) if second > 1 else 0  # clock steps back a little
            log.append((ts(second + jitter, rng.choice([0, 5, 999_999_999])),
                        f"r{round_}-{len(log)}"))
        records, position, problems = ship(position, pod(), {False: log}, limit=limit)
        assert not problems
        shipped += [r["message"] for r in records]
    for _ in range(len(log)):  # drain
        records, position, _ = ship(position, pod(), {False: log}, limit=limit)
        shipped += [r["message"] for r in records]
    expected = [c for t, c in log]
    # Lines whose timestamp stepped back BEFORE the cursor's second are the documented loss.
    assert len(shipped) == len(set(shipped))
    assert [c for c in expected if c in set(shipped)] == shipped
    lost = [c for c in expected if c not in set(shipped)]
    assert all(_stepped_back(log, c) for c in lost)


def _stepped_back(log: list[tuple[str, str]], content: str) -> bool:
    index = next(i for i, (_, c) in enumerate(log) if c == content)
    return any(t[:19] > log[index][0][:19] for t, _ in log[:index])


@pytest.mark.parametrize("seed", range(20))
def test_in_order_logs_are_never_lost(seed: int) -> None:
    rng = random.Random(1000 + seed)
    log: list[tuple[str, str]] = []
    shipped: list[str] = []
    position = None
    second = 0
    for _ in range(50):
        for _ in range(rng.randint(0, 20)):
            second += rng.choice([0, 0, 1])
            log.append((ts(second, rng.choice([0, 1])), f"l{len(log)}"))
        records, position, problems = ship(position, pod(), {False: log},
                                           limit=rng.choice([2000, 10**9]))
        assert not problems
        shipped += [r["message"] for r in records]
    for _ in range(len(log)):
        records, position, _ = ship(position, pod(), {False: log}, limit=2000)
        shipped += [r["message"] for r in records]
    assert shipped == [c for _, c in log]


# ---------------------------------------------------------------------------- planning writes
def batch_of(lines: list[tuple[str, str]], stream: str = "u1/bot", seq: int = 0
             ) -> lc.StreamBatch:
    start = replace(lc.fresh(running(), seq))
    batch = lc.StreamBatch(stream, start=start)
    body, _ = serve(lines, None)
    lc.consume(batch, lc.Step(running(), start), body, truncated=False, bot_id="b", pod="p",
               observed_at=T0)
    return batch


def test_writes_split_by_utc_day_with_marks() -> None:
    batch = batch_of([(ts(59, hour=23, day=27), "late"), (ts(1, hour=0, day=28), "early")])
    writes, finals = lc.plan_writes("b", [batch])
    assert [(w.key, w.lines) for w in writes] == [("logs/b/20261127.log", 1),
                                                  ("logs/b/20261128.log", 1)]
    first, second = (w.hwm["u1/bot"] for w in writes)
    assert (first.lines, first.seq) == (1, 1) and (second.lines, second.seq) == (2, 2)
    assert finals["u1/bot"].seq == 2 and finals["u1/bot"].lines == 2
    assert writes[0].data.endswith(b"\n") and writes[0].oldest == ts(59, hour=23, day=27)


def test_writes_merge_streams_of_one_bot_in_time_order() -> None:
    a = batch_of([(ts(1), "a1"), (ts(3), "a3")], stream="ua/bot")
    b = batch_of([(ts(2), "b2")], stream="ub/bot")
    writes, _ = lc.plan_writes("b", [a, b])
    assert len(writes) == 1
    assert [json.loads(x)["message"] for x in writes[0].data.splitlines()] == ["a1", "b2", "a3"]
    assert set(writes[0].hwm) == {"ua/bot", "ub/bot"}


def test_unmoved_stream_keeps_its_sequence() -> None:
    batch = lc.StreamBatch("u1/bot", start=lc.Position("#0", 0, "s", 2, seq=4))
    batch.end = batch.start
    writes, finals = lc.plan_writes("b", [batch])
    assert writes == [] and finals["u1/bot"].seq == 4


def test_many_streams_split_to_fit_metadata() -> None:
    batches = [batch_of([(ts(i), f"m{i}")], stream=f"{i:036d}/bot") for i in range(30)]
    writes, _ = lc.plan_writes("b", batches)
    assert all(len(lc.encode_hwm(w.hwm)) <= lc.META_BUDGET for w in writes)
    assert sum(w.lines for w in writes) == 30


def test_marks_round_trip_and_garbage_claims_nothing() -> None:
    marks = {"u/bot": lc.Position("#0", 0, "2026-11-28T10:00:00Z", 3, 9, "ab", True, False, 5)}
    assert lc.decode_hwm(lc.encode_hwm(marks)) == marks
    assert lc.decode_hwm(None) == {} and lc.decode_hwm("not json") == {}
    assert lc.decode_hwm('{"x": [1]}') == {}


def test_ahead_compares_sequences() -> None:
    mark = lc.Position("#0", 0, None, 0, seq=3)
    assert lc.ahead(mark, None)
    assert lc.ahead(mark, replace(mark, seq=2))
    assert not lc.ahead(mark, replace(mark, seq=3))


def test_position_round_trip() -> None:
    position = lc.Position("containerd://x", 2, None, 0, 5, "ff", False, True, 8, 12.5)
    assert lc.Position.loads(position.dumps()) == position


# ---------------------------------------------------------------------------- fan-out
def test_chunks_never_split_a_bot() -> None:
    pods = [lc.LogPod(bot_id=f"b{i // 3}", name=f"p{i}", uid=f"u{i}", last=None,
                      current=running()) for i in range(10)]
    chunks = lc.chunk_pods(pods, 4)
    assert sum(len(c) for c in chunks) == 10
    for chunk in chunks:
        bots = {p.bot_id for p in chunk}
        assert all(sum(1 for p in pods if p.bot_id == b) == sum(1 for p in chunk
                                                                 if p.bot_id == b)
                   for b in bots)
    assert lc.chunk_pods([], 4) == []


def test_forgotten_streams() -> None:
    cursors = {"gone-old/bot": lc.Position("#0", 0, None, 0, at=100.0),
               "gone-new/bot": lc.Position("#0", 0, None, 0, at=950.0),
               "live/bot": lc.Position("#0", 0, None, 0, at=0.0)}
    assert lc.forgotten_streams(cursors, ["live/bot"], now=1000.0, keep_for=300) == [
        "gone-old/bot"]
