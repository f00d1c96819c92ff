"""Child processes of the stack: start with a log file, wait for readiness, stop by PID.

A server that does not become ready raises `ServerFailed` naming the server and the tail of its
log, so a test run fails with the reason on screen instead of a hang or a skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class ServerFailed(RuntimeError):
    """A stack server could not be started or did not become ready."""


# Ports handed out in the last PORT_HOLD_S seconds, by every process on this machine (stacks
# of parallel test workers start side by side), so no two picks meet before their servers bind.
PORTS_FILE = Path(tempfile.gettempdir()) / "the0-k8s-stack-ports.json"
PORT_HOLD_S = 300.0


def _port_range() -> tuple[int, int]:
    """Below the kernel's ephemeral range: a port picked there cannot be taken as the source
    port of some outgoing connection between the pick and the server's bind (it was: postgres
    failed with "Address already in use" on a port bind(0) had just handed out)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return (10000, low - 1) if low > 12000 else (low - 2000, low - 1)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now, not handed out to anyone else here in the last few minutes."""
    first, last = _port_range()
    with PORTS_FILE.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = time.time()
        try:
            recent = {int(p): t for p, t in json.loads(PORTS_FILE.read_text()).items()
                      if now - t < PORT_HOLD_S}
        except (OSError, ValueError, AttributeError):
            recent = {}
        for _ in range(500):
            port = random.randint(first, last)
            if port in recent:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            recent[port] = now
            PORTS_FILE.write_text(json.dumps({str(p): t for p, t in recent.items()}))
            return port
    raise ServerFailed(f"no free port on {host} in {first}-{last} after 500 tries")


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot): with the pid, it names one
    process for good. argv[0] does not: redis-server, for one, retitles itself."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return int(stat.rsplit(")", 1)[1].split()[19])


def zombie(pid: int) -> bool:
    """Exited, waiting for its parent (or init) to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def same_process(pid: int, started: int | None) -> bool:
    """True when pid still runs as the process that had start time `started` (no PID reuse;
    a zombie has exited)."""
    return started is not None and start_time(pid) == started and not zombie(pid)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass
class Server:
    """One started child process (own session, so its children die with it)."""

    name: str
    argv: Sequence[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    # What asks it to stop. PostgreSQL: SIGINT ("fast" shutdown: ends its sessions and exits);
    # its SIGTERM ("smart") would wait for every client to go.
    stop_signal: int = signal.SIGTERM
    popen: subprocess.Popen[bytes] | None = None
    started: int | None = None  # /proc start time, recorded so `down` can tell it is ours

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        with self.log.open("ab") as out:
            try:
                self.popen = subprocess.Popen(
                    list(self.argv),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServerFailed(f"{self.name}: cannot execute {self.argv[0]}: {exc}") from exc
        self.started = start_time(self.popen.pid)

    def wait_ready(self, probe: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise ServerFailed(
                    f"{self.name} exited with code {self.popen.returncode} during start-up.\n"
                    f"--- last lines of {self.log} ---\n{log_tail(self.log)}"
                )
            try:
                if probe():
                    return
            except Exception as exc:  # any probe error just means "not ready yet"
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        raise ServerFailed(
            f"{self.name} was not ready within {timeout:.0f} s (last probe error: {last_error}).\n"
            f"--- last lines of {self.log} ---\n{log_tail(self.log)}"
        )

    def stop(self, grace: float = 10.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        stop_process_group(self.popen.pid, grace=grace, sig=self.stop_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1)


def stop_process_group(pid: int, *, grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """`sig` (SIGTERM) to the process group led by pid, then SIGKILL whatever is left after
    `grace` — the group and every descendant that was running when asked to stop, including
    those that made their own session (PostgreSQL's children each call setsid())."""
    family = descendants(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for child, started in family.items():
        if same_process(child, started):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGKILL)


def descendants(pid: int) -> dict[int, int | None]:
    """Every live process below pid, with its /proc start time (read in one pass)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: dict[int, int | None] = {}
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        if child not in found:
            found[child] = start_time(child)
            todo += parents.get(child, [])
    return found


def _alive(pid: int) -> bool:
    try:
        # A zombie child still "exists"; reap it if it is ours.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    if zombie(pid):
        # Exited: reap it if it is our child; someone else's (e.g. `down` stopping what `up`
        # started) is init's to reap, whenever it gets round to it.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True
