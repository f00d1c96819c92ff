"""Excerpts of untrusted text: bounded length, one printable line."""

import pytest

from worker.core.text import excerpt, printable


def test_short_printable_text_is_unchanged() -> None:
    assert excerpt("CrashLoopBackOff", limit=40) == "CrashLoopBackOff"


def test_text_at_the_limit_is_unchanged() -> None:
    assert excerpt("x" * 40, limit=40) == "x" * 40


def test_long_text_is_cut_to_the_limit_with_an_ellipsis() -> None:
    result = excerpt("x" * 41, limit=40)
    assert len(result) == 40
    assert result.endswith("…")


@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\x1b", "\u2028", "\u200b"])
def test_unprintable_characters_become_question_marks(char: str) -> None:
    assert excerpt(f"a{char}b", limit=10) == "a?b"


def test_huge_text_is_cheap_and_bounded() -> None:
    assert len(excerpt("y" * 10_000_000, limit=200)) == 200


@pytest.mark.parametrize(("text", "shown"), [
    ("plain id-1", "plain id-1"),
    ("esc\x1b[2J", "esc\\x1b[2J"),
    ("rtl\u202eexe", "rtl\\u202eexe"),
    ("a\nb\r\t", "a\\nb\\r\\t"),
    ("\u2028", "\\u2028"),
    ("lone\ud800", "lone\\ud800"),
    ("日本語 ✓", "日本語 ✓"),
])
def test_printable_shows_control_and_format_characters_as_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown
