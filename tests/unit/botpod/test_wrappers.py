"""The wrappers and entrypoint.sh, run as the bot container runs them: `sh entrypoint.sh`.

Real python3 (this interpreter), real node (Debian's), a real C program built with cc.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

CONFIG = '{"symbol":"BTC","size":5,"nested":{"k":[1,2]}}'


def _install(pod, files: dict[str, str | bytes], mode: int = 0o644, **env: str) -> None:
    pod.put_code(files, mode)
    done = pod.init(**env)
    assert done.returncode == 0, done.output


def _terminated_promptly(pod, bot) -> None:
    started = time.monotonic()
    bot.signal(signal.SIGTERM)
    assert bot.wait(5) == 0
    assert time.monotonic() - started < 1.0
    assert pod.result_json()["status"] == "terminated"


# --- Python -------------------------------------------------------------------------------

PY_MAIN = """\
import logging, os, sys
import helper  # from vendor/

def main(bot_id, config):
    logging.getLogger("bot").info("logging at INFO")
    print("bot", bot_id, type(config).__name__, config["size"], config["nested"]["k"])
    print("cwd", os.getcwd())
    print("module", __name__, sys.modules["main"].__file__)
    print("helper", helper.VALUE)
    print("path", sys.path[:2], any(p.endswith(".the0") for p in sys.path))
