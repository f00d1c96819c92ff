"""botpod: the small program that runs INSIDE a bot pod (`python3 -m botpod init | sync`).

- `init` (init container): fetch the bot's code zip, restore its saved state, write the runtime's
  wrapper and `entrypoint.sh` into the code directory.
- `sync` (native sidecar): upload the state directory whenever it changes, and once more on exit.

Must NOT: import anything outside the standard library (the pod image has only Debian's
python3; a unit test enforces it); print a presigned URL or the bot's config (both are secrets);
read settings anywhere but `settings.py`.
"""
