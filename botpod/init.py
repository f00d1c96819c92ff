"""`botpod init`: fetch the code, restore the state, write the entrypoint — in that order.

Each step either completes or raises; a failure exits non-zero and the kubelet runs the init
container again. The runtime and ENTRYPOINT are checked before anything is downloaded.

Must NOT: print a URL or the config (it never reads BOT_CONFIG at all); go on with an empty
state when the saved one could not be read (state.py raises instead).
"""

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from botpod import codezip, entrypoint, fetch, state
from botpod.console import count, say, shown, size
from botpod.errors import BotpodError
from botpod.settings import InitSettings
from botpod.urls import CODE_URL, STATE_GET_URL, UrlReader

DOWNLOAD_RETRY_SECONDS = 5.0


def run(settings: InitSettings) -> None:
    runtime = entrypoint.runtime_for(settings.runtime)
    entry = entrypoint.entry_path(runtime, settings.entrypoint)

    with _step("could not fetch the code"):
        code = _fetch_code(settings)
    say(f"code unpacked: {count(code.files, 'file')}, {size(code.bytes)}")

    with _step("could not restore the saved state (the bot never starts without it)"):
        restored = state.restore(
            state_dir=settings.state_dir,
            download_dir=settings.download_dir,
            url=UrlReader(settings.urls_dir, STATE_GET_URL),
            limits=settings.state_limits,
        )
    if restored.first_run:
        say("no saved state (first run)")
    else:
        skipped = f", {restored.skipped} links or special files skipped" if restored.skipped else ""
        say(f"state restored: {count(restored.files, 'file')}, {size(restored.bytes)}{skipped}")

    with _step("could not write the entrypoint", only_os_errors=True):
        entrypoint.install(settings.code_dir, settings.runtime, runtime, entry)
    say(f"entrypoint ready: {settings.runtime}, {shown(entry)}")


def _fetch_code(settings: InitSettings) -> codezip.UnpackStats:
    limits = settings.zip_limits
    url = UrlReader(settings.urls_dir, CODE_URL)
    os.makedirs(settings.code_dir, exist_ok=True)
    # An unnamed temporary file: nothing is left behind, even if init is killed.
    with tempfile.TemporaryFile(dir=settings.download_dir) as archive:
        try:
            fetch.with_retries(
                # The retry window limits new attempts, not a download that is progressing.
                lambda _remaining: fetch.get_to_file(
                    url,
                    archive,
                    what="code download",
                    max_bytes=limits.max_archive_bytes,
                    timeout=fetch.MAX_ATTEMPT_TIMEOUT,
                ),
                deadline=time.monotonic() + DOWNLOAD_RETRY_SECONDS,
            )
        except fetch.TooLargeError:
            raise BotpodError(
                f"the code archive is larger than MAX_ARCHIVE_BYTES ({limits.max_archive_bytes})"
            ) from None
        archive.seek(0)
        return codezip.unpack(archive, settings.code_dir, limits)


@contextmanager
def _step(what: str, *, only_os_errors: bool = False) -> Iterator[None]:
    """Prefix a failure with the step it stopped; an OSError shows no file name."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise BotpodError(f"{what}: {reason}") from None
    except BotpodError as error:
        if only_os_errors:
            raise
        raise BotpodError(f"{what}: {error}") from None
