"""Fixtures for botpod: a real local HTTP object store and a bot pod laid out in tmp dirs.

Everything runs for real: `python3 -m botpod` in subprocesses, urllib against an http.server in
a thread, `sh entrypoint.sh` with real python3/node/cc. Every presigned URL carries SECRET_MARK;
each test's pod asserts at teardown that no output of any process it ran contained it.
"""

from __future__ import annotations

import io
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SECRET_MARK = "X-Amz-Signature=SECRETSIG"
# The interpreter of the pods (Debian's /usr/bin/python3 in the image); this one by default.
PYTHON = os.environ.get("BOTPOD_PYTHON") or sys.executable


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    complete: bool = True  # the whole declared body arrived (False: the client hung up)


@dataclass
class ObjectStore:
    """An S3-like store: GET → object or 404 NoSuchKey, PUT → stored; forced failures."""

    objects: dict[str, bytes] = field(default_factory=dict)
    failures: dict[str, list[int]] = field(default_factory=dict)  # path → statuses, in order
    stalls: dict[str, list[float]] = field(default_factory=dict)  # path → seconds, per PUT
    slow_answers: dict[str, list[float]] = field(default_factory=dict)  # answer after the body
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}?{SECRET_MARK}{secrets.token_hex(4)}"

    def fail(self, path: str, *statuses: int) -> None:
        """The next requests to `path` answer these statuses (then it behaves normally)."""
        self.failures[path] = list(statuses)

    def stall(self, path: str, *seconds: float) -> None:
        """The next PUTs to `path` wait this long before reading their body (a stuck server:
        the client's send blocks once the socket buffers are full)."""
        self.stalls[path] = list(seconds)

    def answer_slowly(self, path: str, *seconds: float) -> None:
        """The next PUTs to `path` read their whole body, then wait this long to answer."""
        self.slow_answers[path] = list(seconds)

    def puts(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == "PUT" and r.path == path]

    def wait_for_puts(self, path: str, count: int, timeout: float = 10.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.puts(path)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"expected {count} PUTs to {path}, got {len(self.puts(path))}")


