"""`botpod sync`: the native sidecar that uploads the state directory whenever it changes.

Every STATE_SYNC_INTERVAL seconds it fingerprints the state (SHA-256 of the deterministic tar
stream, see statetar.py). Content, not names/sizes/mtimes: the SDKs rewrite state files with the
same bytes all the time, and a metadata fingerprint would upload each of those rewrites (and
could miss a same-size rewrite within one mtime tick). Reading a state that is capped at
STATE_MAX_UNPACKED_BYTES once a minute is cheap. Only a changed state is packed and PUT, with
retries until the next interval; on SIGTERM/SIGINT one final sync (bounded by
STATE_FINAL_SYNC_SECONDS, which the pod spec derives from the pod's grace period) and exit 0.

Signals are blocked and taken by a thread waiting in sigwait, not handled: no handler can
interrupt the loop halfway, and an upload in flight sees the stop between chunks and gives way
to the final sync, whose budget counts from the signal's arrival.

Must NOT: upload a state over a cap (the previous one stays in the bucket); upload when the
state directory is missing; print a URL; outlive the grace period.
"""

import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from botpod import console, fetch, state, statetar
from botpod.console import count, say, size
from botpod.errors import BotpodError
from botpod.settings import SyncSettings
from botpod.statetar import StateTooLargeError
from botpod.urls import STATE_PUT_URL, UrlReader

MIN_RETRY_WINDOW = 10.0
# How long a stopped regular upload whose whole body was sent waits for the store's answer
# before the final sync starts (out of the final budget, 15 s by default): long enough for a
# store that is merely slow, short enough to leave the final upload most of its time.
REGULAR_ANSWER_GRACE_S = 5.0
SYNCED_RECORD = "synced"  # in SCRATCH_DIR: what this pod's sidecar last uploaded
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


