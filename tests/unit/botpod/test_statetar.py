"""The state tar.gz: deterministic, symlink-proof, and capped the same way in both directions."""

import io
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from botpod.errors import BotpodError
from botpod.statetar import StateLimits, StateTooLargeError, fingerprint, pack, unpack

LIMITS = StateLimits(max_bytes=2**20, max_unpacked_bytes=4 * 2**20, max_entries=1000)


def _state(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.json").write_text('{"n": 1}')
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    (root / "sub" / "deeper" / "run.sh").write_text("#!/bin/sh\n")
    (root / "sub" / "deeper" / "run.sh").chmod(0o755)
    (root / "empty").mkdir()
    (root / "ünïcode name.txt").write_text("ok")
    return root


def _pack(directory: Path, limits: StateLimits = LIMITS) -> bytes:
    out = io.BytesIO()
    pack(str(directory), out, limits)
    return out.getvalue()


def test_round_trip_keeps_files_dirs_and_exec_bit(helpers, tmp_path: Path) -> None:
    source = _state(tmp_path / "src")
    target = tmp_path / "dst"
    target.mkdir()
    stats = unpack(io.BytesIO(_pack(source)), str(target), LIMITS)
    assert helpers.tree(target) == helpers.tree(source)
    assert (stats.files, stats.dirs, stats.skipped) == (4, 3, 0)
    assert stat.S_IMODE((target / "sub" / "deeper" / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "a.json").stat().st_mode) == 0o644


def test_same_content_same_bytes_and_fingerprint(tmp_path: Path) -> None:
    first = _state(tmp_path / "one")
    time.sleep(0.01)
    second = _state(tmp_path / "two")  # other mtimes, other inode order
    os.utime(second / "a.json", (1, 1))
    assert _pack(first) == _pack(second)
    assert fingerprint(str(first), LIMITS) == fingerprint(str(second), LIMITS)
    (second / "a.json").write_text('{"n": 2}')  # same size, new content
    assert (
        fingerprint(str(first), LIMITS).fingerprint != fingerprint(str(second), LIMITS).fingerprint
    )


def test_fingerprint_equals_hash_of_what_pack_writes(tmp_path: Path) -> None:
    import gzip
    import hashlib

    source = _state(tmp_path / "src")
    raw = gzip.decompress(_pack(source))
    assert fingerprint(str(source), LIMITS).fingerprint == hashlib.sha256(raw).hexdigest()


def test_symlinks_and_fifos_are_skipped_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret-url"
    secret.write_text("http://presigned")
    source = tmp_path / "src"
    source.mkdir()
    (source / "keep.txt").write_text("keep")
    (source / "link-to-file").symlink_to(secret)
    (source / "link-to-dir").symlink_to(tmp_path)
    os.mkfifo(source / "fifo")
    stats = fingerprint(str(source), LIMITS)
    assert set(stats.skipped) == {"link-to-file", "link-to-dir", "fifo"}
    raw = _pack(source)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert tar.getnames() == ["keep.txt"]
    import gzip

    assert b"presigned" not in gzip.decompress(raw)


def test_an_empty_state_packs_and_restores_empty(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    target = tmp_path / "dst"
    target.mkdir()
    stats = unpack(io.BytesIO(_pack(source)), str(target), LIMITS)
    assert (stats.files, stats.dirs) == (0, 0)
    assert list(target.iterdir()) == []


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (
            StateLimits(max_bytes=2**20, max_unpacked_bytes=100, max_entries=100),
            "more than 100 bytes",
        ),
        (
            StateLimits(max_bytes=2**20, max_unpacked_bytes=2**20, max_entries=3),
            "more than 3 files",
        ),
        (StateLimits(max_bytes=50, max_unpacked_bytes=2**20, max_entries=100), "STATE_MAX_BYTES"),
    ],
)
def test_pack_refuses_a_state_over_a_cap(tmp_path: Path, limits: StateLimits, message: str) -> None:
    source = _state(tmp_path / "src")
    with pytest.raises(StateTooLargeError, match=message):
        _pack(source, limits)


