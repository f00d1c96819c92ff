"""The state directory ⇄ a deterministic tar.gz, with the same caps in both directions.

Packing walks the directory through directory file descriptors with O_NOFOLLOW, so neither a
symlink nor a path swapped for one mid-walk is ever followed (the sidecar can read the mounted
URL Secret; the bot must not be able to make it pack that). Only regular files and directories
are packed, sorted by name, with mtime 0, uid/gid 0 and mode 0644/0755: equal content gives an
equal tar stream, and the SHA-256 of that stream is the state's fingerprint.

Unpacking accepts regular files and directories, skips links, devices and FIFOs (the0's Go
runtime could store symlinks), and refuses unsafe names and anything over the caps.

Must NOT: follow a symlink; talk to the network; decide when to sync (see sync.py).
"""

import gzip
import hashlib
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from botpod import paths
from botpod.console import shown
from botpod.errors import BotpodError

CHUNK = 64 * 1024
WHAT = "state archive"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO that replaced a file must not block the walk.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, kw_only=True)
class StateLimits:
    """Caps shared by the sidecar (before it uploads) and init (while it restores)."""

    max_bytes: int  # the tar.gz object
    max_unpacked_bytes: int  # the regular files' bytes
    max_entries: int  # files and directories

    @property
    def max_tar_bytes(self) -> int:
        """Cap on the uncompressed tar stream: the files plus generous room for headers."""
        return self.max_unpacked_bytes + self.max_entries * 8 * 1024 + 2**20


class StateTooLargeError(BotpodError):
    """The state is over a cap."""


@dataclass(frozen=True, kw_only=True)
class TarStats:
    """What a pack (or a fingerprint) saw."""

    files: int
    dirs: int
    bytes: int  # the regular files' bytes
    tar_bytes: int  # the uncompressed tar stream
    fingerprint: str  # sha256 hex of the tar stream
    skipped: tuple[str, ...] = field(default=())  # relative names that are not files or dirs


@dataclass(frozen=True, kw_only=True)
class RestoreStats:
    files: int
    dirs: int
    bytes: int
    skipped: int


def fingerprint(state_dir: str, limits: StateLimits) -> TarStats:
    """The tar stream's stats and SHA-256 without writing it anywhere."""
    return _write_tar(state_dir, None, limits)


def pack(state_dir: str, out: BinaryIO, limits: StateLimits) -> TarStats:
    """Write the state as tar.gz into `out`; StateTooLargeError past any cap (max_bytes too)."""
    out.seek(0)
    out.truncate()
    # mtime=0 and no file name in the gzip header: the same state gives the same bytes.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=6, mtime=0) as gz:
        stats = _write_tar(state_dir, gz, limits)
    out.flush()
    if out.tell() > limits.max_bytes:
        raise StateTooLargeError(
            f"the state is {out.tell()} bytes packed, over STATE_MAX_BYTES ({limits.max_bytes})"
        )
    return stats


def unpack(archive: BinaryIO, target_dir: str, limits: StateLimits) -> RestoreStats:
    """Unpack a state tar.gz into the (new, empty) `target_dir`; BotpodError if refused."""
    files = dirs = total = skipped = entries = 0
    raw = _CappedReader(gzip.GzipFile(fileobj=archive, mode="rb"), limits.max_tar_bytes)
    try:
        with tarfile.open(fileobj=raw, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                entries += 1
                if entries > limits.max_entries:
                    raise StateTooLargeError(
                        f"the saved state has more than {limits.max_entries} entries"
                    )
                relative = paths.member_path(target_dir, member.name, what=WHAT)
                if relative is None:
                    continue
                if member.isdir():
                    _make_dir(target_dir, relative)
                    dirs += 1
                elif member.isreg():
                    total += member.size
                    if total > limits.max_unpacked_bytes:
                        raise StateTooLargeError(
                            f"the saved state unpacks to more than {limits.max_unpacked_bytes}"
                            " bytes"
                        )
                    source = tar.extractfile(member)
                    assert source is not None  # a regular member always has a body
                    _write_file(target_dir, relative, source, member.size, member.mode)
                    files += 1
                else:
                    skipped += 1  # links, devices, FIFOs: never recreated
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile):
        raise BotpodError("the saved state is not a valid tar.gz archive") from None
    return RestoreStats(files=files, dirs=dirs, bytes=total, skipped=skipped)


