"""A real node beside the kwok nodes: Debian's containerd + runc, the pinned kubelet, a CNI bridge.

Pods on it really run (tainted `the0.dev/real-node=true:NoSchedule`, labelled `type=real`, so
only pods that tolerate the taint and select the label land there). It needs root: cgroups,
mounts, network namespaces. The recipe and its traps: /work/shared/real-node.md.

Start (`RealNode.reserve()` then `start()`):
  1. clean leftovers of stacks whose owner died (a killed pytest, a removed .stack/);
  2. pick a free slot (bridge, subnet, cgroup root per slot, so stacks can run side by side)
     and record it, with the host state before we touch it, in /run/the0-k8s-stack/node-N.json;
  3. bridge + CNI conflist, containerd (root/state/socket under the work dir), image import,
     the S3 forwarder on the bridge gateway, the kubelet; wait for the node to be Ready.
Stop, `python -m tools.stack down` and the next start after a killed run all run `cleanup()`
on the record: it kills what runs, unmounts, removes the bridge and cgroups, restores the
sysctls and nftables, and removes host directories that were not there before. When another
stack's node still runs, host-wide state (sysctls, nftables, shared directories) is handed over
to it instead of restored, and the last one out restores the oldest recorded values.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.stack import certs, hoststate, images
from tools.stack.paths import REPO_ROOT, cache_dir
from tools.stack.process import (
    Server,
    ServerFailed,
    free_port,
    log_tail,
    same_process,
    start_time,
    stop_process_group,
)

REGISTRY = Path("/run/the0-k8s-stack")  # tmpfs: records die with what they describe (a reboot)
SLOTS = 16
TAINT_KEY = "the0.dev/real-node"
NODE_LABEL = ("type", "real")
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
CTR_NAMESPACE = "k8s.io"  # the CRI's containerd namespace
KUBE_PROXY_TABLE = "kube-proxy"  # its nftables mode's table, in families ip and ip6
MNT_DETACH = 2
UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the NUL


@dataclass(frozen=True)
class NodeConfig:
    """How to run the node. `slot` None picks the first free one; `containerd_extra` is TOML
    appended to containerd's config (tests break the node with it)."""

    name: str = "real-node-1"
    slot: int | None = None
    containerd_extra: str = ""
    ready_timeout: float = 60.0


@dataclass(frozen=True)
class Slot:
    """Host-wide names of one node; slot 0 is the default (cni-the0, 10.89.0.0/24)."""

    index: int

    @property
    def bridge(self) -> str:
        return "cni-the0" if self.index == 0 else f"cni-the0-{self.index}"

    @property
    def bridge_mac(self) -> str:
        # Locally administered, unicast, one per slot. Set explicitly so the kernel never
        # re-derives it: a bridge without a set address takes its lowest port's MAC, so the
        # gateway's MAC changed whenever a pod's veth came or went, and the other pods' ARP
        # entries pointed nowhere until they expired (a job pod's state upload timed out).
        return f"02:74:68:30:00:{self.index:02x}"

    @property
    def subnet(self) -> str:
        return f"10.89.{self.index}.0/24"

    @property
    def gateway(self) -> str:
        return f"10.89.{self.index}.1"

    @property
    def cgroup_root(self) -> str:
        # Its own cgroup root: two kubelets under one /kubepods would delete each other's pods.
        return f"/the0-node-{self.index}"

    @property
    def network(self) -> str:
        return f"the0-{self.index}"


# ---------------------------------------------------------------------------- small helpers
def node_ip() -> str:
    """The default-route source address: the kubelet refuses a loopback node IP (trap 2)."""
    out = subprocess.run(["ip", "-4", "-o", "route", "get", "1.1.1.1"], capture_output=True,
                         text=True, check=False).stdout.split()
    if "src" not in out:
        raise ServerFailed("real node: no default IPv4 route, so no node address for the "
                           "kubelet (`ip -4 route get 1.1.1.1` names no src)")
    return out[out.index("src") + 1]


def _run(argv: list[str], *, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _umount(path: str) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.umount2(path.encode(), 0) == 0
                or libc.umount2(path.encode(), MNT_DETACH) == 0)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def _registry_lock() -> Iterator[None]:
    """Serialises slot choice and clean-up between stacks starting or stopping together."""
    lock_file = cache_dir() / "node-slots.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _records() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(REGISTRY.glob("node-*.json")) if REGISTRY.is_dir() else []:
        with contextlib.suppress(OSError, json.JSONDecodeError):
            found.append((path, json.loads(path.read_text())))
    return found


