"""`make up`: the whole system on the embedded real stack, in the foreground.

Starts the stack (like `make stack-up`), then a Celery worker, a log worker (the `logs`
queue) and beat and the NATS events consumer running as the controller's restricted identity,
the health/metrics api (uvicorn) and Flower (basic auth from FLOWER_BASIC_AUTH, generated when
unset), seeds a few demo bots (code zips in S3), prints how to watch them and the api and
Flower URLs, and stops everything on Ctrl-C.
"""

from __future__ import annotations

import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from tools.stack.__main__ import ENV_FILE, STATE_DIR, cmd_down, cmd_up
from tools.stack.paths import REPO_ROOT, binaries
from tools.stack.process import free_port
from tools.stack.supervisor import StackEnv
from worker.core.naming import pod_name

# Real the0-style bots: a Python module with main(bot_id, config), a Node module exporting
# main. They run on the stack's real node (kubelet + containerd), keep a counter in STATE_DIR
# (saved to S3 by the sidecar) and print a line every few seconds.
PYTHON_DEMO = """\
import json, os, random, time


def main(bot_id, config):
    path = os.path.join(os.environ["STATE_DIR"], "orders.json")
    orders = json.load(open(path)) if os.path.exists(path) else []
    print(f"{bot_id}: {config['symbol']} every {config['interval_s']} s, "
          f"{len(orders)} orders so far", flush=True)
    while True:
        price = round(random.uniform(90, 110), 2)
        orders.append({"price": price, "amount": config["amount"]})
        json.dump(orders, open(path, "w"))
        print(f"{bot_id}: bought {config['amount']} {config['symbol']} at {price} "
              f"(order {len(orders)})", flush=True)
        time.sleep(config["interval_s"])
"""
NODE_DEMO = """\
async function main(botId, config) {
  console.log(`${botId}: grid on ${config.symbol} with ${config.levels} levels`);
  // A live bot's main never resolves: when it does, the0's wrapper ends the run.
  for (let tick = 1; ; tick++) {
    await new Promise((resolve) => setTimeout(resolve, config.interval_s * 1000));
    console.log(`${botId}: tick ${tick}`);
  }
}
module.exports = { main };
"""
DEMO_BOTS = [
    ("demo-dca-btc", "python3.11", "main.py", PYTHON_DEMO,
     {"symbol": "BTC/USDT", "amount": 25, "interval_s": 5}),
    ("demo-grid-eth", "nodejs20", "index.js", NODE_DEMO,
     {"symbol": "ETH/USDT", "levels": 10, "interval_s": 5}),
    ("Demo_Momentum.SOL", "python3.11", "main.py", PYTHON_DEMO,
     {"symbol": "SOL/USDT", "amount": 3, "interval_s": 7}),
]


def _stack_env() -> StackEnv:
    import json

    return StackEnv(**json.loads((STATE_DIR / "state.json").read_text())["env"])


def controller_env(stack: StackEnv) -> dict[str, str]:
    # Bot pods tolerate the real node's taint and select it: the demo bots really run.
    return {**os.environ, **stack.as_env(), **stack.real_node_settings(),
            "KUBECONFIG": stack.controller_kubeconfig,
            "KUBE_MODE": "kubeconfig", "NAMESPACE": os.environ.get("NAMESPACE", "the0"),
            "RECONCILE_INTERVAL": os.environ.get("RECONCILE_INTERVAL", "10s")}


def _port(variable: str, default: int) -> int:
    """The port in `variable`, else `default` when it is free, else any free port."""
    if os.environ.get(variable):
        return int(os.environ[variable])
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", default))
            return default
        except OSError:
            return free_port()


