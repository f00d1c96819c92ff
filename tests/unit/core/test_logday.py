"""worker.core.logday: day objects (layout, ledger, budget) and what one write does."""

from __future__ import annotations

import json

import pytest

from worker.core import logday as ld
from worker.core import logrecord as lr

DAY = "20261128"


def ts(second: int) -> str:
    return f"2026-11-28T10:00:{second:02d}.000000000Z"


def bot_entry(second: int, text: str = "x") -> ld.Entry:
    line = (lr.bot_record(ts(second), text) + "\n").encode()
    return ld.Entry(ts(second), line, bot=True, output=len(text) + 1)


def crash_entry(second: int) -> ld.Entry:
    line = (lr.crash_record(exit_code=1, ts=ts(second), bot_id="b", pod="p") + "\n").encode()
    return ld.Entry(ts(second), line, bot=False)


def test_layout_keeps_the_key_the0_reads_and_numbers_parts_after_it() -> None:
    assert ld.part_key("b", DAY, 1) == "logs/b/20261128.log.00001"
    assert ld.day_keys("b", DAY, 2) == ["logs/b/20261128.log.00001",
                                        "logs/b/20261128.log.00002", "logs/b/20261128.log"]
    # Listing the prefix in key order gives the current part first, then parts 1, 2, …
    assert sorted(ld.day_keys("b", DAY, 3))[0] == "logs/b/20261128.log"
    assert ld.earlier_parts("b", DAY, 0) == ""
    assert ld.earlier_parts("b", DAY, 3) == "logs/b/20261128.log.00001 to .00003"


def test_ledger_round_trip_and_what_an_unknown_object_counts_as() -> None:
    ledger = ld.Ledger(parts=2, written=10, dropped_lines=3, dropped_bytes=7,
                       first_drop=ts(1), last_drop=ts(2))
    assert ld.Ledger.decode(ledger.encode()) == ledger
    assert ledger.encode().isascii()
    assert ld.Ledger.decode(None) == ld.Ledger()
    # Written by an earlier version (no ledger): its size counts as budget spent.
    assert ld.Ledger.decode(None, size=500) == ld.Ledger(written=500)
    assert ld.Ledger.decode("garbage", size=5) == ld.Ledger(written=5)
    assert ld.Ledger.decode("[99,1,2,3,4,\"\",\"\"]") == ld.Ledger()


def test_batch_stores_until_the_budget_then_drops_bot_lines_but_never_controller_ones() -> None:
    first = bot_entry(1, "a" * 10)
    budget = len(first.text) * 2
    batch = ld.Batch(day=DAY, before=ld.Ledger(), budget=budget)
    assert batch.add(first) and batch.add(bot_entry(2, "b" * 10))
    assert not batch.add(bot_entry(3, "c"))          # would pass the budget
    assert not batch.add(bot_entry(4, ""))           # sealed: even a tiny line is dropped
    assert batch.add(crash_entry(5))                 # the controller's lines are always kept
    assert len(batch.head) == 2 and len(batch.tail) == 1
    assert batch.lines == 2 and batch.dropped == 2
    assert batch.ledger.dropped_lines == 2 and batch.ledger.dropped_bytes == 2 + 1
    assert (batch.ledger.first_drop, batch.ledger.last_drop) == (ts(3), ts(4))
    assert batch.ledger.written == budget and batch.ledger.sealed
    assert batch.oldest == ts(1)


def test_no_budget_stores_everything() -> None:
    batch = ld.Batch(day=DAY, before=ld.Ledger(written=10**12), budget=0)
    assert batch.add(bot_entry(1)) and batch.lines == 1


def test_small_batch_is_an_append() -> None:
    batch = ld.Batch(day=DAY, before=ld.Ledger(), budget=0)
    batch.add(bot_entry(1))
    write = ld.plan_write(bot_id="b", batch=batch, current_size=100, part_bytes=1000)
    assert write.key == "logs/b/20261128.log" and write.archive_to is None
    assert write.append == batch.head[0].text and write.replace is None
    assert write.ledger.parts == 0 and write.ledger.written == len(batch.head[0].text)


def test_a_batch_that_would_pass_the_part_size_rotates_the_current_part_first() -> None:
    batch = ld.Batch(day=DAY, before=ld.Ledger(parts=2), budget=0)
    batch.add(bot_entry(1))
    write = ld.plan_write(bot_id="b", batch=batch, current_size=990, part_bytes=1000)
    assert write.archive_to == "logs/b/20261128.log.00003" and write.archive_extra == b""
    assert write.ledger.parts == 3 and write.append is None
    assert write.replace is not None
    header, data = write.replace.split(b"\n", 1)
    note = json.loads(header)
    assert note["source"] == "controller" and note["event"] == lr.EVENT_CONTINUED
    assert note["parts"] == 3 and note["timestamp"] == ts(1)
    assert data == batch.head[0].text


