"""Real child processes for end-to-end tests (celery worker, celery beat).

Each process writes stdout and stderr to its own log file and runs in its own session, so it can
be stopped (SIGTERM, then SIGKILL after a grace period) or killed hard (`kill9`) by its PID alone
— never by name. `Procs` remembers what a test started and stops all of it on teardown, printing
each log's tail when the test failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass
class Proc:
    """One started process with its output in `log`."""

    name: str
    argv: Sequence[str]
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = None
    killed: bool = False  # stopped on purpose (kill9/stop), so an exit is not a surprise

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                list(self.argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env}, cwd=self.cwd, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 60) -> str:
        return log_tail(self.log, lines)

    def assert_alive(self) -> None:
        assert self.alive, (f"{self.name} (pid {self.pid}) exited with code {self.returncode}\n"
                            f"--- last lines of {self.log} ---\n{self.tail()}")

    def kill9(self) -> None:
        """SIGKILL the process itself (not its group): a crash, with no clean-up at all."""
        self.killed = True
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            assert self.popen is not None
            self.popen.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the process group; SIGKILL whatever is left after `grace` seconds."""
        if self.popen is None:
            return None
        self.killed = True
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # Also clean up any leftover children of the group (threads pool: usually none).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        return self.popen.returncode


class Procs:
    """The processes one test started; `stop_all` ends them and reports on failure."""

    def __init__(self, workdir: Path, *, env: Mapping[str, str], cwd: Path | None = None) -> None:
        self.workdir = workdir
        self.env = dict(env)
        self.cwd = cwd
        self.started: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], *, without: Sequence[str] = (),
              **env: str) -> Proc:
        """`without`: settings this process must start without (its Deployment lacks them)."""
        taken = {p.name for p in self.started}
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name}-{n}"
        leaked = [name for name in without if name in os.environ]
        assert not leaked, f"the test process's own environment has {leaked}"
        given = {k: v for k, v in {**self.env, **env}.items() if k not in without}
        proc = Proc(unique, argv, self.workdir / f"{unique}.log", given, self.cwd)
        self.started.append(proc.start())
        return proc

    def stop_all(self, *, show_logs: bool) -> None:
        for proc in reversed(self.started):
            surprise = not proc.killed and not proc.alive
            code = proc.stop()
            if show_logs or surprise:
                note = " (exited on its own!)" if surprise else ""
                print(f"\n===== {proc.name} pid {proc.pid} exit {code}{note}: "
                      f"last lines of {proc.log} =====\n{proc.tail()}", flush=True)


def wait_until_exited(proc: Proc, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.returncode
        if code is not None:
            return code
        time.sleep(0.05)
    raise AssertionError(f"{proc.name} still running after {timeout} s\n{proc.tail()}")
