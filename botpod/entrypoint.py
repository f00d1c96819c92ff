"""The runtime table, the check of ENTRYPOINT, and writing `entrypoint.sh` with its wrapper.

`entrypoint.sh` is run by the bot container as `sh <code dir>/entrypoint.sh`. Python and Node
bots run through a wrapper (package data in botpod/wrappers/, copied to `<code dir>/.the0/`);
compiled bots are exec'd directly, so they get SIGTERM themselves.

Must NOT: let ENTRYPOINT reach the script unquoted or point outside the code directory;
overwrite user files other than entrypoint.sh and result.json; put BOT_CONFIG in the script.
"""

import os
import posixpath
import shlex
from dataclasses import dataclass
from importlib import resources

from botpod.console import shown
from botpod.errors import BotpodError

SCRIPT_NAME = "entrypoint.sh"
RESULT_NAME = "result.json"
WRAPPER_DIR = ".the0"


@dataclass(frozen=True)
class Runtime:
    """How one runtime starts: a wrapper interpreted by `command`, or the artefact itself."""

    command: tuple[str, ...]  # () = exec the artefact
    wrapper: str | None  # package data file copied to <code dir>/.the0/
    default_entry: str | None
    executable: bool  # the artefact needs +x


RUNTIMES: dict[str, Runtime] = {
    # -u: unbuffered stdout/stderr, so each log line reaches the kubelet at once.
    "python3.11": Runtime(("python3", "-u"), "wrapper.py", "main.py", False),
    # .cjs: CommonJS even when the bot's package.json says "type": "module".
    "nodejs20": Runtime(("node",), "wrapper.cjs", "index.js", False),
    "rust-stable": Runtime((), None, None, True),
    "gcc13": Runtime((), None, None, True),
    "cpp-gcc13": Runtime((), None, None, True),
    "ghc96": Runtime((), None, None, True),
    "dotnet8": Runtime(("dotnet",), None, None, False),
    "scala3": Runtime(("java", "-jar"), None, None, False),
}


def runtime_for(name: str) -> Runtime:
    """The runtime called `name`; BotpodError naming the known ones otherwise."""
    runtime = RUNTIMES.get(name)
    if runtime is None:
        known = ", ".join(sorted(RUNTIMES))
        raise BotpodError(f"unknown RUNTIME {shown(name)} (known: {known})")
    return runtime


def entry_path(runtime: Runtime, entrypoint: str) -> str:
    """ENTRYPOINT (or the runtime's default) as a normalized path inside the code directory."""
    entry = entrypoint or runtime.default_entry
    if not entry:
        raise BotpodError("ENTRYPOINT is not set (this runtime has no default entry file)")
    if "\0" in entry or entry.startswith("/") or ".." in entry.split("/") or "\\" in entry:
        raise BotpodError(
            f"ENTRYPOINT {shown(entry)} must be a relative path inside the code, without '..'"
        )
    relative = posixpath.normpath(entry)
    reserved = relative in (SCRIPT_NAME, RESULT_NAME) or relative.split("/")[0] == WRAPPER_DIR
    if relative == "." or reserved:
        raise BotpodError(f"ENTRYPOINT {shown(entry)} names no bot file")
    return relative


def install(code_dir: str, runtime_name: str, runtime: Runtime, entry: str) -> str:
    """Check the entry file, write the wrapper and entrypoint.sh; return the script's path."""
    target = os.path.join(code_dir, entry)
    real_code = os.path.realpath(code_dir)
    if not os.path.realpath(target).startswith(real_code + os.sep) or not os.path.isfile(target):
        raise BotpodError(f"entrypoint {shown(entry)} not found in the code archive")
    if runtime.executable:
        os.chmod(target, 0o755)  # zip tools often drop the execute bit
    _remove_stale_result(code_dir)
    if runtime.wrapper is not None:
        program = [*runtime.command, _install_wrapper(code_dir, runtime.wrapper), code_dir, entry]
    else:
        program = [*runtime.command, target]
    script = os.path.join(code_dir, SCRIPT_NAME)
    _write(script, _script(runtime_name, code_dir, program), 0o755)
    return script


def _script(runtime_name: str, code_dir: str, program: list[str]) -> str:
    return (
        "#!/bin/sh\n"
        f"# Written by `botpod init` for the {runtime_name} runtime. Run as `sh {SCRIPT_NAME}`.\n"
        f"cd {shlex.quote(code_dir)} || exit 1\n"
        f"exec {shlex.join(program)}\n"
    )


def _install_wrapper(code_dir: str, name: str) -> str:
    wrapper_dir = os.path.join(code_dir, WRAPPER_DIR)
    os.makedirs(wrapper_dir, mode=0o755, exist_ok=True)
    source = (resources.files("botpod") / "wrappers" / name).read_text(encoding="utf-8")
    path = os.path.join(wrapper_dir, name)
    _write(path, source, 0o644)
    return path


def _remove_stale_result(code_dir: str) -> None:
    # A result.json shipped in the zip would read as this run's outcome.
    try:
        os.unlink(os.path.join(code_dir, RESULT_NAME))
    except FileNotFoundError:
        pass


def _write(path: str, text: str, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(path, flags, mode), "w", encoding="utf-8") as f:
        f.write(text)
        os.fchmod(f.fileno(), mode)