def test_whatever_pack_accepts_unpack_accepts(tmp_path: Path) -> None:
    # At the exact caps, with long names (big pax headers): the sidecar never uploads a state
    # that init would refuse to restore.
    limits = StateLimits(max_bytes=2**20, max_unpacked_bytes=3000, max_entries=30)
    source = tmp_path / "src"
    source.mkdir()
    for i in range(30):
        (source / (f"{i:02d}-" + "n" * 200)).write_bytes(b"x" * 100)
    raw = _pack(source, limits)
    target = tmp_path / "dst"
    target.mkdir()
    assert unpack(io.BytesIO(raw), str(target), limits).files == 30


def _tar(helpers, *members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    def add(tar: tarfile.TarFile) -> None:
        for info, body in members:
            tar.addfile(info, io.BytesIO(body) if body is not None else None)

    return io.BytesIO(helpers.make_tar_gz(add))


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, body: bytes = b"", link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(body) if kind == tarfile.REGTYPE else 0
    return info, body if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize(
    ("name", "message"),
    [("/etc/cron.d/x", "unsafe path"), ("../x", "'..'"), ("a/../../x", "'..'")],
)
def test_unpack_refuses_unsafe_names(helpers, tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(BotpodError, match=message):
        unpack(_tar(helpers, _member(name, body=b"x")), str(tmp_path), LIMITS)
    assert not (tmp_path.parent / "x").exists()


def test_unpack_skips_links_and_devices(helpers, tmp_path: Path) -> None:
    archive = _tar(
        helpers,
        _member("ok.txt", body=b"ok"),
        _member("sym", tarfile.SYMTYPE, link="/etc/passwd"),
        _member("hard", tarfile.LNKTYPE, link="ok.txt"),
        _member("dev", tarfile.CHRTYPE),
        _member("pipe", tarfile.FIFOTYPE),
    )
    stats = unpack(archive, str(tmp_path), LIMITS)
    assert (stats.files, stats.skipped) == (1, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.txt"]


def test_unpack_accepts_the_go_runtimes_layout(helpers, tmp_path: Path) -> None:
    # the0's Go runtime: relative names, directories first, a symlink header with no target.
    archive = _tar(
        helpers,
        _member("data", tarfile.DIRTYPE),
        _member("data/prices.json", body=b"[1,2]"),
        _member("./top.txt", body=b"top"),
        _member("data/link", tarfile.SYMTYPE),
    )
    stats = unpack(archive, str(tmp_path), LIMITS)
    assert (tmp_path / "data" / "prices.json").read_bytes() == b"[1,2]"
    assert (tmp_path / "top.txt").read_bytes() == b"top"
    assert stats.skipped == 1


def test_unpack_caps(helpers, tmp_path: Path) -> None:
    few = StateLimits(max_bytes=2**20, max_unpacked_bytes=2**20, max_entries=2)
    archive = _tar(helpers, *[_member(f"f{i}", body=b"x") for i in range(3)])
    with pytest.raises(StateTooLargeError, match="more than 2 entries"):
        unpack(archive, str(tmp_path), few)
    small = StateLimits(max_bytes=2**20, max_unpacked_bytes=10, max_entries=10)
    with pytest.raises(StateTooLargeError, match="more than 10 bytes"):
        unpack(_tar(helpers, _member("f", body=b"x" * 11)), str(tmp_path), small)


def test_unpack_stops_a_gzip_bomb_early(helpers, tmp_path: Path) -> None:
    # A 20 MiB pax header (tarfile would read it into memory), a few KiB once compressed.
    info, _ = _member("f", body=b"")
    info.pax_headers = {"comment": "x" * (20 * 2**20)}
    archive = _tar(helpers, (info, b""))
    assert len(archive.getvalue()) < 100_000
    tiny = StateLimits(max_bytes=2**20, max_unpacked_bytes=1000, max_entries=1)
    with pytest.raises(StateTooLargeError, match="decompresses to more than"):
        unpack(archive, str(tmp_path), tiny)


@pytest.mark.parametrize("body", [b"", b"not gzip at all", b"\x1f\x8b\x08\x00truncated"])
def test_unpack_refuses_a_corrupt_archive(tmp_path: Path, body: bytes) -> None:
    with pytest.raises(BotpodError, match=r"not a valid tar\.gz"):
        unpack(io.BytesIO(body), str(tmp_path), LIMITS)
