# Entry points (see README): make synth | test | diff | deploy | bench. ENV picks config/<ENV>.yaml.
ENV ?= example
VENV := .venv
PYTHON := $(VENV)/bin/python
# jsii and the CDK CLI run on the Node 22 pinned in package.json, not the machine's Node.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
CDK := npx --no-install cdk
# uv installs without compiling bytecode: Python writes each module's .pyc the first time it is
# imported, which costs only what is used (all of aws_cdk up front would be a minute).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help setup synth test lint diff deploy bench clean drift diff-offline
# `make` alone lists the targets (each one's `## …` comment).
.DEFAULT_GOAL := help
help: ## list the targets (this)
	@echo "usage: make <target> [ENV=<env>]   (ENV picks config/<env>.yaml, default example)"
	@sed -n 's/^\([a-z-]*\):.*## \(.*\)$$/\1|\2/p' $(MAKEFILE_LIST) | awk -F'|' '{printf "  %-14s %s\n", $$1, $$2}'

# Python dependencies: hash-pinned locks written by `make lock` from requirements*.txt, installed by
# uv. uv itself is hash-pinned in requirements-uv.lock and put into the venv by the machine's pip
# (`pip --python` needs pip >= 22.3; otherwise through a pip inside the venv). Stamps: each install once.
UV := $(VENV)/bin/uv
UV_INSTALL := $(UV) pip install --quiet --python $(PYTHON) --require-hashes
PIP_HASHED := --quiet --disable-pip-version-check --require-hashes --no-deps

$(UV): requirements-uv.lock
	python3 -m venv --without-pip $(VENV)
	python3 -m pip --python $(PYTHON) install $(PIP_HASHED) -r requirements-uv.lock 2>/dev/null \
	  || { python3 -m venv $(VENV) && $(VENV)/bin/pip install $(PIP_HASHED) -r requirements-uv.lock; }
	touch $@

$(VENV)/.runtime: requirements.lock $(UV)
	$(UV_INSTALL) -r requirements.lock
	touch $@

# The dev lock holds the runtime set too (same versions: it is compiled against requirements.lock).
$(VENV)/.dev: requirements-dev.lock $(UV)
	$(UV_INSTALL) -r requirements-dev.lock
	touch $@ $(VENV)/.runtime

# After editing requirements*.txt or UV_PIN, this one command rewrites every lock.
.PHONY: lock
UV_PIN := uv==0.13.8
UV_COMPILE := $(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock"
lock: $(UV) ## rewrite the hash-pinned locks after editing requirements*.txt
	echo "$(UV_PIN)" | $(UV_COMPILE) - -o requirements-uv.lock
	$(UV_COMPILE) requirements.txt -o requirements.lock
	$(UV_COMPILE) requirements-dev.txt -c requirements.lock -o requirements-dev.lock
# CI's release CLI: the runtime's CLI packages, and squawk (deploy.yml lints the released migrations).
	{ grep -E '^(boto3|rich|pydantic|PyYAML|shtab)==' requirements.txt; grep -E '^squawk-cli==' requirements-dev.txt; } \
	  | $(UV_COMPILE) - -c requirements.lock -o requirements-cli.lock

node_modules/.installed: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error  # no package runs code at install (docs/ci.md)
	touch $@

# `release …` from any folder once the venv is active: a two-line entry point in the venv that runs
# this checkout's CLI with the venv's Python (the project is an app, not a package to install).
$(VENV)/bin/release:
	printf '#!/bin/sh\nRELEASE_PROG=release PYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s" -m release "$$@"\n' "$(CURDIR)" "$(abspath $(PYTHON))" > $@
	chmod +x $@

setup: $(VENV)/.dev node_modules/.installed $(VENV)/bin/release ## create .venv with the runtime and dev tools (hash-pinned) and node_modules

.PHONY: setup-runtime
setup-runtime: $(VENV)/.runtime node_modules/.installed $(VENV)/bin/release

synth: setup-runtime ## synthesize config/<ENV>.yaml into cdk.out/ (no AWS account needed)
	$(CDK) synth --quiet -c env=$(ENV)

# mypy runs in parallel only from a cold cache: from a warm one, starting workers costs more than the run.
MYPY_ARGS := $(if $(wildcard .mypy_cache/*),,--num-workers auto)
lint: setup ## ruff, ruff format --check, mypy strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(MYPY_ARGS)

# Parallel on every core (pytest.ini picks the distribution). Session fixtures (PostgreSQL, the
# emulator) start once per worker; the synthesis is made once and shared (tests/support.py).
PYTEST_PARALLEL ?= -n auto
test: setup lint ## lint, then the whole test suite in parallel
	$(VENV)/bin/pytest $(PYTEST_PARALLEL)

diff: $(VENV)/.runtime node_modules/.installed ## cdk diff of ENV against its account
	$(CDK) diff -c env=$(ENV)

deploy: $(VENV)/.runtime node_modules/.installed ## cdk deploy every stack of ENV (asks before broadening IAM)
	$(CDK) deploy --all -c env=$(ENV) --require-approval broadening

# The environment's four stack names, from its config (no AWS access).
STACKS = $(shell $(PYTHON) -m release env --env $(ENV) --format github | sed -n 's/^stack_[a-z]*=//p')

# Drift of every stack of ENV against its deployed template; exit 1 when anything drifted.
drift: $(VENV)/.runtime node_modules/.installed ## cdk drift over ENV's four stacks (exit 1 when anything drifted)
	$(CDK) drift --fail -c env=$(ENV) $(STACKS)

# `cdk diff` against saved templates (TEMPLATE_DIR/<stack>.template.json, e.g. a cdk.out artifact
# of an earlier run), without credentials: one synth, then `--template` per stack (it takes one
# stack, hence `-e` and the loop) against that assembly.
diff-offline: $(VENV)/.runtime node_modules/.installed ## cdk diff against saved templates: TEMPLATE_DIR=<folder>, no credentials
	@test -n "$(TEMPLATE_DIR)" || { echo "usage: make diff-offline ENV=<env> TEMPLATE_DIR=<folder of <stack>.template.json>" >&2; exit 2; }
	@for stack in $(STACKS); do \
	  test -f "$(TEMPLATE_DIR)/$$stack.template.json" || { echo "missing $(TEMPLATE_DIR)/$$stack.template.json" >&2; exit 2; }; \
	done
	$(CDK) synth --quiet -c env=$(ENV) -o cdk.out.offline > /dev/null
	@status=0; for stack in $(STACKS); do \
	  $(CDK) diff --app cdk.out.offline -e "$$stack" --template "$(TEMPLATE_DIR)/$$stack.template.json" || status=$$?; \
	done; exit $$status

# BENCH_FLAGS=--fresh-clone adds `make synth` and `make test` in a clone of HEAD (minutes: it reinstalls).
bench: setup ## print the figures in the README (minutes)
	$(PYTHON) bench/speed_bench.py $(BENCH_FLAGS)
	$(PYTHON) bench/runner_bench.py
	$(PYTHON) bench/release_bench.py

clean: ## remove cdk.out, caches and the synth cache
	rm -rf cdk.out cdk.out.offline .mypy_cache .ruff_cache .synth-cache