"""


def test_python_main_gets_bot_id_and_parsed_config(pod) -> None:
    _install(pod, {"main.py": PY_MAIN, "vendor/helper.py": "VALUE = 42\n"})
    done = pod.run_bot(BOT_CONFIG=CONFIG)
    assert done.returncode == 0, done.output
    lines = done.stdout.splitlines()
    assert "bot bot-1 dict 5 [1, 2]" in lines
    assert f"cwd {pod.code_dir}" in lines
    assert f"module main {pod.code_dir}/main.py" in lines
    assert "helper 42" in lines
    assert f"path ['{pod.code_dir}/vendor', '{pod.code_dir}'] False" in lines
    assert "INFO:bot:logging at INFO" in done.stderr
    assert pod.result_json() == {"status": "success", "message": "Bot executed successfully"}


def test_python_entry_in_a_subdirectory_and_no_config(pod) -> None:
    _install(
        pod,
        {"src/bot.py": "def main(bot_id, config):\n    print('config', config)\n"},
        ENTRYPOINT="src/bot.py",
    )
    done = pod.run_bot(BOT_CONFIG="")
    assert done.returncode == 0, done.output
    assert "config {}" in done.stdout


def test_python_exception_exits_1_with_traceback_and_error_result(pod) -> None:
    _install(pod, {"main.py": "def main(bot_id, config):\n    raise ValueError('boom')\n"})
    done = pod.run_bot()
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "ValueError: boom" in done.stderr
    assert pod.result_json() == {"status": "error", "message": "boom"}


def test_python_sys_exit_nonzero_is_an_error(pod) -> None:
    _install(pod, {"main.py": "import sys\ndef main(bot_id, config):\n    sys.exit(3)\n"})
    done = pod.run_bot()
    assert done.returncode == 1
    assert pod.result_json()["status"] == "error"


@pytest.mark.parametrize(
    "blocking",
    [
        "time.sleep(60)",
        "os.read(os.pipe()[0], 1)",  # a C call that never returns
    ],
)
def test_python_sigterm_stops_a_blocked_main_at_once(pod, blocking: str) -> None:
    # print() without flush: the wrapper's -u must make it appear at once.
    source = f"import os, time\ndef main(bot_id, config):\n    print('ready')\n    {blocking}\n"
    _install(pod, {"main.py": source})
    bot = pod.start_bot()
    bot.wait_for("ready")
    _terminated_promptly(pod, bot)


def test_python_import_error_is_reported(pod) -> None:
    _install(pod, {"main.py": "import not_a_module_anywhere\n"})
    done = pod.run_bot()
    assert done.returncode == 1
    assert "ModuleNotFoundError" in done.stderr
    assert pod.result_json()["status"] == "error"


def test_python_without_main(pod) -> None:
    _install(pod, {"main.py": "def start():\n    pass\n"})
    done = pod.run_bot()
    assert done.returncode == 1
    assert "main.py defines no main(bot_id, config) function" in done.stderr


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('{"api_key": "SECRET-KEY-123", ', "BOT_CONFIG is not valid JSON (line 1, column 31)"),
        ('["SECRET-KEY-123"]', "BOT_CONFIG must be a JSON object, not list"),
    ],
)
def test_python_bad_config_fails_without_showing_it(pod, config: str, message: str) -> None:
    _install(pod, {"main.py": "def main(bot_id, config):\n    print('ran')\n"})
    done = pod.run_bot(BOT_CONFIG=config)
    assert done.returncode == 1
    assert message in done.stderr
    assert "SECRET-KEY" not in done.output
    assert "ran" not in done.stdout
    assert pod.result_json() == {"status": "error", "message": message}


# --- Node ---------------------------------------------------------------------------------

def _require(tool: str) -> None:
    # A missing tool is a failure with a reason, never a skip (the machine image ships both).
    assert shutil.which(tool), f"{tool} is needed to test its wrapper; install it"


node = pytest.mark.usefixtures("node_available")


@pytest.fixture
def node_available() -> None:
    _require("node")

NODE_MAIN = """\
const lib = require('./lib/util');
module.exports = {
  main: async (botId, config) => {
    await new Promise((resolve) => setTimeout(resolve, 10));
    console.log('bot', botId, typeof config, config.size, JSON.stringify(config.nested));
    console.log('cwd', process.cwd());
    console.log('lib', lib.value);
  },
};
"""


@node
def test_node_main_gets_bot_id_and_parsed_config(pod) -> None:
    _install(
        pod,
        {"index.js": NODE_MAIN, "lib/util.js": "exports.value = 7;\n"},
        RUNTIME="nodejs20",
    )
    assert "exec node" in (pod.code_dir / "entrypoint.sh").read_text()
    done = pod.run_bot(BOT_CONFIG=CONFIG)
    assert done.returncode == 0, done.output
    lines = done.stdout.splitlines()
    assert 'bot bot-1 object 5 {"k":[1,2]}' in lines
    assert f"cwd {pod.code_dir}" in lines
    assert "lib 7" in lines
    assert pod.result_json() == {"status": "success", "message": "Bot executed successfully"}


@node
@pytest.mark.parametrize(
    ("files", "entry"),
    [
        ({"index.js": "exports.main = (id, c) => { console.log('ran', id, c.size); };"}, ""),
        (
            {"index.js": "module.exports = function (id, c) { console.log('ran', id, c.size); };"},
            "",
        ),
        (
            {"bot.mjs": "export async function main(id, c) { console.log('ran', id, c.size); }"},
            "bot.mjs",
        ),
        (
            {
                "package.json": '{"type": "module"}',
                "index.js": "export default function (id, c) { console.log('ran', id, c.size); }",
            },
            "",
        ),
    ],
    ids=["exports.main", "function-export", "esm-mjs", "esm-type-module-default"],
)
def test_node_export_styles(pod, files: dict[str, str], entry: str) -> None:
    _install(pod, files, RUNTIME="nodejs20", ENTRYPOINT=entry)
    done = pod.run_bot(BOT_CONFIG=CONFIG)
    assert done.returncode == 0, done.output
    assert "ran bot-1 5" in done.stdout


@node
def test_node_throw_exits_1_with_stack_and_error_result(pod) -> None:
    source = "exports.main = async () => { throw new Error('kaboom'); };\n"
    _install(pod, {"index.js": source}, RUNTIME="nodejs20")
    done = pod.run_bot()
    assert done.returncode == 1
    assert "Error: kaboom" in done.stderr and "at " in done.stderr
    assert pod.result_json() == {"status": "error", "message": "kaboom"}


@node
def test_node_unhandled_rejection_is_an_error(pod) -> None:
    source = (
        "exports.main = async () => {\n"
        "  Promise.reject(new Error('floating'));\n"
        "  await new Promise((r) => setTimeout(r, 5000));\n"
        "};\n"
    )
    _install(pod, {"index.js": source}, RUNTIME="nodejs20")
    done = pod.run_bot()
    assert done.returncode == 1
    assert "unhandled promise rejection" in done.stderr
    assert pod.result_json() == {"status": "error", "message": "floating"}


@node
def test_node_sigterm_stops_a_pending_main_at_once(pod) -> None:
    source = (
        "exports.main = () => {\n"
        "  console.log('ready');\n"
        "  return new Promise(() => setInterval(() => {}, 1000));\n"
        "};\n"
    )
    _install(pod, {"index.js": source}, RUNTIME="nodejs20")
    bot = pod.start_bot()
    bot.wait_for("ready")
    _terminated_promptly(pod, bot)


@node
def test_node_bad_config_fails_without_showing_it(pod) -> None:
    _install(pod, {"index.js": "exports.main = () => {};"}, RUNTIME="nodejs20")
    done = pod.run_bot(BOT_CONFIG='{"secret": "SECRET-KEY-123"')
    assert done.returncode == 1
    assert "BOT_CONFIG is not valid JSON" in done.stderr
    assert "SECRET-KEY" not in done.output


@node
def test_node_returned_status_is_the_result(pod) -> None:
    source = "exports.main = async () => ({ status: 'error', message: 'no data' });\n"
    _install(pod, {"index.js": source}, RUNTIME="nodejs20")
    done = pod.run_bot()
    assert done.returncode == 0  # as the0's own wrapper: the result says it, not the exit code
    assert pod.result_json() == {"status": "error", "message": "no data"}


# --- Compiled -----------------------------------------------------------------------------

C_BOT = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
    char cwd[4096];
    printf("pid %d\n", (int)getpid());
    printf("id %s\n", getenv("BOT_ID"));
    printf("config %s\n", getenv("BOT_CONFIG"));
    printf("cwd %s\n", getcwd(cwd, sizeof cwd));
    return 0;
}
"""


