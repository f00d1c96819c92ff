"""The host state a real node touches, as plain data.

The real node (kubelet + containerd + CNI) changes the machine: mounts, a bridge and veths,
network namespaces, sysctls, nftables chains, cgroups, directories outside its work dir and
processes. `snapshot()` lists all of them so a test can compare before/after a stack's up/down,
ignoring what another running stack owns (`Footprint`). `python -m tools.stack.hoststate`
prints a snapshot, leaving out what the stacks running now own (unless `--all`); `--diff FILE`
compares the host with an earlier snapshot (exit 1 if different).

Readers and small writers only; what to undo, and when, is realnode.py's business.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# What the kubelet (protectKernelDefaults: false) and the bridge plugin may change.
SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops",
           "net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables",
           "net.bridge.bridge-nf-call-ip6tables", "net.bridge.bridge-nf-call-arptables")
# Paths outside the node's work dir that the kubelet, containerd or CNI create whatever their
# settings say (device-plugins, /run/containerd/{s,fifo}, go-cni's cache, container log links).
HOST_PATHS = ("/var/lib/kubelet", "/var/lib/cni", "/run/containerd", "/usr/libexec/kubernetes",
              "/var/log/containers", "/var/log/pods", "/run/netns", "/opt/containerd",
              "/var/lib/containerd", "/etc/cni", "/opt/cni", "/etc/kubernetes")
# Long-lived processes a stack starts. (Not runc: it lives for milliseconds while a container
# starts; a container process left behind keeps its cgroup, which the cgroups list shows.)
PROCESS_NAMES = ("containerd", "containerd-shim", "kubelet", "pause", "redis-server",
                 "nats-server", "etcd", "kube-apiserver", "kube-controller", "kube-scheduler",
                 "kwok", "ferretdb", "versitygw", "postgres", "kube-proxy")


@dataclass(frozen=True)
class Footprint:
    """What a running stack owns, so a snapshot taken beside it can leave it out."""

    prefixes: tuple[str, ...] = ()        # its work dir: mounts, netns, log links under it
    bridges: tuple[str, ...] = ()         # its bridge (and the veths on it)
    cgroup_roots: tuple[str, ...] = ()    # its kubelet's cgroup root
    nodes: tuple[tuple[str, str], ...] = ()  # (node work dir, containerd socket) pairs
    pids: frozenset[int] = field(default_factory=frozenset)  # its servers
    cni_networks: tuple[str, ...] = ()    # its CNI network name (go-cni cache entries)
    # Host paths its node created and will remove when it stops (/run/containerd, ...): their
    # directories are its; files in them are still checked against everyone else.
    host_paths: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # its own files elsewhere (its record in /run/the0-k8s-stack)

    def merged(self, other: Footprint) -> Footprint:
        return Footprint(self.prefixes + other.prefixes, self.bridges + other.bridges,
                         self.cgroup_roots + other.cgroup_roots, self.nodes + other.nodes,
                         self.pids | other.pids, self.cni_networks + other.cni_networks,
                         self.host_paths + other.host_paths, self.files + other.files)

    def owns_path(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.prefixes)

    @property
    def sockets(self) -> tuple[str, ...]:
        return tuple(sock for _dir, sock in self.nodes)

    def owned_names(self) -> set[str]:
        """File names its node puts in shared host dirs: go-cni cache entries name the pod
        sandbox, shim sockets are a hash of (socket, namespace, sandbox)."""
        names = set()
        for node_dir, sock in self.nodes:
            for sandbox in sandbox_ids(node_dir):
                names.add(sandbox)
                names.add(Path(shim_socket(sock, sandbox)).name)
        return names


# ---------------------------------------------------------------------------- sysctls
def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls(names: Iterable[str] = SYSCTLS) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for name in names:
        try:
            values[name] = _sysctl_path(name).read_text().strip()
        except OSError:
            values[name] = None  # e.g. br_netfilter not loaded
    return values


def write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        if _sysctl_path(name).read_text().strip() != value:
            _sysctl_path(name).write_text(value + "\n")


# ---------------------------------------------------------------------------- mounts, cgroups
def mount_points() -> list[str]:
    """Mount points in mount order (/proc/self/mountinfo), octal escapes decoded."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        raw = line.split()[4]
        points.append(raw.encode().decode("unicode_escape"))
    return points


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, name=systemd, the v2 unified one)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] in (["cgroup"], ["cgroup2"]):
            found.append(Path(left.split()[4]))
    return found


