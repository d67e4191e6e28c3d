"""Fixtures of the CLI tests: fake credentials, a config folder, moto, the environment's stacks, and
IAM: every AWS call the CLI makes is authorized as the deploy role (tests/cli/iam.py)."""

from __future__ import annotations

import functools
import importlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import boto3
import pytest
import yaml
from moto import mock_aws
from moto.core.config import default_user_config
from moto.core.models import MockAWS
from moto.stepfunctions.models import stepfunctions_backends
from moto.stepfunctions.parser.models import stepfunctions_parser_backends

import release.cli
from emulation.authorization import Evaluator
from release.aws import Aws
from release.cli import main
from tests.cli.fakes import ACCOUNT, ENV, PREFIX, REGION, ScriptedReleases, create_stacks
from tests.cli.iam import CliIam

REPO = Path(__file__).resolve().parents[2]
# One boto3 session for every CLI call: loading the service models once keeps the tests fast.
_SESSION = boto3.Session()


@pytest.fixture(autouse=True, scope="package")
def _json_templates_parsed_as_json() -> Iterator[None]:
    """moto parses every template as YAML first, in pure Python, even JSON; the stacks these tests
    create are JSON, which json reads to the same dict in a fraction of the time."""
    # By name, as below: the module imports every service's models, which mypy skips.
    moto_stack: Any = importlib.import_module("moto.cloudformation.models").Stack
    moto_parse = moto_stack.parse_template

    def parse(template: str) -> dict[str, Any]:
        try:
            parsed = json.loads(template)
        except ValueError:
            parsed = None
        return parsed if isinstance(parsed, dict) else moto_parse(template)

    with patch.object(moto_stack, "parse_template", staticmethod(parse)):
        yield


@pytest.fixture(autouse=True)
def _aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials only: nothing here may reach a real account."""
    for key in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "RELEASE_POLL_INTERVAL",
        "RELEASE_CONFIG_DIR",
        "GITHUB_ACTIONS",  # `startedBy` names the GitHub actor only where a test says it runs in CI
        "GITHUB_ACTOR",
        "GITHUB_RUN_ID",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the CLI must use the config's region
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture(scope="session")
def _cli_iam_session(templates: dict[str, dict[str, Any]]) -> Iterator[CliIam]:
    evaluator = Evaluator()
    yield CliIam(templates, evaluator)
    evaluator.close()


# The CLI's clients, made once per session, service and region for the whole test process: a
# client costs milliseconds to make (most of a short command here), and one made for an earlier
# test answers the same (moto's state is reset per test; no CLI test retries, so the standard
# retry mode's quota is never drawn on; a test's own boto3.Session gets its own clients).
_CLI_CLIENTS: dict[tuple[Any, str, str], Any] = {}
_OWN_CLIENTS: dict[tuple[str, str], Any] = {}


@pytest.fixture(autouse=True)
def cli_iam(_cli_iam_session: CliIam, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliIam]:
    """Every client the CLI makes is authorized (as the deploy role unless `run` says otherwise);
    a test fails if one of its calls was answered without an authorization decision."""
    iam = _cli_iam_session
    iam.reset()
    original = Aws.client

    def client(self: Aws, service: str) -> Any:
        if service not in self._clients:
            key = (self.session, service, self.env.region)
            if key not in _CLI_CLIENTS:
                _CLI_CLIENTS[key] = original(self, service)
                iam.attach(_CLI_CLIENTS[key])
            self._clients[service] = _CLI_CLIENTS[key]
        return self._clients[service]

    monkeypatch.setattr(Aws, "client", client)
    yield iam
    assert not iam.unchecked, f"calls the CLI made without an authorization decision: {iam.unchecked}"


# One parser per working folder and environment: `python -m release` builds its parser once per
# process, and the tests call main() hundreds of times in one (argparse builds it in about 6 ms).
_PARSERS: dict[tuple[str, frozenset[tuple[str, str]]], Any] = {}


@pytest.fixture(autouse=True)
def _parser_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """release.cli.build_parser's own parser, reused where its inputs are the same: besides the code,
    the working folder (lint-migrations' --repo-root default) and environment variables
    (--config-dir's and --poll-interval's defaults). Parsing leaves a parser as it was; pytest's own
    PYTEST_CURRENT_TEST, which names each test phase, is not among the inputs."""
    build = release.cli.build_parser

    def built_once() -> Any:
        environment = frozenset((k, v) for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST")
        key = (os.getcwd(), environment)
        if key not in _PARSERS:
            _PARSERS[key] = build()
        return _PARSERS[key]

    monkeypatch.setattr(release.cli, "build_parser", built_once)


@functools.cache
def _qa_yaml() -> str:
    settings = yaml.safe_load((REPO / "config" / "example.yaml").read_text())
    settings["account"] = ACCOUNT
    settings["region"] = REGION
    return yaml.safe_dump(settings)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """`qa.yaml`: the project's example environment under another name."""
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / f"{ENV}.yaml").write_text(_qa_yaml())
    return folder


