"""`python3 -m botpod init` in a subprocess against a real local HTTP object store."""

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

MAIN_PY = "def main(bot_id, config):\n    print('hello', bot_id)\n"


def _state_archive(helpers, files: dict[str, bytes]) -> bytes:
    def add(tar: tarfile.TarFile) -> None:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))

    return helpers.make_tar_gz(add)


def test_first_run(pod, store) -> None:
    pod.put_code({"main.py": MAIN_PY, "vendor/dep.py": "X = 1\n"})
    done = pod.init()
    assert done.returncode == 0, done.output
    assert done.stdout.splitlines() == [
        "botpod init: code unpacked: 2 files, 59 bytes",
        "botpod init: no saved state (first run)",
        "botpod init: entrypoint ready: python3.11, main.py",
    ]
    assert done.stderr == ""
    assert pod.state_dir.is_dir() and list(pod.state_dir.iterdir()) == []
    script = (pod.code_dir / "entrypoint.sh").read_text()
    assert f"exec python3 -u {pod.code_dir}/.the0/wrapper.py {pod.code_dir} main.py" in script
    assert (pod.code_dir / ".the0" / "wrapper.py").is_file()
    assert [r.method for r in store.requests] == ["GET", "GET"]
    # The fingerprint of what was restored, for the sidecar's baseline.
    assert len(Path(f"{pod.state_dir}.synced").read_text().strip()) == 64
    assert list(pod.download_dir.iterdir()) == []  # no archive left behind


def test_saved_state_is_restored(pod, store, helpers) -> None:
    pod.put_code({"main.py": MAIN_PY})
    store.objects[pod.STATE_PATH] = _state_archive(
        helpers, {"positions.json": b'{"BTC": 1}', "db/trades.csv": b"a,b\n"}
    )
    done = pod.init()
    assert done.returncode == 0, done.output
    assert "botpod init: state restored: 2 files, 14 bytes" in done.stdout
    assert (pod.state_dir / "positions.json").read_bytes() == b'{"BTC": 1}'
    assert (pod.state_dir / "db" / "trades.csv").read_bytes() == b"a,b\n"


def test_a_failed_state_read_fails_init_and_writes_nothing(pod, store) -> None:
    pod.put_code({"main.py": MAIN_PY})
    store.fail(pod.STATE_PATH, *[500] * 20)
    done = pod.init()
    assert done.returncode == 1
    assert done.stderr == (
        "botpod init: could not restore the saved state (the bot never starts without it):"
        " state download failed: HTTP 500 (InternalError)\n"
    )
    assert not pod.state_dir.exists()
    assert sorted(p.name for p in pod.state_dir.parent.iterdir()) == []  # no staging left
    assert len([r for r in store.requests if r.path == pod.STATE_PATH]) >= 3  # retried
    assert not (pod.code_dir / "entrypoint.sh").exists()


def test_a_failed_state_read_keeps_an_existing_state_dir(pod, store) -> None:
    pod.put_code({"main.py": MAIN_PY})
    pod.state_dir.mkdir()
    (pod.state_dir / "local.json").write_text("from an earlier attempt")
    store.fail(pod.STATE_PATH, 403)
    done = pod.init()
    assert done.returncode == 1
    assert "state download failed: HTTP 403 (AccessDenied)" in done.stderr
    assert (pod.state_dir / "local.json").read_text() == "from an earlier attempt"
    assert len([r for r in store.requests if r.path == pod.STATE_PATH]) == 1  # 403: no retry


def test_a_temporary_state_error_is_retried(pod, store, helpers) -> None:
    pod.put_code({"main.py": MAIN_PY})
    store.objects[pod.STATE_PATH] = _state_archive(helpers, {"s.json": b"{}"})
    store.fail(pod.STATE_PATH, 503)
    done = pod.init()
    assert done.returncode == 0, done.output
    assert (pod.state_dir / "s.json").exists()


def test_a_corrupt_state_fails_init(pod, store) -> None:
    pod.put_code({"main.py": MAIN_PY})
    store.objects[pod.STATE_PATH] = b"\x1f\x8b not really gzip"
    done = pod.init()
    assert done.returncode == 1
    assert "the saved state is not a valid tar.gz archive" in done.stderr
    assert not pod.state_dir.exists()


def test_a_state_over_the_cap_fails_init(pod, store, helpers) -> None:
    pod.put_code({"main.py": MAIN_PY})
    store.objects[pod.STATE_PATH] = _state_archive(helpers, {"big": os.urandom(4000)})
    done = pod.init(STATE_MAX_BYTES="1000")
    assert done.returncode == 1
    assert "larger than STATE_MAX_BYTES (1000 bytes)" in done.stderr
    assert not pod.state_dir.exists()


