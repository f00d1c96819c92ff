"""the0's Python bot wrapper: `python3 -u wrapper.py <code dir> <entry file>`.

`botpod init` copies this file to `<code dir>/.the0/wrapper.py`; the bot container runs it. It
honours the0's bot contract: the entry file is imported by path as module `main`, with the code
directory and its `vendor/` on sys.path, the working directory set to the code directory and
logging at INFO; `main(bot_id, config)` is called with the parsed BOT_CONFIG object. The outcome
goes to `<code dir>/result.json`: success (exit 0), error (traceback on stderr, exit 1), or
terminated (SIGTERM/SIGINT, exit 0 at once).

`main` runs in a daemon thread, as in the0's own wrapper, so the main thread is always free to
handle SIGTERM — even while `main` sleeps or is stuck in a C call.

Must NOT: import anything outside the standard library (the bot image has no botpod); print
BOT_CONFIG or any part of it; wait for `main` after a SIGTERM.
"""

import importlib.util
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

RESULT_NAME = "result.json"


def write_result(code_dir: str, status: str, message: str) -> None:
    """Write result.json in place. Not by rename: in a pod the file is the bot container's
    termination message, a file the kubelet bind-mounts there, and a rename onto a mount point
    fails (EBUSY). The kubelet reads it only after the process has exited."""
    path = os.path.join(code_dir, RESULT_NAME)
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"status": status, "message": message}, f)
    except OSError as error:
        print(f"the0 wrapper: cannot write {RESULT_NAME}: {error}", file=sys.stderr, flush=True)


def parse_config(text: str | None) -> dict[str, Any]:
    """BOT_CONFIG → a dict; ValueError with a message that never quotes the (secret) text."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"BOT_CONFIG is not valid JSON (line {error.lineno}, column {error.colno})"
        ) from None
    except RecursionError:
        raise ValueError("BOT_CONFIG is nested too deeply") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"BOT_CONFIG must be a JSON object, not {type(value).__name__}")
    return value


def load_main(code_dir: str, entry: str) -> Callable[..., Any]:
    """Import the entry file by path as module `main` and return its `main` function."""
    path = os.path.join(code_dir, entry)
    spec = importlib.util.spec_from_file_location("main", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {entry} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["main"] = module  # as a normal import would: pickling and re-imports work
    spec.loader.exec_module(module)
    func = getattr(module, "main", None)
    if not callable(func):
        raise AttributeError(f"{entry} defines no main(bot_id, config) function")
    return func  # type: ignore[no-any-return]


class _Outcome:
    """What the bot thread reports to the main thread."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.exit_code: int = 0


def _run_bot(func: Callable[..., Any], bot_id: str, config: dict[str, Any], out: _Outcome) -> None:
    try:
        func(bot_id, config)
    except SystemExit as stop:  # sys.exit() inside main: its code decides
        code = stop.code
        out.exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        if out.exit_code != 0:
            out.error = stop
    except BaseException as error:  # every failure of main is reported
        out.error = error


def _fail(code_dir: str, error: BaseException, what: str) -> NoReturn:
    print(f"the0 wrapper: {what}", file=sys.stderr, flush=True)
    traceback.print_exception(error, file=sys.stderr)
    sys.stderr.flush()
    write_result(code_dir, "error", str(error) or type(error).__name__)
    raise SystemExit(1)


def _on_signal(code_dir: str) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        write_result(code_dir, "terminated", f"Bot execution terminated by {name}")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # nothing is left to report it to
                pass
        os._exit(0)  # at once: never wait for main, whatever it is blocked in

    return handler


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        print("usage: wrapper.py <code dir> <entry file>", file=sys.stderr)
        raise SystemExit(2)
    code_dir, entry = argv[1], argv[2]
    handler = _on_signal(code_dir)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

    os.chdir(code_dir)
    # sys.path[0] is normally this wrapper's directory: the bot must not import from there.
    own_dir = os.path.dirname(os.path.abspath(__file__))
    if sys.path and sys.path[0] == own_dir:
        del sys.path[0]
    sys.path[0:0] = [os.path.join(code_dir, "vendor"), code_dir]
    logging.basicConfig(level=logging.INFO)

    bot_id = os.environ.get("BOT_ID", "")
    try:
        config = parse_config(os.environ.get("BOT_CONFIG"))
    except ValueError as error:
        print(f"the0 wrapper: {error}", file=sys.stderr, flush=True)
        write_result(code_dir, "error", str(error))
        raise SystemExit(1) from None
    try:
        func = load_main(code_dir, entry)
    except BaseException as error:  # a broken bot file is the bot's error
        _fail(code_dir, error, f"cannot import {entry}")

    outcome = _Outcome()
    thread = threading.Thread(
        target=_run_bot, args=(func, bot_id, config, outcome), name="bot-main", daemon=True
    )
    thread.start()
    while thread.is_alive():
        thread.join(0.5)  # a short wait keeps the main thread ready to run the signal handler
    if outcome.error is not None:
        _fail(code_dir, outcome.error, "main raised an exception")
    write_result(code_dir, "success", "Bot executed successfully")
    sys.stdout.flush()
    raise SystemExit(0)  # a normal exit: threads the bot left running may finish their work


if __name__ == "__main__":
    main(sys.argv)
