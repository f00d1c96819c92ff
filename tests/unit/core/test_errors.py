"""The error hierarchy: classification, safe messages, and pickling with every field intact."""

import pickle

import pytest

from worker.core.errors import (
    InvalidBot,
    PermanentError,
    ReadFailed,
    TemporaryError,
    The0Error,
)


@pytest.mark.parametrize("cls", [InvalidBot, TemporaryError, PermanentError, ReadFailed])
def test_every_error_is_rooted_in_the0_error(cls: type[Exception]) -> None:
    assert issubclass(cls, The0Error)


def test_read_failed_is_temporary_and_nothing_else_is_mixed_up() -> None:
    assert issubclass(ReadFailed, TemporaryError)
    assert not issubclass(InvalidBot, TemporaryError | PermanentError)
    assert not issubclass(PermanentError, TemporaryError)


def test_invalid_bot_keeps_id_reason_and_detail() -> None:
    error = InvalidBot("abc", "unknown_runtime", "unknown runtime 'cobol'")
    assert (error.bot_id, error.reason, error.detail) == (
        "abc",
        "unknown_runtime",
        "unknown runtime 'cobol'",
    )
    assert str(error) == "bot 'abc': unknown runtime 'cobol' (unknown_runtime)"


def test_invalid_bot_message_neutralises_control_characters_and_long_ids() -> None:
    error = InvalidBot("evil\nFAKE LOG LINE\x1b[31m" + "x" * 300, "invalid_id", "id is bad")
    message = str(error)
    assert "\n" not in message and "\x1b" not in message
    assert len(message) < 120


def test_temporary_error_carries_retry_after() -> None:
    assert TemporaryError("busy", retry_after=2.5).retry_after == 2.5
    assert TemporaryError("busy").retry_after is None


@pytest.mark.parametrize(
    "error",
    [
        InvalidBot("abc", "invalid_quantity", "config.cpu_limit is not a Kubernetes quantity"),
        TemporaryError("throttled", retry_after=7.0),
        ReadFailed("list expired", retry_after=None),
        ReadFailed("mongo down", retry_after=1.0),
        PermanentError("rejected"),
    ],
)
def test_errors_survive_pickling_with_all_fields(error: The0Error) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
