"""`python -m tools.image build` — the project's image from its own Dockerfile, with buildah.

No registry is reachable on these machines, so the Dockerfile's base (`debian:bookworm-slim`)
is the Debian stand-in of tools/stack/images.py (debootstrap, the same layer as every other
image of the real node), loaded into buildah's storage under the base's full name; the build
then runs with `--pull=never`. On a machine with a registry, `docker build .` or
`buildah bud .` builds the same Dockerfile from the real base.

The result is a docker-archive (`docker save` format) in the stack cache, keyed by the build's
content: the Dockerfile, .dockerignore, every file the build context holds and the base layer's
key. A second run with nothing changed is a no-op; buildah keeps its layers (`--layers`), so a
code change reruns only the steps after the COPY of the code (seconds) and a changed lock file
reinstalls the dependencies (about a minute). `ctr images import <archive>` puts it on a node.

Stdlib only, like tools/stack/images.py: it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

from tools.stack import images
from tools.stack.paths import REPO_ROOT, cache_dir

IMAGE_NAME = "the0/the0-k8s"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
BASE_REF = "debian:bookworm-slim"  # the Dockerfile's default BASE_IMAGE
BASE_FULL_NAME = f"docker.io/library/{BASE_REF}"


class ImageBuildFailed(RuntimeError):
    """buildah failed; the message carries its log tail."""


def image_ref() -> str:
    """`the0/the0-k8s:<project version>`: the tag k8s/kustomization.yaml deploys."""
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    return f"{IMAGE_NAME}:{version}"


def _ignore_rules(root: Path) -> list[tuple[bool, str]]:
    """(excluded, pattern) per .dockerignore line, in order; the last match wins."""
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((not line.startswith("!"), line.lstrip("!").rstrip("/")))
    return rules


def _excluded(rel: str, rules: list[tuple[bool, str]]) -> bool:
    """Docker's matching for the patterns .dockerignore uses (`*`, `!dir/`, `**/name`): a path
    matches a pattern, or lies under a directory that does. (fnmatch's `*` also crosses `/`,
    which is Docker's `**`: keep patterns to these shapes, test_image_context checks them.)"""
    excluded = False
    for exclude, pattern in rules:
        bare = pattern.removeprefix("**/")
        if (fnmatch.fnmatch(rel, pattern) or rel.startswith(pattern + "/")
                or (pattern.startswith("**/") and any(
                    fnmatch.fnmatch(part, bare) for part in rel.split("/")))):
            excluded = exclude
    return excluded


def context_files(root: Path = REPO_ROOT) -> list[Path]:
    """The files of the build context that .dockerignore lets through (what COPY can see)."""
    rules = _ignore_rules(root)
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith((".git/", ".venv", ".stack/", "mutants/", ".mutate")):
            continue
        if path.is_file() and not _excluded(rel, rules):
            found.append(path)
    return found


def content_key(root: Path = REPO_ROOT) -> str:
    digest = hashlib.sha256()
    for path in (root / DOCKERFILE.name, root / DOCKERIGNORE.name, *context_files(root)):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(images.layers()["base"].key.encode())
    return digest.hexdigest()[:16]


def archive_path(key: str | None = None) -> Path:
    return cache_dir() / "images" / "app" / f"the0-k8s-{key or content_key()}.tar"


def _snapshot(into: Path) -> Path:
    """The build context copied (the files the key hashes, nothing else): what is built is
    exactly what its key names, even if the tree changes during the build."""
    for path in (DOCKERFILE, DOCKERIGNORE, *context_files()):
        target = into / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return into


def _storage() -> Path:
    return cache_dir() / "buildah"


def buildah() -> list[str]:
    """buildah on its own storage in the stack cache (overlay: needs root, as the node does)."""
    storage = _storage()
    return ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run"),
            "--storage-driver", "overlay"]


def _host_ca_bundle() -> Path | None:
    """The CA bundle this machine's pip trusts (PIP_CERT, SSL_CERT_FILE), if it names one:
    some networks reach PyPI only through a TLS-inspecting proxy whose CA the base lacks."""
    for name in ("PIP_CERT", "SSL_CERT_FILE"):
        value = os.environ.get(name, "")
        if value and Path(value).is_file():
            return Path(value)
    return None


def _run(argv: list[str], log: Path, what: str) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise ImageBuildFailed(f"{what} exited with code {result.returncode}.\n"
                               f"--- last lines of {log} ---\n{tail}")


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One build at a time (two test sessions may ask for the image together)."""
    _storage().mkdir(parents=True, exist_ok=True)
    with (_storage() / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load_base(log: Path) -> None:
    """The Debian stand-in into buildah's storage, under the name the Dockerfile's FROM uses."""
    base = next(i for i in images.images() if i.ref == BASE_REF)
    images.ensure(build_expensive=True, wanted=[base])
    with tempfile.NamedTemporaryFile(suffix=".tar", dir=_storage()) as tmp:
        images.write_archive(tmp, [base])
        tmp.flush()
        _run([*buildah(), "pull", "--quiet", f"docker-archive:{tmp.name}"], log,
             "buildah pull (the Debian base)")
    _run([*buildah(), "tag", f"localhost/{BASE_REF}", BASE_FULL_NAME], log, "buildah tag")


def build(progress: Callable[[str], None] = lambda _m: None) -> Path:
    """The image's archive, built when its content key has none yet."""
    out = archive_path()
    if out.exists():
        return out
    with _locked(), tempfile.TemporaryDirectory(dir=_storage()) as tmp:
        context = _snapshot(Path(tmp) / "context")
        out = archive_path(content_key(context))
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        log = cache_dir() / "logs" / "image-build.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        started = time.monotonic()
        progress(f"building {image_ref()} from the Dockerfile with buildah "
                 f"(first time: ~2 min; log: {log})")
        _load_base(log)
        ca = _host_ca_bundle()
        ca_args = (["--build-arg", "PIP_CERT=/run/host-ca.crt",
                    "--volume", f"{ca}:/run/host-ca.crt:ro"] if ca else [])
        _run([*buildah(), "bud", "--pull=never", "--isolation", "chroot", "--network", "host",
              "--layers", *ca_args, "--tag", image_ref(),
              "--file", str(context / DOCKERFILE.name), str(context)], log, "buildah bud")
        pushed = out.with_suffix(".tmp")
        pushed.unlink(missing_ok=True)
        _run([*buildah(), "push", "--quiet", f"localhost/{image_ref()}",
              f"docker-archive:{pushed}:{image_ref()}"], log, "buildah push (the archive)")
        pushed.rename(out)
        for old in out.parent.glob("the0-k8s-*.tar"):
            # A day old: no test that asked for it a moment ago is still importing it.
            if old != out and time.time() - old.stat().st_mtime > 86400:
                old.unlink(missing_ok=True)
        progress(f"{image_ref()} built in {time.monotonic() - started:.0f} s: {out} "
                 f"({out.stat().st_size / 1e6:.0f} MB)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.image", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the image (no-op when its content is built)")
    sub.add_parser("path", help="print the archive's path (built or not)")
    args = parser.parse_args(argv)
    if args.command == "path":
        print(archive_path())
        return 0
    try:
        build(lambda m: print(f"[image {time.strftime('%H:%M:%S')}] {m}", flush=True))
    except (ImageBuildFailed, images.ImageBuildFailed) as exc:
        print(f"IMAGE BUILD FAILED: {exc}", file=sys.stderr)
        return 1
    return 0
