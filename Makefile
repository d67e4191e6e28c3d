# Entry points (see README): make synth | test | diff | deploy | bench. ENV picks config/<ENV>.yaml.
ENV ?= example
VENV := .venv
PYTHON := $(VENV)/bin/python
# jsii and the CDK CLI run on the Node 22 pinned in package.json, not the machine's Node.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
CDK := npx --no-install cdk

.PHONY: setup synth test lint diff deploy bench clean drift diff-offline

$(VENV)/.runtime: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.dev node_modules/.installed

synth: $(VENV)/.runtime node_modules/.installed
	$(CDK) synth --quiet -c env=$(ENV)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup lint
	$(VENV)/bin/pytest

diff: $(VENV)/.runtime node_modules/.installed
	$(CDK) diff -c env=$(ENV)

deploy: $(VENV)/.runtime node_modules/.installed
	$(CDK) deploy --all -c env=$(ENV) --require-approval broadening

# The environment's four stack names, from its config (no AWS access).
STACKS = $(shell $(PYTHON) -m release env --env $(ENV) --format github | sed -n 's/^stack_[a-z]*=//p')

# Drift of every stack of ENV against its deployed template; exit 1 when anything drifted.
drift: $(VENV)/.runtime node_modules/.installed
	$(CDK) drift --fail -c env=$(ENV) $(STACKS)

# `cdk diff` against saved templates (TEMPLATE_DIR/<stack>.template.json, e.g. a cdk.out artifact
# of an earlier run), without credentials: one synth, then `--template` per stack (it takes one
# stack, hence `-e` and the loop) against that assembly.
diff-offline: $(VENV)/.runtime node_modules/.installed
	@test -n "$(TEMPLATE_DIR)" || { echo "usage: make diff-offline ENV=<env> TEMPLATE_DIR=<folder of <stack>.template.json>" >&2; exit 2; }
	@for stack in $(STACKS); do \
	  test -f "$(TEMPLATE_DIR)/$$stack.template.json" || { echo "missing $(TEMPLATE_DIR)/$$stack.template.json" >&2; exit 2; }; \
	done
	$(CDK) synth --quiet -c env=$(ENV) -o cdk.out.offline > /dev/null
	@status=0; for stack in $(STACKS); do \
	  $(CDK) diff --app cdk.out.offline -e "$$stack" --template "$(TEMPLATE_DIR)/$$stack.template.json" || status=$$?; \
	done; exit $$status

bench: setup
	$(PYTHON) bench/synth_bench.py
	$(PYTHON) bench/runner_bench.py
	$(PYTHON) bench/release_bench.py

clean:
	rm -rf cdk.out cdk.out.offline .mypy_cache .ruff_cache
