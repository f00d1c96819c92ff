"""The chaos benchmark, CI-sized, inside `make test` (issue 17): bench/chaos.py as a real run —
its own stack, the controller as deployed (two workers, two beats, the events consumer, the
api), churn through NATS events and direct Mongo writes, three faults (kill -9 of a worker and
of the events consumer, a NATS restart), and its independent checker. The full runs (thousands
of bots, every kind of fault) are benchmarks: docs/benchmarks.md "Chaos".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEED = 17


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short temporary dir for the run's stack: PostgreSQL's unix socket path must stay under
    107 bytes, which pytest's per-worker tmp_path can exceed."""
    path = tempfile.mkdtemp(prefix="chaos-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow(seconds=100)
def test_a_ci_sized_storm_keeps_every_invariant(short_tmp: str) -> None:
    argv = [sys.executable, "bench/chaos.py", "--bots", "60", "--minutes", "1",
            "--seed", str(SEED), "--churn-per-minute", "30", "--max-faults", "3",
            "--faults", "kill-worker,kill-events,restart-nats", "--hold-scale", "0.15",
            "--gap", "5"]
    done = subprocess.run(argv, cwd=REPO, env={**os.environ, "TMPDIR": short_tmp},
                          capture_output=True, text=True, timeout=900)
    print(done.stdout[-6000:])
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"bench": "chaos"')]
    assert lines, f"no result line (exit {done.returncode}):\n{done.stderr[-4000:]}"
    result = json.loads(lines[-1])
    # The storm happened as asked: three faults, changes through both of the platform's paths.
    assert result["faults"] == 3, result["faults_by_kind"]
    assert result["changes_by_path"].get("nats", 0) > 0, result["changes_by_path"]
    assert result["changes_by_path"].get("mongo", 0) > 0, result["changes_by_path"]
    # The invariants.
    assert result["duplicate_pod_instants"] == 0
    assert result["duplicate_cronjob_instants"] == 0
    assert result["wrong_deletions"] == 0
    assert result["events_lost_mongo"] == 0 and result["events_lost_k8s"] == 0, \
        result["events_lost_sample"]
    assert result["unacked_at_end"] == 0
    assert result["unexpected_exits"] == 0
    assert result["unconverged_at_end"] == 0, result["unconverged_sample"]
    assert result["converged_within_2_intervals"], result["converge_after_last_fault_s"]
    assert result["readyz_ready_after"]["code"] == 200, result["readyz_ready_after"]
    # /readyz told the truth about the dead events consumer and the NATS restart.
    # (HEARTBEAT_TTL is 6 s in the run and /readyz is polled every 2 s: a longer hold is seen.)
    for fault in result["readyz"]:
        if fault["fault"] in ("kill-events", "restart-nats") and fault["hold_s"] > 10:
            assert fault["not_ready_during"] and "events" in fault["failing"], fault
    assert result["readyz_blind_faults"] == 0, result["readyz"]
    assert result["readyz_not_ready_without_fault_s"] == 0, result["readyz"]
    assert done.returncode == 0, done.stderr[-4000:]