def _save(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def owner_alive(record: dict[str, Any]) -> bool:
    """A node is in use while the process that started it lives, or, for `make stack-up`
    (whose process exits), while .stack/state.json still names its stack."""
    owner = record.get("owner", {})
    if same_process(owner.get("pid", 0), owner.get("start")):
        return True
    state_file = owner.get("state_file")
    if state_file:
        with contextlib.suppress(OSError, json.JSONDecodeError, KeyError, TypeError):
            state = json.loads(Path(state_file).read_text())
            return bool(state["env"]["workdir"] == record["stack_workdir"])
    return False


def footprint_of(record: dict[str, Any], path: Path | None = None) -> hoststate.Footprint:
    """What the stack of `record` owns on the host: its dirs, bridge, cgroups, processes, and
    the host paths it created (and will remove)."""
    before = record.get("before", {}).get("paths", {})
    procs = record.get("processes", []) + record.get("stack_processes", [])
    return hoststate.Footprint(
        prefixes=(record["stack_workdir"], record["workdir"]), bridges=(record["bridge"],),
        cgroup_roots=(record["cgroup_root"],), nodes=((record["workdir"], record["socket"]),),
        pids=frozenset(p["pid"] for p in procs if same_process(p["pid"], p.get("start"))),
        cni_networks=(record["network"],),
        host_paths=tuple(p for p, existed in before.items() if not existed),
        files=(str(path),) if path else ())


def live_footprint() -> hoststate.Footprint:
    """Everything the stacks running right now own (for snapshots taken beside them)."""
    footprint = hoststate.Footprint()
    for path, record in _records():
        if owner_alive(record):
            footprint = footprint.merged(footprint_of(record, path))
    return footprint


def host_state_before() -> dict[str, Any]:
    """What cleanup must put back: sysctls, nftables objects, which host paths existed."""
    return {"sysctls": hoststate.read_sysctls(), "nft": hoststate.nft_objects(),
            "paths": {p: os.path.lexists(p) for p in hoststate.HOST_PATHS}}


def clean_leftovers(progress: Callable[[str], None] = lambda _m: None) -> list[str]:
    """Cleans every recorded node whose owner is gone; returns what it found wrong."""
    problems: list[str] = []
    with _registry_lock():
        for path, record in _records():
            if not owner_alive(record):
                progress(f"cleaning leftovers of a dead stack's real node (slot "
                         f"{record.get('slot')}, {record.get('stack_workdir')})")
                problems += _cleanup_locked(path, record, progress, leftover=True)
    return problems


def cleanup(record_path: Path, progress: Callable[[str], None] = lambda _m: None,
            *, workdir: str | None = None) -> list[str]:
    """Stops the node of `record_path` and undoes what it did to the host (idempotent).
    With `workdir`, only if the record is still that stack's (a slot is reused later)."""
    with _registry_lock():
        try:
            record = json.loads(record_path.read_text())
        except (OSError, json.JSONDecodeError):
            return []
        if workdir is not None and record.get("workdir") != workdir:
            return []
        return _cleanup_locked(record_path, record, progress)


# ---------------------------------------------------------------------------- clean-up steps
def _stop_recorded(record: dict[str, Any], name: str, grace: float = 10.0) -> None:
    for proc in record.get("processes", []):
        if proc["name"] == name and same_process(proc["pid"], proc.get("start")):
            stop_process_group(proc["pid"], grace=grace)


def _kill_tasks(record: dict[str, Any]) -> None:
    """Kills every container and deletes its task while containerd still runs, so the shims
    exit and unmount the rootfs themselves."""
    ctr = [record["ctr"], "--address", record["socket"], "--namespace", CTR_NAMESPACE]
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        ids = _run([*ctr, "tasks", "ls", "-q"], timeout=10).stdout.split()
        for task in ids:
            _run([*ctr, "tasks", "kill", "--all", "--signal", "SIGKILL", task], timeout=10)
        for pid in hoststate.processes_in_cgroup(record["cgroup_root"]):
            _kill(pid)
        for task in ids:
            _run([*ctr, "tasks", "delete", "--force", task], timeout=15)


def _unmount_under(prefix: str) -> list[str]:
    for _ in range(20):
        points = [m for m in hoststate.mount_points()
                  if m == prefix or m.startswith(prefix.rstrip("/") + "/")]
        if not points:
            return []
        for point in reversed(points):  # newest first: children before parents
            _umount(point)
    return [f"still mounted: {m}" for m in hoststate.mount_points() if m.startswith(prefix)]


def _remove_cgroups(root: str) -> list[str]:
    left = []
    for hierarchy in hoststate.cgroup_hierarchies():
        base = hierarchy / root.lstrip("/")
        for _ in range(50):
            if not base.exists():
                break
            for dirpath, _dirs, _files in os.walk(base, topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
            if base.exists():
                for pid in hoststate.processes_in_cgroup(root):
                    _kill(pid)
                time.sleep(0.1)
        if base.exists():
            left.append(f"cgroup {base} could not be removed")
    return left


def _remove_network(record: dict[str, Any]) -> list[str]:
    bridge = record["bridge"]
    for link in hoststate.links():
        if link.get("master") == bridge:
            _run(["ip", "link", "delete", link["ifname"]])
    if any(link["ifname"] == bridge for link in hoststate.links()):
        result = _run(["ip", "link", "delete", bridge])
        if result.returncode != 0:
            return [f"bridge {bridge}: {result.stderr.strip()}"]
    return []


def _restore_nft(before: list[str]) -> list[str]:
    """Removes tables, chains and rules that were not there before (the kubelet's
    KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT and their jumps)."""
    old = set(before)
    ruleset = hoststate.nft_ruleset()
    new_tables = [i["table"] for i in ruleset if "table" in i
                  and f"table {i['table']['family']} {i['table']['name']}" not in old]
    new_chains = [i["chain"] for i in ruleset if "chain" in i
                  and f"chain {i['chain']['family']} {i['chain']['table']} {i['chain']['name']}"
                  not in old]
    problems = []
    for item in ruleset:  # first the new rules in old chains (the jumps into new chains)
        rule = item.get("rule")
        if not rule:
            continue
        text = (f"rule {rule['family']} {rule['table']} {rule['chain']} "
                f"{json.dumps(rule.get('expr'), sort_keys=True)}")
        chain = f"chain {rule['family']} {rule['table']} {rule['chain']}"
        if text not in old and chain in old:
            _run(["nft", "delete", "rule", rule["family"], rule["table"], rule["chain"],
                  "handle", str(rule["handle"])])
    for c in new_chains:  # flush all first: new chains may jump to each other
        _run(["nft", "flush", "chain", c["family"], c["table"], c["name"]])
    for c in new_chains:
        result = _run(["nft", "delete", "chain", c["family"], c["table"], c["name"]])
        if result.returncode != 0:
            problems.append(f"nft chain {c['family']} {c['table']} {c['name']}: "
                            f"{result.stderr.strip()}")
    for t in new_tables:
        _run(["nft", "delete", "table", t["family"], t["name"]])
    return problems


def _remove_kube_proxy_tables() -> list[str]:
    """kube-proxy's nftables mode keeps all its rules in these two tables."""
    problems = []
    present = set(hoststate.nft_objects())
    for family in ("ip", "ip6"):
        if f"table {family} {KUBE_PROXY_TABLE}" in present:
            result = _run(["nft", "delete", "table", family, KUBE_PROXY_TABLE])
            if result.returncode != 0:
                problems.append(f"nft table {family} {KUBE_PROXY_TABLE}: {result.stderr.strip()}")
    return problems


def _remove_host_paths(before: dict[str, bool]) -> list[str]:
    problems = []
    for path, existed in before.items():
        if existed or not os.path.lexists(path):
            continue
        problems += _unmount_under(path)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError as exc:
            problems.append(f"{path}: {exc}")
    return problems


def _remove_own_entries(record: dict[str, Any]) -> None:
    """Our entries in shared host dirs, whoever else still uses the dirs: container log links,
    go-cni's cache (named by network and sandbox; a killed node never ran CNI DEL) and the
    sockets of shims that were killed."""
    with contextlib.suppress(OSError):
        for link in Path("/var/log/containers").iterdir():
            if link.is_symlink() and os.readlink(link).startswith(record["workdir"] + "/"):
                link.unlink()
    sandboxes = hoststate.sandbox_ids(record["workdir"])
    with contextlib.suppress(OSError):
        for entry in Path("/var/lib/cni/results").iterdir():
            if (entry.name.startswith(record["network"] + "-")
                    or any(f"-{sandbox}-" in entry.name for sandbox in sandboxes)):
                entry.unlink()
    for sandbox in sandboxes:
        Path(hoststate.shim_socket(record["socket"], sandbox)).unlink(missing_ok=True)


def _cleanup_locked(path: Path, record: dict[str, Any], progress: Callable[[str], None],
                    *, leftover: bool = False) -> list[str]:
    problems: list[str] = []
    started = time.monotonic()
    workdir = record["workdir"]
    # 1. the kubelet first: it would restart the containers killed next. kube-proxy (in-cluster
    # stacks) too, and its nftables tables with it: they are this node's, never handed over.
    _stop_recorded(record, "kubelet")
    if any(p["name"] == "kube-proxy" for p in record.get("processes", [])):
        _stop_recorded(record, "kube-proxy")
        problems += _remove_kube_proxy_tables()
    # 2. containers and their tasks, while containerd still answers.
    containerd = [p for p in record.get("processes", []) if p["name"] == "containerd"]
    if containerd and same_process(containerd[0]["pid"], containerd[0].get("start")):
        _kill_tasks(record)
    # 3. containerd and the forwarder.
    _stop_recorded(record, "containerd")
    _stop_recorded(record, "s3-forwarder", grace=2)
    _stop_recorded(record, "service-forwarder", grace=2)
    # 4. whatever survived: shims serving our socket, every process in our cgroups.
    for pid in hoststate.shims_of(record["socket"]):
        _kill(pid)
    for _ in range(50):
        pids = hoststate.processes_in_cgroup(record["cgroup_root"])
        if not pids:
            break
        for pid in pids:
            _kill(pid)
        time.sleep(0.1)
    # 5. mounts under the work dir (kubelet root bind, volumes, rootfs, shm, netns).
    problems += _unmount_under(workdir)
    # 6. network: veths on our bridge, the bridge (netns are files under the work dir).
    problems += _remove_network(record)
    # 7. cgroups of our root, in every hierarchy.
    problems += _remove_cgroups(record["cgroup_root"])
    _remove_own_entries(record)
    # 8. host-wide state: restore it, or hand what we knew over to a node that still runs.
    others = [(p, r) for p, r in _records() if p != path and owner_alive(r)]
    if others:
        for other_path, other in others:
            if other.get("created", 0) > record.get("created", 0):
                other["before"] = record["before"]  # older knowledge of the host wins
                _save(other_path, other)
    else:
        before = record["before"]
        for name, value in before["sysctls"].items():
            if value is not None:
                hoststate.write_sysctl(name, value)
        problems += _restore_nft(before["nft"])
        problems += _remove_host_paths(before["paths"])
    if leftover:  # the dead stack's other servers (etcd, kube-apiserver, redis, ...) too
        for proc in reversed(record.get("stack_processes", [])):
            if same_process(proc["pid"], proc.get("start")):
                stop_process_group(proc["pid"], grace=5,
                                   sig=proc.get("signal", signal.SIGTERM))
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        REGISTRY.rmdir()  # only when empty
    if problems:
        progress("real node clean-up left: " + "; ".join(problems))
    progress(f"real node {record.get('node_name')} (slot {record.get('slot')}) cleaned up in "
             f"{time.monotonic() - started:.1f} s")
    return problems


# ---------------------------------------------------------------------------- the node
class RealNode:
    """One real node of one stack. `reserve()` (before the API server starts: the node's
    token and serving certificate need its name and address), then `start()`, `stop()`."""

    def __init__(self, config: NodeConfig, stack_workdir: Path, *, kubelet: Path,
                 progress: Callable[[str], None] = lambda _m: None,
                 owner_state_file: Path | None = None) -> None:
        self.config = config
        self.kubelet = kubelet
        self.stack_workdir = stack_workdir
        self.workdir = stack_workdir / "node"
        self.progress = progress
        self.owner_state_file = owner_state_file
        self.slot: Slot | None = None
        self.record_path: Path | None = None
        self.record: dict[str, Any] = {}
        self.address = ""
        self.s3_port = 0
        self.servers: list[Server] = []
        self.logs = stack_workdir / "logs"
        self._record_lock = threading.Lock()
        self._runtime_thread: threading.Thread | None = None
        self._runtime_error: BaseException | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd.sock"

    @property
    def ctr(self) -> list[str]:
        return [shutil.which("ctr") or "/usr/bin/ctr", "--address", str(self.socket),
                "--namespace", CTR_NAMESPACE]

    def footprint(self) -> hoststate.Footprint:
        """What this node owns on the host (for snapshots taken beside it)."""
        if self.slot is None or self.record_path is None:
            return hoststate.Footprint()
        record = self.record
        with contextlib.suppress(OSError, json.JSONDecodeError):
            record = json.loads(self.record_path.read_text())  # its handed-over state too
        return footprint_of(record, self.record_path)

    # ------------------------------------------------------------------ reserve
    def reserve(self) -> None:
        """Cleans dead stacks' leftovers, picks a slot and records the host state."""
        for binary in ("containerd", "ctr", "runc", "ip", "nft"):
            if not shutil.which(binary):
                raise ServerFailed(f"real node: `{binary}` is not installed — run "
                                   "`make stack-build` (tools/stack/build.sh debian)")
        if os.geteuid() != 0:
            raise ServerFailed("real node: needs root (cgroups, mounts, network namespaces)")
        # The kubelet binds <root-dir>/pod-resources/<10 digits>, containerd <socket>.ttrpc.
        longest = max(len(f"{self.workdir}/kubelet/pod-resources/0123456789"),
                      len(f"{self.socket}.ttrpc"))
        if longest > UNIX_PATH_MAX:
            raise ServerFailed(
                f"real node: the work dir {self.stack_workdir} is too long: unix socket paths "
                f"under it would be {longest} bytes (> {UNIX_PATH_MAX}); use a shorter one")
        self.address = node_ip()
        clean_leftovers(self.progress)
        with _registry_lock():
            taken = {r.get("slot") for _p, r in _records()}
            bridges = {link["ifname"] for link in hoststate.links()}
            memory = Path("/sys/fs/cgroup/memory")

            def free(i: int) -> bool:
                s = Slot(i)
                return (i not in taken and s.bridge not in bridges
                        and not (memory / s.cgroup_root.lstrip("/")).exists())

            wanted = [self.config.slot] if self.config.slot is not None else range(SLOTS)
            slot = next((i for i in wanted if free(i)), None)
            if slot is None:
                raise ServerFailed(
                    f"real node: no free slot in {list(wanted)} (each is a bridge cni-the0*, "
                    f"a subnet 10.89.N.0/24 and a cgroup root /the0-node-N; another stack's "
                    f"node or a foreign leftover holds them — see {REGISTRY})")
            self.slot = Slot(slot)
            REGISTRY.mkdir(mode=0o755, exist_ok=True)
            self.record_path = REGISTRY / f"node-{slot}.json"
            me = os.getpid()
            self.record = {
                "version": 1, "slot": slot, "node_name": self.name,
                "stack_workdir": str(self.stack_workdir), "workdir": str(self.workdir),
                "bridge": self.slot.bridge, "cgroup_root": self.slot.cgroup_root,
                "network": self.slot.network, "socket": str(self.socket), "ctr": self.ctr[0],
                "owner": {"pid": me, "start": start_time(me),
                          "state_file": str(self.owner_state_file or "") or None},
                "created": time.time(), "processes": [],
                "before": host_state_before(),
            }
            _save(self.record_path, self.record)

    def _remember(self, server: Server, key: str = "processes") -> None:
        """Adds a server to the record: read, change, write under the registry lock, as
        another stack's clean-up may be handing its host state over to this record."""
        assert self.record_path is not None
        entry = {"name": server.name, "pid": server.pid, "start": server.started,
                 "signal": int(server.stop_signal)}
        with self._record_lock, _registry_lock():
            with contextlib.suppress(OSError, json.JSONDecodeError):
                self.record = json.loads(self.record_path.read_text())
            self.record.setdefault(key, []).append(entry)
            _save(self.record_path, self.record)

    def remember_stack_server(self, server: Server) -> None:
        """The stack's other servers, so that a killed run's leftovers can be stopped too."""
        if self.record_path is not None:
            self._remember(server, "stack_processes")

    def _server(self, name: str, argv: list[str], probe: Callable[[], bool], timeout: float,
                env: dict[str, str] | None = None) -> None:
        server = Server(name=name, argv=argv, log=self.logs / f"{name}.log", env=env or {},
                        cwd=self.workdir)
        self.progress(f"starting {name}")
        started = time.monotonic()
        server.start()
        self.servers.append(server)
        self._remember(server)
        try:
            server.wait_ready(probe, timeout)
        except ServerFailed as exc:
            raise ServerFailed(f"real node {self.name}: {exc}") from None
        self.progress(f"{name} ready in {time.monotonic() - started:.1f} s")

    # ------------------------------------------------------------------ start
    def start_runtime(self, *, s3_port: int) -> None:
        """Bridge, CNI config, containerd, images, the S3 forwarder: nothing here needs the
        control plane, so the supervisor runs it in a thread while etcd and the API server
        start (the image import is most of the node's start-up time)."""
        assert self.slot is not None, "reserve() first"
        slot, w = self.slot, self.workdir
        w.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        self._bridge()
        self._write_cni_config()
        # containerd: everything under the work dir; its own socket.
        config = w / "containerd.toml"
        config.write_text(self._containerd_config())
        self._server("containerd", [shutil.which("containerd") or "containerd",
                                    "--config", str(config)],
                     probe=self._containerd_ready, timeout=30)
        self._import_images()
        # Pods reach versitygw on the bridge gateway (they cannot reach 127.0.0.1).
        self.s3_port = free_port(slot.gateway)
        self._server("s3-forwarder", [sys.executable, "-m", "tools.stack.forward",
                                      f"{slot.gateway}:{self.s3_port}=127.0.0.1:{s3_port}"],
                     env={"PYTHONPATH": str(REPO_ROOT)},
                     probe=lambda: _connects(slot.gateway, self.s3_port), timeout=15)
        self.progress(f"real node runtime (containerd, images, bridge) up in "
                      f"{time.monotonic() - began:.1f} s")

    def start_runtime_in_background(self, *, s3_port: int) -> None:
        def run() -> None:
            try:
                self.start_runtime(s3_port=s3_port)
            except BaseException as exc:  # handed to wait_runtime() in the main thread
                self._runtime_error = exc

        self._runtime_thread = threading.Thread(target=run, name="real-node-runtime",
                                                daemon=True)
        self._runtime_thread.start()

    def check_runtime(self) -> None:
        """Raises the runtime's start-up error as soon as there is one (without waiting), so a
        broken containerd fails the stack before the whole control plane has started."""
        if self._runtime_thread is not None and not self._runtime_thread.is_alive():
            self.wait_runtime()

    def wait_runtime(self) -> None:
        if self._runtime_thread is not None:
            self._runtime_thread.join()
            self._runtime_thread = None
        if self._runtime_error is not None:
            error, self._runtime_error = self._runtime_error, None
            raise error

    def start(self, *, api_url: str, ca_file: str, token: str, admin_token: str,
              serving_cert: str, serving_key: str) -> None:
        """The kubelet, once the runtime is up (`start_runtime`); returns when Ready."""
        self.wait_runtime()
        assert self.slot is not None
        slot, w = self.slot, self.workdir
        began = time.monotonic()
        kubeconfig = w / "kubelet.kubeconfig"
        certs.write_token_kubeconfig(kubeconfig, server=api_url, ca=ca_file, user=self.name,
                                     token=token)
        kubelet_config = w / "kubelet.json"
        kubelet_config.write_text(json.dumps(self._kubelet_config(ca_file, serving_cert,
                                                                  serving_key), indent=1))
        self._cgroup_root()
        self._server("kubelet", [
            str(self.kubelet), f"--config={kubelet_config}",
            f"--kubeconfig={kubeconfig}", f"--root-dir={w / 'kubelet'}",
            f"--cert-dir={w / 'kubelet-pki'}", f"--hostname-override={self.name}",
            f"--node-ip={self.address}", f"--node-labels={NODE_LABEL[0]}={NODE_LABEL[1]}",
            "--v=1",
        ], probe=lambda: self._node_ready(api_url, ca_file, admin_token),
            timeout=self.config.ready_timeout)
        self.progress(f"real node {self.name} Ready {time.monotonic() - began:.1f} s after "
                      f"its kubelet started "
                      f"(slot {slot.index}: bridge {slot.bridge}, pods reach S3 at "
                      f"{slot.gateway}:{self.s3_port})")

    def start_services(self, *, targets: dict[str, int], kube_proxy: Path, api_url: str,
                       ca_file: str, token: str, cluster_ip_range: str) -> dict[str, int]:
        """In-cluster mode: the servers in `targets` (name -> port on 127.0.0.1) forwarded onto
        the gateway, as S3 is, and kube-proxy, so Service IPs route (nftables mode; every
        Service connection masqueraded, so replies come back through the host without
        br_netfilter). Returns name -> port on the gateway. One kube-proxy per machine: its
        tables are host-wide."""
        assert self.slot is not None
        slot, w = self.slot, self.workdir
        if f"table ip {KUBE_PROXY_TABLE}" in hoststate.nft_objects():
            raise ServerFailed(
                f"real node {self.name}: nftables table `ip {KUBE_PROXY_TABLE}` exists: another "
                "kube-proxy (another in-cluster stack, or this host's own) runs here; one per "
                "machine")
        ports = {name: free_port(slot.gateway) for name in targets}
        self._server("service-forwarder", [
            sys.executable, "-m", "tools.stack.forward",
            *(f"{slot.gateway}:{ports[n]}=127.0.0.1:{port}" for n, port in targets.items())],
            env={"PYTHONPATH": str(REPO_ROOT)},
            probe=lambda: all(_connects(slot.gateway, p) for p in ports.values()), timeout=15)
        kubeconfig = w / "kube-proxy.kubeconfig"
        certs.write_token_kubeconfig(kubeconfig, server=api_url, ca=ca_file, user="kube-proxy",
                                     token=token)
        healthz = free_port("127.0.0.1")
        config = w / "kube-proxy.json"
        config.write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "mode": "nftables", "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": self.name, "clusterCIDR": slot.subnet,
            "nftables": {"masqueradeAll": True},
            # Zero: leave the host's conntrack sysctls alone (they are host-wide).
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s"},
            "healthzBindAddress": f"127.0.0.1:{healthz}",
            "metricsBindAddress": f"127.0.0.1:{free_port('127.0.0.1')}",
        }, indent=1))
        # Only `nft` on its PATH: at start kube-proxy also clears the iptables and IPVS
        # modes' rules (KUBE-* chains, every IPVS virtual server, after `modprobe ip_vs`),
        # which on a host that is itself a node would be that node's. Without the tools
        # those clean-ups are skipped; nftables mode needs nothing else.
        tools = w / "kube-proxy-path"
        tools.mkdir(exist_ok=True)
        nft = tools / "nft"
        if not nft.exists():
            nft.symlink_to(shutil.which("nft") or "/usr/sbin/nft")
        self._server("kube-proxy", [str(kube_proxy), f"--config={config}", "--v=1"],
                     probe=lambda: _healthy(f"http://127.0.0.1:{healthz}/healthz"), timeout=60,
                     env={"PATH": str(tools)})
        self.progress(f"real node {self.name}: kube-proxy routes Service IPs "
                      f"({cluster_ip_range}); on the pod network: "
                      + ", ".join(f"{n} {slot.gateway}:{p}" for n, p in ports.items()))
        return ports

    def _cgroup_root(self) -> None:
        """The kubelet's cgroupRoot must exist; made in every hierarchy, removed by cleanup."""
        assert self.slot is not None
        for hierarchy in hoststate.cgroup_hierarchies():
            with contextlib.suppress(OSError):
                (hierarchy / self.slot.cgroup_root.lstrip("/")).mkdir(exist_ok=True)

    def _bridge(self) -> None:
        """Our bridge with the gateway address, before CNI runs (the bridge plugin reuses an
        existing bridge) and before the forwarder binds the gateway."""
        assert self.slot is not None
        slot = self.slot
        for argv in (["ip", "link", "add", slot.bridge, "type", "bridge"],
                     ["ip", "link", "set", "dev", slot.bridge, "address", slot.bridge_mac],
                     ["ip", "addr", "add", f"{slot.gateway}/24", "dev", slot.bridge],
                     ["ip", "link", "set", slot.bridge, "up"]):
            result = _run(argv)
            if result.returncode != 0:
                raise ServerFailed(f"real node {self.name}: CNI bridge {slot.bridge}: "
                                   f"`{' '.join(argv)}` failed: {result.stderr.strip()}")

    def _write_cni_config(self) -> None:
        assert self.slot is not None
        conf_dir = self.workdir / "cni" / "net.d"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "10-the0.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": self.slot.network,
            "plugins": [{
                "type": "bridge", "bridge": self.slot.bridge,
                # Not the gateway: the bridge already has its address, and isGateway would
                # also switch on net.ipv4.ip_forward, which nothing here needs.
                "isGateway": False, "ipMasq": False, "hairpinMode": False,
                "ipam": {"type": "host-local",
                         "ranges": [[{"subnet": self.slot.subnet,
                                      "gateway": self.slot.gateway}]],
                         "routes": [{"dst": "0.0.0.0/0"}],
                         "dataDir": str(self.workdir / "cni" / "ipam")},
            }],
        }, indent=1))

    def _containerd_config(self) -> str:
        w = self.workdir
        c = f"{w}/containerd"
        return f"""version = 2
# Everything under the work dir; containerd 1.6 still uses /run/containerd/{{s,fifo}} for shim
# sockets and FIFOs whatever `state` says (clean-up removes /run/containerd if it was absent).
root = "{c}/root"
state = "{c}/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.socket}"

[ttrpc]
  address = "{self.socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{c}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # No registry: the pause image is built locally (trap 1).
  sandbox_image = "{images.pause_ref()}"
  # Root here lacks CAP_SYS_RESOURCE, so the CRI's -998 for sandboxes would fail every pod
  # (trap 3); this clamps scores to containerd's own.
  restrict_oom_score_adj = true
  # Pod network namespaces under the work dir, not /run/netns.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{w}/cni/net.d"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{c}/runc"

{self.config.containerd_extra}
"""

    def _containerd_ready(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(self.socket))
        return _run([*self.ctr, "version"], timeout=5).returncode == 0

    def _import_images(self) -> None:
        started = time.monotonic()
        try:
            wanted = images.ensure(build_expensive=False, progress=self.progress)
            images.import_images(self.ctr, wanted, self.logs / "image-import.log")
        except images.ImageBuildFailed as exc:
            raise ServerFailed(f"real node {self.name}: image import into containerd "
                               f"failed: {exc}") from None
        self.progress(f"{len(wanted)} images imported in {time.monotonic() - started:.1f} s")

    def _kubelet_config(self, ca_file: str, cert: str, key: str) -> dict[str, Any]:
        assert self.slot is not None
        w = self.workdir
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs", "cgroupRoot": self.slot.cgroup_root,
            # This VM boots cgroup v1 ("maintenance mode" upstream; still supported in 1.34).
            "failCgroupV1": False,
            # Bound on the node address (trap 2): the API server reaches it for logs/exec.
            "address": self.address, "port": free_port(self.address),
            "healthzBindAddress": "127.0.0.1", "healthzPort": free_port("127.0.0.1"),
            "readOnlyPort": 0,
            # Only the API server (client cert signed by the stack CA) may talk to it, and what
            # it may do is asked of the API server (SubjectAccessReview).
            "authentication": {"anonymous": {"enabled": False},
                               "webhook": {"enabled": False},
                               "x509": {"clientCAFile": ca_file}},
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": cert, "tlsPrivateKeyFile": key,
            # No KUBE-IPTABLES-HINT / KUBE-FIREWALL / canary chains: they serve kube-proxy and
            # DNAT to 127/8, neither of which exists here, and they are host-wide nftables.
            "makeIPTablesUtilChains": False,
            "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
            "podLogsDir": str(w / "pod-logs"),
            "volumePluginDir": str(w / "volume-plugins"),
            "resolvConf": "/etc/resolv.conf",
            "failSwapOn": False,
            # Root cannot lower oom_score_adj here (trap 3): keep the kubelet's own at 0.
            "oomScoreAdj": 0,
            # Images cannot be pulled back: never garbage-collect them; evict only when the
            # disk is really full.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%",
                             "imagefs.available": "2%", "nodefs.inodesFree": "2%"},
            "serializeImagePulls": False,
            "shutdownGracePeriod": "0s",
        }

    def _node_ready(self, api_url: str, ca_file: str, admin_token: str) -> bool:
        request = urllib.request.Request(f"{api_url}/api/v1/nodes/{self.name}")
        request.add_header("Authorization", f"Bearer {admin_token}")
        context = ssl.create_default_context(cafile=ca_file)
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                node = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"node {self.name} not registered (HTTP {exc.code})") from None
        ready = [c for c in node.get("status", {}).get("conditions", [])
                 if c["type"] == "Ready"]
        if ready and ready[0]["status"] == "True":
            return True
        raise RuntimeError(f"node {self.name} not Ready: "
                           + (ready[0].get("message", "") if ready else "no Ready condition"))

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Stops the node and restores the host (see `cleanup`)."""
        with contextlib.suppress(BaseException):
            self.wait_runtime()  # never clean up under a runtime that is still starting
        if self.record_path is not None:
            cleanup(self.record_path, self.progress, workdir=str(self.workdir))
        for server in self.servers:  # reap our children (already stopped by clean-up)
            server.stop(grace=1)
        self.servers.clear()
        self.record_path = None

    def log_tails(self) -> str:
        return "\n".join(f"--- {n} ---\n{log_tail(self.logs / f'{n}.log', 10)}"
                         for n in ("containerd", "kubelet"))


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return int(response.status) == 200


def _connects(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1):
        return True