def _handler(store: ObjectStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, status: int, body: bytes = b"", content_type: str = "") -> None:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _record(self, body: bytes, complete: bool = True) -> str:
            path = self.path.split("?", 1)[0]
            with store.lock:
                store.requests.append(
                    Request(self.command, path, dict(self.headers), body, complete))
            return path

        def _forced(self, path: str) -> bool:
            with store.lock:
                statuses = store.failures.get(path)
                status = statuses.pop(0) if statuses else None
            if status is None:
                return False
            code = "InternalError" if status >= 500 else "AccessDenied"
            self._answer(status, f"<Error><Code>{code}</Code></Error>".encode(), "application/xml")
            return True

        def do_GET(self) -> None:
            path = self._record(b"")
            if self._forced(path):
                return
            with store.lock:
                body = store.objects.get(path)
            if body is None:
                self._answer(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
            else:
                self._answer(200, body, "application/octet-stream")

        def do_PUT(self) -> None:
            with store.lock:
                stalls = store.stalls.get(self.path.split("?", 1)[0])
                stall = stalls.pop(0) if stalls else 0.0
            time.sleep(stall)
            length = int(self.headers.get("Content-Length", "0"))
            try:
                body = self.rfile.read(length)
            except ConnectionError:
                body = b""
            path = self._record(body, complete=len(body) == length)
            if len(body) != length:
                return  # the client hung up halfway: nothing stored, nobody to answer
            with store.lock:
                slow = store.slow_answers.get(path)
                delay = slow.pop(0) if slow else 0.0
            time.sleep(delay)
            if self._forced(path):
                return
            with store.lock:
                store.objects[path] = body
            self._answer(200)

    return Handler


@pytest.fixture
def store() -> Iterator[ObjectStore]:
    the_store = ObjectStore()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(the_store))
    server.daemon_threads = True
    the_store.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield the_store
    server.shutdown()
    server.server_close()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Pod:
    """A bot pod's directories, URL files and processes, in one tmp dir."""

    CODE_PATH = "/the0-custom-bots/bot.zip"
    STATE_PATH = "/bot-state/bot-1/state.tar.gz"

    def __init__(self, root: Path, store: ObjectStore) -> None:
        self.root = root
        self.store = store
        self.code_dir = root / "bot"
        self.state_dir = root / "state" / ".the0-state"
        self.download_dir = root / "bot-tmp"
        self.scratch_dir = root / "scratch"
        self.urls_dir = root / "urls"
        self.bin_dir = root / "bin"
        for directory in (self.download_dir, self.scratch_dir, self.urls_dir, self.bin_dir):
            directory.mkdir(parents=True)
        self.code_dir.mkdir()
        (self.root / "state").mkdir()
        # Only the interpreters the pod images have, by the names entrypoint.sh uses.
        (self.bin_dir / "python3").symlink_to(PYTHON)
        if Path("/usr/bin/node").exists():
            (self.bin_dir / "node").symlink_to("/usr/bin/node")
        self.outputs: list[str] = []
        self.processes: list[subprocess.Popen[str]] = []
        self.set_urls(self.CODE_PATH, self.STATE_PATH, self.STATE_PATH)

    def set_urls(self, code: str, state_get: str, state_put: str) -> None:
        self.write_url("code-url", code)
        self.write_url("state-get-url", state_get)
        self.write_url("state-put-url", state_put)

    def write_url(self, name: str, path: str) -> None:
        # As the kubelet does for a mounted Secret: a new file swapped in by rename.
        partial = self.urls_dir / f".{name}.tmp"
        partial.write_text(self.store.url(path) + "\n")
        partial.replace(self.urls_dir / name)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.bin_dir}:/usr/bin:/bin",
            "PYTHONPATH": str(REPO),
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "CODE_DIR": str(self.code_dir),
            "STATE_DIR": str(self.state_dir),
            "DOWNLOAD_DIR": str(self.download_dir),
            "SCRATCH_DIR": str(self.scratch_dir),
            "URLS_DIR": str(self.urls_dir),
            "RUNTIME": "python3.11",
            "BOT_ID": "bot-1",
        }
        env.update(overrides)
        return {k: v for k, v in env.items() if v is not None}

    def run(self, args: list[str], env: dict[str, str], timeout: float = 60) -> Result:
        done = subprocess.run(
            args, env=env, cwd=self.root, capture_output=True, text=True, timeout=timeout
        )
        self.outputs += [done.stdout, done.stderr]
        return Result(done.returncode, done.stdout, done.stderr)

    def init(self, **env: str) -> Result:
        return self.run([PYTHON, "-m", "botpod", "init"], self.env(**env))

    def start(self, args: list[str], env: dict[str, str], cwd: Path | None = None) -> Process:
        proc = subprocess.Popen(
            args,
            env=env,
            cwd=cwd or self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(proc)
        return Process(proc, self.outputs)

    def start_sync(self, **env: str) -> Process:
        defaults = {"STATE_SYNC_INTERVAL": "0.2"}
        defaults.update(env)
        return self.start([PYTHON, "-m", "botpod", "sync"], self.env(**defaults))

    def run_bot(self, timeout: float = 30, **env: str) -> Result:
        return self.run(["sh", str(self.code_dir / "entrypoint.sh")], self.bot_env(**env), timeout)

    def start_bot(self, **env: str) -> Process:
        return self.start(
            ["sh", str(self.code_dir / "entrypoint.sh")], self.bot_env(**env), cwd=self.code_dir
        )

    def bot_env(self, **env: str) -> dict[str, str]:
        base = {
            "PATH": f"{self.bin_dir}:/usr/bin:/bin",
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "BOT_ID": "bot-1",
            "BOT_CONFIG": '{"symbol":"BTC","size":5}',
            "CODE_MOUNT_DIR": str(self.code_dir),
            "STATE_DIR": str(self.state_dir),
        }
        base.update(env)
        return base

    def result_json(self) -> dict[str, str]:
        import json

        return dict(json.loads((self.code_dir / "result.json").read_text()))

    def put_code(self, files: dict[str, bytes | str], mode: int = 0o644) -> None:
        self.store.objects[self.CODE_PATH] = make_zip(
            [
                (name, body.encode() if isinstance(body, str) else body, mode)
                for name, body in files.items()
            ]
        )

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            out, err = proc.communicate()
            self.outputs += [out or "", err or ""]


class Process:
    """A running process whose output lines can be awaited; all output ends in `outputs`."""

    def __init__(self, proc: subprocess.Popen[str], outputs: list[str]) -> None:
        self.proc = proc
        self._outputs = outputs
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._pump, args=(proc.stdout, self.stdout_lines), daemon=True),
            threading.Thread(target=self._pump, args=(proc.stderr, self.stderr_lines), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _pump(stream: io.TextIOWrapper, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.stdout_lines) + "".join(self.stderr_lines)

    def wait_for(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.proc.poll() is not None:
                time.sleep(0.1)  # let the readers catch up
                if text in self.output:
                    return
                raise AssertionError(
                    f"exited {self.proc.returncode} before {text!r}:\n{self.output}"
                )
            time.sleep(0.02)
        raise AssertionError(f"no {text!r} within {timeout} s:\n{self.output}")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 10.0) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        self._outputs.append(self.output)
        return code


def make_zip(entries: list[tuple[str, bytes | None, int]]) -> bytes:
    """A zip of (name, body or None for a directory, unix mode) entries, written as given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (mode & 0xFFFF) << 16
            if body is None:
                info.external_attr |= 0x10  # MS-DOS directory flag
            zf.writestr(info, body or b"")
    return buffer.getvalue()


def make_tar_gz(add: Callable[[tarfile.TarFile], None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        add(tar)
    return buffer.getvalue()


def tree(directory: Path) -> dict[str, bytes | None]:
    """relative path → bytes (None for a directory), symlinks not followed."""
    found: dict[str, bytes | None] = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        found[rel] = None if path.is_dir() else path.read_bytes()
    return found


@pytest.fixture
def pod(tmp_path: Path, store: ObjectStore) -> Iterator[Pod]:
    the_pod = Pod(tmp_path, store)
    try:
        yield the_pod
    finally:
        the_pod.close()
    leaked = [text for text in the_pod.outputs if "SECRETSIG" in text or "127.0.0.1:" in text]
    assert not leaked, f"a URL was printed: {leaked}"


@pytest.fixture
def helpers() -> type[Helpers]:
    return Helpers


class Helpers:
    make_zip = staticmethod(make_zip)
    make_tar_gz = staticmethod(make_tar_gz)
    tree = staticmethod(tree)
