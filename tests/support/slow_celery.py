"""`python -m tests.support.slow_celery <celery args>`: the real Celery CLI, with every log
append followed by a pause of THE0_TEST_SLOW_APPEND seconds — the window between an S3 write
and its cursor commit made wide, so a SIGKILL at a random moment most likely lands in it.
Test-only: the product code is untouched."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from worker.adapters.s3 import LogStore

_append = LogStore.append
_pause = float(os.environ.get("THE0_TEST_SLOW_APPEND", "0.5"))


def _slow_append(self: LogStore, *args: Any, **kwargs: Any) -> None:
    _append(self, *args, **kwargs)
    time.sleep(_pause)


LogStore.append = _slow_append  # type: ignore[method-assign]

if __name__ == "__main__":
    from celery.__main__ import main

    sys.argv[0] = "celery"
    main()
