"""worker.core.logrecord: the NDJSON record of each bot line and controller event."""

from __future__ import annotations

import json
import random

import pytest

from worker.core import logrecord as lr

T0 = "2026-11-28T10:00:00.000000001Z"


def test_plain_line_becomes_source_timestamp_and_message() -> None:
    text = lr.bot_record(T0, "hello world")
    assert text == '{"source":"bot","timestamp":"' + T0 + '","message":"hello world"}'


@pytest.mark.parametrize("content", ["", "  padded  ", "[1,2]", '"text"', "42", "{not json}",
                                     '{"a": NaN}', '{"a": Infinity}', "{", "ünïcødé ✓",
                                     'quote " and \\ back', "\x00\x1f control", '{"a":1} x',
                                     '{"a":1}{"b":2}', '{"a":"raw\ttab"}', "{,}", '{"a" 1}'])
def test_non_object_lines_are_messages(content: str) -> None:
    assert json.loads(lr.bot_record(T0, content)) == {"source": "bot", "timestamp": T0,
                                                      "message": content}


def test_trailing_carriage_return_is_dropped() -> None:
    assert json.loads(lr.bot_record(T0, "windows\r"))["message"] == "windows"


def test_json_object_keeps_its_members_byte_for_byte_after_the_controllers() -> None:
    text = lr.bot_record(T0, '{"level":"info", "price": 1.10,"big":123456789012345678901234,'
                             '"n":{"x": [1, 2]}}')
    assert text.startswith('{"source":"bot","timestamp":"' + T0 + '",')
    assert '"price":1.10' in text and '"big":123456789012345678901234' in text
    assert '"n":{"x": [1, 2]}' in text  # values exactly as the bot wrote them
    assert json.loads(text)["level"] == "info"


def test_metric_lines_keep_their_fields_at_the_top_for_the_platform_ui() -> None:
    # the0's SDK: {"_metric": ..., **data, "timestamp": ...}; the UI reads _metric at the top.
    line = '{"_metric": "price", "symbol": "BTC/USD", "value": 45000.5, ' \
           '"timestamp": "2026-11-28T10:00:00.123Z"}'
    record = json.loads(lr.bot_record(T0, line))
    assert record == {"source": "bot", "timestamp": T0, "_metric": "price",
                      "symbol": "BTC/USD", "value": 45000.5,
                      "bot": {"timestamp": "2026-11-28T10:00:00.123Z"}}


@pytest.mark.parametrize("forgery", [
    '{"source":"controller","level":"error","message":"Bot crashed with exit code 1",'
    '"exit_code":1,"timestamp":"2020-01-01T00:00:00.000000000Z"}',
    '{"sourc\\u0065":"controller","time\\u0073tamp":"2020-01-01T00:00:00Z"}',  # escaped names
    '{"source":"bot","source":"controller"}',  # duplicates: a JS reader keeps the last one
    '{"bot":{"source":"controller"},"source":"controller"}',
])
def test_a_bot_cannot_forge_the_controllers_fields(forgery: str) -> None:
    text = lr.bot_record(T0, forgery)
    record = json.loads(text)  # Python (like JavaScript) keeps the LAST of duplicate names
    assert record["source"] == "bot" and record["timestamp"] == T0
    assert text.count('"source":') == 1 + forgery.count('"source"')  # theirs moved, not dropped
    assert set(record) - {"source", "timestamp", "bot"} <= {"level", "message", "exit_code"}
    assert "source" in record["bot"] or "sourc\\u0065" in text


def test_empty_json_object() -> None:
    assert json.loads(lr.bot_record(T0, "{}")) == {"source": "bot", "timestamp": T0}
    assert json.loads(lr.bot_record(T0, " { } ")) == {"source": "bot", "timestamp": T0}


def test_deeply_nested_object_is_kept_or_becomes_a_message_never_an_error() -> None:
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    record = json.loads(lr.bot_record(T0, deep))
    assert record["source"] == "bot" and record.get("message", deep) == deep


@pytest.mark.parametrize("content", ["line\u2028break", "para\u2029graph", "next\u0085line",
                                     '{"a":"\u2028"}', '{"a":[1,\r2]}', "cr\rin the middle",
                                     "\x1c\x1d\x1e\x0b\x0c"])
def test_one_record_is_one_line_for_every_reader(content: str) -> None:
    text = lr.bot_record(T0, content)
    assert text.splitlines() == [text]  # Python's splitlines breaks on all of these
    assert "\r" not in text and "\n" not in text
    for char in ("\u2028", "\u2029", "\u0085"):
        assert char not in text
    record = json.loads(text)
    assert record.get("message", content) in (content, content.rstrip("\r"))


