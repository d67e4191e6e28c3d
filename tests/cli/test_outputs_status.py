"""`outputs` (JSON and $GITHUB_OUTPUT lines), `status` with and without a lease, `env`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from release.cli import main
from release.errors import ExitCode
from release.outputs import as_github
from tests.cli.conftest import Run
from tests.cli.fakes import ACCOUNT, ENV, LEASE_TABLE, REGION, RELEASED_PARAMETER, ScriptedReleases, finished_record, stack_name


def test_outputs_json_has_every_stack_and_leaves_out_cdk_plumbing(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("outputs") == ExitCode.OK
    data = json.loads(capsys.readouterr().out)
    assert sorted(data) == sorted(stack_name(unit) for unit in ("data", "images", "release", "ci"))
    release = data[stack_name("release")]
    assert release["StateMachineArn"] == f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:cashsouk-qa-release"
    assert release["LeaseTableName"] == LEASE_TABLE
    assert data[stack_name("images")]["RepositoryUriApi"].endswith("/api-cashsouk")
    assert data[stack_name("ci")]["DeployRoleArn"].endswith(":role/cashsouk-qa-ci-deploy")
    assert not any(key.startswith("ExportsOutput") for outputs in data.values() for key in outputs)


def test_outputs_github_lines_are_safe_for_github_output(run: Run, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run("outputs", "--format", "github") == ExitCode.OK
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    pairs = dict(line.split("=", 1) for line in lines)
    assert len(pairs) == len(lines)  # one line per output, no duplicate keys
    assert pairs["DeployRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/cashsouk-qa-ci-deploy"
    assert pairs["PrivateSubnetIds"] == "subnet-0a1b2c3d4e5f60001,subnet-0a1b2c3d4e5f60002"
    assert {"RepositoryUriApi", "RepositoryUriMigrate", "StateMachineArn", "MigrateLogGroupName", "ReleasedParameterName"} <= set(pairs)
    assert all(key.replace("_", "").isalnum() for key in pairs)


def test_github_format_drops_multiline_values_and_qualifies_shared_keys() -> None:
    units = {"data": "s-data", "release": "s-release"}
    lines, warnings = as_github({"s-data": {"Name": "a", "Bad": "x\nInjected=1", "We-ird.Key": "v"}, "s-release": {"Name": "b"}}, units)
    assert lines == ["data_Name=a", "We_ird_Key=v", "release_Name=b"]
    assert warnings == ["s-data output Bad spans several lines: left out"]


def test_status_without_a_lease(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    initial: dict[str, object] = {"imageTag": None, "digests": {}, "execution": None, "releasedAt": None}  # as the stack creates it
    boto3.client("ssm", region_name=REGION).put_parameter(Name=RELEASED_PARAMETER, Value=json.dumps(initial), Type="String")
    assert run("status") == ExitCode.OK
    out = capsys.readouterr().out
    assert "Lease: free" in out
    assert "Released: nothing yet" in out
    assert "No releases yet." in out


def test_status_shows_the_latest_record_and_the_lease(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    finished_record("abc1234-all-mig-00000001", "abc1234", started=datetime(2026, 11, 23, 6, 0, tzinfo=UTC))
    latest = finished_record(
        "def5678-all-mig-00000002",
        "def5678",
        started=datetime(2026, 11, 24, 6, 0, tzinfo=UTC),
        status="FAILED",
        deployed=("api", "admin"),
        started_by="alice",
        migration={"outcome": "failed", "exitCode": 3, "reason": "Essential container in task exited", "taskArn": None},
    )
    released = {
        "imageTag": "abc1234",
        "digests": {"api": "sha256:00"},
        "execution": "arn:x:abc1234-all-mig-00000001",
        "releasedAt": "2026-11-23T06:05:00Z",
    }
    boto3.client("ssm", region_name=REGION).put_parameter(Name=RELEASED_PARAMETER, Value=json.dumps(released), Type="String")
    assert run("start", "--image-tag", "aaa111") == ExitCode.OK
    owner = releases.running()
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=LEASE_TABLE,
        Item={
            "LeaseId": {"S": "release"},
            "Owner": {"S": owner.execution_arn},
            "ImageTag": {"S": "aaa111"},
            "AcquiredAt": {"S": "2026-11-24T06:30:00Z"},
            "ExpiresAt": {"N": str(int(datetime.now(UTC).timestamp()) + 3600)},
        },
    )
    capsys.readouterr()

    assert run("status") == ExitCode.OK
    out = capsys.readouterr().out
    assert f"Lease: held by {owner.name} for image aaa111 since 2026-11-24T06:30:00Z" in out
    assert "(expired)" not in out and "stale" not in out
    assert "Released: abc1234 at 2026-11-23T06:05:00Z by abc1234-all-mig-00000001" in out
    # The latest record (the running one has none yet: moto runs no state machine).
    assert "Release def5678-all-mig-00000002" in out
    assert "FAILED: DeploymentFailed" in out and "api-cashsouk-09ff: rollout FAILED" in out
    assert "failed, exit code 3 (Essential container in task exited)" in out
    assert "2026-11-24 06:00:00Z by alice" in out and "2026-11-24 06:05:12Z (5m12s)" in out
    for app in ("api", "admin", "migrate"):
        assert f"digest {app}: {latest['digests'][app]}" in out


def test_status_flags_a_stale_lease(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("start", "--image-tag", "abc1234") == ExitCode.OK
    owner = releases.running()
    releases.finish(owner, "ABORTED")
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=LEASE_TABLE,
        Item={
            "LeaseId": {"S": "release"},
            "Owner": {"S": owner.execution_arn},
            "ImageTag": {"S": "abc1234"},
            "AcquiredAt": {"S": "2026-11-24T06:30:00Z"},
            "ExpiresAt": {"N": "1795500000"},
        },
    )
    capsys.readouterr()
    assert run("status") == ExitCode.OK
    out = capsys.readouterr().out
    assert "(expired)" in out and "owner is ABORTED: the lease is stale" in out


def test_env_prints_the_config_without_aws(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "--env", ENV, "--config-dir", str(config_dir), "--format", "github"]) == ExitCode.OK
    pairs = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert pairs["region"] == REGION and pairs["account"] == ACCOUNT
    assert pairs["apps"] == "api admin investor issuer landing"
    assert pairs["stack_release"] == "cashsouk-qa-release"
    assert pairs["repository_api"] == "api-cashsouk" and pairs["migrate_architecture"] == "ARM64"
    assert pairs["migrations_path"] == "apps/api/prisma/migrations" and pairs["squawk_excluded_rules"] == "prefer-robust-stmts"


def test_env_names_the_schema_apps(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CI deploys these on every release (they are what the state machine defaults to)."""
    assert main(["env", "--env", ENV, "--config-dir", str(config_dir), "--format", "github"]) == ExitCode.OK
    pairs = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert pairs["schema_apps"] == "api"
