"""Turns off FerretDB's resource tracking (internal/util/resource: Track and Untrack return at
once). It is a leak detector: for every iterator and document iterator it creates — one per
document read — it adds a stack trace to a pprof profile and sets a finalizer that panics if
the object is collected untracked. A CPU profile of FerretDB v1.24.2 serving a read of 10,000
bot documents (its debug handler, 8 s) put 15 % of its CPU in that tracking
(`resource.Track` → `pprof.(*Profile).Add` → `runtime.callers`), with the finalizers adding GC
work. What FerretDB answers is unchanged; only the test stack's database gets cheaper, closer
to the production MongoDB it stands in for.

Usage: python3 ferretdb-no-resource-tracking.py <FerretDB module dir>. Fails if the code to
patch is not found exactly once (the pinned FerretDB version changed).
"""

import sys
from pathlib import Path

FILE = "internal/util/resource/resource.go"
OFF = "\tif true {\n\t\treturn // the0-k8s test stack: tracking off\n\t}\n"
EDITS = tuple((head, head + OFF) for head in ("func Track(obj any, token *Token) {\n",
                                              "func Untrack(obj any, token *Token) {\n"))


def main(module_dir: str) -> int:
    path = Path(module_dir) / FILE
    text = path.read_text()
    for old, new in EDITS:
        if text.count(old) != 1:
            print(f"ferretdb patch: expected code not found exactly once in {path}",
                  file=sys.stderr)
            return 1
        text = text.replace(old, new)
    path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
