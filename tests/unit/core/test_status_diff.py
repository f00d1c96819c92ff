"""diff_statuses: what a pass writes, given what it observed and what is stored."""

from __future__ import annotations

from typing import Any

from worker.core.status import diff_statuses, fingerprint


def status(bot_id: str, phase: str = "Running", **extra: Any) -> dict[str, Any]:
    return {"id": bot_id, "phase": phase, "reason": "", "message": "", **extra}


def stored_as(doc: dict[str, Any], last_error: str = "") -> str:
    """The fingerprint the pass saved when it wrote `doc` (last_error included)."""
    return fingerprint({**doc, "last_error": last_error})


def test_an_unchanged_world_writes_nothing() -> None:
    current = {"a": status("a"), "b": status("b", "Pending")}
    stored = {"a": stored_as(current["a"]), "b": stored_as(current["b"])}
    diff = diff_statuses(current, stored=stored, last_errors={}, updated_at="T")
    assert diff.changed == [] and diff.fingerprints == {} and diff.gone == []


def test_a_change_a_new_bot_and_a_stale_mark_are_written_with_their_time() -> None:
    current = {"a": status("a", "Pending"), "b": status("b"), "c": status("c")}
    stored = {"a": stored_as(status("a")), "b": "stale", "c": stored_as(current["c"])}
    diff = diff_statuses(current, stored=stored, last_errors={}, updated_at="T")
    assert [d["id"] for d in diff.changed] == ["a", "b"]
    assert all(d["updated_at"] == "T" and d["last_error"] == "" for d in diff.changed)
    assert diff.fingerprints == {"a": stored_as(current["a"]), "b": stored_as(current["b"])}
    assert current["a"] == status("a", "Pending")  # the caller's documents are not changed


def test_a_tasks_error_is_part_of_the_status_and_of_its_fingerprint() -> None:
    current = {"a": status("a")}
    stored = {"a": stored_as(current["a"])}
    diff = diff_statuses(current, stored=stored, last_errors={"a": "code_not_found: …"},
                         updated_at="T")
    assert diff.changed[0]["last_error"] == "code_not_found: …"
    # An invalid document's own error wins over the task's.
    invalid = {"a": status("a", "Invalid", last_error="invalid_id: …")}
    diff = diff_statuses(invalid, stored={}, last_errors={"a": "old"}, updated_at="T")
    assert diff.changed[0]["last_error"] == "invalid_id: …"


def test_errors_come_first_and_bots_that_are_gone_are_listed() -> None:
    current = {"r": status("r"), "x": status("x", "Broken"), "i": status("i", "Invalid"),
               "p": status("p", "Pending")}
    diff = diff_statuses(current, stored={"gone": "f", "r": "old"}, last_errors={},
                         updated_at="T")
    assert [d["id"] for d in diff.changed] == ["i", "x", "p", "r"]
    assert diff.gone == ["gone"]
