"""`python -m tools.stack up|down|run|status` — the stack for humans and for `make`.

- up:   start in the background, write `.stack/env` and `.stack/state.json`, return.
- down: stop what `up` started (by PID and start time, so never a stranger that reused the
        PID), clean up the real node (kubelet, containerd, mounts, bridge, cgroups, sysctls:
        realnode.py), remove `.stack/`.
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
from typing import Any

from tools.stack import hoststate, realnode
from tools.stack.paths import REPO_ROOT
from tools.stack.process import ServerFailed, same_process, stop_process_group
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
        f"    on PostgreSQL:    psql {env.postgres_url}",
        f"  S3 (versitygw):     http://{env.s3_endpoint}  access key {env.s3_access_key}"
        "  (secret in the env file)",
        f"  Redis:              {env.redis_url}",
        f"  NATS:               {env.nats_url}",
        *([f"  real node:          {env.real_node_name} (taint {realnode.TAINT_KEY}, label "
           f"{'='.join(realnode.NODE_LABEL)}); pods reach S3 at {env.s3_pod_endpoint}"]
          if env.real_node_name else []),
        f"  server logs:        {env.workdir}/logs/",
    ])


def _alive(server: dict[str, Any]) -> bool:
    """True when the recorded server still runs: same pid AND same start time. (Comparing
    argv[0] failed for redis-server, which retitles itself, so `down` left it running.)"""
    return same_process(int(server["pid"]), server.get("start"))


def cmd_up() -> int:
    if STATE_FILE.exists():
        state = json.loads(STATE_FILE.read_text())
        if all(_alive(p) for p in state["servers"]):
            print(f"stack already up; source {ENV_FILE}")
            return 0
        cmd_down()
    STATE_DIR.mkdir(exist_ok=True)
    started = time.monotonic()
    stack = Stack(STATE_DIR / "run", progress=_progress, owner_state_file=STATE_FILE)
    try:
        env = stack.start()
        stack.grant_controller(namespace_for_up(stack))
    except ServerFailed as exc:
        print(f"\nSTACK FAILED TO START: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    node = ({"record": str(stack.node.record_path), "workdir": str(stack.node.workdir)}
            if stack.node is not None and stack.node.record_path is not None else None)
    STATE_FILE.write_text(json.dumps({"servers": pids_of(stack), "real_node": node,
                                      "env": json.loads(env.to_json())}, indent=2))
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
        _unmount_and_remove(STATE_DIR)
        realnode.clean_leftovers(_progress)
        return 0
    state = json.loads(STATE_FILE.read_text())
    node = state.get("real_node")
    if node:  # first: the kubelet must stop before the API server it reports to
        realnode.cleanup(Path(node["record"]), _progress, workdir=node["workdir"])
    for server in reversed(state["servers"]):
        if _alive(server):
            stop_process_group(server["pid"], sig=server.get("signal", signal.SIGTERM))
            print(f"stopped {server['name']} (pid {server['pid']})")
    _unmount_and_remove(STATE_DIR)
    realnode.clean_leftovers(_progress)  # any other stack whose owner died
    return 0


def _unmount_and_remove(directory: Path) -> None:
    """rm -rf, but never through a mount a dead node left (it would delete the host's files
    behind a bind mount)."""
    leftovers = [m for m in hoststate.mount_points()
                 if m.startswith(str(directory.resolve()) + "/")]
    if leftovers:
        print(f"not removing {directory}: still mounted: {leftovers[:3]}", file=sys.stderr)
        return
    shutil.rmtree(directory, ignore_errors=True)


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