def test_init_run_twice_replaces_the_state_dir(pod, store, helpers) -> None:
    pod.put_code({"main.py": MAIN_PY})
    store.objects[pod.STATE_PATH] = _state_archive(helpers, {"a": b"1"})
    assert pod.init().returncode == 0
    (pod.state_dir / "stray").write_text("x")
    (pod.state_dir.parent / ".the0-state.restoring-abc123").mkdir()  # from a killed init
    store.objects[pod.STATE_PATH] = _state_archive(helpers, {"b": b"2"})
    assert pod.init().returncode == 0
    assert sorted(p.name for p in pod.state_dir.iterdir()) == ["b"]
    assert sorted(p.name for p in pod.state_dir.parent.iterdir()) == [
        ".the0-state",
        ".the0-state.synced",
    ]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("../evil.py", b"x", 0o644)], "an entry has a '..' in its path"),
        ([("/abs.py", b"x", 0o644)], "an entry has an unsafe path"),
        ([("main.py", b"/etc/passwd", 0o777 | stat.S_IFLNK)], "an entry is a symlink"),
    ],
)
def test_an_unsafe_zip_fails_init(pod, store, helpers, entries, message: str) -> None:
    store.objects[pod.CODE_PATH] = helpers.make_zip(entries)
    done = pod.init()
    assert done.returncode == 1
    assert message in done.stderr
    assert list(pod.code_dir.iterdir()) == []
    assert not pod.state_dir.exists()


def test_a_zip_over_the_download_cap_fails_init(pod, store) -> None:
    pod.put_code({"main.py": MAIN_PY, "blob.bin": bytes(range(256)) * 100})
    done = pod.init(MAX_ARCHIVE_BYTES="1000")
    assert done.returncode == 1
    assert "the code archive is larger than MAX_ARCHIVE_BYTES (1000)" in done.stderr


def test_missing_code_fails_init(pod, store) -> None:
    done = pod.init()
    assert done.returncode == 1
    assert "code download failed: HTTP 404 (NoSuchKey)" in done.stderr


def test_a_missing_entrypoint_fails_init(pod, store) -> None:
    pod.put_code({"bot.py": MAIN_PY})
    done = pod.init()
    assert done.returncode == 1
    assert "botpod init: could not write the entrypoint" not in done.stderr
    assert "botpod init: entrypoint main.py not found in the code archive" in done.stderr
    assert not (pod.code_dir / "entrypoint.sh").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RUNTIME": "cobol85"}, "unknown RUNTIME cobol85"),
        ({"RUNTIME": ""}, "RUNTIME is not set"),
        ({"ENTRYPOINT": "../main.py"}, "must be a relative path inside the code"),
        ({"ENTRYPOINT": "/bot/main.py"}, "must be a relative path inside the code"),
        ({"ENTRYPOINT": "entrypoint.sh"}, "names no bot file"),
        ({"RUNTIME": "rust-stable"}, "ENTRYPOINT is not set"),
        ({"MAX_ARCHIVE_BYTES": "lots"}, "MAX_ARCHIVE_BYTES must be a positive integer"),
        ({"CODE_DIR": "relative/dir"}, "CODE_DIR must be an absolute path"),
    ],
)
def test_bad_settings_fail_before_any_download(pod, store, env, message: str) -> None:
    pod.put_code({"main.py": MAIN_PY})
    done = pod.init(**env)
    assert done.returncode == 1
    assert message in done.stderr
    assert store.requests == []


def test_a_missing_or_bad_url_file_is_named_not_shown(pod, store) -> None:
    pod.put_code({"main.py": MAIN_PY})
    (pod.urls_dir / "state-get-url").unlink()
    done = pod.init()
    assert done.returncode == 1
    assert "the presigned URL file state-get-url is missing" in done.stderr
    (pod.urls_dir / "state-get-url").write_text("ftp://127.0.0.1:1/x?X-Amz-Signature=SECRETSIG\n")
    done = pod.init()
    assert done.returncode == 1
    assert "the presigned URL file state-get-url does not hold an http(s) URL" in done.stderr


def test_an_unreachable_server_is_reported_without_the_url(pod, store) -> None:
    pod.put_code({"main.py": MAIN_PY})
    (pod.urls_dir / "code-url").write_text("http://127.0.0.1:9/bot.zip?X-Amz-Signature=SECRETSIG\n")
    done = pod.init()
    assert done.returncode == 1
    assert "code download failed: ConnectionRefusedError: Connection refused" in done.stderr
