"""Restore the bot's saved state at init; the record of which state the bucket holds.

Invariant 9, a bot keeps its state: HTTP 404 is the only answer that means "no state yet".
Any other failure raises, and STATE_DIR is replaced only after the whole archive unpacked into
a staging directory beside it — a failed restore leaves STATE_DIR as it was, so the sidecar
can never upload an empty state over a real one.

A record holds the fingerprint of the state last known to be in the bucket: init writes what it
restored (`<STATE_DIR>.synced`, beside the directory on the same volume), the sidecar what it
uploaded (in its own scratch volume: it mounts the state read-only). The sidecar starts from
its own record, else init's, so a change the bot makes before the sidecar's first look, or
while the sidecar restarts, is still uploaded.

Must NOT: upload (sync.py does); write a partial STATE_DIR; treat a 403 or 5xx as "no state".
"""

import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import BinaryIO

from botpod import console, fetch, statetar
from botpod.errors import BotpodError
from botpod.statetar import StateLimits
from botpod.urls import UrlReader

GET_RETRY_SECONDS = 5.0  # then exit non-zero: the kubelet restarts init with its own backoff


@dataclass(frozen=True, kw_only=True)
class RestoreResult:
    first_run: bool
    files: int = 0
    bytes: int = 0
    skipped: int = 0


def synced_record(state_dir: str) -> str:
    """Path of the file that holds the fingerprint of the state in the bucket."""
    return state_dir.rstrip("/") + ".synced"


def read_synced(record: str) -> str | None:
    """The fingerprint recorded in file `record`, or None if there is none (or unreadable)."""
    try:
        with open(record, encoding="ascii") as f:
            text = f.read(100).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def write_synced(record: str, fingerprint: str) -> None:
    """Record `fingerprint` in file `record` atomically (write, then rename); OSError if the
    volume refuses."""
    partial = f"{record}.{secrets.token_hex(4)}.tmp"
    with open(partial, "w", encoding="ascii") as f:
        f.write(fingerprint + "\n")
    os.replace(partial, record)


def restore(
    *, state_dir: str, download_dir: str, url: UrlReader, limits: StateLimits
) -> RestoreResult:
    """Download the saved state and put it in STATE_DIR (an empty one on the first run)."""
    parent = os.path.dirname(state_dir)
    os.makedirs(parent, exist_ok=True)
    _remove_leftovers(state_dir)
    # An unnamed temporary file: it disappears with the process, even on a crash.
    with tempfile.TemporaryFile(dir=download_dir) as archive:
        first_run = not _download(url, archive, limits)
        staging = tempfile.mkdtemp(prefix=f"{os.path.basename(state_dir)}.restoring-", dir=parent)
        try:
            os.chmod(staging, 0o755)  # mkdtemp makes 0700; the SDK expects a normal directory
            result = RestoreResult(first_run=True)
            if not first_run:
                archive.seek(0)
                stats = statetar.unpack(archive, staging, limits)
                result = RestoreResult(
                    first_run=False, files=stats.files, bytes=stats.bytes, skipped=stats.skipped
                )
            baseline = _fingerprint_or_none(staging, limits)
            _replace_dir(staging, state_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already unless we failed
    if baseline is not None:
        try:
            write_synced(synced_record(state_dir), baseline)
        except OSError as error:
            console.warn(f"could not record the restored state's fingerprint: {error.strerror}")
    return result


def _download(url: UrlReader, archive: BinaryIO, limits: StateLimits) -> bool:
    """True if a saved state was downloaded, False on 404; raises on any other outcome."""
    try:
        fetch.with_retries(
            lambda _remaining: fetch.get_to_file(
                url,
                archive,
                what="state download",
                max_bytes=limits.max_bytes,
                timeout=fetch.MAX_ATTEMPT_TIMEOUT,
            ),
            deadline=time.monotonic() + GET_RETRY_SECONDS,
        )
    except fetch.HttpStatusError as error:
        if error.status == 404:
            return False
        raise
    except fetch.TooLargeError:
        raise BotpodError(
            f"the saved state is larger than STATE_MAX_BYTES ({limits.max_bytes} bytes)"
        ) from None
    return True


def _fingerprint_or_none(directory: str, limits: StateLimits) -> str | None:
    try:
        return statetar.fingerprint(directory, limits).fingerprint
    except BotpodError as error:
        console.warn(f"the restored state has no fingerprint, the sidecar takes its own: {error}")
        return None


def _replace_dir(staging: str, state_dir: str) -> None:
    """Move `staging` to `state_dir`, replacing whatever a previous init attempt left there."""
    if not os.path.lexists(state_dir):
        os.rename(staging, state_dir)
        return
    old = f"{state_dir}.old-{secrets.token_hex(4)}"
    try:
        os.rename(state_dir, old)
    except OSError:
        # STATE_DIR is a mount point (EBUSY): empty it and move the restored entries in.
        _empty_dir(state_dir)
        for name in os.listdir(staging):
            os.rename(os.path.join(staging, name), os.path.join(state_dir, name))
        return
    os.rename(staging, state_dir)
    shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(state_dir: str) -> None:
    # A killed init can leave its staging (or the replaced) directory beside STATE_DIR.
    parent, name = os.path.split(state_dir)
    for entry in os.scandir(parent):
        leftover = entry.name.startswith((f"{name}.restoring-", f"{name}.old-"))
        if leftover and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)


def _empty_dir(directory: str) -> None:
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
