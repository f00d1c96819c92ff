"""The worst log flood for a log worker's memory, on the real stack (issue 15): several live
bots, a scheduled bot with 7 job pods, every container log 8 MiB of 1-byte lines (one read's
worth: 254,200 lines), and a bot whose log is one 8 MiB line — collected in one pass by a REAL
`celery -A worker.log_app worker -Q logs` as shipped (threads, WORKER_CONCURRENCY 8, every
bot's chunk at once). Its peak RSS (the kernel's VmHWM) stays under 300 MB, and every line is
in S3 once. (Before streamed reads, one 8 MiB read of short lines cost ~14 times its size and a
7-pod bot alone passed 1 GiB.) Also: bench/log_flood.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.log_flood import check, flood_pods, measure, stored
from worker.settings import Settings

PEAK_RSS_LIMIT_MB = 300.0


@pytest.mark.slow(seconds=110)
@pytest.mark.timeout(900)
def test_the_worst_flood_keeps_a_log_worker_under_300_mb(
        admin_api: Any, restricted_namespace: str, log_env: dict[str, str], tmp_path: Path,
        redis_client: Any, s3: Any, log_bucket: str) -> None:
    files = tmp_path / "pod-logs"
    files.mkdir()
    pods = flood_pods(admin_api, restricted_namespace, files, bots=4, jobs=7)
    result = measure({**log_env, "PYTHONPATH": str(Path.cwd())}, redis_client, pods,
                     tmp_path / "log-worker.log", concurrency=8)
    print(f"\nlog worker as shipped, the worst flood: {result}")
    assert result["pass_errors"] == 0
    counts = check(pods, stored(s3, log_bucket, pods),
                   int(Settings.model_fields["LOG_LINE_MAX_BYTES"].default))
    assert sum(counts.values()) == sum(p.lines for p in pods) + 1
    assert result["peak_rss_mb"] < PEAK_RSS_LIMIT_MB, result
