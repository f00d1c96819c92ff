"""`python -m tools.stack up|down|run|status` — the stack for humans and for `make`.

- up:   start in the background, write `.stack/env` and `.stack/state.json`, return.
- down: stop what `up` started (by PID, checking it is still our binary), remove `.stack/`.
- run:  start in the foreground, print how to reach every server, stop on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from tools.stack.paths import REPO_ROOT
from tools.stack.process import ServerFailed, stop_process_group
from tools.stack.supervisor import Stack, StackEnv, pids_of

STATE_DIR = REPO_ROOT / ".stack"
STATE_FILE = STATE_DIR / "state.json"
ENV_FILE = STATE_DIR / "env"


def _progress(message: str) -> None:
    print(f"[stack {time.strftime('%H:%M:%S')}] {message}", flush=True)


def describe(env: StackEnv) -> str:
    return "\n".join([
        f"  Kubernetes {env.kubernetes_version} API: {env.kube_api_url}",
        f"    admin:      kubectl --kubeconfig {env.admin_kubeconfig} get nodes",
        f"    controller: --kubeconfig {env.controller_kubeconfig}  (user {env.controller_user})",
        f"  MongoDB (FerretDB): {env.mongo_uri}",
        f"  S3 (versitygw):     http://{env.s3_endpoint}  access key {env.s3_access_key}"
        "  (secret in the env file)",
        f"  Redis:              {env.redis_url}",
        f"  NATS:               {env.nats_url}",
        f"  server logs:        {env.workdir}/logs/",
    ])


def _alive_as(pid: int, argv0: str) -> bool:
    """True when pid still runs the binary we started (guards against PID reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return cmdline == argv0


def cmd_up() -> int:
    if STATE_FILE.exists():
        state = json.loads(STATE_FILE.read_text())
        if all(_alive_as(p["pid"], p["argv0"]) for p in state["servers"]):
            print(f"stack already up; source {ENV_FILE}")
            return 0
        cmd_down()
    STATE_DIR.mkdir(exist_ok=True)
    started = time.monotonic()
    stack = Stack(STATE_DIR / "run", progress=_progress)
    try:
        env = stack.start()
        stack.grant_controller(namespace_for_up(stack))
    except ServerFailed as exc:
        print(f"\nSTACK FAILED TO START: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    STATE_FILE.write_text(json.dumps({"servers": pids_of(stack), "env": json.loads(env.to_json())},
                                     indent=2))
    env.write_env_file(ENV_FILE)
    print(f"stack ready in {time.monotonic() - started:.1f} s\n{describe(env)}\n"
          f"  env file:           source {ENV_FILE}")
    return 0


def namespace_for_up(stack: Stack) -> str:
    """`make stack-up`/`make up` use the product's default namespace, labelled restricted."""
    namespace = os.environ.get("NAMESPACE", "the0")
    stack.kubectl("create", "namespace", namespace, check=False)
    stack.kubectl("label", "--overwrite", "namespace", namespace,
                  "pod-security.kubernetes.io/enforce=restricted")
    return namespace


def cmd_down() -> int:
    if not STATE_FILE.exists():
        print("stack is not up")
        shutil.rmtree(STATE_DIR, ignore_errors=True)
        return 0
    state = json.loads(STATE_FILE.read_text())
    for server in reversed(state["servers"]):
        if _alive_as(server["pid"], server["argv0"]):
            stop_process_group(server["pid"])
            print(f"stopped {server['name']} (pid {server['pid']})")
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    return 0


def cmd_run() -> int:
    """Foreground stack; `make up` layers the product's processes on top of this."""
    code = cmd_up()
    if code:
        return code
    print("\nPress Ctrl-C to stop the stack.", flush=True)
    stop = False

    def _stop(*_args: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(KeyboardInterrupt):
        while not stop:
            time.sleep(0.5)
    return cmd_down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "run"])
    args = parser.parse_args(argv)
    return {"up": cmd_up, "down": cmd_down, "run": cmd_run}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