def test_a_new_day_object_is_never_rotated() -> None:
    batch = ld.Batch(day=DAY, before=ld.Ledger(), budget=0)
    for second in range(30):
        batch.add(bot_entry(second, "y" * 50))
    write = ld.plan_write(bot_id="b", batch=batch, current_size=None, part_bytes=100)
    assert write.archive_to is None and write.append is not None


def test_sealing_moves_the_days_lines_to_a_part_and_leaves_one_marker() -> None:
    kept = bot_entry(1, "k")
    budget = len(kept.text) + len(bot_entry(2, "z" * 100).text)  # room for one "z" line
    batch = ld.Batch(day=DAY, before=ld.Ledger(parts=1, written=0), budget=budget)
    batch.add(kept)
    for second in range(2, 6):
        batch.add(bot_entry(second, "z" * 100))
    batch.add(crash_entry(6))
    write = ld.plan_write(bot_id="b", batch=batch, current_size=300, part_bytes=10**6)
    assert write.archive_to == "logs/b/20261128.log.00002"
    assert write.archive_extra.startswith(kept.text)  # what still fitted goes with the day
    assert write.replace is not None and write.ledger.parts == 2
    marker, crash = (json.loads(line) for line in write.replace.splitlines())
    assert marker["event"] == lr.EVENT_BUDGET and marker["dropped_lines"] == 3
    assert marker["dropped_bytes"] == 3 * 101 and marker["parts"] == 2
    assert marker["timestamp"] == batch.ledger.first_drop and crash["exit_code"] == 1


def test_sealing_a_day_with_nothing_stored_yet_writes_just_the_marker() -> None:
    batch = ld.Batch(day=DAY, before=ld.Ledger(), budget=10)
    batch.add(bot_entry(1, "too long for the budget"))
    write = ld.plan_write(bot_id="b", batch=batch, current_size=None, part_bytes=10**6)
    assert write.archive_to is None and write.replace is not None
    assert json.loads(write.replace)["dropped_lines"] == 1 and write.ledger.parts == 0


def test_a_sealed_day_rewrites_its_marker_instead_of_repeating_it() -> None:
    before = ld.Ledger(parts=1, written=100, dropped_lines=5, dropped_bytes=50,
                       first_drop=ts(1), last_drop=ts(2))
    batch = ld.Batch(day=DAY, before=before, budget=100)
    batch.add(bot_entry(3))
    batch.add(crash_entry(4))
    write = ld.plan_write(bot_id="b", batch=batch, current_size=400, part_bytes=10**6)
    assert write.archive_to is None and write.replace is None and write.append is None
    assert write.reseal is not None and write.ledger.dropped_lines == 6
    assert json.loads(write.marker)["dropped_lines"] == 6
    old_marker = lr.budget_record(ts=ts(1), bot_id="b", budget=100, lines=5, size=50,
                                  last=ts(2), parts=1, earlier="x")
    existing = (old_marker + "\n").encode() + crash_entry(2).text
    stored = ld.resealed(existing, write.marker, write.reseal)
    lines = [json.loads(line) for line in stored.splitlines()]
    assert [r.get("event") for r in lines] == [lr.EVENT_BUDGET, None, None]
    assert lines[0]["dropped_lines"] == 6 and sum(
        1 for r in lines if r.get("event") == lr.EVENT_BUDGET) == 1


def test_reseal_keeps_an_object_whose_first_line_is_not_a_marker() -> None:
    assert ld.resealed(b"someone's line\n", b"M\n", b"E\n") == b"M\nsomeone's line\nE\n"


@pytest.mark.parametrize("budget", [0, 1, 150, 10**6])
def test_stored_plus_dropped_is_everything_the_bot_printed(budget: int) -> None:
    batch = ld.Batch(day=DAY, before=ld.Ledger(), budget=budget)
    entries = [bot_entry(i, "q" * i) for i in range(20)]
    for entry in entries:
        batch.add(entry)
    assert batch.lines + batch.dropped == 20
    assert batch.ledger.written + sum(e.output for e in entries[batch.lines:]) == \
        sum(len(e.text) for e in entries[:batch.lines]) + batch.ledger.dropped_bytes
    assert budget == 0 or batch.ledger.written <= budget