def _cgroup_dirs(depth: int) -> list[str]:
    dirs = []
    for hierarchy in cgroup_hierarchies():
        stack = [(hierarchy, 0)]
        while stack:
            path, level = stack.pop()
            with contextlib.suppress(OSError), os.scandir(path) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        rel = "/" + str(Path(entry.path).relative_to(hierarchy))
                        dirs.append(f"{hierarchy.name}:{rel}")
                        if level + 1 < depth or "kubepods" in rel:
                            stack.append((Path(entry.path), level + 1))
    return sorted(dirs)


def processes_in_cgroup(root: str) -> set[int]:
    """Every pid in `root` or below, in any hierarchy."""
    pids: set[int] = set()
    for hierarchy in cgroup_hierarchies():
        base = hierarchy / root.lstrip("/")
        if not base.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(base):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in
                                Path(dirpath, "cgroup.procs").read_text().split())
    return pids


# ---------------------------------------------------------------------------- network
def links() -> list[dict[str, Any]]:
    out = subprocess.run(["ip", "-j", "-d", "link", "show"], capture_output=True, text=True,
                         check=False).stdout
    try:
        return list(json.loads(out or "[]"))
    except json.JSONDecodeError:
        return []


def nft_ruleset() -> list[dict[str, Any]]:
    out = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True,
                         check=False).stdout
    try:
        return list(json.loads(out or "{}").get("nftables", []))
    except json.JSONDecodeError:
        return []


def nft_objects() -> list[str]:
    """Tables, chains and rules (without handles) as comparable strings."""
    objects = []
    for item in nft_ruleset():
        if "table" in item:
            t = item["table"]
            objects.append(f"table {t['family']} {t['name']}")
        elif "chain" in item:
            c = item["chain"]
            objects.append(f"chain {c['family']} {c['table']} {c['name']}")
        elif "rule" in item:
            r = item["rule"]
            objects.append(f"rule {r['family']} {r['table']} {r['chain']} "
                           f"{json.dumps(r.get('expr'), sort_keys=True)}")
    return sorted(objects)


# ---------------------------------------------------------------------------- processes
def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def sandbox_ids(node_dir: str) -> set[str]:
    """Pod sandbox ids of the containerd rooted in `node_dir` (its CRI keeps a directory per
    sandbox in its root and state dirs, still there after a crash)."""
    found: set[str] = set()
    for sub in ("root", "state"):
        with contextlib.suppress(OSError):
            found.update(p.name for p in (Path(node_dir) / "containerd" / sub /
                                          "io.containerd.grpc.v1.cri" / "sandboxes").iterdir())
    return found


def shim_socket(containerd_socket: str, task_id: str, namespace: str = "k8s.io") -> str:
    """Where containerd 1.6 puts a shim's socket, whatever its `state` setting says:
    /run/containerd/s/<sha256(socket/namespace/id)> (runtime/v2/shim SocketAddress)."""
    digest = hashlib.sha256(os.path.join(containerd_socket, namespace, task_id).encode())
    return f"/run/containerd/s/{digest.hexdigest()}"


def all_pids() -> list[int]:
    return sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())


def shims_of(socket: str) -> list[int]:
    """containerd shims serving the containerd at `socket` (they name it in `-address`)."""
    found = []
    for pid in all_pids():
        argv = _cmdline(pid)
        if argv and "containerd-shim" in argv[0] and socket in argv:
            found.append(pid)
    return found


def _process_table() -> dict[int, tuple[str, list[str], int]]:
    """pid → (comm, argv, parent) of every live process, read in one pass (zombies have
    exited: one waiting for init to reap it is not left behind)."""
    table = {}
    for pid in all_pids():
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                table[pid] = (_comm(pid), _cmdline(pid), int(fields[1]))
    return table


def _in_cgroups(pid: int, roots: tuple[str, ...]) -> bool:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    paths = [line.split(":", 2)[2] for line in lines if line.count(":") >= 2]
    return any(path == r or path.startswith(r + "/") for path in paths for r in roots)


