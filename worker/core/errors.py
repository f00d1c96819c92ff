"""The one rooted error hierarchy of the0-k8s, shared by the core and the shell.

Pure: no I/O. Error messages must NEVER contain secret values (bot config, storage keys): they
end up in logs, Celery messages and status documents.

Every error pickles to itself with all its fields, because Celery may carry it between processes.
"""

from typing import Any

from worker.core.text import excerpt

_ID_EXCERPT_LIMIT = 64


class The0Error(Exception):
    """Root of every error raised on purpose by the0-k8s."""


class InvalidBot(The0Error):
    """A bot document is unusable as given: a permanent error that concerns that ONE bot.

    `reason` is a short machine code (e.g. "unknown_runtime") for status documents and metrics;
    `detail` is a human sentence written by our code, never containing config values.
    `bot_id` is the raw id when it was a string, else "".
    """

    def __init__(self, bot_id: str, reason: str, detail: str) -> None:
        self.bot_id = bot_id
        self.reason = reason
        self.detail = detail
        super().__init__(f"bot {excerpt(bot_id, limit=_ID_EXCERPT_LIMIT)!r}: {detail} ({reason})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.bot_id, self.reason, self.detail))


class TemporaryError(The0Error):
    """Worth retrying with backoff; `retry_after` (seconds) is the server's hint, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields do not survive the default Exception pickling, so rebuild explicitly.
        return (_rebuild_temporary, (type(self), str(self), self.retry_after))


class PermanentError(The0Error):
    """Retrying cannot help (e.g. a rejected request); never retried."""


class ReadFailed(TemporaryError):
    """A read of desired or actual state failed or was partial: the pass must end with no writes."""


def _rebuild_temporary(
    cls: type[TemporaryError], message: str, retry_after: float | None
) -> TemporaryError:
    return cls(message, retry_after=retry_after)
