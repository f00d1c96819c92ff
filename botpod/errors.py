"""The one error type botpod reports to the user.

Must NOT: carry a URL, a bot config or any other secret in a message — a message is printed
as is, so whoever raises it builds it from safe parts only (names, numbers, error types).
"""


class BotpodError(Exception):
    """A failure with a message that is safe to print: the command exits non-zero with it."""