@pytest.mark.parametrize("runtime", ["gcc13", "rust-stable"])
def test_a_compiled_bot_is_execd_with_its_execute_bit_restored(
    pod, tmp_path: Path, runtime: str
) -> None:
    _require("cc")
    build = tmp_path / "c-build"
    build.mkdir()
    source = build / "bot.c"
    source.write_text(C_BOT)
    binary = build / "bot"
    subprocess.run(["cc", "-O0", "-o", str(binary), str(source)], check=True)
    # mode 0644 in the zip: the execute bit lost, as zip tools often do.
    _install(
        pod, {"build/bot": binary.read_bytes()}, 0o644, RUNTIME=runtime, ENTRYPOINT="build/bot"
    )
    assert os.access(pod.code_dir / "build" / "bot", os.X_OK)
    bot = pod.start_bot(BOT_CONFIG=CONFIG)
    assert bot.wait() == 0
    lines = "".join(bot.stdout_lines).splitlines()
    assert f"pid {bot.proc.pid}" in lines  # exec'd: the bot process gets SIGTERM itself
    assert "id bot-1" in lines
    assert f"config {CONFIG}" in lines
    assert f"cwd {pod.code_dir}" in lines


@pytest.mark.parametrize(
    ("runtime", "entry", "expected"),
    [
        ("dotnet8", "bin/Bot.dll", "dotnet {code}/bin/Bot.dll"),
        ("scala3", "target/bot.jar", "java -jar {code}/target/bot.jar"),
    ],
)
def test_dotnet_and_jvm_bots_run_through_their_launcher(
    pod, runtime: str, entry: str, expected: str
) -> None:
    # Stand-in launchers with the real names print their arguments.
    for launcher in ("dotnet", "java"):
        script = pod.bin_dir / launcher
        script.write_text(f'#!/bin/sh\necho "{launcher} $*"\necho "id $BOT_ID"\n')
        script.chmod(0o755)
    _install(pod, {entry: b"\x00binary"}, RUNTIME=runtime, ENTRYPOINT=entry)
    done = pod.run_bot()
    assert done.returncode == 0, done.output
    assert done.stdout.splitlines() == [expected.format(code=pod.code_dir), "id bot-1"]


def test_paths_with_spaces_and_quotes_are_quoted(pod, tmp_path: Path) -> None:
    _install(
        pod,
        {"my bot/it's main.py": "def main(bot_id, config):\n    print('quoted ok')\n"},
        ENTRYPOINT="my bot/it's main.py",
    )
    done = pod.run_bot()
    assert done.returncode == 0, done.output
    assert "quoted ok" in done.stdout


def test_a_result_json_from_the_zip_is_removed_and_entrypoint_sh_replaced(pod) -> None:
    _install(
        pod,
        {
            "main.py": "def main(bot_id, config):\n    pass\n",
            "result.json": '{"status": "success", "message": "stale"}',
            "entrypoint.sh": "echo user script\n",
        },
    )
    assert not (pod.code_dir / "result.json").exists()
    assert "botpod init" in (pod.code_dir / "entrypoint.sh").read_text()


def test_the_result_is_json_written_atomically(pod) -> None:
    _install(pod, {"main.py": "def main(bot_id, config):\n    pass\n"})
    assert pod.run_bot().returncode == 0
    assert json.loads((pod.code_dir / "result.json").read_text())["status"] == "success"
    assert sorted(p.name for p in pod.code_dir.iterdir() if p.name.endswith(".tmp")) == []
