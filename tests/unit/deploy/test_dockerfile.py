"""The Dockerfile, checked statically (the in-cluster test builds and runs it: tools/image).

Debian slim base, a non-root final user, nothing secret baked in, and the image holds exactly
the packages the processes import.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "Dockerfile"

SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE|MONGO_URI|AUTH",
                          re.IGNORECASE)
# Debian 12 slim (Debian's own python3 is installed on it), optionally pinned by digest.
DEBIAN_SLIM = re.compile(r"^debian:bookworm(-\d{8})?-slim(@sha256:[0-9a-f]{64})?$")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: comments dropped, continuations joined."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def base_images(text: str) -> list[str]:
    """Every FROM, with ARG defaults substituted; stage names resolved to their image."""
    args: dict[str, str] = {}
    stages: dict[str, str] = {}
    images = []
    for word, rest in instructions(text):
        if word == "ARG" and "=" in rest and not images:
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip().strip('"')
        elif word == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)),
                           parts[0])
            image = stages.get(image, image)
            images.append(image)
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages[parts[2]] = image
    return images


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def check(text: str) -> list[str]:
    """Every problem of a Dockerfile against our rules (empty: fine)."""
    problems = []
    images = base_images(text)
    if not images:
        problems.append("no FROM")
    for image in images:
        if not DEBIAN_SLIM.match(image):
            problems.append(f"base image {image!r} is not Debian 12 slim")
    users = [rest for word, rest in final_stage(text) if word == "USER"]
    if not users:
        problems.append("the final stage has no USER: it would run as root")
    else:
        user = users[-1].split(":")[0]
        if not user.isdigit() or int(user) == 0:
            problems.append(f"final USER {users[-1]!r} must be a numeric non-zero uid "
                            "(runAsNonRoot can only verify a numeric one)")
    for word, rest in instructions(text):
        if word in ("ENV", "ARG", "LABEL") and SECRET_WORDS.search(rest):
            problems.append(f"{word} {rest!r} looks like a secret baked into the image")
        if word in ("COPY", "ADD") and re.search(r"(^|\s)\.env|\.pem|id_rsa|kubeconfig", rest):
            problems.append(f"{word} {rest!r} copies a credential file")
        if word == "ADD" and re.search(r"https?://", rest):
            problems.append(f"ADD {rest!r} downloads at build time; pin and verify instead")
    if not any(word in ("CMD", "ENTRYPOINT") for word, _ in final_stage(text)):
        problems.append("no CMD or ENTRYPOINT")
    return problems


def test_dockerfile_is_pinned_slim_non_root_and_secret_free() -> None:
    assert check(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(("mutation", "problem"), [
    (lambda t: t.replace("debian:bookworm-slim", "python:3.11-slim"), "Debian 12 slim"),
    (lambda t: t.replace("debian:bookworm-slim", "debian:latest"), "Debian 12 slim"),
    (lambda t: t.replace("USER 10001:10001", "USER root"), "numeric non-zero"),
    (lambda t: t.replace("USER 10001:10001", ""), "no USER"),
    (lambda t: t + "ENV MINIO_SECRET_KEY=hunter2\n", "secret"),
    (lambda t: t + "COPY .env /app/.env\n", "credential file"),
])
def test_the_check_catches_what_it_should(mutation: object, problem: str) -> None:
    mutated = mutation(DOCKERFILE.read_text())  # type: ignore[operator]
    assert any(problem in p for p in check(mutated)), check(mutated)


def test_image_holds_the_packages_the_processes_import() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]
                ["include"]}
    copied = {rest.split()[0].rstrip("/") for word, rest in instructions(DOCKERFILE.read_text())
              if word == "COPY" and "--from" not in rest}
    assert packages <= copied, f"not copied into the image: {packages - copied}"
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, ".dockerignore must start from nothing (`*`): .env, .venv, .stack out"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == packages | {"pyproject.toml", "README.md", "requirements.lock"}
    # Everything the Dockerfile copies from the context passes .dockerignore (a COPY of an
    # ignored file fails the build: requirements.lock once did).
    sources = {src for word, rest in instructions(DOCKERFILE.read_text())
               if word == "COPY" and "--from" not in rest for src in rest.split()[:-1]}
    assert {s.rstrip("/") for s in sources} <= allowed
