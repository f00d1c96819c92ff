"""`python -m worker plan|reconcile|controller` as an operator runs them (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

from tests.support.bots import bot_doc, wait_for

SELECTOR = "managed-by=the0-bot-controller"


def run_cli(settings_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker", *args], env=settings_env,
                          capture_output=True, text=True, timeout=120)


def test_plan_shows_actions_and_reasons_and_writes_nothing(
        settings_env: dict[str, str], bots: Any, statuses: Any, core: Any,
        restricted_namespace: str, make_controller: Any) -> None:
    bots.insert_many([bot_doc("plan-me"), bot_doc("broken", runtime="cobol")])
    result = run_cli(settings_env, "plan")
    assert result.returncode == 0, result.stderr
    assert "create" in result.stdout and "plan-me" in result.stdout and "missing" in result.stdout
    assert "invalid" in result.stdout and "unknown_runtime" in result.stdout
    assert "SECRET-plan-me" not in result.stdout + result.stderr
    assert statuses.count_documents({}) == 0
    assert core.list_namespaced_pod(restricted_namespace).items == []


def test_plan_names_a_missing_code_bucket_with_the_hint(
        settings_env: dict[str, str], make_controller: Any) -> None:
    result = run_cli({**settings_env, "MINIO_BUCKET": "no-such-bucket"}, "plan")
    assert result.returncode == 0, result.stderr
    assert ("BUCKET: code bucket 'no-such-bucket' does not exist (MINIO_BUCKET); the0's API "
            "stores bot code in 'custom-bots': set MINIO_BUCKET=custom-bots") in result.stdout


def test_plan_and_reconcile_print_hostile_ids_escaped(
        settings_env: dict[str, str], bots: Any, make_controller: Any) -> None:
    # Ids come from documents: a terminal escape (clear screen), a bidi override and a line
    # break must reach the operator's terminal as visible escapes, never as control codes.
    hostile = ["esc\x1b[2Jclear", "rtl\u202egnp.exe", "two\nlines", "bell\x07"]
    bots.insert_many([bot_doc(bot_id) for bot_id in hostile])
    for command in ("plan", "reconcile"):
        result = run_cli(settings_env, command)
        out = result.stdout + result.stderr
        assert not any(ch in out for ch in "\x1b\u202e\x07"), (command, out)
        assert "two\nlines" not in out, (command, out)
    # plan lists each (invalid: unprintable) id, escaped.
    shown = run_cli(settings_env, "plan").stdout
    assert "esc\\x1b[2Jclear" in shown and "rtl\\u202egnp.exe" in shown, shown
    assert "two\\nlines" in shown, shown


def test_reconcile_runs_one_pass_with_progress(
        settings_env: dict[str, str], bots: Any, core: Any, restricted_namespace: str,
        make_controller: Any) -> None:
    bots.insert_many([bot_doc("r1"), bot_doc("r2")])
    result = run_cli(settings_env, "reconcile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[2/2]" in result.stdout and "created" in result.stdout
    names = {p.metadata.name for p in core.list_namespaced_pod(
        restricted_namespace, label_selector=SELECTOR).items}
    assert names == {"bot-r1", "bot-r2"}


def test_controller_mode_takes_the_seed_flags_and_converges(
        settings_env: dict[str, str], bots: Any, core: Any, restricted_namespace: str,
        make_controller: Any, tmp_path: Any) -> None:
    bots.insert_many([bot_doc("c1"), bot_doc("c2")])
    env = {**settings_env, "NAMESPACE": "not-this-one", "RECONCILE_INTERVAL": "1h"}
    log = (tmp_path / "controller.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "controller", "--namespace", restricted_namespace,
         "--reconcile-interval", "2s", "--minio-bucket", settings_env["MINIO_BUCKET"]],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: {p.metadata.name for p in core.list_namespaced_pod(
            restricted_namespace, label_selector=SELECTOR).items} == {"bot-c1", "bot-c2"},
            "controller created both pods", timeout=60)
        bots.delete_one({"id": "c2"})
        wait_for(lambda: [p.metadata.name for p in core.list_namespaced_pod(
            restricted_namespace, label_selector=SELECTOR).items
            if not p.metadata.deletion_timestamp] == ["bot-c1"], "c2 deleted", timeout=30)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        print((tmp_path / "controller.log").read_text()[-3000:])
