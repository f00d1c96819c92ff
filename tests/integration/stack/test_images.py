"""The real node's images: docker-save archives, layer caching keyed by recipe and inputs.
(No stack needed: these run against a throw-away cache.)"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tools.stack import images
from tools.stack.images import Image, ImageBuildFailed, Layer


def _layer(name: str, content: bytes, *, expensive: bool = False) -> Layer:
    def build(out: Path, _log: Path) -> None:
        with tarfile.open(out, "w") as tar:
            info = tarfile.TarInfo(f"{name}.txt")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))

    return Layer(name, (name, content.decode()), build, expensive=expensive)


def test_archive_is_docker_save_format_with_shared_layers_written_once(tmp_path: Path) -> None:
    base, extra = _layer("base", b"shared"), _layer("extra", b"only in b")
    wanted = [Image("local/a:1", (base,), {"Cmd": ["a"]}),
              Image("python:3.11-slim-bookworm", (base, extra), {"Env": ["X=1"]})]
    images.ensure(build_expensive=False, cache=tmp_path, wanted=wanted)
    archive = tmp_path / "out.tar"
    with archive.open("wb") as out:
        images.write_archive(out, wanted, tmp_path)

    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert [m["RepoTags"] for m in manifest] == [["local/a:1"],
                                                     ["python:3.11-slim-bookworm"]]
        assert len([n for n in names if n.endswith("/layer.tar")]) == 2  # base written once
        for entry in manifest:
            config = json.load(tar.extractfile(entry["Config"]))  # type: ignore[arg-type]
            digests = [hashlib.sha256(tar.extractfile(layer).read()).hexdigest()  # type: ignore[union-attr]
                       for layer in entry["Layers"]]
            assert config["rootfs"]["diff_ids"] == [f"sha256:{d}" for d in digests]
            assert config["os"] == "linux" and config["architecture"] == "amd64"
        assert manifest[0]["Layers"][0] == manifest[1]["Layers"][0]


def test_missing_expensive_layer_names_the_build_command(tmp_path: Path) -> None:
    wanted = [Image("local/x:1", (_layer("rootfs", b"big", expensive=True),), {})]
    with pytest.raises(ImageBuildFailed, match="make stack-build"):
        images.ensure(build_expensive=False, cache=tmp_path, wanted=wanted)
    images.ensure(build_expensive=True, cache=tmp_path, wanted=wanted)
    assert wanted[0].layers[0].built(tmp_path)


def test_botpod_layer_is_cheap_and_keyed_by_its_sources(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "botpod"
    (src / "sub").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "sub" / "x.py").write_text("A = 1\n")
    monkeypatch.setattr(images, "BOTPOD_SRC", src)
    first = images.layers()["botpod"]
    assert not first.expensive
    (src / "sub" / "x.py").write_text("A = 2\n")
    second = images.layers()["botpod"]
    assert second.key != first.key
    assert images.layers()["base"].key == images.layers()["base"].key  # the rest stays put

    cache = tmp_path / "cache"
    the0 = next(i for i in images.images() if i.ref == "the0/the0-k8s:latest")
    images.ensure(build_expensive=False, cache=cache,
                  wanted=[Image(the0.ref, (second,), the0.config)])
    with tarfile.open(second.path(cache)) as tar:
        assert "opt/the0/lib/botpod/sub/x.py" in tar.getnames()
        assert tar.extractfile("opt/the0/lib/botpod/sub/x.py").read() == b"A = 2\n"  # type: ignore[union-attr]
    assert "PYTHONPATH=/opt/the0/lib" in the0.config["Env"]


def test_the_product_images_have_the_names_pod_specs_use() -> None:
    assert [i.ref for i in images.images()] == [
        "local/pause:3.10", "python:3.11-slim-bookworm", "node:20-bookworm-slim",
        "debian:bookworm-slim", "gcc:13-bookworm", "the0/the0-k8s:latest"]
    by_ref = {i.ref: i for i in images.images()}
    base = by_ref["python:3.11-slim-bookworm"].layers[0]
    # One Debian base under every runtime image: containerd stores and unpacks it once.
    assert all(i.layers[0] == base for i in images.images() if i.ref != "local/pause:3.10")
