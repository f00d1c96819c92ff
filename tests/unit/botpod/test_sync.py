"""`python3 -m botpod sync` in a subprocess: uploads on change only, survives URL re-signing,
keeps the saved state when the new one is too large, and syncs once more on SIGTERM."""

import os
import signal
import time
from pathlib import Path

MAIN_PY = "def main(bot_id, config):\n    pass\n"


def _first_run(pod) -> None:
    pod.put_code({"main.py": MAIN_PY})
    done = pod.init()
    assert done.returncode == 0, done.output


def _quiet_for(store, path: str, seconds: float) -> None:
    time.sleep(seconds)
    assert store.puts(path) == []


def test_round_trip_sync_then_init_restores_identical_files(pod, store, helpers) -> None:
    _first_run(pod)
    sync = pod.start_sync()
    sync.wait_for("watching the state")
    (pod.state_dir / "positions.json").write_text('{"BTC": 0.5}')
    (pod.state_dir / "history").mkdir()
    (pod.state_dir / "history" / "2024.csv").write_bytes(os.urandom(5000))
    (pod.state_dir / "history" / "empty-dir").mkdir()
    saved = helpers.tree(pod.state_dir)
    put = store.wait_for_puts(pod.STATE_PATH, 1)[-1]
    time.sleep(0.5)  # the last change may need one more interval
    put = store.puts(pod.STATE_PATH)[-1]
    assert put.headers["Content-Type"] == "application/gzip"
    assert int(put.headers["Content-Length"]) == len(put.body)
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0
    assert "botpod sync: state synced: 2 files, " in sync.output

    # A new pod: the state directory is gone, init restores it from the store.
    for path in sorted(pod.state_dir.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    pod.state_dir.rmdir()
    done = pod.init()
    assert done.returncode == 0, done.output
    assert "state restored: 2 files" in done.stdout
    assert helpers.tree(pod.state_dir) == saved


def test_an_unchanged_state_is_not_uploaded(pod, store) -> None:
    _first_run(pod)
    (pod.state_dir / "same.json").write_text("{}")  # before the sidecar: uploaded once
    sync = pod.start_sync()
    store.wait_for_puts(pod.STATE_PATH, 1)
    time.sleep(0.3)
    # Rewriting the same bytes (as SDKs do: a new file renamed over the old) changes mtimes,
    # not the content: no upload. (An in-place rewrite truncates first: a sync that reads the
    # empty file in between sees a real change — it did once, on a loaded machine.)
    for i in range(3):
        fresh = pod.state_dir / f".same.json.{i}"
        fresh.write_text("{}")
        fresh.replace(pod.state_dir / "same.json")
        time.sleep(0.3)
    assert len(store.puts(pod.STATE_PATH)) == 1
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0
    assert len(store.puts(pod.STATE_PATH)) == 1  # nothing changed: no final upload either


def test_the_baseline_is_what_init_restored(pod, store) -> None:
    _first_run(pod)
    # The bot writes before the sidecar takes its first look: still uploaded.
    (pod.state_dir / "early.json").write_text("1")
    sync = pod.start_sync()
    store.wait_for_puts(pod.STATE_PATH, 1)
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0


def _tree(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `directory`: (mtime in ns, content)."""
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_the_sidecar_never_writes_to_the_state_volume(pod, store) -> None:
    # In the pod it mounts the state read-only (and runs as root nowhere): its record of what
    # it uploaded lives in its own scratch volume.
    _first_run(pod)
    (pod.state_dir / "a.json").write_text("1")
    volume = pod.state_dir.parent
    before = _tree(volume)
    sync = pod.start_sync()
    store.wait_for_puts(pod.STATE_PATH, 1)
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0
    assert _tree(volume) == before
    assert "could not record" not in sync.output
    record = (pod.scratch_dir / "synced").read_text().strip()
    assert len(record) == 64 and int(record, 16) >= 0  # the uploaded state's fingerprint


def test_a_restarted_sidecar_starts_from_its_own_last_upload(pod, store) -> None:
    _first_run(pod)
    (pod.state_dir / "a.json").write_text("1")
    sync = pod.start_sync()
    store.wait_for_puts(pod.STATE_PATH, 1)
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0
    again = pod.start_sync()  # the kubelet restarts it; its scratch volume is the same
    again.wait_for("baseline: this pod's last upload")
    time.sleep(0.8)  # four intervals: init's older record would have re-uploaded a.json
    assert len(store.puts(pod.STATE_PATH)) == 1
    again.signal(signal.SIGTERM)
    assert again.wait() == 0


def test_without_inits_record_the_baseline_is_the_directory_as_found(pod, store) -> None:
    _first_run(pod)
    Path(f"{pod.state_dir}.synced").unlink()
    (pod.state_dir / "found.json").write_text("1")
    sync = pod.start_sync()
    sync.wait_for("baseline: 1 file as found")
    _quiet_for(store, pod.STATE_PATH, 0.8)
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0


def test_an_oversized_state_is_not_uploaded_and_the_saved_one_is_kept(pod, store) -> None:
    _first_run(pod)
    sync = pod.start_sync(STATE_MAX_BYTES="2000")
    sync.wait_for("watching the state")
    (pod.state_dir / "small.json").write_text("{}")
    first = store.wait_for_puts(pod.STATE_PATH, 1)[0].body
    (pod.state_dir / "big.bin").write_bytes(os.urandom(3000))  # incompressible
    sync.wait_for("over STATE_MAX_BYTES (2000)")
    time.sleep(0.8)
    assert len(store.puts(pod.STATE_PATH)) == 1
    assert store.objects[pod.STATE_PATH] == first
    assert sync.output.count("over STATE_MAX_BYTES") == 1  # said once, not every interval
    (pod.state_dir / "big.bin").unlink()
    (pod.state_dir / "small.json").write_text('{"v": 2}')
    store.wait_for_puts(pod.STATE_PATH, 2)
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0


def test_too_many_bytes_unpacked_is_refused_too(pod, store) -> None:
    _first_run(pod)
    sync = pod.start_sync(STATE_MAX_BYTES="100000", STATE_MAX_UNPACKED_BYTES="1000")
    sync.wait_for("watching the state")
    (pod.state_dir / "zeros.bin").write_bytes(bytes(5000))  # compresses to nothing
    sync.wait_for("more than 1000 bytes (STATE_MAX_UNPACKED_BYTES)")
    assert store.puts(pod.STATE_PATH) == []
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0


def test_the_put_url_is_read_again_before_each_upload(pod, store) -> None:
    _first_run(pod)
    sync = pod.start_sync()
    sync.wait_for("watching the state")
    (pod.state_dir / "a.json").write_text("1")
    store.wait_for_puts(pod.STATE_PATH, 1)
    pod.write_url("state-put-url", "/bot-state/re-signed/state.tar.gz")  # re-signed in place
    (pod.state_dir / "a.json").write_text("2")
    store.wait_for_puts("/bot-state/re-signed/state.tar.gz", 1)
    assert len(store.puts(pod.STATE_PATH)) == 1
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0


def test_sigterm_makes_one_final_upload_and_exits_0(pod, store) -> None:
    _first_run(pod)
    sync = pod.start_sync(STATE_SYNC_INTERVAL="3600")
    sync.wait_for("watching the state")
    (pod.state_dir / "last-words.json").write_text('{"done": true}')
    started = time.monotonic()
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0
    assert time.monotonic() - started < 3
    assert len(store.puts(pod.STATE_PATH)) == 1
    assert "botpod sync: SIGTERM: final sync" in sync.output
    assert "botpod sync: state synced: 1 file" in sync.output


def test_a_stuck_store_cannot_hold_the_sidecar_past_its_final_budget(pod, store) -> None:
    _first_run(pod)
    store.stall(pod.STATE_PATH, 30)
    sync = pod.start_sync(STATE_SYNC_INTERVAL="3600", STATE_FINAL_SYNC_SECONDS="2")
    sync.wait_for("watching the state")
    (pod.state_dir / "big.bin").write_bytes(os.urandom(8 * 2**20))  # more than socket buffers
    started = time.monotonic()
    sync.signal(signal.SIGTERM)
    assert sync.wait(timeout=15) == 0
    assert time.monotonic() - started < 4, sync.output  # 2 s budget + start and exit
    assert "state not synced" in sync.output
    assert pod.STATE_PATH not in store.objects


def test_a_store_slow_to_answer_cannot_hold_the_sidecar_past_its_final_budget(
        pod, store) -> None:
    # The upload starts with most of the budget left, so its socket timeout is the full 10 s;
    # the body is then held up for 9 s and the answer never comes. Every socket operation is
    # also bounded by the budget's end, so the sidecar still exits on time.
    _first_run(pod)
    store.stall(pod.STATE_PATH, 9)
    store.answer_slowly(pod.STATE_PATH, 30)
    sync = pod.start_sync(STATE_SYNC_INTERVAL="3600", STATE_FINAL_SYNC_SECONDS="12")
    sync.wait_for("watching the state")
    (pod.state_dir / "big.bin").write_bytes(os.urandom(8 * 2**20))  # more than socket buffers
    started = time.monotonic()
    sync.signal(signal.SIGTERM)
    assert sync.wait(timeout=30) == 0
    assert time.monotonic() - started < 14, sync.output  # 12 s, not 9 s + a 10 s answer wait
    assert "state not synced" in sync.output


def test_an_upload_cut_short_by_sigterm_hangs_up_and_the_final_one_stores_the_state(
        pod, store) -> None:
    _first_run(pod)
    sync = pod.start_sync(STATE_SYNC_INTERVAL="0.2", STATE_FINAL_SYNC_SECONDS="10")
    sync.wait_for("watching the state")
    store.stall(pod.STATE_PATH, 12)  # the regular upload is stuck when SIGTERM comes
    (pod.state_dir / "big.bin").write_bytes(os.urandom(8 * 2**20))
    time.sleep(1.0)
    (pod.state_dir / "last.json").write_text('{"seen": true}')
    signalled = time.monotonic()
    sync.signal(signal.SIGTERM)
    assert sync.wait(timeout=15) == 0, sync.output
    # Hung up at once, though the stuck server kept its send blocked: the final sync does not
    # wait for the stall's end (12 s) nor a 10 s socket timeout to begin. (Under a loaded
    # machine the final upload of 8 MiB itself took more than 3.5 s once: the margin is wide.)
    assert time.monotonic() - signalled < 8.0, sync.output
    # The stalled server reads the cut upload last: its connection was closed, not left open.
    puts = store.wait_for_puts(pod.STATE_PATH, 2, timeout=30)
    assert [put.complete for put in puts] == [True, False]
    assert store.objects[pod.STATE_PATH] == puts[0].body
    assert "botpod sync: state synced: 2 files" in sync.output


def test_sigint_stops_cleanly(pod, store) -> None:
    _first_run(pod)
    sync = pod.start_sync(STATE_SYNC_INTERVAL="3600")
    sync.wait_for("watching the state")
    sync.signal(signal.SIGINT)
    assert sync.wait() == 0
    assert store.puts(pod.STATE_PATH) == []
    assert "SIGINT: final sync" in sync.output


def test_server_errors_are_retried(pod, store) -> None:
    _first_run(pod)
    store.fail(pod.STATE_PATH, 500, 503)
    sync = pod.start_sync()
    sync.wait_for("watching the state")
    (pod.state_dir / "x.json").write_text("1")
    sync.wait_for("state synced")
    assert [r.method for r in store.requests if r.path == pod.STATE_PATH][-3:] == ["PUT"] * 3
    assert store.objects[pod.STATE_PATH] == store.puts(pod.STATE_PATH)[-1].body
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0


def test_a_failed_upload_is_tried_again_at_the_next_interval(pod, store) -> None:
    _first_run(pod)
    store.fail(pod.STATE_PATH, 403)  # an expired URL: not retried within the interval
    sync = pod.start_sync()
    sync.wait_for("watching the state")
    (pod.state_dir / "x.json").write_text("1")
    sync.wait_for("state upload failed: HTTP 403 (AccessDenied)")
    sync.wait_for("state synced")
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0


def test_deleting_everything_uploads_an_empty_state(pod, store, helpers) -> None:
    _first_run(pod)
    (pod.state_dir / "old.json").write_text("1")
    sync = pod.start_sync()
    store.wait_for_puts(pod.STATE_PATH, 1)
    (pod.state_dir / "old.json").unlink()  # e.g. the SDK's state.clear()
    store.wait_for_puts(pod.STATE_PATH, 2)
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0
    pod.state_dir.rmdir()
    done = pod.init()
    assert done.returncode == 0, done.output
    assert "state restored: 0 files" in done.stdout
    assert helpers.tree(pod.state_dir) == {}


def test_symlinks_in_the_state_are_skipped_and_never_followed(pod, store) -> None:
    _first_run(pod)
    sync = pod.start_sync()
    sync.wait_for("watching the state")
    (pod.state_dir / "url").symlink_to(pod.urls_dir / "state-put-url")
    (pod.state_dir / "urls").symlink_to(pod.urls_dir)
    (pod.state_dir / "real.json").write_text("1")
    sync.wait_for("not synced (not regular files or directories): url, urls")
    body = store.wait_for_puts(pod.STATE_PATH, 1)[-1].body
    import gzip

    assert b"SECRETSIG" not in gzip.decompress(body)
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0


def test_a_missing_state_dir_is_never_synced_as_empty(pod, store) -> None:
    _first_run(pod)
    (pod.state_dir / "a.json").write_text("1")
    sync = pod.start_sync()
    store.wait_for_puts(pod.STATE_PATH, 1)
    (pod.state_dir / "a.json").unlink()
    pod.state_dir.rmdir()
    sync.wait_for("the state directory is missing: nothing to sync")
    time.sleep(0.5)
    assert len(store.puts(pod.STATE_PATH)) == 1
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0


def test_the_ready_file_appears_only_once_sigterm_is_handled(pod, store) -> None:
    # The pod's startupProbe waits for it before starting the bot: a SIGTERM after that always
    # gets its final sync, however short the bot's run.
    _first_run(pod)
    ready = pod.scratch_dir / "ready"
    assert not ready.exists()
    sync = pod.start_sync(STATE_SYNC_INTERVAL="3600")
    sync.wait_for("watching the state")
    deadline = time.monotonic() + 5
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists()
    (pod.state_dir / "run.json").write_text('{"runs": 1}')
    sync.signal(signal.SIGTERM)
    assert sync.wait() == 0
    assert len(store.puts(pod.STATE_PATH)) == 1


def test_a_stopped_upload_the_store_has_whole_cannot_land_after_the_final_one(
        pod, store) -> None:
    # The regular upload's body reached the store whole, its answer is late, SIGTERM comes
    # meanwhile: the store commits that body whether or not the sidecar listens. Hanging up at
    # once let the final upload land first and the older state over it (seen here: the
    # stored object was the regular upload's body). The sidecar now waits for that answer
    # (up to 5 s) before the final upload.
    _first_run(pod)
    sync = pod.start_sync(STATE_SYNC_INTERVAL="0.2", STATE_FINAL_SYNC_SECONDS="10")
    sync.wait_for("watching the state")
    store.answer_slowly(pod.STATE_PATH, 2.0)
    (pod.state_dir / "first.json").write_text('{"n": 1}')
    store.wait_for_puts(pod.STATE_PATH, 1)  # the body is in; its answer comes in 2 s
    (pod.state_dir / "last.json").write_text('{"n": 2}')
    sync.signal(signal.SIGTERM)
    assert sync.wait(timeout=15) == 0, sync.output
    puts = store.wait_for_puts(pod.STATE_PATH, 2)
    assert [put.complete for put in puts] == [True, True]
    time.sleep(2.5)  # past the late answer: nothing older may land after the final upload
    assert store.objects[pod.STATE_PATH] == puts[-1].body, sync.output
    assert "botpod sync: state synced: 2 files" in sync.output
