"""The bot's code zip → files in the code directory, safely.

Refuses the whole archive before writing anything when an entry has an absolute path, a `..`,
a backslash, a symlink mode, encryption, a reserved name, or when entries or declared sizes are
over the caps; while writing it counts the real bytes too (a lying header cannot exceed the cap).
A file is 0755 if any execute bit is set in its zip mode, else 0644.

Must NOT: follow or create symlinks; write outside the code directory; download (see init.py).
"""

import os
import stat
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from botpod import paths
from botpod.errors import BotpodError

CHUNK = 64 * 1024
WHAT = "code archive"
RESERVED_DIR = ".the0"  # botpod's wrappers live here
OVERWRITTEN = frozenset({"entrypoint.sh", "result.json"})  # botpod writes these files


@dataclass(frozen=True, kw_only=True)
class ZipLimits:
    """Caps on the code archive: download size, unpacked bytes and entries."""

    max_archive_bytes: int
    max_unpacked_bytes: int
    max_entries: int


@dataclass(frozen=True)
class UnpackStats:
    files: int
    bytes: int


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    relative: str
    is_dir: bool
    executable: bool


def unpack(archive: BinaryIO, code_dir: str, limits: ZipLimits) -> UnpackStats:
    """Unpack the zip in `archive` into `code_dir`; BotpodError (nothing written) if refused."""
    try:
        with zipfile.ZipFile(archive) as zf:
            entries = _checked_entries(zf, code_dir, limits)
            return _extract(zf, entries, code_dir, limits)
    except zipfile.BadZipFile:
        raise BotpodError("the code is not a valid zip archive (or an entry is corrupt)") from None
    except (NotImplementedError, RuntimeError) as error:
        raise BotpodError(
            f"the code archive uses an unsupported zip feature ({type(error).__name__})"
        ) from None


def _checked_entries(zf: zipfile.ZipFile, code_dir: str, limits: ZipLimits) -> list[_Entry]:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise BotpodError(f"the code archive has more than {limits.max_entries} entries")
    declared = 0
    entries = []
    for info in infos:
        if "\\" in info.filename:
            raise BotpodError(f"{WHAT}: an entry has a backslash in its path")
        relative = paths.member_path(code_dir, info.filename, what=WHAT)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise BotpodError(f"{WHAT}: an entry is a symlink")
        if info.flag_bits & 0x1:
            raise BotpodError(f"{WHAT}: an entry is encrypted")
        if relative is None:
            continue
        is_dir = info.is_dir()
        _refuse_reserved(relative, is_dir)
        declared += info.file_size
        if declared > limits.max_unpacked_bytes:
            raise BotpodError(
                f"the code archive unpacks to more than {limits.max_unpacked_bytes} bytes"
            )
        entries.append(_Entry(info, relative, is_dir, bool(mode & 0o111)))
    return entries


def _refuse_reserved(relative: str, is_dir: bool) -> None:
    top = relative.split("/", 1)[0]
    if top == RESERVED_DIR:
        raise BotpodError(f"{WHAT}: the path {RESERVED_DIR}/ is reserved for the0's wrapper")
    if top in OVERWRITTEN and (is_dir or "/" in relative):
        raise BotpodError(f"{WHAT}: {top} must be a file (the0 writes it)")


def _extract(
    zf: zipfile.ZipFile, entries: list[_Entry], code_dir: str, limits: ZipLimits
) -> UnpackStats:
    total = 0
    files = 0
    for entry in entries:
        target = os.path.join(code_dir, entry.relative)
        paths.ensure_parent_dirs(code_dir, entry.relative, what=WHAT)
        if entry.is_dir:
            try:
                os.makedirs(target, mode=0o755, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise BotpodError(f"{WHAT}: a directory entry is also a file") from None
            continue
        total += _write_file(zf, entry, target, limits.max_unpacked_bytes, total)
        files += 1
    return UnpackStats(files=files, bytes=total)


def _write_file(zf: zipfile.ZipFile, entry: _Entry, target: str, limit: int, before: int) -> int:
    # O_NOFOLLOW: never write through a symlink, even one that appeared after the checks.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, 0o644)
    except IsADirectoryError:
        raise BotpodError(f"{WHAT}: a file entry is also a directory") from None
    written = 0
    with os.fdopen(fd, "wb") as out, zf.open(entry.info) as src:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if before + written > limit:
                raise BotpodError(f"the code archive unpacks to more than {limit} bytes")
            out.write(chunk)
        # fchmod: the mode must not depend on the umask of the container.
        os.fchmod(out.fileno(), 0o755 if entry.executable else 0o644)
    return written