def _make_dir(root: str, relative: str) -> None:
    paths.ensure_parent_dirs(root, relative, what=WHAT)
    try:
        os.makedirs(os.path.join(root, relative), mode=0o755, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BotpodError(f"{WHAT}: a directory entry is also a file") from None


def _write_file(root: str, relative: str, source: BinaryIO, size: int, mode: int) -> None:
    paths.ensure_parent_dirs(root, relative, what=WHAT)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(os.path.join(root, relative), flags, 0o644)
    except IsADirectoryError:
        raise BotpodError(f"{WHAT}: a file entry is also a directory") from None
    with os.fdopen(fd, "wb") as out:
        left = size
        while left > 0 and (chunk := source.read(min(CHUNK, left))):
            out.write(chunk)
            left -= len(chunk)
        os.fchmod(out.fileno(), 0o755 if mode & 0o111 else 0o644)


class _HashingSink:
    """Counts and hashes what the tar writer emits, passing it on to `inner` if any."""

    def __init__(self, inner: BinaryIO | gzip.GzipFile | None) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.inner is not None:
            self.inner.write(data)
        return len(data)


class _Walk:
    """One pass over the state directory into a tar stream, counting against the caps."""

    def __init__(self, tar: tarfile.TarFile, limits: StateLimits) -> None:
        self.tar = tar
        self.limits = limits
        self.files = self.dirs = self.bytes = 0
        self.skipped: list[str] = []

    def run(self, root_fd: int) -> None:
        # An explicit stack of (directory fd, its relative name, its sorted names): pre-order,
        # deterministic, and no recursion limit on deep trees.
        stack = [(root_fd, "", iter(sorted(os.listdir(root_fd))))]
        try:
            while stack:
                dir_fd, prefix, names = stack[-1]
                name = next(names, None)
                if name is None:
                    stack.pop()
                    if dir_fd != root_fd:
                        os.close(dir_fd)
                    continue
                child = self._visit(dir_fd, prefix + name)
                if child is not None:
                    try:
                        names_below = sorted(os.listdir(child))
                    except OSError:
                        os.close(child)
                        raise
                    stack.append((child, prefix + name + "/", iter(names_below)))
        finally:
            for dir_fd, _, _ in stack:
                if dir_fd != root_fd:
                    os.close(dir_fd)

    def _visit(self, dir_fd: int, relative: str) -> int | None:
        """Add one entry; return the fd of a directory to descend into."""
        name = relative.rsplit("/", 1)[-1]
        try:
            mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                self._count_entry()
                child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    self.tar.addfile(_header(relative, tarfile.DIRTYPE, 0o755, 0))
                except BaseException:
                    os.close(child)
                    raise
                self.dirs += 1
                return child
            if stat.S_ISREG(mode):
                self._add_file(dir_fd, name, relative)
                return None
        except FileNotFoundError:
            return None  # deleted while we walked: it is not part of the state any more
        except OSError as error:
            if error.errno == getattr(os, "ELOOP", 40):  # a file swapped for a symlink
                self.skipped.append(relative)
                return None
            raise BotpodError(
                f"cannot read the state entry {shown(relative)}: {type(error).__name__}"
            ) from None
        self.skipped.append(relative)
        return None

    def _add_file(self, dir_fd: int, name: str, relative: str) -> None:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                self.skipped.append(relative)
                return
            self._count_entry()
            self.bytes += info.st_size
            if self.bytes > self.limits.max_unpacked_bytes:
                raise StateTooLargeError(
                    "the state holds more than "
                    f"{self.limits.max_unpacked_bytes} bytes (STATE_MAX_UNPACKED_BYTES)"
                )
            mode = 0o755 if info.st_mode & 0o111 else 0o644
            header = _header(relative, tarfile.REGTYPE, mode, info.st_size)
            self.tar.addfile(header, _FixedSizeReader(fd, info.st_size))
            self.files += 1
        finally:
            os.close(fd)

    def _count_entry(self) -> None:
        if self.files + self.dirs + 1 > self.limits.max_entries:
            raise StateTooLargeError(
                f"the state has more than {self.limits.max_entries} files and directories"
                " (STATE_MAX_ENTRIES)"
            )


def _write_tar(state_dir: str, inner: gzip.GzipFile | None, limits: StateLimits) -> TarStats:
    sink = _HashingSink(inner)
    try:
        root_fd = os.open(state_dir, _DIR_FLAGS)
    except OSError as error:
        raise BotpodError(f"cannot open the state directory: {type(error).__name__}") from None
    try:
        with tarfile.open(  # type: ignore[call-overload]  # a write-only sink is enough for "w|"
            fileobj=sink,
            mode="w|",
            format=tarfile.PAX_FORMAT,
            encoding="utf-8",
        ) as tar:
            walk = _Walk(tar, limits)
            walk.run(root_fd)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise BotpodError(f"cannot read the state directory: {reason}") from None
    finally:
        os.close(root_fd)
    if sink.size > limits.max_tar_bytes:
        raise StateTooLargeError("the state's tar stream is over its cap (too many long names)")
    return TarStats(
        files=walk.files,
        dirs=walk.dirs,
        bytes=walk.bytes,
        tar_bytes=sink.size,
        fingerprint=sink.sha.hexdigest(),
        skipped=tuple(walk.skipped),
    )


def _header(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _FixedSizeReader:
    """Exactly `size` bytes of an open file: zeros if it shrank meanwhile, cut if it grew.

    The tar header already holds the size, so the body must match it; a file rewritten during
    the pack gives a torn copy whose fingerprint differs, and the next pass uploads it again.
    """

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._left = size

    def read(self, n: int = -1) -> bytes:
        want = self._left if n < 0 else min(n, self._left)
        chunks = []
        got = 0
        while got < want and (data := os.read(self._fd, min(want - got, CHUNK))):
            chunks.append(data)
            got += len(data)
        self._left -= want
        return b"".join(chunks) + bytes(want - got)


class _CappedReader:
    """Decompressed bytes up to a cap: a gzip bomb stops here, not on a full disk."""

    def __init__(self, inner: gzip.GzipFile, cap: int) -> None:
        self._inner = inner
        self._cap = cap
        self._read = 0

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._read += len(data)
        if self._read > self._cap:
            raise StateTooLargeError(f"the saved state decompresses to more than {self._cap} bytes")
        return data
