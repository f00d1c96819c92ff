"""One bot's path from its document to its Pod, through the controller's own modules.

    .venv/bin/python bench/call_path.py [--worker-from DIR]

Starts a stack (kwok nodes only), stores one bot's code and document, and runs the per-bot
converge (`LiveBotController(rt).converge(id, intent="create")`, what `bots.create` runs) under
a profiler hook. Every call and return inside `worker/` moves "where the code is" to a file;
the table counts the files entered and how often the path came back to a file it had left
(issue 16: "walking one bot from its document to its Pod enters 29 files, returning 18 times
to a file it had left"). `--worker-from` measures another checkout's `worker/` package (e.g. a
`git worktree` of an older commit) on this checkout's stack. Ends with ONE JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tools.stack.supervisor import Stack  # noqa: E402  (the stack from this checkout)

CODE_KEY = "callpath/bot.zip"


def trace_files(run: Any, root: Path) -> tuple[Any, list[str]]:
    """What `run()` returns, and the sequence of `root` files the code was in (a file repeated
    in a row counted once)."""
    prefix = str(root) + os.sep
    path: list[str] = []

    def where(frame: FrameType | None) -> None:
        if frame is None or not frame.f_code.co_filename.startswith(prefix):
            return  # outside the package (a library): the path stays where it was
        name = frame.f_code.co_filename[len(prefix):]
        if not path or path[-1] != name:
            path.append(name)

    def hook(frame: FrameType, event: str, _arg: Any) -> None:
        if event == "call":
            where(frame)
        elif event == "return":
            where(frame.f_back)

    sys.setprofile(hook)
    try:
        result = run()
    finally:
        sys.setprofile(None)
    return result, path


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
        import pymongo
        from minio import Minio

        s3 = Minio(env.s3_endpoint, access_key=env.s3_access_key, secret_key=env.s3_secret_key,
                   secure=False)
        s3.make_bucket("the0-custom-bots")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("main.py", "print('path')\n")
        s3.put_object("the0-custom-bots", CODE_KEY, io.BytesIO(buffer.getvalue()),
                      len(buffer.getvalue()))
        pymongo.MongoClient(env.mongo_uri)["bot_runner"]["bots"].insert_one(
            {"id": "walker", "config": {"name": "walker", "api_key": "k"},
             "custom": {"version": "1.0.0", "filePath": CODE_KEY,
                        "config": {"runtime": "python3.11", "entrypoints": {"bot": "main.py"}}}})
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
        controller.converge("walker", intent="create")  # warm: clients, caches, imports
        stack.kubectl("delete", "pod", "bot-walker", "-n", "the0", "--wait=true")
        outcome, path = trace_files(lambda: controller.converge("walker", intent="create"),
                                    source / "worker")
    seen: set[str] = set()
    returns = 0
    for file in path:
        returns += file in seen
        seen.add(file)
    print(f"{'outcome':28s} {outcome}")
    print(f"{'files entered':28s} {len(seen)}")
    print(f"{'returns to a file left':28s} {returns}")
    print(f"{'steps between files':28s} {len(path)}")
    print("path: " + " → ".join(path))
    print(json.dumps({"bench": "call_path", "worker_from": str(source), "outcome": outcome,
                      "files_entered": len(seen), "returns_to_a_file_left": returns,
                      "steps": len(path), "files": sorted(seen)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
