# the0-k8s — the two commands a newcomer needs: `make up` and `make test`.
# Each installs what is missing (Debian packages, Go builds of the servers, Python deps) itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-dev.lock | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: help setup stack-build stack-up stack-down up image test unit check clean mutate mutate-pass

help:
	@echo "make up          run the whole system locally on the embedded real stack (Ctrl-C stops)"
	@echo "make test        run every test (starts its own stack)"
	@echo "make stack-up    start the stack in the background, write .stack/env; make stack-down stops it"
	@echo "                 (kwok nodes + a real node: kubelet + containerd, needs root; tools/stack/README.md)"
	@echo "make image       build the project's image from its Dockerfile (buildah, no registry)"
	@echo "make check       ruff + mypy + import contracts"
	@echo "make mutate      mutation score of worker/core (mutmut, its own virtualenv)"
	@echo "make mutate-pass sampled mutation score of the pass and the converge (integration tests)"

# Every package pinned and hash-checked (requirements-dev.lock, made by tools/lock/update.sh
# from pyproject.toml); then this project itself, editable, built with the locked setuptools.
$(STAMP): pyproject.toml requirements-dev.lock
	@echo "[setup] Python virtualenv in $(VENV) (first time: ~1 min)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r requirements-dev.lock
	@PYTHONWARNINGS=ignore $(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*; touch $@

setup: $(STAMP)

# No-op when the pinned binaries and images are cached (~/.cache/the0-k8s-stack); first run
# ~15 min on 2 cores (862 s measured on 2026-12-01; the parts build side by side).
stack-build:
	@tools/stack/build.sh

stack-up: setup stack-build
	@$(BIN)/python -m tools.stack up

stack-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m tools.stack down; else rm -rf .stack; fi

up: setup stack-build
	@$(BIN)/python -m tools.up

# The Dockerfile built with buildah on the Debian base of the stack's images, into the stack
# cache (keyed by content: a no-op when nothing changed; ~90 s cold, seconds after a code
# change). The in-cluster test deploys it with k8s/.
image: stack-build
	@python3 -m tools.image build

# Four pytest workers, each with its own stack (the suite mostly waits on servers: on 2 cores
# the machine is ~45 % busy with two; three took the parallel part from 6:54 to 5:45, four
# from 8:35 to 7:23 on 2026-12-01), whole
# files dealt out longest first (tests/conftest.py: xdist's own order put the 100 s files
# last, where they alone made the tail); then, on one stack alone, the stack's own host-state
# tests (another stack's node on the same machine would show up in their before/after
# comparison). The bots on the real node run with the rest: each worker's stack has a node of
# its own (its own bridge, subnet and cgroup root); so does the in-cluster test, the one stack
# with a kube-proxy (host-wide tables, its own Service range: one such stack per machine).
# "No test ran" (pytest's 5) in the serial part passes only when PYTEST_ARGS selected tests.
TEST_WORKERS ?= 4
SERIAL_TESTS := tests/integration/stack/test_real_node.py
test: setup stack-build image
	@$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(SERIAL_TESTS:%=--ignore=%) $(PYTEST_ARGS)
	@$(BIN)/python -m pytest $(SERIAL_TESTS) $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] && [ -n "$(PYTEST_ARGS)" ]; }

# Mutation testing of the pure core (mutmut in its own virtualenv, hash-locked; the unit tests
# of worker/core only). Resumes where it stopped (a run killed while writing its results can
# leave them unreadable: then `rm -rf mutants` and start over). Surviving
# mutants: .venv-mutate/bin/mutmut show NAME.
MUTATE_VENV := .venv-mutate
mutate:
	@test -x $(MUTATE_VENV)/bin/python || $(PYTHON) -m venv $(MUTATE_VENV)
	@$(MUTATE_VENV)/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements-mutate.lock
	@$(MUTATE_VENV)/bin/mutmut run --max-children $(MUTATE_CHILDREN) >/dev/null
	@$(MUTATE_VENV)/bin/mutmut results --all true | $(MUTATE_VENV)/bin/python -m tools.mutate.report
MUTATE_CHILDREN ?= 2

# The pass and the converge, judged by the integration tests on the real stack: a seeded
# sample of their mutants (each costs a stack start), docs/mutation.md.
MUTATE_SAMPLE ?= 40
mutate-pass: stack-build
	@test -x $(MUTATE_VENV)/bin/python || $(PYTHON) -m venv $(MUTATE_VENV)
	@$(MUTATE_VENV)/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements-mutate.lock
	@$(MUTATE_VENV)/bin/python -m tools.mutate.sample --sample $(MUTATE_SAMPLE) --children $(MUTATE_CHILDREN)

unit: setup
	@$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

check: setup
	@$(BIN)/ruff check worker beat api botpod tools tests
	@$(BIN)/mypy
	@$(BIN)/lint-imports

clean: stack-down
	rm -rf $(VENV)
