"""A sampled mutation score of the reconcile pass and the per-bot converge, judged by the
integration tests on the real stack.

    python -m tools.mutate.sample [--sample 40] [--seed 1] [--children 2] [--rerun-survivors]

`make mutate` scores the pure core with its unit tests (seconds per mutant). The pass and the
converge are I/O code: only the integration tests can judge them, and each mutant costs a stack
start plus the tests that reach it (a minute, give or take), so every mutant of them would take
hours. This runs mutmut on a seeded random sample instead and reports the sample's score with a
95 % Wilson interval — an estimate, labelled as one.

How: the tracked files are copied into `.mutate-pass/` (its own `mutants/` and mutmut state,
kept between runs so a re-run reuses the test statistics) with `[tool.mutmut]` set to the scope
below; mutmut generates every mutant of the scope; the sample is drawn from their sorted names;
`mutmut run NAMES…` runs those alone. mutmut 3.8.1 (requirements-mutate.lock) has no sampling of
its own, so the generation step calls its functions directly — pinned, hence stable.
Ends with ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKDIR = REPO / ".mutate-pass"
MUTMUT_PYTHON = REPO / ".venv-mutate" / "bin" / "python"

SCOPE_FILES = ["worker/reconcile/passes.py", "worker/reconcile/converge.py"]
# The integration tests that drive passes and converges in-process (mutmut counts only calls
# made in its own process, so the e2e tests, whose workers are subprocesses, would not count).
JUDGES = ["tests/integration/live_bots/", "tests/integration/schedules/",
          "tests/integration/cutover/"]

GENERATE = """
import os
from mutmut.__main__ import create_mutants
from mutmut.mutation.trampoline import set_mutant_under_test
from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir, setup_source_paths
set_mutant_under_test("mutant_generation")
os.makedirs("mutants", exist_ok=True)
copy_src_dir(); copy_also_copy_files(); setup_source_paths(); create_mutants(2)
"""
RESULT = re.compile(r"^\s+(?P<name>[\w.ǁ]+__mutmut_\d+): (?P<status>.+)$")
KILLED = {"killed", "timeout", "caught by type check"}


def mutmut_config() -> str:
    lines = ["[tool.mutmut]",
             'source_paths = ["worker/"]',
             f"only_mutate = {json.dumps(SCOPE_FILES)}",
             f"pytest_add_cli_args_test_selection = {json.dumps(JUDGES)}",
             'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]',
             # mutmut bounds each mutant's run by RLIMIT_CPU, (test time + constant) x 30 —
             # and the stack's servers the tests start inherit that limit: with mutmut's 1 s
             # constant a 0.14 s test gave them 35 CPU-seconds, kube-apiserver died of SIGXCPU
             # and the mutant counted as a "timeout" (a kill). A hang is still caught by the
             # suite's own pytest timeout (300 s a test), which fails the test.
             "timeout_constant = 3600.0",
             # k8s/: the tests' namespaces get the controller's Role from the kustomize base.
             'also_copy = ["tools/", "api/", "beat/", "botpod/", "k8s/"]']
    return "\n".join(lines) + "\n"


def prepare() -> None:
    """The tracked files, as committed or edited, with this scope's mutmut configuration."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        source, target = REPO / name, WORKDIR / name
        if not source.is_file():
            continue  # deleted in the work tree, not yet in git
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copy2(source, target)
    pyproject = (REPO / "pyproject.toml").read_text()
    start = pyproject.index("[tool.mutmut]")
    end = pyproject.index("\n[", start + 1) + 1
    (WORKDIR / "pyproject.toml").write_text(pyproject[:start] + mutmut_config() + pyproject[end:])
    assert tomllib.loads((WORKDIR / "pyproject.toml").read_text())["tool"]["mutmut"][
        "only_mutate"] == SCOPE_FILES


def mutant_names() -> list[str]:
    subprocess.run([str(MUTMUT_PYTHON), "-c", GENERATE], cwd=WORKDIR, check=True,
                   stdout=subprocess.DEVNULL)
    names: list[str] = []
    for path in SCOPE_FILES:
        meta = json.loads((WORKDIR / "mutants" / f"{path}.meta").read_text())
        names += meta["exit_code_by_key"]
    return sorted(names)


def verdicts_of(names: list[str]) -> dict[str, str]:
    """mutmut's current verdict of each name ("not checked" before its first run)."""
    results = subprocess.run([str(MUTMUT_PYTHON), "-m", "mutmut", "results", "--all", "true"],
                             cwd=WORKDIR, capture_output=True, text=True, check=True).stdout
    status = {m["name"]: m["status"].strip() for line in results.splitlines()
              if (m := RESULT.match(line))}
    return {name: status.get(name, "missing") for name in names}


def wilson(killed: int, total: int, z: float = 1.96) -> tuple[float, float]:
    if total == 0:
        return 0.0, 1.0
    p = killed / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="judge again only the sample's mutants that survived the last run "
                             "(after new tests), then report the whole sample")
    args = parser.parse_args(argv)

    WORKDIR.mkdir(exist_ok=True)
    prepare()
    every = mutant_names()
    sample = sorted(random.Random(args.seed).sample(every, min(args.sample, len(every))))
    print(f"{len(every)} mutants in {', '.join(SCOPE_FILES)}; running {len(sample)} "
          f"(seed {args.seed})", flush=True)
    to_run = sample
    if args.rerun_survivors:
        before = verdicts_of(sample)
        to_run = [name for name in sample if before[name] not in KILLED]
        print(f"judging again the {len(to_run)} that were not killed", flush=True)
    if to_run:
        subprocess.run([str(MUTMUT_PYTHON), "-m", "mutmut", "run", "--max-children",
                        str(args.children), *to_run], cwd=WORKDIR, check=False)
    verdicts = verdicts_of(sample)
    unchecked = [n for n, s in verdicts.items() if s in ("not checked", "missing")]
    judged = {n: s for n, s in verdicts.items() if n not in unchecked}
    killed = sum(s in KILLED for s in judged.values())
    low, high = wilson(killed, len(judged))
    print(f"\n{'mutant':<70} verdict")
    for name, verdict in verdicts.items():
        print(f"{name:<70} {verdict}")
    score = killed / max(len(judged), 1)
    print(f"\nkilled {killed} of {len(judged)} sampled: {score:.1%} "
          f"(95 % interval {low:.1%} to {high:.1%}); {len(every)} mutants in the scope")
    if unchecked:
        print(f"INCOMPLETE: {len(unchecked)} sampled mutants without a verdict")
    print(json.dumps({"scope": SCOPE_FILES, "mutants": len(every), "seed": args.seed,
                      "sampled": len(sample), "judged": len(judged), "killed": killed,
                      "score": round(score, 3), "interval_95": [round(low, 3), round(high, 3)],
                      "survivors": sorted(n for n, s in judged.items() if s not in KILLED)}))
    return 1 if unchecked else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
