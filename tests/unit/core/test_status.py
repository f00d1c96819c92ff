"""A bot's warnings in its status document."""

from worker.core.status import fingerprint, with_warnings


def test_warnings_are_added_only_to_the_bots_that_have_some() -> None:
    statuses = {"a": {"id": "a", "phase": "Running"}, "b": {"id": "b", "phase": "Running"}}
    result = with_warnings(statuses, {"a": ("config.cpu_limit '9' is above the ceiling 2",),
                                      "b": (), "gone": ("x",)}, reason="resources_ignored")
    assert result["a"]["warnings"] == [{"reason": "resources_ignored",
                                        "message": "config.cpu_limit '9' is above the ceiling 2"}]
    assert result["b"] == statuses["b"] and "gone" not in result
    assert "warnings" not in statuses["a"]  # the input is not changed
    assert fingerprint(result["b"]) == fingerprint(statuses["b"])
