"""the0's bots, written as its users write them, run on the real node under the production pod.

Each test drives the controller in-process (passes and per-bot tasks) as the restricted
identity; the kubelet really starts the containers; logs come back through the API server from
the kubelet's CRI log files; state goes to S3 through the sidecar's presigned URL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import watch

from tests.integration.logs.conftest import run_pass as run_log_pass
from tests.integration.realnode.conftest import C_BOT, NODE_BOT, RealNode, live_doc
from tests.support.botlogs import messages, shipped
from tests.support.bots import cache_sees, run_pass, wait_for
from worker.core import logcursor as lc
from worker.log_collector import LogCollector


def test_python_node_and_c_bots_run_with_their_id_and_config(
        real: RealNode, bots: Any, tmp_path: Path) -> None:
    py_key = real.upload_python_bot()
    node_key = real.upload("bots/node/1.0.0.zip", {"index.js": NODE_BOT})
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed to build the C bot (build-essential)"
    (tmp_path / "bot.c").write_text(C_BOT)
    subprocess.run([cc, "-O2", "-o", str(tmp_path / "trader"), str(tmp_path / "bot.c")],
                   check=True)
    # Stored without the execute bit, as many zip tools do: the init container restores it.
    c_key = real.upload("bots/c/1.0.0.zip", {"build/trader": (tmp_path / "trader").read_bytes()})
    bots.insert_many([
        live_doc("py-bot", code_key=py_key),
        live_doc("node-bot", code_key=node_key, runtime="nodejs20"),
        live_doc("c-bot", code_key=c_key, runtime="gcc13", entry="build/trader"),
    ])
    controller = real.controller()
    _report, outcomes = run_pass(controller)
    assert sorted(outcomes) == ["created"] * 3

    log = real.wait_log("bot-py-bot", "python bot py-bot run 1")
    assert "symbol=BTC/USDT amount=25 cwd=/bot" in log
    assert "logging reaches the log too" in log
    assert "node bot node-bot symbol=BTC/USDT node=v20." in real.wait_log(
        "bot-node-bot", "node bot node-bot")
    c_log = real.wait_log("bot-c-bot", "c bot c-bot config ")
    config = json.loads(c_log.split("config ", 1)[1].splitlines()[0])
    assert config["symbol"] == "BTC/USDT" and config["amount"] == 25

    # Their output reaches S3 through log collection (the kubelet's CRI logs), once. A pass
    # reads a container once its pod's listed status says it started, which the kubelet reports
    # a moment after the first line can be read: passes run until every line is shipped (as
    # each LOG_INTERVAL would), and then each is there exactly once.
    day = lc.day_of(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    expected = {"py-bot": "python bot py-bot run 1",
                "node-bot": "node bot node-bot symbol=BTC/USDT",
                "c-bot": "c bot c-bot config "}

    def shipped_counts() -> dict[str, int]:
        return {bot_id: sum(m.startswith(line) for m in messages(shipped(
                    real.s3, real.env["LOG_BUCKET"], lc.object_key(bot_id, day))))
                for bot_id, line in expected.items()}

    collector = LogCollector(controller.rt)
    deadline = time.monotonic() + 30
    while True:
        run_log_pass(collector)
        counts = shipped_counts()
        if all(counts.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    run_log_pass(collector)  # one more: nothing is shipped twice
    assert shipped_counts() == dict.fromkeys(expected, 1), counts

    pod = real.pod("bot-py-bot")
    node = real.core.read_node(pod.spec.node_name)
    assert node.metadata.labels.get("type") == "real"  # the kubelet ran it, not kwok
    bot = next(c for c in pod.spec.containers if c.name == "bot")
    assert bot.image == "python:3.11-slim-bookworm"  # the production default, not a test image
    assert [c.name for c in pod.spec.init_containers] == ["init", "state-sync"]


def test_output_reaches_s3_once_across_container_restarts(
        real: RealNode, bots: Any, s3: Any, log_bucket: str) -> None:
    key = real.upload_python_bot()
    # It fails after 10 s: the kubelet keeps only the last finished instance of a container,
    # so an instance that starts and ends between two collections takes its lines with it
    # (after 4 s, run 1's lines were lost once under a loaded make test: the collection after
    # restart 1 came after run 2 had ended too).
    bots.insert_one(live_doc("crasher", code_key=key, crash=True, crash_after=10))
    controller = real.controller(CRASH_BACKOFF_BASE="10m")  # let the kubelet restart it
    run_pass(controller)
    # The kubelet keeps the current container's log and the previous one's: collect after
    # each restart (as the periodic collection does), then the runs' lines are all there.
    collector = LogCollector(controller.rt)
    for restarts in (1, 2):
        wait_for(lambda n=restarts: (s := real.container_status("bot-crasher")) is not None
                 and s.restart_count >= n, f"restart {restarts} of the crashing bot",
                 timeout=120, interval=0.5)
        run_log_pass(collector)
    run_log_pass(collector)
    day = lc.day_of(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    lines = messages(shipped(s3, log_bucket, lc.object_key("crasher", day)))
    runs = [line for line in lines if line.startswith("python bot crasher run ")]
    numbers = [int(line.split(" run ")[1].split()[0]) for line in runs]
    # The state volume outlives a container restart, so the runs count 1, 2, 3.
    assert numbers[:3] == [1, 2, 3], "\n".join(lines)
    assert numbers == sorted(set(numbers)), f"a line shipped twice or out of order: {runs}"
    # Every finished run's traceback once (the last run may still be going).
    failures = sum("RuntimeError: the bot failed on purpose" in line for line in lines)
    assert failures in (len(runs) - 1, len(runs)), "\n".join(lines)


def start_running_bot(real: RealNode, bots: Any, bot_id: str) -> Any:
    """A counting Python bot, created by one pass and seen running (its first log line)."""
    bots.insert_one(live_doc(bot_id, code_key=real.upload_python_bot()))
    controller = real.controller()
    run_pass(controller)
    real.wait_log(f"bot-{bot_id}", "run 1 ")
    return controller


@pytest.mark.slow(seconds=60)  # 33 s alone; the file (~2 min) is dealt out early
def test_state_survives_replace_delete_and_crash_recreate(
        real: RealNode, bots: Any, core: Any) -> None:
    controller = start_running_bot(real, bots, "counter")
    assert real.wait_saved_count("counter", 1) == 1

    # 1. a config change replaces the pod: the new one restores the state and counts on.
    bots.update_one({"id": "counter"}, {"$set": {"config.symbol": "ETH/USDT"}})
    _report, outcomes = run_pass(controller)
    assert outcomes == ["replaced"]
    real.wait_log("bot-counter", "run 2 symbol=ETH/USDT")
    assert real.wait_saved_count("counter", 2) == 2

    # 2. someone deletes the pod: the controller recreates it, the state carries over.
    core.delete_namespaced_pod("bot-counter", real.namespace)
    wait_for(lambda: real.pod("bot-counter") is None, "the deleted pod gone", timeout=60)
    # The pass reads the watched cache, which sees someone else's delete a moment after the
    # API server (a pass before that sees the pod and leaves it: the next one recreates it).
    cache_sees(controller, lambda pods: "bot-counter" not in pods, "bot-counter gone")
    _report, outcomes = run_pass(controller)
    assert outcomes == ["created"]
    real.wait_log("bot-counter", "run 3 ")
    assert real.wait_saved_count("counter", 3) == 3

    # 3. it crashes for good: the controller recreates the broken pod; the count survives.
    bots.update_one({"id": "counter"}, {"$set": {"config.crash": True}})
    _report, outcomes = run_pass(controller)
    assert outcomes == ["replaced"]
    real.wait_crash_loop("bot-counter")
    saved = real.wait_saved_count("counter", 4)
    broken_uid = real.pod("bot-counter").metadata.uid
    # Broken means "in CrashLoopBackOff now": between two back-offs the kubelet runs the
    # container again, and a pass (or its action's fresh read) that falls there does nothing.
    for _attempt in range(3):
        real.wait_crash_loop("bot-counter")
        _report, outcomes = run_pass(controller)
        if outcomes != ["nothing"]:
            break
    assert outcomes == ["recreated"]
    wait_for(lambda: (p := real.pod("bot-counter")) is not None
             and p.metadata.uid != broken_uid, "a new pod", timeout=30)
    first_run = real.wait_log("bot-counter", " run ").split(" run ")[1].split()[0]
    assert int(first_run) > saved, "the recreated pod did not restore the saved state"


def test_sigterm_stops_the_bot_within_its_grace_and_the_result_says_terminated(
        real: RealNode, bots: Any, core: Any) -> None:
    controller = start_running_bot(real, bots, "stopper")
    pod = real.pod("bot-stopper")
    assert pod.spec.termination_grace_period_seconds == 15

    # Every container's final state, and when the grace period ends: the API server sets
    # deletionTimestamp to the delete request's time plus the grace period.
    finished: dict[str, Any] = {}
    grace_ends: list[Any] = []
    stream = watch.Watch()

    def follow() -> None:
        for event in stream.stream(core.list_namespaced_pod, real.namespace,
                                   field_selector="metadata.name=bot-stopper",
                                   resource_version=pod.metadata.resource_version,
                                   timeout_seconds=60):
            seen = event["object"]
            if seen.metadata.deletion_timestamp is not None and not grace_ends:
                grace_ends.append(seen.metadata.deletion_timestamp)
            for status in [*(seen.status.init_container_statuses or []),
                           *(seen.status.container_statuses or [])]:
                if status.state.terminated is not None:
                    finished[status.name] = status.state.terminated
            if event["type"] == "DELETED":
                stream.stop()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    bots.update_one({"id": "stopper"}, {"$set": {"enabled": False}})
    _report, outcomes = run_pass(controller)
    assert outcomes == ["deleted"]
    follower.join(timeout=60)
    assert grace_ends and {"bot", "state-sync"} <= finished.keys(), finished
    # Both exited 0 before the grace ended: they stopped on SIGTERM, neither was SIGKILLed —
    # the bot first, then the sidecar after its final sync.
    for name in ("bot", "state-sync"):
        assert finished[name].exit_code == 0, (name, finished[name])
        assert finished[name].finished_at <= grace_ends[0], (name, finished[name], grace_ends)
    assert finished["bot"].finished_at <= finished["state-sync"].finished_at
    assert json.loads(finished["bot"].message)["status"] == "terminated", finished["bot"]


def test_a_raising_bot_crash_loops_and_an_oom_killed_bot_says_so(
        real: RealNode, bots: Any, statuses: Any) -> None:
    key = real.upload_python_bot()
    bots.insert_many([live_doc("raiser", code_key=key, crash=True),
                      live_doc("hog", code_key=key, hog=True, memory_limit="64Mi",
                               memory_request="64Mi")])
    controller = real.controller(CRASH_BACKOFF_BASE="10m")  # watch the kubelet's own loop
    run_pass(controller)
    for name in ("bot-raiser", "bot-hog"):
        real.wait_crash_loop(name)
    assert real.container_status("bot-hog").last_state.terminated.reason == "OOMKilled"
    # The kubelet keeps one dead instance per container and removes the one before: while
    # the pod crash-loops, a read of "previous" can name an instance just removed ("unable to
    # retrieve container logs for containerd://…", seen once on a loaded stack): read again.
    wait_for(lambda: "Traceback" in real.log("bot-raiser", previous=True),
             "the crashed instance's Traceback in its previous log", timeout=30, interval=1)
    # That read may have outlasted a back-off of either bot (the hog was once seen Running
    # again by the pass, reason ''): both back in CrashLoopBackOff right before the pass.
    for name in ("bot-raiser", "bot-hog"):
        real.wait_crash_loop(name)

    report, _outcomes = run_pass(controller)
    raiser = statuses.find_one({"id": "raiser"}, {"_id": False})
    hog = statuses.find_one({"id": "hog"}, {"_id": False})
    assert raiser["reason"] == "CrashLoopBackOff", raiser
    assert "last exit Error (code 1)" in raiser["message"]
    assert hog["reason"] == "OOMKilled", hog
    assert "last exit OOMKilled (code 137)" in hog["message"]
    assert report.counts.get("recreate", 0) == 2  # the controller's backoff sees them as broken


def test_a_scheduled_run_completes_on_the_real_node_with_its_state_and_result(
        real: RealNode, stack: Any, mongo: Any, db_names: dict[str, str], batch: Any) -> None:
    key = real.upload_python_bot()
    schedules = mongo[db_names["bot_scheduler"]]["bot_schedules"]
    for bot_id, extra in (("nightly", {"once": True}), ("broken", {"crash": True})):
        doc = live_doc(bot_id, code_key=key, **extra)
        doc["config"].update(type="scheduled", schedule="0 3 * * *")
        schedules.insert_one(doc)
    controller = real.schedule_controller()
    report, outcomes = run_pass(controller)
    assert report.counts.get("create") == 2 and outcomes == ["created", "created"]
    # CronJobs fire on the minute: start each run now, as the CronJob would (owned by it).
    for bot_id in ("nightly", "broken"):
        stack.kubectl("create", "job", f"{bot_id}-run", f"--from=cronjob/schedule-{bot_id}",
                      "-n", real.namespace)

    def finished(name: str) -> str:
        job = batch.read_namespaced_job(name, real.namespace)
        return next((c.type for c in job.status.conditions or []
                     if c.type in ("Complete", "Failed") and c.status == "True"), "")

    assert wait_for(lambda: finished("nightly-run"), "the nightly run to finish",
                    timeout=120, interval=1) == "Complete"
    assert wait_for(lambda: finished("broken-run"), "the broken run to finish",
                    timeout=120, interval=1) == "Failed"
    pods = real.core.list_namespaced_pod(real.namespace, label_selector="job-name=nightly-run")
    try:
        assert real.wait_saved_count("nightly", 1) == 1  # the sidecar synced on its way out
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{real.describe(pods.items[0].metadata.name)}") from None

    bot = next(s for s in pods.items[0].status.container_statuses if s.name == "bot")
    assert json.loads(bot.state.terminated.message)["status"] == "success"

    run_pass(controller)  # status is rebuilt from the Jobs it observes
    statuses = mongo[db_names["bot_scheduler"]]["schedule_status"]
    nightly = statuses.find_one({"id": "nightly"}, {"_id": False})
    broken = statuses.find_one({"id": "broken"}, {"_id": False})
    assert nightly["last_run"]["result"] == "succeeded", nightly
    assert broken["last_run"]["result"] == "failed", broken


def test_a_pod_left_without_its_secret_is_repaired_by_the_next_pass(
        real: RealNode, bots: Any) -> None:
    # What a worker killed between creating the pod and its Secret leaves behind: the kubelet
    # cannot mount the Secret, so the pod never starts. The next pass makes the Secret again.
    from worker.core.bot import BotKind, parse_bot
    from worker.core.podspec import build_pod
    doc = live_doc("orphan", code_key=real.upload_python_bot())
    bots.insert_one(doc)
    controller = real.controller(SECRET_REPAIR_AFTER="1s")
    settings = controller.rt.settings
    controller.rt.kube.create_pod(build_pod(
        parse_bot(doc, kind=BotKind.LIVE, resources=settings.resource_policy),
        settings.pod_template))
    time.sleep(3)  # long enough for the kubelet to try the volume, and for SECRET_REPAIR_AFTER
    pod = real.pod("bot-orphan")
    assert pod is not None and pod.status.phase == "Pending", pod.status
    assert not real.core.list_namespaced_secret(real.namespace,
                                                field_selector="metadata.name=bot-orphan-config"
                                                ).items

    report, outcomes = run_pass(controller)
    assert outcomes == [], outcomes  # the pod is the right one: nothing to create or replace
    assert report.urls_resigned == 1
    secret = real.core.read_namespaced_secret("bot-orphan-config", real.namespace)
    assert secret.metadata.owner_references[0].uid == pod.metadata.uid
    assert "python bot orphan run 1" in real.wait_log("bot-orphan", "python bot orphan run 1",
                                                      timeout=180)
