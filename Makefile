# Entry points (see README): make synth | test | diff | deploy | bench. ENV picks config/<ENV>.yaml.
ENV ?= example
VENV := .venv
PYTHON := $(VENV)/bin/python
# jsii and the CDK CLI run on the Node 22 pinned in package.json, not the machine's Node.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
CDK := npx --no-install cdk

.PHONY: setup synth test lint diff deploy bench clean

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

bench: setup
	$(PYTHON) bench/synth_bench.py
	$(PYTHON) bench/runner_bench.py
	$(PYTHON) bench/release_bench.py

clean:
	rm -rf cdk.out .mypy_cache .ruff_cache