def _stack_processes(ignore: Footprint) -> list[str]:
    """Servers and containers' processes, minus those of `ignore`'s stacks: their servers,
    their shims (which name their containerd's socket) and everything below, and whatever
    runs in their cgroups."""
    table = _process_table()
    roots = set(ignore.pids) | {
        pid for pid, (_name, argv, _parent) in table.items()
        if argv and "containerd-shim" in argv[0] and any(s in argv for s in ignore.sockets)}
    ignored = set(roots) | {os.getpid()}
    changed = True
    while changed:
        changed = False
        for pid, entry in table.items():
            if entry[2] in ignored and pid not in ignored:
                ignored.add(pid)
                changed = True
    found = []
    for pid, (comm, argv, _ppid) in table.items():
        if pid in ignored:
            continue
        if not (any(comm.startswith(n) for n in PROCESS_NAMES)
                or any("tools.stack" in a for a in argv[:3])):
            continue
        if ignore.cgroup_roots and _in_cgroups(pid, ignore.cgroup_roots):
            continue
        found.append(f"{pid} {comm}")
    return sorted(found)


# ---------------------------------------------------------------------------- snapshot
DEEP_PATHS = ("/var/lib/kubelet", "/var/lib/cni", "/run/containerd")  # listed two levels deep
DEVICE_PLUGINS = "/var/lib/kubelet/device-plugins"  # kubelet.sock: not configurable


def _path_entries(path: str, ignore: Footprint, owned: set[str]) -> list[str]:
    def theirs(child: Path) -> bool:
        if child.is_symlink():  # e.g. /var/log/containers links into its pod logs
            with contextlib.suppress(OSError):
                return ignore.owns_path(os.readlink(child))
        if str(child.parent) == DEVICE_PLUGINS and ignore.nodes:
            return True  # one hard-coded dir for every kubelet: the last one started owns it
        return (any(child.name.startswith(n + "-") for n in ignore.cni_networks)
                or child.name in owned or any(f"-{i}-" in child.name for i in owned)
                or (str(child.parent) in ignore.host_paths and child.is_dir()))

    p = Path(path)
    if not p.exists() and not p.is_symlink():
        return []
    entries = [] if path in ignore.host_paths else [path]
    with contextlib.suppress(OSError):
        for child in sorted(p.iterdir()):
            if not theirs(child):
                entries.append(str(child))
            if child.is_dir() and not child.is_symlink() and path in DEEP_PATHS:
                entries.extend(str(c) for c in sorted(child.iterdir()) if not theirs(c))
    return entries


def snapshot(ignore: Footprint = Footprint()) -> dict[str, list[str]]:
    """Everything a real node may leave behind, minus what `ignore`'s stack owns."""
    owned = ignore.owned_names()
    link_list = links()
    return {
        "mounts": sorted(m for m in mount_points() if not ignore.owns_path(m)),
        "links": sorted(
            f"{lk['ifname']} {lk.get('linkinfo', {}).get('info_kind', '')}"
            f" master={lk.get('master', '')}"
            for lk in link_list
            if lk["ifname"] not in ignore.bridges and lk.get("master") not in ignore.bridges),
        "netns": sorted(p.name for p in Path("/run/netns").glob("*"))
        if Path("/run/netns").is_dir() else [],
        "sysctls": [f"{k}={v}" for k, v in read_sysctls().items()],
        "nft": nft_objects(),
        "cgroups": [c for c in _cgroup_dirs(depth=2)
                    if not any(c.split(":", 1)[1] == r or c.split(":", 1)[1].startswith(r + "/")
                               for r in ignore.cgroup_roots)],
        "processes": _stack_processes(ignore),
        "paths": [e for path in HOST_PATHS for e in _path_entries(path, ignore, owned)]
        + (sorted(str(p) for p in Path("/run/the0-k8s-stack").iterdir()
                  if str(p) not in ignore.files)
           if Path("/run/the0-k8s-stack").is_dir() else []),
    }


def diff(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    """Human-readable differences: `+ kind: item` appeared, `- kind: item` disappeared."""
    lines = []
    for kind in sorted(set(before) | set(after)):
        old, new = set(before.get(kind, [])), set(after.get(kind, []))
        lines += [f"+ {kind}: {item}" for item in sorted(new - old)]
        lines += [f"- {kind}: {item}" for item in sorted(old - new)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.stack.hoststate",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diff", metavar="FILE", help="compare with an earlier snapshot")
    parser.add_argument("--all", action="store_true",
                        help="include what running stacks own (default: leave it out)")
    args = parser.parse_args(argv)
    from tools.stack import realnode  # here: realnode builds on this module

    now = snapshot(Footprint() if args.all else realnode.live_footprint())
    if not args.diff:
        print(json.dumps(now, indent=1))
        return 0
    changes = diff(json.loads(Path(args.diff).read_text()), now)
    print("\n".join(changes) if changes else "no difference")
    return 1 if changes else 0


if __name__ == "__main__":
    sys.exit(main())
