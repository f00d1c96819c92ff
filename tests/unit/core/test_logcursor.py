"""worker.core.logcursor: cursors over kubelet log streams, records, day split (plain values)."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import pytest

from worker.core import logcursor as lc
from worker.core import logrecord
from worker.core.naming import label_value

T0 = "2026-11-28T10:00:00.000000001Z"


def ts(second: int, nanos: int = 0, day: int = 28, hour: int = 10, minute: int = 0) -> str:
    extra, sec = divmod(second, 60)
    return f"2026-11-{day:02d}T{hour:02d}:{minute + extra:02d}:{sec:02d}.{nanos:09d}Z"


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
         files: dict[bool, list[tuple[str, str]]], limit: int = 10**9, *, chunk: int = 7,
         line_max: int = 1 << 20
         ) -> tuple[list[dict[str, Any]], lc.Position | None, list[lc.Mismatch]]:
    """One collection of one pod as the collector runs it: plan, then per step stream the body
    through `split_lines` in `chunk`-byte pieces, feed the reader, finish. Returns the records
    and the end position."""
    steps = lc.plan_steps(position, the_pod)
    assert not isinstance(steps, lc.Stale)
    if not steps:
        return [], position, []
    records: list[str] = []
    end = position
    problems = []
    for step in steps:
        body, truncated = serve(files[step.instance.previous], step.start.since, limit)
        reader = lc.StreamRead(step, line_max=line_max)
        pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)]
        partial = False
        mismatch = None
        for raw, cut, ended in lc.split_lines(pieces, keep=reader.keep):
            line = reader.parse(raw, cut)
            if not ended and not reader.take_tail(line, truncated=truncated):
                partial = True
                break
            if not reader.shipping:
                mismatch = reader.feed(line)
                if mismatch is not None:
                    break
                continue
            assert reader.feed(line) is None
            records.append(logrecord.bot_record(line.ts, line.content, cut=line.cut))
        if mismatch is not None:
            problems.append(mismatch)
            break
        out = reader.finish(truncated=truncated, partial=partial, bot_id="bot1", pod="bot-bot1",
                            observed_at=T0)
        if isinstance(out, lc.Mismatch):
            problems.append(out)
            break
        if out.crash is not None:
            records.append(out.crash[1])
        end = out.position
        if not out.position.done:
            break
    return [json.loads(text) for text in records], end, problems


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


# ---------------------------------------------------------------------------- keys
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
    log = [(ts(1), "whole")]
    body_tail = f"{ts(2)} half of a li".encode()
    records, position, _ = ship(None, pod(), {False: log})
    assert position is not None and position.lines == 1
    # The unterminated tail of a running instance is not a line yet.
    step = lc.Step(running(), position)
    reader = lc.StreamRead(step, line_max=1024)
    body = f"{ts(1)} whole\n".encode() + body_tail
    lines = list(lc.split_lines([body], keep=reader.keep))
    assert [ended for _, _, ended in lines] == [True, False]
    assert not reader.take_tail(reader.parse(lines[1][0]), truncated=False)
    records, position, _ = ship(position, pod(), {False: [*log, (ts(2), "half of a line")]})
    assert [r["message"] for r in records] == ["half of a line"]


def test_finished_instance_ships_its_unterminated_last_line_and_crash_line() -> None:
    instance = ended("#0", 0, 9, previous=False, at=ts(30))
    step = lc.Step(instance, lc.fresh(instance, 0))
    reader = lc.StreamRead(step, line_max=1024)
    shipped = []
    for raw, cut, _ended in lc.split_lines([f"{ts(1)} a\n{ts(2)} last words".encode()],
                                           keep=reader.keep):
        line = reader.parse(raw, cut)
        assert _ended or reader.take_tail(line, truncated=False)
        assert reader.feed(line) is None
        shipped.append(line.content)
    finish = reader.finish(truncated=False, partial=False, bot_id="b", pod="p", observed_at=T0)
    assert isinstance(finish, lc.Finish) and finish.position.done and finish.position.crash
    assert shipped == ["a", "last words"] and finish.crash is not None
    crash = json.loads(finish.crash[1])
    assert crash["message"] == "Bot crashed with exit code 9" and crash["timestamp"] == ts(30)
    assert crash["exit_code"] == 9 and crash["source"] == "controller"


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


# ---------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64, 4096])
def test_split_lines_is_independent_of_chunking(chunk: int) -> None:
    body = b"a\n\nbc\n" + b"x" * 40 + b"\nlast"
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)]
    assert list(lc.split_lines(pieces, keep=10)) == [
        (b"a", 0, True), (b"", 0, True), (b"bc", 0, True), (b"x" * 10, 30, True),
        (b"last", 0, False)]


def test_split_lines_keeps_at_most_keep_bytes_of_a_huge_line() -> None:
    pieces = (b"y" * 65536 for _ in range(128))  # 8 MiB, one line, no newline
    lines = list(lc.split_lines(pieces, keep=1000))
    assert lines == [(b"y" * 1000, 8 * 1024 * 1024 - 1000, False)]


def test_a_line_longer_than_the_line_limit_is_stored_cut() -> None:
    log = [(ts(1), "é" * 600), (ts(2), "after")]  # 1200 bytes of two-byte characters
    records, position, _ = ship(None, pod(), {False: log}, line_max=1001)
    assert records[0]["message"] == "é" * 500 and records[0]["truncated_bytes"] == 200
    assert [r["message"] for r in records[1:]] == ["after"]
    again, _, _ = ship(position, pod(), {False: log}, line_max=1001)
    assert again == []


def test_parse_keeps_a_line_without_a_timestamp_dated_like_the_one_before() -> None:
    reader = lc.StreamRead(lc.Step(running(), lc.fresh(running(), 0)), line_max=100)
    first = reader.parse(f"{ts(3)} dated".encode())
    bare = reader.parse(b"no stamp here")
    assert (first.ts, first.content) == (ts(3), "dated")
    assert (bare.ts, bare.content, bare.size) == (ts(3), "no stamp here", 13)


def test_a_read_spanning_too_many_seconds_stops_and_resumes() -> None:
    log = [(ts(i % 60, minute=i // 60), f"l{i}") for i in range(50)]
    step = lc.Step(running(), lc.fresh(running(), 0))
    reader = lc.StreamRead(step, line_max=100, max_seconds=20)
    body, _ = serve(log, None)
    fed = 0
    for raw, cut, _ended in lc.split_lines([body], keep=reader.keep):
        assert reader.feed(reader.parse(raw, cut)) is None
        fed += 1
        if reader.full:
            break
    assert fed == 20
    finish = reader.finish(truncated=True, partial=False, bot_id="b", pod="p", observed_at=T0)
    assert isinstance(finish, lc.Finish) and not finish.position.done
    records, _, _ = ship(finish.position, pod(), {False: log})
    assert [r["message"] for r in records] == [f"l{i}" for i in range(20, 50)]


def test_position_counts_every_line_at_or_after_the_last_second() -> None:
    # The clock steps back: the position after "late" must skip the earlier, later-dated lines.
    log = [(ts(5), "a"), (ts(7), "b"), (ts(6), "late")]
    _, position, _ = ship(None, pod(), {False: log})
    assert position is not None and position.since == "2026-11-28T10:00:06Z"
    assert position.skip == 2  # "b" (10:00:07) and "late" (10:00:06) are served again from :06
    again, _, _ = ship(position, pod(), {False: [*log, (ts(8), "next")]})
    assert [r["message"] for r in again] == ["next"]


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


def test_log_keys_are_injective_an_id_chosen_as_anothers_hashed_form_gets_its_own() -> None:
    victim = "victim bot/1"  # not a plain segment: its logs live under its label form
    attacker = label_value(victim)
    assert lc.object_key(attacker, "20261130") != lc.object_key(victim, "20261130")
    assert lc.object_key("clx0abc123def456ghi789jk", "20261130") == (
        "logs/clx0abc123def456ghi789jk/20261130.log")


# ---------------------------------------------------------------------------- giving up
def given_up(instance: lc.Instance, start: lc.Position) -> lc.Finish:
    return lc.give_up(lc.Step(instance, start), bot_id="b", pod="p", observed_at=T0)


@pytest.mark.parametrize("code", [1, 137])
def test_a_vanished_log_of_a_crashed_instance_still_gets_its_crash_line(code: int) -> None:
    instance = ended("#3", 3, code, previous=True, at=ts(30))
    start = replace(lc.fresh(instance, 4), lines=12, fp="f", since=ts(20), skip=2)
    finish = given_up(instance, start)
    assert finish.position == replace(start, crash=True, done=True)
    assert finish.crash is not None and finish.crash[0] == ts(30)
    assert json.loads(finish.crash[1]) == {
        "source": "controller", "timestamp": ts(30), "level": "error",
        "message": f"Bot crashed with exit code {code}", "exit_code": code, "bot_id": "b",
        "pod": "p"}


def test_a_vanished_log_without_a_finish_time_is_dated_when_observed() -> None:
    instance = ended("#0", 0, 2, previous=True)
    finish = given_up(instance, lc.fresh(instance, 0))
    assert finish.crash is not None and finish.crash[0] == T0
    assert json.loads(finish.crash[1])["timestamp"] == T0


@pytest.mark.parametrize("instance", [ended("#0", 0, 0, previous=True), running()])
def test_a_vanished_log_of_a_clean_exit_or_a_running_instance_ends_without_a_crash_line(
        instance: lc.Instance) -> None:
    start = lc.fresh(instance, 1)
    assert given_up(instance, start) == lc.Finish(replace(start, done=True), None)


def test_a_crash_line_already_written_is_not_written_again_on_giving_up() -> None:
    instance = ended("#0", 0, 1, previous=True, at=ts(30))
    start = replace(lc.fresh(instance, 0), crash=True)
    assert given_up(instance, start) == lc.Finish(replace(start, done=True), None)


# ---------------------------------------------------------------------------- cutting long lines
def longest_decodable_prefix(data: bytes) -> bytes:
    """The oracle: try shorter and shorter prefixes until one decodes."""
    for end in range(len(data), -1, -1):
        try:
            data[:end].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return data[:end]
    return b""


def test_a_cut_never_splits_a_character_and_keeps_every_whole_one() -> None:
    text = "aé€𝄞b\u0080\u07ff\u0800\uffff\U00010000\U0010ffff" * 3
    data = text.encode("utf-8")
    for end in range(len(data) + 1):
        assert lc._utf8_prefix(data[:end]) == longest_decodable_prefix(data[:end]), end


@pytest.mark.parametrize("data", [b"ab\xff", b"\x80\x80\x80\x80\x80", b"a\x80", b""])
def test_bytes_that_are_not_utf8_are_left_as_they_are(data: bytes) -> None:
    assert lc._utf8_prefix(data) == data


# ---------------------------------------------------------------------------- more edges
@pytest.mark.parametrize(("raw", "expected"), [
    ("2026-11-28T10:00:00.000000000+05:30", "2026-11-28T04:30:00.000000000Z"),
    ("2026-11-28T10:00:00.000000000-03:45", "2026-11-28T13:45:00.000000000Z"),
    ("2026-11-28T10:00:00.000000000+00:00", "2026-11-28T10:00:00.000000000Z"),
    ("2026-11-28T10:00:59.123456789+10:00", "2026-11-28T00:00:59.123456789Z"),
    ("2026-11-28T10:00:00.1234567891+01:00", "2026-11-28T09:00:00.123456789Z"),
])
def test_canonical_ts_with_offsets_of_hours_and_minutes(raw: str, expected: str) -> None:
    # Written by hand: 10:00 at +05:30 is 04:30 UTC; at -03:45 it is 13:45 UTC.
    assert lc.canonical_ts(raw) == expected


def test_log_pod_in_full_and_through_a_celery_message() -> None:
    raw = {"metadata": {"name": "bot-b", "uid": "u-1", "labels": {"bot-id": "b"}},
           "status": {"startTime": "2026-11-28T09:00:00Z", "containerStatuses": [
               {"name": "state-sync", "restartCount": 0, "state": {"running": {}}},
               {"name": "bot", "restartCount": 1, "containerID": "containerd://c2",
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 2, "containerID": "containerd://c1",
                                             "finishedAt": "2026-11-28T09:30:00Z"}}}]}}
    found = lc.log_pod(raw)
    expected = lc.LogPod(
        bot_id="b", name="bot-b", uid="u-1", started="2026-11-28T09:00:00Z",
        last=lc.Instance(key="containerd://c1", restarts=0, previous=True,
                         terminated=lc.Termination(2, "2026-11-28T09:30:00.000000000Z")),
        current=lc.Instance(key="containerd://c2", restarts=1, previous=False,
                            terminated=None))
    assert found == expected
    message = {"bot_id": "b", "name": "bot-b", "uid": "u-1", "started": "2026-11-28T09:00:00Z",
               "last": {"key": "containerd://c1", "restarts": 0, "previous": True,
                        "exit_code": 2, "finished_at": "2026-11-28T09:30:00.000000000Z"},
               "current": {"key": "containerd://c2", "restarts": 1, "previous": False,
                           "exit_code": None, "finished_at": None}}
    assert expected.to_message() == message
    assert lc.LogPod.from_message(json.loads(json.dumps(message))) == expected
    bare = lc.LogPod(bot_id="b", name="p", uid="u", last=None, current=None)
    assert lc.LogPod.from_message({"bot_id": "b", "name": "p", "uid": "u"}) == bare


@pytest.mark.parametrize("metadata", [
    {"uid": "u", "labels": {"bot-id": "b"}},
    {"name": "p", "labels": {"bot-id": "b"}},
    {"name": "p", "uid": "u", "labels": {"bot-id": ""}},
    {"name": "p", "uid": "u", "annotations": {"the0.dev/bot-id": 7}},
])
def test_a_pod_without_name_uid_or_bot_id_is_not_collected(metadata: dict[str, Any]) -> None:
    raw = {"metadata": metadata,
           "status": {"containerStatuses": [status(state={"running": {}})]}}
    assert lc.log_pod(raw) is None
    # The same pod with all three is collected.
    whole = {"name": "p", "uid": "u", "labels": {"bot-id": "b"}}
    assert lc.log_pod({**raw, "metadata": whole}) is not None
