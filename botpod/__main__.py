"""`python3 -m botpod init | sync`: the command line of the code that runs inside bot pods.

Must NOT: print an exception's text unless it is a BotpodError (urllib's and others' texts may
hold a URL); an unexpected error shows its type and stack frames only.
"""

import sys
import traceback

from botpod import console, init, settings, sync
from botpod.errors import BotpodError

USAGE = """\
usage: python3 -m botpod init | sync

  init   the bot pod's init container: download the code zip (URL file code-url) and unpack it
         into CODE_DIR, restore the saved state (state-get-url) into STATE_DIR, write
         CODE_DIR/entrypoint.sh and the runtime's wrapper
  sync   the native sidecar: upload STATE_DIR (state-put-url) whenever it changes, every
         STATE_SYNC_INTERVAL seconds, and once more on SIGTERM

Settings come from the environment; the presigned URLs from files in URLS_DIR.
"""


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[1] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if len(argv) != 2 or argv[1] not in ("init", "sync"):
        sys.stderr.write(USAGE)
        return 2
    command = argv[1]
    console.set_command(command)
    try:
        if command == "init":
            init.run(settings.init_settings())
            return 0
        return sync.run(settings.sync_settings())
    except BotpodError as error:
        console.warn(str(error))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # reported without its (possibly secret) text
        console.warn(f"internal error: {type(error).__name__} (message withheld)")
        sys.stderr.write("".join(traceback.format_tb(error.__traceback__)))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
