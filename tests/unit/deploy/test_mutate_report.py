"""`make mutate`'s score: parsed from mutmut's own listing, survivors named, every status but
"skipped" counted in the denominator (a mutant no test reaches is not a kill)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

LISTING = """\
    worker.core.naming.x_pod_name__mutmut_1: killed
    worker.core.naming.x_pod_name__mutmut_2: killed
    worker.core.naming.x_pod_name__mutmut_3: survived
    worker.core.planner.xǁPlannerǁplan__mutmut_1: timeout
    worker.core.planner.xǁPlannerǁplan__mutmut_2: no tests
    worker.core.planner.xǁPlannerǁplan__mutmut_3: skipped
    worker.core.planner.x_order__mutmut_1: killed
"""


def test_the_score_counts_no_tests_as_survivors_and_leaves_skipped_out() -> None:
    done = subprocess.run([sys.executable, "-m", "tools.mutate.report"], input=LISTING,
                          capture_output=True, text=True, cwd=ROOT, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # 6 counted (the skipped one is not), 4 killed (a timeout is a kill).
    assert (result["killed"], result["mutants"]) == (4, 6)
    assert result["score"] == round(4 / 6, 4)
    assert result["by_module"] == {"worker.core.naming": round(2 / 3, 4),
                                   "worker.core.planner": round(2 / 3, 4)}
    assert "x_pod_name__mutmut_3: survived" in done.stdout
    assert "plan__mutmut_2: no tests" in done.stdout
    assert "plan__mutmut_3" not in done.stdout  # skipped: neither counted nor listed


def test_an_empty_listing_is_a_failure_not_a_perfect_score() -> None:
    done = subprocess.run([sys.executable, "-m", "tools.mutate.report"], input="",
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1


def test_a_run_stopped_before_the_end_says_so_and_fails() -> None:
    listing = LISTING + "    worker.core.naming.x_secret_name__mutmut_1: not checked\n"
    done = subprocess.run([sys.executable, "-m", "tools.mutate.report"], input=listing,
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1
    assert "INCOMPLETE: 1 mutants not checked yet" in done.stdout
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["killed"], result["mutants"], result["not_checked"]) == (4, 6, 1)


def test_the_sampled_score_has_the_wilson_interval_of_a_textbook_table() -> None:
    from tools.mutate.sample import RESULT, wilson

    # 30 of 40: 0.598 to 0.858 (Wilson score interval, 95 %), worked out by hand.
    low, high = wilson(30, 40)
    assert (round(low, 3), round(high, 3)) == (0.598, 0.858)
    assert wilson(0, 0) == (0.0, 1.0)
    assert (round(wilson(40, 40)[0], 3), wilson(40, 40)[1]) == (0.912, 1.0)
    names = [m["name"] for line in LISTING.splitlines() if (m := RESULT.match(line))]
    assert names[3] == "worker.core.planner.xǁPlannerǁplan__mutmut_1" and len(names) == 7


def test_the_pass_scope_mutates_the_pass_and_the_converge_only() -> None:
    from tools.mutate.sample import SCOPE_FILES, mutmut_config

    config = mutmut_config()
    assert SCOPE_FILES == ["worker/reconcile/passes.py", "worker/reconcile/converge.py"]
    assert all((ROOT / path).is_file() for path in SCOPE_FILES)
    assert '"k8s/"' in config and "tests/integration/live_bots/" in config