class StopSignals:
    """SIGTERM/SIGINT, blocked in every thread and taken by one waiting thread, which notes
    when the signal came: the final sync's budget counts from that moment, however long the
    sync in progress then takes to give way."""

    def __init__(self) -> None:
        # Before any other thread exists, so every thread inherits the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        self.received: int | None = None
        self.received_at: float | None = None  # time.monotonic() when it came
        self._event = threading.Event()
        threading.Thread(target=self._take, name="stop-signals", daemon=True).start()

    def _take(self) -> None:
        signo = signal.sigwait(STOP_SIGNALS)
        self.received_at = time.monotonic()
        self.received = signo
        self._event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True (at once) when a stop signal came."""
        return self._event.wait(max(seconds, 0.0))

    def requested(self) -> bool:
        return self._event.is_set()


class StateSync:
    """Knows which state the bucket holds and uploads the directory when it differs."""

    def __init__(self, settings: SyncSettings, stop: StopSignals) -> None:
        self._settings = settings
        self._stop = stop
        self._url = UrlReader(settings.urls_dir, STATE_PUT_URL)
        self._record = os.path.join(settings.scratch_dir, SYNCED_RECORD)
        self.synced: str | None = None  # fingerprint of the state in the bucket
        self._refused: str | None = None  # a state already found too large when packed
        self._last_problem: str | None = None
        self._last_skipped: tuple[str, ...] = ()

    def start(self) -> None:
        """Take the baseline: init's record of what it restored, else the directory as it is."""
        own = state.read_synced(self._record)
        recorded = own or state.read_synced(state.synced_record(self._settings.state_dir))
        if recorded is not None:
            self.synced = recorded
            source = "this pod's last upload" if own else "the state init restored"
            say(f"watching the state (baseline: {source})")
            return
        try:
            seen = statetar.fingerprint(self._settings.state_dir, self._settings.state_limits)
        except BotpodError as error:
            self._problem(f"no baseline yet: {error}")
            return
        self.synced = seen.fingerprint
        say(f"watching the state (baseline: {count(seen.files, 'file')} as found)")

    def sync(self, *, deadline: float, final: bool) -> bool:
        """Upload the state if it changed; True if an upload happened."""
        settings = self._settings
        if not os.path.isdir(settings.state_dir):
            self._problem("the state directory is missing: nothing to sync")
            return False
        try:
            seen = statetar.fingerprint(settings.state_dir, settings.state_limits)
        except BotpodError as error:
            self._problem(f"state not synced, the saved state is kept: {error}")
            return False
        self._note_skipped(seen.skipped)
        if seen.fingerprint in (self.synced, self._refused):
            return False
        with tempfile.TemporaryFile(dir=settings.scratch_dir) as tarball:
            try:
                packed = statetar.pack(settings.state_dir, tarball, settings.state_limits)
            except StateTooLargeError as error:
                self._refused = seen.fingerprint  # do not pack the same content every interval
                self._problem(f"state not synced, the saved state is kept: {error}")
                return False
            except BotpodError as error:
                self._problem(f"state not synced, the saved state is kept: {error}")
                return False
            if packed.fingerprint == self.synced:
                return False  # changed back meanwhile
            packed_size = tarball.tell()
            if not self._upload(tarball, packed_size, deadline=deadline, final=final):
                return False
        self.synced = packed.fingerprint
        self._last_problem = None
        say(f"state synced: {count(packed.files, 'file')}, {packed_size} bytes")
        try:
            state.write_synced(self._record, packed.fingerprint)
        except OSError as error:
            console.warn(f"could not record the synced fingerprint: {error.strerror}")
        return True

    def _upload(self, tarball: BinaryIO, length: int, *, deadline: float, final: bool) -> bool:
        stop = self._stop

        def should_abort() -> bool:
            # A regular upload gives way to the final sync; the final one only to its deadline.
            return time.monotonic() > deadline or (not final and stop.requested())

        def wait(seconds: float) -> bool:
            if final:
                time.sleep(seconds)
                return False
            return stop.wait(seconds)

        try:
            fetch.with_retries(
                lambda timeout: fetch.put_file(
                    self._url,
                    tarball,
                    length,
                    what="state upload",
                    content_type="application/gzip",
                    timeout=min(timeout, max(deadline - time.monotonic(), 0.5)),
                    should_abort=should_abort,
                    deadline=deadline,
                    # A regular upload whose body the store has whole: its answer is awaited
                    # a little, so it cannot land after the final upload (older over newer).
                    answer_grace=0.0 if final else REGULAR_ANSWER_GRACE_S,
                ),
                deadline=deadline,
                wait=wait,
            )
        except BotpodError as error:
            console.warn(f"state not synced ({size(length)} packed), will try again: {error}")
            return False
        return True

    def _problem(self, message: str) -> None:
        # The same problem every interval is said once, not once a minute.
        if message != self._last_problem:
            console.warn(message)
            self._last_problem = message

    def _note_skipped(self, skipped: tuple[str, ...]) -> None:
        if skipped and skipped != self._last_skipped:
            names = ", ".join(console.shown(name, 60) for name in skipped[:5])
            more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            say(f"not synced (not regular files or directories): {names}{more}")
        self._last_skipped = skipped


READY_FILE = "ready"
"""Written into SCRATCH_DIR once the stop signals are ours and the baseline is taken: the pod's
startupProbe waits for it, so the bot starts only when a SIGTERM can no longer kill the sidecar
before its final sync (a short scheduled run would otherwise lose its state)."""


def run(settings: SyncSettings) -> int:
    stop = StopSignals()
    ready = os.path.join(settings.scratch_dir, READY_FILE)
    with contextlib.suppress(FileNotFoundError):
        os.remove(ready)  # a restarted sidecar is not ready until it has its baseline again
    syncer = StateSync(settings, stop)
    syncer.start()
    with open(ready, "w", encoding="utf-8"):
        pass
    window = max(settings.interval, MIN_RETRY_WINDOW)  # how long one sync may retry
    while not stop.wait(settings.interval):
        _guarded(lambda: syncer.sync(deadline=time.monotonic() + window, final=False))
    name = signal.Signals(stop.received).name if stop.received else "stop"
    say(f"{name}: final sync")
    deadline = (stop.received_at or time.monotonic()) + settings.final_sync_seconds
    _guarded(lambda: syncer.sync(deadline=deadline, final=True))
    say("stopped")
    return 0


def _guarded(sync_once: Callable[[], bool]) -> None:
    # A full scratch volume or a vanished directory costs one interval, not the sidecar.
    try:
        sync_once()
    except OSError as error:
        console.warn(f"state not synced: {error.strerror or type(error).__name__}")
