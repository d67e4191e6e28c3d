"""Fixtures of the CLI tests: fake credentials, a config folder, moto, the environment's stacks, and
IAM: every AWS call the CLI makes is authorized as the deploy role (tests/cli/iam.py)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from emulation.authorization import Evaluator
from release.aws import Aws
from release.cli import main
from tests.cli.fakes import ACCOUNT, ENV, REGION, ScriptedReleases, create_stacks
from tests.cli.iam import CliIam

REPO = Path(__file__).resolve().parents[2]
# One boto3 session for every CLI call: loading the service models once keeps the tests fast.
_SESSION = boto3.Session()


@pytest.fixture(autouse=True, scope="package")
def _fewer_garbage_collections() -> Iterator[None]:
    """moto and boto3 allocate a lot per test; with jsii's object graph loaded (tests/conftest.py),
    the default collection thresholds spend about half these tests' time scanning it."""
    before = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    yield
    gc.set_threshold(*before)


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


@pytest.fixture(autouse=True)
def cli_iam(_cli_iam_session: CliIam, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliIam]:
    """Every client the CLI makes is authorized (as the deploy role unless `run` says otherwise);
    a test fails if one of its calls was answered without an authorization decision."""
    iam = _cli_iam_session
    iam.reset()
    original = Aws.client

    def client(self: Aws, service: str) -> Any:
        fresh = service not in self._clients
        made = original(self, service)
        if fresh:
            iam.attach(made)
        return made

    monkeypatch.setattr(Aws, "client", client)
    yield iam
    assert not iam.unchecked, f"calls the CLI made without an authorization decision: {iam.unchecked}"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """`qa.yaml`: the project's example environment under another name."""
    settings = yaml.safe_load((REPO / "config" / "example.yaml").read_text())
    settings["account"] = ACCOUNT
    settings["region"] = REGION
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / f"{ENV}.yaml").write_text(yaml.safe_dump(settings))
    return folder


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


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