# What the CLI's tests create in moto, besides state machines.
_CLI_SERVICES = ("cloudformation", "dynamodb", "ecr", "ecs", "logs", "ssm")


def _forget_cli_state() -> None:
    """moto resets its backends only when the outermost mock starts: in a worker that has run a
    release test, the release emulation's session-long mock is active, so a CLI test's own
    mock_aws would see the stacks and tables of the CLI test before it. Reset what the CLI uses,
    and remove the CLI environment's machines from both Step Functions backends, leaving the
    release emulation's own machines alone."""
    for service in _CLI_SERVICES:
        # Each service's own backends, per account (BackendDict.reset is moto's reset of every
        # service). By name: moto.backends, its registry, imports every service (test_gates.py).
        backends: Any = getattr(importlib.import_module(f"moto.{service}.models"), f"{service}_backends")
        for account in backends.values():
            account.reset()
    for backends in (stepfunctions_backends, stepfunctions_parser_backends):
        machines = backends[ACCOUNT][REGION].state_machines
        machines[:] = [m for m in machines if not m.name.startswith(f"{PREFIX}-{ENV}-")]


@pytest.fixture
def aws() -> Iterator[None]:
    # Not moto's state machine interpreter, which the release emulation's mock turns on while it
    # is active: the CLI's machine is a stand-in that ScriptedReleases drives. (A nested mock_aws's
    # own config would outlive it: moto restores config only when the outermost mock stops.)
    no_interpreter = {"stepfunctions": {**default_user_config.get("stepfunctions", {}), "execute_state_machine": False}}

    # Each mock_aws sets boto3's default session aside; the tests' own boto3.client calls then get
    # the shared session, not a new one that loads every service model again (most of a test's setup).
    # The tests' own clients (setup and inspection, never the CLI's): made once, as the CLI's are.
    def client(service: str, region_name: str) -> Any:
        if (service, region_name) not in _OWN_CLIENTS:
            _OWN_CLIENTS[service, region_name] = _SESSION.client(service, region_name=region_name)
        return _OWN_CLIENTS[service, region_name]

    with (
        mock_aws(),
        patch.dict(default_user_config, no_interpreter),
        patch("boto3.DEFAULT_SESSION", _SESSION),
        patch("boto3.client", client),
    ):
        nested = MockAWS._nested_count > 1
        if nested:
            _forget_cli_state()
        yield
        if nested:
            _forget_cli_state()


@pytest.fixture
def stacks(aws: None) -> None:
    create_stacks()


@pytest.fixture
def releases(stacks: None, monkeypatch: pytest.MonkeyPatch) -> ScriptedReleases:
    return ScriptedReleases(monkeypatch)


Run = Callable[..., int]


@pytest.fixture
def answers() -> list[bool]:
    """What the person at the terminal answers to confirmations; empty: there is no terminal."""
    return []


@pytest.fixture
def run(config_dir: Path, releases: ScriptedReleases, answers: list[bool], cli_iam: CliIam) -> Run:
    """`run("start", "--image-tag", "abc")`: the CLI against the fakes, env qa, no waiting."""

    def confirm(question: str) -> bool | None:
        releases.questions.append(question)
        return answers.pop(0) if answers else None

    def invoke(command: str, *args: str) -> int:
        argv = [command, "--env", ENV, "--config-dir", str(config_dir), *args]
        cli_iam.run_as(command)
        return main(argv, sleep=releases.sleep, session_factory=lambda region: _SESSION, confirm=confirm)

    return invoke
