"""The mutation score of `make mutate`, per module and in all, from `mutmut results --all true`
(read on stdin): a table, the surviving mutants, and ONE JSON line.

    .venv-mutate/bin/mutmut results --all true | python -m tools.mutate.report

Score = killed / (every mutant but the skipped ones): a mutant no test reaches ("no tests")
counts as a survivor, and so does a "suspicious" one (slower, not failing); a timeout is a kill
(the mutant made a test hang, which the suite's own timeout would fail). Mutants a stopped run
has not reached ("not checked") are left out of the score and make the exit status 1.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict

LINE = re.compile(r"^\s+(?P<name>[\w.]+?)__mutmut_\d+: (?P<status>.+)$")
KILLED = {"killed", "timeout", "caught by type check"}


def module_of(function: str) -> str:
    """worker.core.planner.x_plan → worker.core.planner (a method: ...planner.xǁPlanǁplan)."""
    return function.rsplit(".", 1)[0]


def main() -> int:
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: list[str] = []
    unchecked = 0
    for line in sys.stdin:
        match = LINE.match(line)
        if not match:
            continue
        status = match["status"].strip()
        if status == "not checked":  # the run was stopped before it: no verdict yet
            unchecked += 1
            continue
        by_module[module_of(match["name"])][status] += 1
        if status not in KILLED and status != "skipped":
            survivors.append(f"{line.strip()}")

    def score(counts: Counter[str]) -> tuple[int, int]:
        total = sum(n for status, n in counts.items() if status != "skipped")
        return sum(counts[s] for s in KILLED), total

    width = max((len(m) for m in by_module), default=10)
    print(f"{'module':<{width}}  killed / mutants   score")
    all_counts: Counter[str] = Counter()
    for module in sorted(by_module):
        killed, total = score(by_module[module])
        all_counts += by_module[module]
        print(f"{module:<{width}}  {killed:6d} / {total:<7d}  {killed / max(total, 1):6.1%}")
    killed, total = score(all_counts)
    print(f"{'all':<{width}}  {killed:6d} / {total:<7d}  {killed / max(total, 1):6.1%}")
    if unchecked:
        print(f"\nINCOMPLETE: {unchecked} mutants not checked yet (`make mutate` resumes)")
    if survivors:
        print(f"\n{len(survivors)} not killed (mutmut show NAME for the diff):")
        print("\n".join(f"  {s}" for s in survivors))
    print(json.dumps({"mutate": "worker.core", "killed": killed, "mutants": total,
                      "not_checked": unchecked,
                      "score": round(killed / max(total, 1), 4),
                      "by_status": dict(all_counts),
                      "by_module": {m: round(score(c)[0] / max(score(c)[1], 1), 4)
                                    for m, c in sorted(by_module.items())}}))
    return 0 if total and not unchecked else 1


if __name__ == "__main__":
    sys.exit(main())
