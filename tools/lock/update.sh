#!/usr/bin/env bash
# Regenerates the hash-locked Python dependency files from pyproject.toml (the one place where
# version ranges live):
#   requirements.lock      what the image installs (runtime dependencies + the build backend)
#   requirements-dev.lock  what `make setup` installs (the same + the `test` extra)
#   requirements-mutate.lock  what `make mutate` installs in its own virtualenv (+ `mutate`)
# Run it after changing pyproject.toml's dependencies, or to take newer versions within their
# ranges; review the diff and commit both files. Needs only PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PIP_TOOLS_VERSION=7.6.2
venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q "pip-tools==$PIP_TOOLS_VERSION"
compile() {
  local out=$1; shift
  # Local find-links (PIP_FIND_LINKS) are this machine's, never the lock file's.
  PIP_FIND_LINKS= "$venv/bin/pip-compile" -q --generate-hashes --strip-extras --allow-unsafe \
    --no-emit-find-links --no-emit-index-url --output-file="$out" "$@" \
    pyproject.toml tools/lock/build.in
}
compile requirements.lock
compile requirements-dev.lock --extra test
# Resolved from the dev lock's pins, so mutants run against the versions the suite uses.
compile requirements-mutate.lock --extra test --extra mutate -c requirements-dev.lock
echo "updated requirements.lock, requirements-dev.lock and requirements-mutate.lock"
