"""One bot's path from its document to its Pod, through the controller's own modules.

    .venv/bin/python bench/call_path.py [--worker-from DIR]

Starts a stack (kwok nodes only), stores one bot's code and document, and runs the per-bot
converge (`LiveBotController(rt).converge(id, intent="create")`, what `bots.create` runs) under
a profiler hook. Every call and return inside `worker/` moves "where the code is" to a file;
the table counts the files entered and how often the path came back to a file it had left:
by a call (`calls_into_a_file_left`), or by any step, returns to a caller included
(`returns_to_a_file_left`). Issue 16: "walking one bot from its document to its Pod enters 29
files, returning 18 times to a file it had left". `--worker-from` measures another checkout's
`worker/` package (e.g. a `git worktree` of an older commit) on this checkout's stack. Ends
with ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.reconcile_scale import seed  # noqa: E402
from tools.stack.supervisor import Stack  # noqa: E402  (the stack from this checkout)

BOT = "bench00000"


def trace_files(run: Any, root: Path) -> tuple[Any, list[str], list[str]]:
    """What `run()` returns; the sequence of `root` files the code was in, returns to callers
    included; and the files called into, in order (each: a file repeated in a row once)."""
    prefix = str(root) + os.sep
    path: list[str] = []
    calls: list[str] = []

    def where(frame: FrameType | None, into: list[str]) -> None:
        if frame is None or not frame.f_code.co_filename.startswith(prefix):
            return  # outside the package (a library): the path stays where it was
        name = frame.f_code.co_filename[len(prefix):]
        if not into or into[-1] != name:
            into.append(name)

    def hook(frame: FrameType, event: str, _arg: Any) -> None:
        if event == "call":
            where(frame, path)
            where(frame, calls)
        elif event == "return":
            where(frame.f_back, path)

    sys.setprofile(hook)
    try:
        result = run()
    finally:
        sys.setprofile(None)
    return result, path, calls


def _revisits(sequence: list[str]) -> int:
    """How often the sequence comes back to a file it had left."""
    seen: set[str] = set()
    count = 0
    for file in sequence:
        count += file in seen
        seen.add(file)
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker-from", default=str(REPO),
                        help="the checkout whose worker/ package is measured")
    args = parser.parse_args()
    source = Path(args.worker_from).resolve()
    with Stack(Path(tempfile.mkdtemp(prefix="the0-callpath-")), real_node=None) as stack:
        env = stack.env
        assert env is not None
        stack.kubectl("create", "namespace", "the0")
        stack.grant_controller("the0")
        seed(env, 1)  # one bot, "bench00000", and its code (as the reconcile bench seeds)
        os.environ.update({**env.as_env(), "KUBECONFIG": env.controller_kubeconfig,
                           "NAMESPACE": "the0"})
        sys.path.insert(0, str(source))  # its worker/ before this checkout's
        for name in [m for m in sys.modules if m == "worker" or m.startswith("worker.")]:
            del sys.modules[name]
        from worker.runtime import Runtime
        from worker.settings import load_settings
        try:
            from worker.reconcile.controller import LiveBotController
        except ImportError:  # before the reshape
            from worker.live_bots import LiveBotController  # type: ignore[no-redef]
        rt = Runtime(load_settings(env=dict(os.environ)))
        controller = LiveBotController(rt)
        controller.converge(BOT, intent="create")  # warm: clients, caches, imports
        stack.kubectl("delete", "pod", "bot-bench00000", "-n", "the0", "--wait=true")
        outcome, path, calls = trace_files(
            lambda: controller.converge(BOT, intent="create"), source / "worker")
    figures = {"files_entered": len(set(path)),
               "calls_into_a_file_left": _revisits(calls),
               "returns_to_a_file_left": _revisits(path), "steps": len(path)}
    print(f"{'outcome':28s} {outcome}")
    for name, value in figures.items():
        print(f"{name:28s} {value}")
    print("calls: " + " → ".join(calls))
    print(json.dumps({"bench": "call_path", "worker_from": str(source), "outcome": outcome,
                      **figures, "files": sorted(set(path))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