def seed_demo_bots(stack: StackEnv, bucket: str | None = None) -> None:
    """The demo bots' code zips in `bucket` (default: MINIO_BUCKET, else the code default)
    and their documents in bot_runner.bots, as the0's API would write them."""
    import pymongo
    from minio import Minio

    s3 = Minio(stack.s3_endpoint, access_key=stack.s3_access_key,
               secret_key=stack.s3_secret_key, secure=False)
    bucket = bucket or os.environ.get("MINIO_BUCKET", "the0-custom-bots")
    if not s3.bucket_exists(bucket):
        s3.make_bucket(bucket)
    mongo: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(stack.mongo_uri)
    bots = mongo["bot_runner"]["bots"]
    for bot_id, runtime, entry, source, params in DEMO_BOTS:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(entry, source)
        key = f"demo/{bot_id}/1.0.0.zip"
        s3.put_object(bucket, key, io.BytesIO(buffer.getvalue()), len(buffer.getvalue()))
        bots.update_one({"id": bot_id}, {"$set": {
            "id": bot_id, "config": {"name": bot_id, "type": "realtime", **params},
            "custom": {"version": "1.0.0", "filePath": key,
                       "config": {"runtime": runtime, "entrypoints": {"bot": entry}}}}},
            upsert=True)
    mongo.close()


def main() -> int:
    if cmd_up():
        return 1
    stack = _stack_env()
    env = controller_env(stack)
    logs = STATE_DIR / "logs"
    logs.mkdir(exist_ok=True)
    celery = str(Path(sys.executable).with_name("celery"))
    children: list[subprocess.Popen[bytes]] = []
    api_port, flower_port = _port("API_PORT", 8000), _port("FLOWER_PORT", 5555)
    flower_auth = os.environ.get("FLOWER_BASIC_AUTH") or f"admin:{secrets.token_urlsafe(18)}"
    uvicorn = str(Path(sys.executable).with_name("uvicorn"))
    for name, argv, extra in (
            # As in k8s/: log collection in a worker of its own (the only one on `logs`).
            ("worker", [celery, "-A", "worker", "worker", "-Q", "reconcile,bots",
                        "--loglevel=INFO", "-n", "worker@%h"], {}),
            ("log-worker", [celery, "-A", "worker.log_app", "worker", "-Q", "logs",
                            "--loglevel=INFO", "-n", "logs@%h"], {}),
            ("beat", [celery, "-A", "worker.broker_app", "beat", "--loglevel=INFO"], {}),
            ("events", [sys.executable, "-m", "worker", "events"], {}),
            ("api", [uvicorn, "--factory", "api.main:create_app", "--host", "127.0.0.1",
                     "--port", str(api_port)], {}),
            ("flower", [celery, "-A", "worker.flower_app", "flower", "--address=127.0.0.1",
                        f"--port={flower_port}"], {"FLOWER_BASIC_AUTH": flower_auth})):
        log = (logs / f"{name}.log").open("ab")
        children.append(subprocess.Popen(argv, env={**env, **extra}, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                         start_new_session=True))
        print(f"started {name} (pid {children[-1].pid}), log: {logs / f'{name}.log'}")
    seed_demo_bots(stack)
    kubectl = binaries().kubectl
    print(f"""
the0-k8s is running. Demo bots: {", ".join(b[0] for b in DEMO_BOTS)}.
  watch the pods:   {kubectl} --kubeconfig {stack.admin_kubeconfig} get pods -n the0 -o wide -w
  a bot's output:   {kubectl} --kubeconfig {stack.admin_kubeconfig} logs -n the0 -f bot-demo-dca-btc
                    (pod names: {", ".join(pod_name(b[0]) for b in DEMO_BOTS)})
  its saved state:  bucket bot-state, object demo-dca-btc/state.tar.gz (synced every 60 s)
  what a pass does: source {ENV_FILE} && KUBECONFIG=$THE0_CONTROLLER_KUBECONFIG \\
                    .venv/bin/python -m worker plan
  send an event:    the platform publishes on {stack.nats_url} (the0.bot.created|updated|deleted)
  api:              http://127.0.0.1:{api_port}/readyz  /status  /metrics  /healthz
  flower:           http://127.0.0.1:{flower_port}/  (basic auth user:password {flower_auth})
                    Flower's Prometheus metrics: http://127.0.0.1:{flower_port}/metrics
Press Ctrl-C to stop everything.""", flush=True)
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.5)
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
    cmd_down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
