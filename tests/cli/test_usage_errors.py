"""Mistakes end with ONE line on stderr and the documented exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from release.cli import main
from release.commands import COMMANDS
from release.errors import ExitCode
from tests.cli.conftest import REPO
from tests.cli.fakes import ACCOUNT, ENV, REGION, STATE_MACHINE, create_stacks, stack_name


def _one_line(err: str) -> str:
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("release: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["start", "--image-tag=-bad"], "invalid image tag '-bad'"),
        (["start", "--image-tag", "a" * 129], "invalid image tag"),
        (
            ["start", "--image-tag", "ok", "--services", "api", "billing"],
            "unknown service billing: this environment has api, admin, investor, issuer, landing",
        ),
        (["start"], "the following arguments are required: --image-tag"),
        (["start", "--image-tag", "ok", "--poll-interval", "-1"], "must be between 1 and 300 seconds, not '-1'"),
        (["start", "--image-tag", "ok", "--poll-interval", "0"], "must be between 1 and 300 seconds, not '0'"),
        (["start", "--image-tag", "ok", "--poll-interval", "nan"], "must be between 1 and 300 seconds, not 'nan'"),
        (["watch", "--poll-interval", "inf"], "must be between 1 and 300 seconds, not 'inf'"),
        (["logs", "--poll-interval", "1e9"], "must be between 1 and 300 seconds"),
        (["lint-migrations", "--base=--output=/tmp/x"], "--base must be a commit or branch, not an option: '--output=/tmp/x'"),
        (["outputs", "--format", "yaml"], "invalid choice: 'yaml'"),
        (["history", "--limit", "0"], "--limit must be at least 1"),
        (["rollback", "--to", "bad tag"], "invalid image tag 'bad tag'"),
        (["plan", "--image-tag", "ok", "--format", "yaml"], "invalid choice: 'yaml'"),
        (["plan"], "the following arguments are required: --image-tag"),
    ],
)
def test_bad_arguments(config_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str) -> None:
    code = main([args[0], "--env", ENV, "--config-dir", str(config_dir), *args[1:]])
    assert code == ExitCode.USAGE
    assert expected in _one_line(capsys.readouterr().err)


def test_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == ExitCode.USAGE
    assert "required: COMMAND" in _one_line(capsys.readouterr().err)


def test_unknown_environment(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--env", "staging", "--config-dir", str(config_dir)]) == ExitCode.USAGE
    line = _one_line(capsys.readouterr().err)
    assert "staging.yaml: no such environment file (known environments: qa)" in line


def test_invalid_environment_file(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (config_dir / "broken.yaml").write_text("name_prefix: cashsouk\nregion: nowhere\n")
    assert main(["outputs", "--env", "broken", "--config-dir", str(config_dir)]) == ExitCode.USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    # Every problem at once, one line each, each naming the file.
    assert len(lines) > 3 and all(line.startswith("release: ") and "broken.yaml: " in line for line in lines)
    assert any("region: 'nowhere' is not an AWS region" in line for line in lines)
    assert any("account: required setting is missing" in line for line in lines)


def test_missing_release_stack(aws: None, config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create_stacks(("data", "images"))
    assert main(["start", "--env", ENV, "--config-dir", str(config_dir), "--image-tag", "abc"]) == ExitCode.AWS
    line = _one_line(capsys.readouterr().err)
    assert f"stack {stack_name('release')} does not exist in account 123456789012 region {REGION}" in line
    assert f"deploy it first (make deploy ENV={ENV})" in line  # a command the README has


def test_outputs_names_every_missing_stack(aws: None, config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create_stacks(("data", "release"))
    assert main(["outputs", "--env", ENV, "--config-dir", str(config_dir)]) == ExitCode.AWS
    line = _one_line(capsys.readouterr().err)
    assert f"stack {stack_name('images')}, {stack_name('ci')} does not exist" in line


def test_missing_output(aws: None, config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=stack_name("release"),
        TemplateBody='{"Resources": {"L": {"Type": "AWS::Logs::LogGroup"}}, "Outputs": {"ClusterName": {"Value": "default"}}}',
    )
    assert main(["status", "--env", ENV, "--config-dir", str(config_dir)]) == ExitCode.AWS
    assert "has no output StateMachineArn, ReleaseHistoryTableName, LeaseTableName" in _one_line(capsys.readouterr().err)


def test_credentials_for_another_account(aws: None, config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Its own GitHub environment too: config refuses two environments sharing one deploy subject.
    other = (config_dir / f"{ENV}.yaml").read_text().replace("123456789012", "210987654321")
    (config_dir / "other.yaml").write_text(other.replace("deploy_environment: production", "deploy_environment: other"))
    assert main(["outputs", "--env", "other", "--config-dir", str(config_dir)]) == ExitCode.AWS
    line = _one_line(capsys.readouterr().err)
    assert "credentials are for account 123456789012, but environment other is account 210987654321" in line


def test_aws_error_is_one_line(aws: None, config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create_stacks(("data", "images", "ci"))
    cfn = boto3.client("cloudformation", region_name=REGION)
    # A release stack whose state machine is gone: the ARN the deploy role may use (another ARN is
    # refused with AccessDeniedException before AWS looks for the machine), no machine behind it.
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STATE_MACHINE}"
    cfn.create_stack(
        StackName=stack_name("release"),
        TemplateBody='{"Resources": {"L": {"Type": "AWS::Logs::LogGroup"}}, "Outputs": {"StateMachineArn": '
        f'{{"Value": "{machine}"}}, "ReleaseHistoryTableName": {{"Value": "t"}}}}}}',
    )
    assert main(["start", "--env", ENV, "--config-dir", str(config_dir), "--image-tag", "abc"]) == ExitCode.AWS
    assert "starting the release: StateMachineDoesNotExist" in _one_line(capsys.readouterr().err)


def test_unknown_aws_profile(config_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_dir / "missing-aws-config"))
    assert main(["outputs", "--env", ENV, "--config-dir", str(config_dir)]) == ExitCode.AWS
    assert "no-such-profile" in _one_line(capsys.readouterr().err)


def test_python_dash_m_release_end_to_end(config_dir: Path) -> None:
    """The real entry point, in a fresh interpreter: no credentials needed to fail on a bad tag."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run(
        [sys.executable, "-m", "release", "start", "--env", ENV, "--config-dir", str(config_dir), "--image-tag", "bad tag"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == ExitCode.USAGE
    assert result.stdout == ""
    assert result.stderr.strip() == "release: invalid image tag 'bad tag': use 1-128 of A-Z a-z 0-9 _ . - not starting with . or -"


def test_bad_poll_interval_from_the_environment_is_a_usage_error(
    config_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELEASE_POLL_INTERVAL", "soon")
    assert main(["start", "--env", ENV, "--config-dir", str(config_dir), "--image-tag", "ok"]) == ExitCode.USAGE
    assert "--poll-interval: not a number of seconds: 'soon'" in _one_line(capsys.readouterr().err)
    # Other commands do not read it.
    monkeypatch.setenv("RELEASE_POLL_INTERVAL", "-3")
    assert main(["env", "--env", ENV, "--config-dir", str(config_dir)]) == ExitCode.OK


def test_ctrl_c_before_following_is_one_line(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(region: str) -> object:
        raise KeyboardInterrupt

    assert main(["status", "--env", ENV, "--config-dir", str(config_dir)], session_factory=interrupted) == ExitCode.INTERRUPTED
    assert _one_line(capsys.readouterr().err) == "release: interrupted"


def test_every_subcommand_is_its_own_module_and_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    """release/cli.py parses and dispatches; each subcommand's code lives in release/commands/<name>.py."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    names = [command.NAME for command in COMMANDS]
    assert names == [
        "start",
        "watch",
        "logs",
        "plan",
        "status",
        "history",
        "rollback",
        "stop",
        "hold",
        "unhold",
        "unlock",
        "migrate-status",
        "resolve",
        "outputs",
        "env",
        "lint-migrations",
    ]
    assert all(name in out for name in names)
    assert all(command.__name__ == f"release.commands.{command.NAME.replace('-', '_')}" for command in COMMANDS)
    cli = (REPO / "release" / "cli.py").read_text()
    assert "boto" not in cli.replace("from botocore.exceptions import BotoCoreError, ClientError", "")  # no AWS calls in the dispatcher