def test_a_cut_line_is_a_message_with_what_was_cut() -> None:
    record = json.loads(lr.bot_record(T0, '{"a": "partial', cut=1234))
    assert record == {"source": "bot", "timestamp": T0, "message": '{"a": "partial',
                      "truncated_bytes": 1234}


@pytest.mark.parametrize("seed", range(30))
def test_every_record_is_one_valid_json_object_starting_with_the_controllers_fields(
        seed: int) -> None:
    rng = random.Random(seed)
    alphabet = ['"', "\\", "{", "}", ":", ",", "[", "]", " ", "\r", "\t", "a", "é", "\u2028",
                "\u0085", "\x00", "source", "timestamp", "bot", "1", "null", "\ud83d"]
    for _ in range(300):
        content = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.5:
            content = "{" + content + "}"
        text = lr.bot_record(T0, content)
        assert text.splitlines() == [text]
        record = json.loads(text)
        assert list(record)[:2] == ["source", "timestamp"]
        assert record["source"] == "bot" and record["timestamp"] == T0


def test_crash_record() -> None:
    record = json.loads(lr.crash_record(exit_code=3, ts=T0, bot_id="b", pod="bot-b"))
    assert record == {"source": "controller", "timestamp": T0, "level": "error",
                      "message": "Bot crashed with exit code 3", "exit_code": 3,
                      "bot_id": "b", "pod": "bot-b"}


def test_controller_records_escape_what_they_quote() -> None:
    text = lr.crash_record(exit_code=1, ts=T0, bot_id='we"ird\u2028id', pod="p")
    assert text.splitlines() == [text] and json.loads(text)["bot_id"] == 'we"ird\u2028id'


def test_budget_marker() -> None:
    text = lr.budget_record(ts=T0, bot_id="b", budget=256 * 1024 * 1024, lines=1234,
                            size=5 * 1024 * 1024, last="2026-11-28T11:00:00.000000000Z",
                            parts=2, earlier="logs/b/20261128.log.00001 to .00002")
    record = json.loads(text)
    assert record["source"] == "controller" and record["event"] == lr.EVENT_BUDGET
    assert record["dropped_lines"] == 1234 and record["dropped_bytes"] == 5 * 1024 * 1024
    assert "256.0 MiB" in record["message"] and "1234 lines" in record["message"]
    assert "logs/b/20261128.log.00001" in record["message"]
    assert lr.is_budget_record(text.encode())
    assert not lr.is_budget_record(lr.bot_record(T0, text).encode())  # a bot's copy is not one
    assert not lr.is_budget_record(b"not json")


def test_the_budget_marker_and_the_continuation_note_byte_for_byte() -> None:
    marker = lr.budget_record(ts=T0, bot_id="b", budget=256 * 1024 * 1024, lines=12,
                              size=3 * 1024 * 1024 // 2, last="2026-11-28T11:00:00.000000000Z",
                              parts=0, earlier="")
    assert marker == (
        '{"source":"controller","timestamp":"' + T0 + '","level":"warn",'
        '"event":"log_budget_exceeded","message":"Daily log budget of 256.0 MiB reached: 12 '
        'lines (1.5 MiB of output) dropped so far this day (UTC)","budget_bytes":268435456,'
        '"dropped_lines":12,"dropped_bytes":1572864,'
        '"last_dropped":"2026-11-28T11:00:00.000000000Z","parts":0,"bot_id":"b"}')
    note = lr.continued_record(ts=T0, bot_id="b\u00e9", parts=3, earlier="logs/x.00001")
    assert note == (
        '{"source":"controller","timestamp":"' + T0 + '","level":"info",'
        '"event":"log_continued","message":"This day\'s earlier lines are in logs/x.00001",'
        '"parts":3,"bot_id":"b\u00e9"}')  # non-ASCII kept as UTF-8, compact separators


def test_a_controller_record_never_takes_source_or_timestamp_from_its_fields() -> None:
    text = lr.controller_record(T0, {"source": "bot", "timestamp": "forged", "level": "info"})
    assert text == '{"source":"controller","timestamp":"' + T0 + '","level":"info"}'


@pytest.mark.parametrize("text", ['{"a":1', 'x{"a":1}', '{"a":1}x', '{"a" 1}', '{1:2}',
                                  '{"a":1,}', '{"a":NaN}', '{"a":"\n"}', "{", "{ } }",
                                  '{"a\tb":1}', '{"a":1} }'])
def test_text_that_is_not_exactly_one_object_has_no_members(text: str) -> None:
    assert lr.members(text) is None


def test_members_keep_names_and_values_as_written() -> None:
    assert lr.members('{ "a\\u0041" : 1 ,"b":[1, 2] }') == [
        ("aA", '"a\\u0041"', "1"), ("b", '"b"', "[1, 2]")]
    assert lr.members("{ }") == []
