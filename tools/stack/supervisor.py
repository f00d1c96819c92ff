"""Starts the whole real stack on free 127.0.0.1 ports and stops exactly what it started.

Order matters: etcd → kube-apiserver → kwok CRDs → kwok, kube-controller-manager,
kube-scheduler → kwok nodes → the real node (containerd + kubelet, realnode.py); PostgreSQL →
FerretDB (its MongoDB front); versitygw, Redis and NATS are independent.
Every server gets its own log file under the work directory; `ServerFailed` carries its tail.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import stat
import struct
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tools.stack import certs, hoststate, realnode
from tools.stack.paths import REPO_ROOT, Binaries, binaries
from tools.stack.process import (
    Server,
    ServerFailed,
    free_port,
    log_tail,
    stop_process_group,
)
from tools.stack.realnode import NodeConfig, RealNode

# The controller's identity, as a ServiceAccount-like user whose rights come only from RBAC.
CONTROLLER_USER = "system:serviceaccount:the0:the0-controller"
CONTROLLER_GROUPS = "system:serviceaccounts,system:serviceaccounts:the0,system:authenticated"
# The shipped kustomize base: its Role and RoleBinding are the controller's only rights in tests.
KUSTOMIZE_BASE = REPO_ROOT / "k8s"
CONTROLLER_RBAC = (("Role", "the0-controller"), ("RoleBinding", "the0-controller"))
S3_ACCESS_KEY = "the0-test-access"
KWOK_NODES = 3
KWOK_PODS_PER_NODE = 5000
SERVICE_CLUSTER_IP_RANGE = certs.SERVICE_CLUSTER_IP_RANGE
KWOK_POD_CIDR = "10.128.0.0/14"  # fake pod IPs written into status only; no traffic goes there
DEFAULT_NODE = NodeConfig()  # real-node-1 in the first free slot (cni-the0, 10.89.0.0/24)
# PostgreSQL under FerretDB: a throwaway test database (no crash safety wanted), trust auth on
# 127.0.0.1 only. FerretDB's pool is 50 connections (its default); the rest is headroom.
POSTGRES_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "100",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "unix_socket_permissions": "0700",
    "dynamic_shared_memory_type": "mmap",  # in the data dir: nothing left in /dev/shm
    # FerretDB's lookups are sequential scans (tools/stack/README.md): on 2 cores, workers
    # of a parallel scan only add their start-up to each one.
    "max_parallel_workers_per_gather": "0",
}
POSTGRES_ENV = {"LC_ALL": "C", "LANG": "C"}
FERRETDB_DATABASE = "ferretdb"  # the PostgreSQL database FerretDB keeps everything in
# kwok plays each pod's stages (Running, deleted) with this many goroutines; its default, 4,
# is one kubelet's pace for 15,000 pods — a burst of 400 deletions then queued ~9 s behind
# each other under load, where a cluster's kubelets work side by side (tools/stack/README.md).
KWOK_POD_PARALLELISM = 16
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


@dataclass(frozen=True)
class StackEnv:
    """Every address and credential of a running stack; `as_env()` gives the env-var form."""

    workdir: str
    kubernetes_version: str
    kube_api_url: str
    admin_kubeconfig: str
    controller_kubeconfig: str
    controller_user: str
    ca_file: str
    mongo_uri: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    redis_url: str
    redis_port: int
    nats_url: str
    nats_port: int
    kwok_logs_dir: str
    # PostgreSQL under FerretDB (psql takes this URL as it is).
    postgres_url: str = ""
    # The real node (realnode.py); empty when the stack runs without one.
    real_node_name: str = ""
    pod_gateway: str = ""      # the CNI bridge's address: where pods reach the host
    s3_pod_endpoint: str = ""  # host:port of versitygw as pods see it (a forwarder)
    # In-cluster stacks only (Stack(in_cluster=True)): the other servers as pods see them.
    redis_pod_url: str = ""
    mongo_pod_uri: str = ""
    nats_pod_url: str = ""

    def real_node_settings(self) -> dict[str, str]:
        """The product settings that put bot pods on the real node: tolerate its taint and
        select its label (kwok nodes carry neither)."""
        return {
            "BOT_TOLERATIONS": json.dumps([{"key": realnode.TAINT_KEY, "operator": "Exists",
                                            "effect": "NoSchedule"}]),
            "BOT_NODE_SELECTOR": json.dumps({realnode.NODE_LABEL[0]: realnode.NODE_LABEL[1]}),
        }

    def as_env(self) -> dict[str, str]:
        public = {"MINIO_PUBLIC_ENDPOINT": self.s3_pod_endpoint} if self.s3_pod_endpoint else {}
        return {
            "KUBECONFIG": self.admin_kubeconfig,
            "THE0_ADMIN_KUBECONFIG": self.admin_kubeconfig,
            "THE0_CONTROLLER_KUBECONFIG": self.controller_kubeconfig,
            "THE0_STACK_WORKDIR": self.workdir,
            "THE0_KWOK_LOGS_DIR": self.kwok_logs_dir,
            "KUBE_API_URL": self.kube_api_url,
            "MONGO_URI": self.mongo_uri,
            "MINIO_ENDPOINT": self.s3_endpoint,
            "MINIO_ACCESS_KEY": self.s3_access_key,
            "MINIO_SECRET_KEY": self.s3_secret_key,
            "MINIO_SECURE": "false",
            "REDIS_URL": self.redis_url,
            "NATS_URL": self.nats_url,
            **public,
        }

    def write_env_file(self, path: Path) -> None:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in sorted(self.as_env().items())]
        path.write_text("# Written by tools/stack; source it to reach the running stack.\n"
                        + "\n".join(lines) + "\n")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackEnv:
        return cls(**json.loads(text))


def _http_ok(url: str, *, token: str | None = None, ca: str | None = None,
             insecure: bool = False, expect: Iterable[int] = (200,)) -> bool:
    context: ssl.SSLContext | None = None
    if url.startswith("https"):
        context = ssl.create_default_context(cafile=ca)
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return int(response.status) in expect
    except urllib.error.HTTPError as exc:
        return exc.code in expect


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def _postgres_ping(port: int, user: str) -> bool:
    """True when PostgreSQL accepts a session: its answer to a startup message is
    AuthenticationOk ('R', 0); while it starts up or shuts down it is an error ('E')."""
    params = b"".join(k + b"\0" + v.encode() + b"\0"
                      for k, v in ((b"user", user), (b"database", "postgres"))) + b"\0"
    body = struct.pack("!I", 196608) + params  # protocol 3.0
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(struct.pack("!I", len(body) + 4) + body)
        reply = s.recv(9, socket.MSG_WAITALL)
        with contextlib.suppress(OSError):
            s.sendall(b"X\0\0\0\4")  # Terminate
    return reply[:1] == b"R" and reply[5:9] == b"\0\0\0\0"


def _searchable_by(path: Path, uid: int, gid: int) -> None:
    """Lets `uid` reach `path`: adds o+x (search, not read) to each directory on the way that
    it could not pass (pytest's temp dirs are 0700). A running PostgreSQL no longer needs it:
    it has changed into its data directory and opens everything relative to it."""
    for directory in (path, *path.parents):
        st = directory.stat()
        if ((st.st_uid == uid and st.st_mode & stat.S_IXUSR)
                or (st.st_gid == gid and st.st_mode & stat.S_IXGRP)
                or st.st_mode & stat.S_IXOTH):
            continue
        directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _mongo_ping(uri: str) -> bool:
    import pymongo  # imported here: the supervisor's other users do not need it

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=1000
    )
    try:
        client.admin.command("ping")
        return True
    finally:
        client.close()


def _kwok_configuration() -> str:
    """kwok's options beside its stages. kwok v0.8.0 does not default the options of a
    configuration it is given, so every default is written out (its v1alpha1 defaults)."""
    return json.dumps({"apiVersion": "config.kwok.x-k8s.io/v1alpha1",
                       "kind": "KwokConfiguration",
                       "options": {"podPlayStageParallelism": KWOK_POD_PARALLELISM,
                                   "nodePlayStageParallelism": 4, "nodeLeaseParallelism": 4,
                                   "podsOnNodeSyncParallelism": 1,
                                   "enableDebuggingHandlers": True,
                                   "enableContentionProfiling": False,
                                   "enableProfilingHandler": True,
                                   "enablePodsOnNodeSyncListPager": True,
                                   "enablePodsOnNodeSyncStreamWatch": False}})


def _kwok_node(name: str) -> dict[str, Any]:
    resources = {"cpu": "2k", "memory": "4Ti", "pods": str(KWOK_PODS_PER_NODE)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {"type": "kwok", "kubernetes.io/hostname": name,
                       "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
        },
        "spec": {},
        "status": {"allocatable": resources, "capacity": resources,
                   "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]},
    }


class Stack:
    """The running servers. Use `start()` / `stop()`, or as a context manager."""

    def __init__(self, workdir: Path, *, bins: Binaries | None = None,
                 progress: Callable[[str], None] = lambda _msg: None,
                 real_node: NodeConfig | None = DEFAULT_NODE,
                 owner_state_file: Path | None = None,
                 postgres_settings: Mapping[str, str] | None = None,
                 in_cluster: bool = False) -> None:
        """`real_node=None` runs kwok nodes only. `owner_state_file`: the state file that
        keeps a detached stack's node alive (`python -m tools.stack up`), see realnode.py.
        `postgres_settings`: more PostgreSQL settings, over POSTGRES_SETTINGS.
        `in_cluster=True` (with the real node) makes it a cluster a controller can run in:
        ServiceAccount tokens and the cluster CA in pods, kube-proxy on the node so Service
        IPs route, `kubernetes.default` reaching the API server, and Redis, Mongo and NATS on
        the pod network like S3. One such stack per machine at a time (kube-proxy's nftables
        tables are host-wide)."""
        if in_cluster and real_node is None:
            raise ValueError("an in-cluster stack needs the real node")
        self.in_cluster = in_cluster
        self.workdir = workdir.resolve()
        self.postgres_settings = {**POSTGRES_SETTINGS, **(postgres_settings or {})}
        self.bins = bins or binaries()
        self.progress = progress
        self.servers: list[Server] = []
        self.node = (RealNode(real_node, self.workdir, kubelet=self.bins.kubelet,
                              progress=progress, owner_state_file=owner_state_file)
                     if real_node is not None else None)
        self._probes: dict[str, Callable[[], bool]] = {}
        self._controller_rbac: list[dict[str, Any]] | None = None
        self._initdb: subprocess.Popen[bytes] | None = None  # PostgreSQL's, until it is done
        self._initdb_started = 0.0
        self._pg_user = ""
        self._pg_as_user: list[str] = []
        self.env: StackEnv | None = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers
    def _server(self, name: str, argv: list[str], *, env: Mapping[str, str] | None = None,
                probe: Callable[[], bool], timeout: float = 60.0, cwd: Path | None = None,
                stop_signal: int = signal.SIGTERM) -> Server:
        if self.node is not None:
            self.node.check_runtime()  # fail fast when the node's runtime already failed
        server = Server(name=name, argv=argv, log=self.workdir / "logs" / f"{name}.log",
                        env=dict(env or {}), cwd=cwd or self.workdir, stop_signal=stop_signal)
        self._probes[name] = probe
        self.progress(f"starting {name}")
        started = time.monotonic()
        server.start()
        self.servers.append(server)
        if self.node is not None:
            self.node.remember_stack_server(server)
        server.wait_ready(probe, timeout)
        self.progress(f"{name} ready in {time.monotonic() - started:.1f} s")
        return server

    def kubectl(self, *args: str, input_text: str | None = None,
                kubeconfig: str | None = None, check: bool = True) -> str:
        assert self.env is not None
        argv = [str(self.bins.kubectl), "--kubeconfig", kubeconfig or self.env.admin_kubeconfig,
                *args]
        result = subprocess.run(argv, input=input_text, capture_output=True, text=True,
                                timeout=120)
        if check and result.returncode != 0:
            raise ServerFailed(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> StackEnv:
        missing = [m for m in self.bins.missing()
                   if self.node is not None or not m.startswith("kubelet ")]
        if missing:
            raise ServerFailed(
                "stack binaries are missing — run `make stack-build` (tools/stack/build.sh):\n  "
                + "\n  ".join(missing)
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        assert self.env is not None
        return self.env

    def _start_all(self) -> None:
        w = self.workdir
        if self.node is not None:
            # Before anything else: clean dead stacks' leftovers, pick a slot, record the host.
            self.node.reserve()
        self._init_postgres()  # in the background until _start_postgres
        pki = certs.write_pki(w / "pki",
                              kubelet_ips=[self.node.address] if self.node is not None else None)
        ca = str(pki["ca_crt"])
        admin_token = secrets.token_hex(16)
        controller_token = secrets.token_hex(16)
        node_token = secrets.token_hex(16)
        proxy_token = secrets.token_hex(16)
        # The kubelet's own identity (Node authorizer + NodeRestriction), not the admin's.
        node_user = f"system:node:{self.node.name}" if self.node is not None else ""
        (w / "tokens.csv").write_text(
            f'{admin_token},admin,admin,"system:masters"\n'
            f'{controller_token},{CONTROLLER_USER},the0-controller,"{CONTROLLER_GROUPS}"\n'
            + (f'{node_token},{node_user},{node_user},"system:nodes"\n' if node_user else "")
            # Bound to system:node-proxier by the API server's bootstrap RBAC.
            + (f'{proxy_token},system:kube-proxy,system:kube-proxy\n' if self.in_cluster else "")
        )
        (w / "tokens.csv").chmod(0o600)

        # Independent servers first: they are quick and catch a broken install early.
        redis_port = free_port()
        self._server("redis", [str(self.bins.redis_server), "--bind", "127.0.0.1", "--port",
                               str(redis_port), "--save", "", "--appendonly", "no",
                               "--dir", str(w), "--protected-mode", "no"],
                     probe=lambda: _redis_ping(redis_port), timeout=20)
        nats_port, nats_monitor = free_port(), free_port()
        # JetStream on, its store in the work dir (a restart keeps streams and consumers), as
        # the platform's NATS has it: the0's API keeps its events in a stream.
        self._server("nats", [str(self.bins.nats_server), "-a", "127.0.0.1", "-p",
                              str(nats_port), "-m", str(nats_monitor), "-js", "-sd",
                              str(w / "nats")],
                     probe=lambda: _http_ok(f"http://127.0.0.1:{nats_monitor}/healthz"),
                     timeout=20)
        postgres_url = self._start_postgres()
        mongo_port = free_port()
        mongo_uri = f"mongodb://127.0.0.1:{mongo_port}/"
        (w / "ferretdb").mkdir(exist_ok=True)
        self._server("ferretdb", [str(self.bins.ferretdb), "--handler=postgresql",
                                  f"--postgresql-url={postgres_url}",
                                  f"--listen-addr=127.0.0.1:{mongo_port}",
                                  f"--state-dir={w / 'ferretdb'}", "--telemetry=disable",
                                  f"--debug-addr=127.0.0.1:{free_port()}", "--log-level=warn"],
                     # A quarter of its CPU serving a full read of 10,000 bot documents was
                     # garbage collection (its pprof): GOGC 400 took that read from 2.8 to
                     # 2.0 s at a 72 MB peak (GOGC off: 7 GB and slower). Only the test
                     # stack's database; production runs MongoDB.
                     env={"GOGC": "400"},
                     probe=lambda: _mongo_ping(mongo_uri), timeout=30)
        s3_port = free_port()
        s3_secret = secrets.token_hex(16)
        (w / "s3" / "data").mkdir(parents=True, exist_ok=True)
        (w / "s3" / "meta").mkdir(parents=True, exist_ok=True)
        self._server("versitygw", [str(self.bins.versitygw), "--port", f"127.0.0.1:{s3_port}",
                                   "posix", "--sidecar", str(w / "s3" / "meta"),
                                   str(w / "s3" / "data")],
                     env={"ROOT_ACCESS_KEY": S3_ACCESS_KEY, "ROOT_SECRET_KEY": s3_secret},
                     probe=lambda: _http_ok(f"http://127.0.0.1:{s3_port}/",
                                            expect=(200, 403)),
                     timeout=20)
        if self.node is not None:
            # containerd + image import (~5 s) overlap with the control plane's start.
            self.node.start_runtime_in_background(s3_port=s3_port)

        # The control plane.
        etcd_port, etcd_peer = free_port(), free_port()
        self._server("etcd", [str(self.bins.etcd), "--name", "default",
                              "--data-dir", str(w / "etcd"),
                              "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                              "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                              "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                              "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                              "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
                              "--unsafe-no-fsync", "--quota-backend-bytes", str(8 * 1024**3),
                              "--log-level", "warn"],
                     probe=lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"), timeout=30)
        api_port = free_port()
        api_url = f"https://127.0.0.1:{api_port}"
        self._server("kube-apiserver", [
            str(self.bins.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", f"--secure-port={api_port}",
            "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
            f"--cert-dir={w / 'apiserver-certs'}",
            f"--tls-cert-file={pki['server_crt']}", f"--tls-private-key-file={pki['server_key']}",
            f"--client-ca-file={ca}", f"--token-auth-file={w / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki['sa_pub']}",
            f"--service-account-signing-key-file={pki['sa_key']}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # No node-lifecycle controller runs to lift the not-ready taint this plugin adds.
            # ServiceAccount admission (a token and the CA in every pod) needs each namespace's
            # `default` ServiceAccount to exist first: only in-cluster stacks have it, where
            # pods are few; elsewhere tests create namespaces and pods in one breath.
            "--disable-admission-plugins=TaintNodesByCondition"
            + ("" if self.in_cluster else ",ServiceAccount"),
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            "--kubelet-preferred-address-types=InternalIP",
            # Towards kubelets (kwok's and the real one): a client certificate signed by the
            # stack CA, and their serving certificates verified against it.
            f"--kubelet-client-certificate={pki['kubelet_client_crt']}",
            f"--kubelet-client-key={pki['kubelet_client_key']}",
            f"--kubelet-certificate-authority={ca}",
            "--max-requests-inflight=1000", "--max-mutating-requests-inflight=500",
            "--profiling=false",
        ], probe=lambda: _http_ok(f"{api_url}/readyz", token=admin_token, ca=ca), timeout=90)

        admin_kubeconfig = w / "admin.kubeconfig"
        certs.write_token_kubeconfig(admin_kubeconfig, server=api_url, ca=ca, user="admin",
                                     token=admin_token)
        controller_kubeconfig = w / "controller.kubeconfig"
        certs.write_token_kubeconfig(controller_kubeconfig, server=api_url, ca=ca,
                                     user=CONTROLLER_USER, token=controller_token)
        kwok_logs = w / "kwok-logs"
        kwok_logs.mkdir(exist_ok=True)
        self.env = StackEnv(
            workdir=str(w), kubernetes_version=self.bins.kubernetes_version,
            kube_api_url=api_url, admin_kubeconfig=str(admin_kubeconfig),
            controller_kubeconfig=str(controller_kubeconfig), controller_user=CONTROLLER_USER,
            ca_file=ca, mongo_uri=mongo_uri, postgres_url=postgres_url,
            s3_endpoint=f"127.0.0.1:{s3_port}",
            s3_access_key=S3_ACCESS_KEY, s3_secret_key=s3_secret,
            redis_url=f"redis://127.0.0.1:{redis_port}/0", redis_port=redis_port,
            nats_url=f"nats://127.0.0.1:{nats_port}", nats_port=nats_port,
            kwok_logs_dir=str(kwok_logs),
        )

        # kwok reads Logs/ClusterLogs from the API (so tests can add them), hence CRDs first.
        crds = [str(self.bins.kwok_crds / f"kwok.x-k8s.io_{n}.yaml")
                for n in ("logs", "clusterlogs")]
        self.kubectl("apply", "--server-side", *[a for c in crds for a in ("-f", c)])
        self.kubectl("wait", "--for=condition=established", "--timeout=60s",
                     "crd/logs.kwok.x-k8s.io", "crd/clusterlogs.kwok.x-k8s.io")

        kubeconfig_arg = f"--kubeconfig={admin_kubeconfig}"
        kcm_port = free_port()
        self._server("kube-controller-manager", [
            str(self.bins.kube_controller_manager), kubeconfig_arg, "--leader-elect=false",
            "--controllers=cronjob-controller,job-controller,garbage-collector-controller,"
            "ttl-after-finished-controller,namespace-controller,serviceaccount-controller,"
            "pod-garbage-collector-controller"
            # kube-root-ca.crt in every namespace (the CA of in-cluster clients), and what
            # Deployments and Services need to run pods and route to them.
            + (",root-ca-certificate-publisher-controller,deployment-controller,"
               "replicaset-controller,endpointslice-controller" if self.in_cluster else ""),
            *([f"--root-ca-file={ca}"] if self.in_cluster else []),
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}",
            "--kube-api-qps=500", "--kube-api-burst=1000", "--concurrent-gc-syncs=40",
        ], probe=lambda: _http_ok(f"https://127.0.0.1:{kcm_port}/healthz", insecure=True),
            timeout=60)
        scheduler_port = free_port()
        scheduler_config = w / "scheduler.yaml"
        scheduler_config.write_text(json.dumps({
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(admin_kubeconfig), "qps": 1000, "burst": 2000},
            "leaderElection": {"leaderElect": False},
        }))
        self._server("kube-scheduler", [
            str(self.bins.kube_scheduler), f"--config={scheduler_config}",
            "--bind-address=127.0.0.1", f"--secure-port={scheduler_port}",
        ], probe=lambda: _http_ok(f"https://127.0.0.1:{scheduler_port}/healthz", insecure=True),
            timeout=60)

        kwok_port = free_port()
        kwok_config = w / "kwok.yaml"
        kwok_config.write_text("\n---\n".join(
            [_kwok_configuration()]
            + [(self.bins.kwok_stages / stage).read_text() for stage in KWOK_STAGES]))
        (w / "kwok-home").mkdir(exist_ok=True)
        self._server("kwok", [
            str(self.bins.kwok), kubeconfig_arg, f"--config={kwok_config}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=127.0.0.1", "--node-name=localhost", f"--node-port={kwok_port}",
            f"--server-address=127.0.0.1:{kwok_port}",
            f"--tls-cert-file={pki['server_crt']}", f"--tls-private-key-file={pki['server_key']}",
            f"--cidr={KWOK_POD_CIDR}", "--enable-crds=Logs,ClusterLogs",
        ], env={"HOME": str(w / "kwok-home")},
            probe=lambda: _http_ok(f"https://127.0.0.1:{kwok_port}/healthz", insecure=True,
                                   expect=(200, 404)),
            timeout=60)
        nodes = [_kwok_node(f"kwok-node-{i}") for i in range(KWOK_NODES)]
        self.kubectl("apply", "-f", "-",
                     input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}))
        self._wait(lambda: self._nodes_ready(len(nodes)), "kwok nodes Ready", timeout=60,
                   server="kwok")

        if self.node is not None:
            # What the API server's kubelet-client user may do on kubelets (logs, exec, ...).
            self.kubectl("apply", "-f", "-", input_text=json.dumps({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "the0-stack:kubelet-api-admin"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "system:kubelet-api-admin"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                              "name": certs.KUBELET_CLIENT_USER}]}))
            self.node.start(api_url=api_url, ca_file=ca, token=node_token,
                            admin_token=admin_token, serving_cert=str(pki["kubelet_crt"]),
                            serving_key=str(pki["kubelet_key"]))
            assert self.node.slot is not None and self.env is not None
            self.env = dataclasses.replace(
                self.env, real_node_name=self.node.name, pod_gateway=self.node.slot.gateway,
                s3_pod_endpoint=f"{self.node.slot.gateway}:{self.node.s3_port}")
            if self.in_cluster:
                self._start_services(api_port=api_port, redis_port=redis_port,
                                     mongo_port=mongo_port, nats_port=nats_port, ca=ca,
                                     proxy_token=proxy_token, admin_token=admin_token)

    def _start_services(self, *, api_port: int, redis_port: int, mongo_port: int,
                        nats_port: int, ca: str, proxy_token: str, admin_token: str) -> None:
        """In-cluster mode, once the node is Ready: forwarders and kube-proxy on the node, and
        the `kubernetes` Service's endpoint (the API server runs with
        --endpoint-reconciler-type=none: nothing else writes it) on the API's forwarder."""
        assert self.node is not None and self.env is not None
        gateway = self.env.pod_gateway
        ports = self.node.start_services(
            targets={"kube-apiserver": api_port, "redis": redis_port, "ferretdb": mongo_port,
                     "nats": nats_port},
            kube_proxy=self.bins.kube_proxy, api_url=self.env.kube_api_url, ca_file=ca,
            token=proxy_token, cluster_ip_range=SERVICE_CLUSTER_IP_RANGE)
        self.kubectl("apply", "-f", "-", input_text=json.dumps({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes",
                                    "endpointslice.kubernetes.io/managed-by": "the0-stack"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [gateway], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": ports["kube-apiserver"], "protocol": "TCP"}],
        }))
        # kube-proxy's /healthz says healthy while it is still starting: wait until the
        # Service really routes (its rules catch the host's own connections too).
        def routed() -> bool:
            try:
                return _http_ok(f"https://{certs.KUBERNETES_SERVICE_IP}/readyz",
                                token=admin_token, ca=ca)
            except OSError:
                return False

        self._wait(routed, "kubernetes.default routed by kube-proxy", timeout=30,
                   server="kube-proxy")
        self.env = dataclasses.replace(
            self.env, redis_pod_url=f"redis://{gateway}:{ports['redis']}/0",
            mongo_pod_uri=f"mongodb://{gateway}:{ports['ferretdb']}/",
            nats_pod_url=f"nats://{gateway}:{ports['nats']}")

    def _init_postgres(self) -> None:
        """Starts initdb of `<work dir>/postgres` (its data and unix socket) in the background
        (~0.6-1 s of CPU): it overlaps the certificates, Redis and NATS; `_start_postgres`
        waits for it. PostgreSQL refuses to run as root: a root stack runs it as the
        `postgres` system user (setpriv execs it, so a recorded pid is PostgreSQL's own);
        anyone else runs it as themselves."""
        w = self.workdir
        data = w / "postgres"
        log = w / "logs" / "postgres-initdb.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerFailed("postgres: no `postgres` system user to run PostgreSQL as "
                                   "(Debian's postgresql package creates it) — run "
                                   "`make stack-build`") from None
            setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
            self._pg_as_user = [setpriv, "--reuid", str(account.pw_uid),
                                "--regid", str(account.pw_gid), "--init-groups", "--"]
        else:
            account = pwd.getpwuid(os.geteuid())
            self._pg_as_user = []
        self._pg_user = account.pw_name
        # The socket's name ends in .s.PGSQL.<port>: at most 5 digits.
        if len(f"{data}/.s.PGSQL.65535") > realnode.UNIX_PATH_MAX:
            raise ServerFailed(f"postgres: the work dir {w} is too long: the unix socket "
                               f"{data}/.s.PGSQL.<port> would be > {realnode.UNIX_PATH_MAX} bytes")
        shutil.rmtree(data, ignore_errors=True)  # a fresh cluster on every start
        data.mkdir(mode=0o700)
        if self._pg_as_user:
            os.chown(data, account.pw_uid, account.pw_gid)
            _searchable_by(w, account.pw_uid, account.pw_gid)
        self._initdb_started = time.monotonic()
        with log.open("ab") as out:
            try:
                self._initdb = subprocess.Popen(
                    [*self._pg_as_user, str(self.bins.initdb), "-D", str(data),
                     "-U", self._pg_user, "--auth=trust", "--encoding=UTF8", "--locale=C",
                     "--no-sync", "--no-instructions"],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={**os.environ, **POSTGRES_ENV}, cwd=data, start_new_session=True)
            except OSError as exc:
                raise ServerFailed(f"postgres: cannot execute initdb: {exc}") from exc

    def _start_postgres(self) -> str:
        """Waits for initdb, starts postgres and creates the database FerretDB uses; returns
        FerretDB's URL for it."""
        assert self._initdb is not None
        data = self.workdir / "postgres"
        initdb_log = self.workdir / "logs" / "postgres-initdb.log"
        log = self.workdir / "logs" / "postgres.log"
        try:
            code = self._initdb.wait(timeout=120)
        except subprocess.TimeoutExpired:
            code = None
        self._initdb = None
        if code != 0:
            what = "took over 120 s" if code is None else f"exited with code {code}"
            raise ServerFailed(f"postgres: initdb {what}.\n"
                               f"--- last lines of {initdb_log} ---\n{log_tail(initdb_log)}")
        self.progress(f"postgres initdb done {time.monotonic() - self._initdb_started:.1f} s "
                      "after it started")
        user, port = self._pg_user, free_port()
        settings = {**self.postgres_settings, "port": str(port),
                    "unix_socket_directories": str(data)}
        self._server("postgres", [*self._pg_as_user, str(self.bins.postgres), "-D", str(data),
                                  *[a for k, v in settings.items() for a in ("-c", f"{k}={v}")]],
                     env=POSTGRES_ENV, cwd=data, stop_signal=signal.SIGINT,
                     probe=lambda: _postgres_ping(port, user), timeout=30)
        create = subprocess.run(
            [str(self.bins.psql), "-X", "-q", "-v", "ON_ERROR_STOP=1",
             f"postgres://{user}@127.0.0.1:{port}/postgres",
             "-c", f"CREATE DATABASE {FERRETDB_DATABASE}"],
            capture_output=True, text=True, timeout=30, check=False)
        if create.returncode != 0:
            raise ServerFailed(
                f"postgres: creating the database {FERRETDB_DATABASE} failed: "
                f"{(create.stderr or create.stdout).strip()}\n"
                f"--- last lines of {log} ---\n{log_tail(log)}")
        return f"postgres://{user}@127.0.0.1:{port}/{FERRETDB_DATABASE}"

    def _nodes_ready(self, count: int) -> bool:
        out = self.kubectl("get", "nodes", "-l", "type=kwok", "-o",
                           "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')]"
                           ".status}{'\\n'}{end}")
        return out.split().count("True") == count

    def _wait(self, check: Callable[[], bool], what: str, *, timeout: float, server: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.2)
        log = self.workdir / "logs" / f"{server}.log"
        raise ServerFailed(f"{what}: not reached within {timeout:.0f} s.\n"
                           f"--- last lines of {log} ---\n{log_tail(log)}")

    def stop(self) -> None:
        if self._initdb is not None:  # a start that failed before postgres
            stop_process_group(self._initdb.pid, grace=0)
            self._initdb.wait()
            self._initdb = None
        if self.node is not None:
            self.node.stop()  # first: its clean-up stops the kubelet before anything else
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()

    def footprint(self) -> hoststate.Footprint:
        """What this running stack owns on the host (for host-state snapshots beside it)."""
        own = hoststate.Footprint(prefixes=(str(self.workdir),),
                                  pids=frozenset(s.pid for s in self.servers))
        return own.merged(self.node.footprint()) if self.node is not None else own

    @contextmanager
    def stopped(self, name: str) -> Iterator[None]:
        """Stops one server (e.g. "ferretdb", "nats", "redis") and starts it again after —
        same port, same data directory — for failure tests."""
        server = next(s for s in self.servers if s.name == name)
        server.stop()
        try:
            yield
        finally:
            server.start()
            server.wait_ready(self._probes[name], timeout=60)

    @contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """SIGSTOP … SIGCONT of one server: its connections stay open and nothing answers,
        like a network cut (for failure tests)."""
        server = next(s for s in self.servers if s.name == name)
        os.kill(server.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(server.pid, signal.SIGCONT)

    # ------------------------------------------------------------------ RBAC
    def kustomize_base(self) -> list[dict[str, Any]]:
        """Every object of k8s/ as `kubectl apply -k k8s/` would send it (kustomize built into
        the pinned kubectl), as JSON."""
        return self.normalised(self.kubectl("kustomize", str(KUSTOMIZE_BASE)))

    def normalised(self, manifests: str) -> list[dict[str, Any]]:
        """YAML manifests as `kubectl apply -f` would send them: one JSON object each."""
        # One JSON document per object, one after another (not a List).
        stream = self.kubectl("create", "--dry-run=client", "-o", "json", "-f", "-",
                              input_text=manifests)
        decoder, items, at = json.JSONDecoder(), [], 0
        while stream[at:].strip():
            at += len(stream[at:]) - len(stream[at:].lstrip())
            item, at = decoder.raw_decode(stream, at)
            items.append(item)
        return items

    def controller_rbac(self, namespace: str) -> list[dict[str, Any]]:
        """The shipped Role and RoleBinding of the controller, moved to `namespace`. The
        binding's subject stays the ServiceAccount the0/the0-controller: the identity the
        controller's kubeconfig authenticates as."""
        if self._controller_rbac is None:
            by_key = {(o["kind"], o["metadata"]["name"]): o for o in self.kustomize_base()}
            missing = [f"{kind}/{name}" for kind, name in CONTROLLER_RBAC
                       if (kind, name) not in by_key]
            if missing:
                raise ServerFailed(f"k8s/ does not define {', '.join(missing)}")
            self._controller_rbac = [by_key[key] for key in CONTROLLER_RBAC]
        objects: list[dict[str, Any]] = copy.deepcopy(self._controller_rbac)
        for obj in objects:
            obj["metadata"]["namespace"] = namespace
        return objects

    def grant_controller(self, namespace: str) -> None:
        """Applies k8s/'s Role and RoleBinding in `namespace`: the controller identity gets
        exactly the rights the shipped manifests give it, nothing from anywhere else."""
        self.kubectl("apply", "-f", "-", input_text=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": self.controller_rbac(namespace)}))

def pids_of(stack: Stack) -> list[dict[str, Any]]:
    """The servers as `down` finds them again: pid plus /proc start time (not argv[0], which
    redis-server rewrites)."""
    return [{"name": s.name, "pid": s.pid, "start": s.started, "signal": int(s.stop_signal)}
            for s in stack.servers]

