"""Where the stack's pinned binaries live; reads tools/stack/versions.env (the one pin file)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

STACK_DIR = Path(__file__).resolve().parent
REPO_ROOT = STACK_DIR.parent.parent
VERSIONS_FILE = STACK_DIR / "versions.env"
BUILD_SCRIPT = STACK_DIR / "build.sh"


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Parses the KEY=value lines of versions.env (comments and blanks ignored)."""
    versions: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        versions[key.strip()] = value.strip().strip('"')
    return versions


def cache_dir() -> Path:
    return Path(os.environ.get("THE0_STACK_CACHE", Path.home() / ".cache" / "the0-k8s-stack"))


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of every server binary the stack runs."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kubelet: Path
    kube_proxy: Path  # only for the in-cluster stack (Services); one per machine at a time
    helm: Path  # renders charts/ in the tests that compare it with k8s/
    etcd: Path
    kwok: Path
    kwok_stages: Path
    kwok_crds: Path
    ferretdb: Path
    versitygw: Path
    redis_server: Path
    nats_server: Path
    postgres: Path  # Debian's postgresql: the server, initdb and psql (FerretDB's backend)
    initdb: Path
    psql: Path
    kubernetes_version: str

    def missing(self) -> list[str]:
        return [
            f"{name} ({path})"
            for name, path in vars(self).items()
            if isinstance(path, Path) and not path.exists()
        ]


def compose_config() -> Path:
    """tools/compose-config built by build.sh (`docker compose config`'s loader)."""
    return _tool_built_from_source("compose-config", ("go.mod", "go.sum", "main.go"))


def gojson_oracle() -> Path:
    """tools/gojson-oracle built by build.sh (json.Marshal as the0's Go runtime does it)."""
    return _tool_built_from_source("gojson-oracle", ("go.mod", "main.go"))


def _tool_built_from_source(name: str, sources: tuple[str, ...]) -> Path:
    # build.sh keys these folders by the hash of the tool's sources, in this order.
    import hashlib

    src = STACK_DIR.parent / name
    digest = hashlib.sha256(b"".join((src / file).read_bytes() for file in sources)).hexdigest()
    return cache_dir() / "bin" / f"{name}-{digest[:12]}" / name


def _which(name: str) -> Path:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/usr/local/bin")
    return Path(found) if found else Path(f"/usr/bin/{name}")


def postgres_bindir() -> Path:
    """Debian keeps PostgreSQL's server programs off PATH, in /usr/lib/postgresql/<major>/bin
    (bookworm: 15); elsewhere `pg_config --bindir` says where they are."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")
             if p.parent.parent.name.isdigit()]
    if found:
        return max(found, key=lambda p: int(p.parent.name))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and (Path(out) / "postgres").exists():
            return Path(out)
    return Path("/usr/lib/postgresql/15/bin")  # where bookworm's package puts them


def binaries() -> Binaries:
    v = read_versions()
    bin_dir = cache_dir() / "bin"
    kube = bin_dir / f"kubernetes-{v['KUBERNETES_VERSION']}"
    kwok = bin_dir / f"kwok-{v['KWOK_VERSION']}-{v['KWOK_PATCH']}"
    pg = postgres_bindir()
    return Binaries(
        kube_apiserver=kube / "kube-apiserver",
        kube_controller_manager=kube / "kube-controller-manager",
        kube_scheduler=kube / "kube-scheduler",
        kubectl=kube / "kubectl",
        kubelet=kube / "kubelet",
        kube_proxy=kube / "kube-proxy",
        helm=bin_dir / f"helm-{v['HELM_VERSION']}" / "helm",
        etcd=bin_dir / f"etcd-{v['ETCD_VERSION']}" / "etcd",
        kwok=kwok / "kwok",
        kwok_stages=kwok / "stages",
        kwok_crds=kwok / "crds",
        ferretdb=bin_dir / f"ferretdb-{v['FERRETDB_VERSION']}-{v['FERRETDB_PATCH']}" / "ferretdb",
        versitygw=bin_dir / f"versitygw-{v['VERSITYGW_VERSION']}" / "versitygw",
        redis_server=_which("redis-server"),
        nats_server=_which("nats-server"),
        postgres=pg / "postgres",
        initdb=pg / "initdb",
        psql=pg / "psql",
        kubernetes_version=v["KUBERNETES_VERSION"],
    )
