"""The code zip is unpacked safely: refusals write nothing, execute bits survive."""

import io
import stat
from pathlib import Path

import pytest

from botpod.codezip import ZipLimits, unpack
from botpod.errors import BotpodError

LIMITS = ZipLimits(max_archive_bytes=2**20, max_unpacked_bytes=2**20, max_entries=100)


def _unpack(helpers, tmp_path: Path, entries, limits: ZipLimits = LIMITS):
    target = tmp_path / "bot"
    target.mkdir(exist_ok=True)
    return unpack(io.BytesIO(helpers.make_zip(entries)), str(target), limits), target


def test_files_dirs_and_modes(helpers, tmp_path: Path) -> None:
    stats, target = _unpack(
        helpers,
        tmp_path,
        [
            ("main.py", b"print(1)", 0o644),
            ("lib/", None, 0o755 | stat.S_IFDIR),
            ("lib/util.py", b"x = 1", 0o600),
            ("build/bot", b"\x7fELF", 0o755),
            ("nested/deep/file.txt", b"implicit parents", 0o644),
            ("./dot.txt", b"dot", 0o644),
        ],
    )
    assert (stats.files, stats.bytes) == (5, 8 + 5 + 4 + 16 + 3)
    assert (target / "lib" / "util.py").read_bytes() == b"x = 1"
    assert stat.S_IMODE((target / "build" / "bot").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "main.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((target / "lib" / "util.py").stat().st_mode) == 0o644
    assert (target / "nested" / "deep" / "file.txt").read_bytes() == b"implicit parents"
    assert (target / "dot.txt").exists()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("/etc/passwd", b"x", 0o644)], "unsafe path"),
        ([("../escape.py", b"x", 0o644)], "'..'"),
        ([("a/../../escape.py", b"x", 0o644)], "'..'"),
        ([("dir\\evil.py", b"x", 0o644)], "backslash"),
        ([("link", b"/etc/passwd", 0o777 | stat.S_IFLNK)], "symlink"),
        ([(".the0/wrapper.py", b"x", 0o644)], "reserved"),
        ([("result.json/x", b"x", 0o644)], "must be a file"),
        ([(f"f{i}", b"", 0o644) for i in range(101)], "more than 100 entries"),
        ([("big", b"x" * (2**20 + 1), 0o644)], "more than 1048576 bytes"),
    ],
)
def test_unsafe_archives_are_refused_before_anything_is_written(
    helpers, tmp_path: Path, entries, message: str
) -> None:
    entries = [("first.py", b"written only if the archive is accepted", 0o644), *entries]
    with pytest.raises(BotpodError, match=message):
        _unpack(helpers, tmp_path, entries)
    assert list((tmp_path / "bot").iterdir()) == []
    assert not (tmp_path / "escape.py").exists()


def test_bytes_are_counted_while_writing(helpers, tmp_path: Path) -> None:
    # Declared sizes pass, the real ones are counted too (the cap holds against any header).
    limits = ZipLimits(max_archive_bytes=2**20, max_unpacked_bytes=10, max_entries=10)
    with pytest.raises(BotpodError, match="more than 10 bytes"):
        _unpack(helpers, tmp_path, [("a", b"123456", 0o644), ("b", b"123456", 0o644)], limits)


def test_not_a_zip(tmp_path: Path) -> None:
    with pytest.raises(BotpodError, match="not a valid zip"):
        unpack(io.BytesIO(b"PK\x03\x04 this is no zip"), str(tmp_path), LIMITS)


def test_an_existing_symlink_is_not_written_through(helpers, tmp_path: Path) -> None:
    target = tmp_path / "bot"
    target.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    (target / "main.py").symlink_to(outside)
    with pytest.raises((BotpodError, OSError)):
        _unpack(helpers, tmp_path, [("main.py", b"overwrite?", 0o644)])
    assert outside.read_text() == "untouched"
