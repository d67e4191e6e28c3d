"""`migrate-status` and `resolve`: Prisma's recovery commands through the release path (the state
machine's `action` input), their log followed, the outcome as the exit code."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from release.errors import ExitCode
from tests.cli.conftest import Run
from tests.cli.fakes import LOG_GROUP, REGION, RELEASED_PARAMETER, ScriptedReleases, release_script

MIGRATION = "20261120093000_add_invoice_due_date"


def _sent(releases: ScriptedReleases) -> dict[str, Any]:
    (execution,) = releases.executions
    return dict(json.loads(execution.execution_input))


def _released(tag: str) -> None:
    value = json.dumps({"imageTag": tag, "digests": {}, "execution": "x", "releasedAt": "2026-12-01T00:00:00Z"})
    boto3.client("ssm", region_name=REGION).put_parameter(Name=RELEASED_PARAMETER, Value=value, Type="String")


def test_resolve_runs_prisma_resolve_from_the_released_image_and_follows_it(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    _released("v41")
    logs = [f"Migration {MIGRATION} marked as rolled back."]
    releases.script = release_script({"status": "SUCCEEDED", "record": {"services": {}}}, migration_logs=["[migrate] lock taken", *logs])

    code = run("resolve", "--rolled-back", MIGRATION, "--yes", "--poll-interval", "1")

    out = capsys.readouterr().out
    assert code == ExitCode.OK
    sent = _sent(releases)
    assert {k: v for k, v in sent.items() if k != "startedBy"} == {
        "imageTag": "v41",
        "action": "resolve",
        "resolve": f"rolled-back:{MIGRATION}",
        "migrate": True,
        "services": [],
        "note": f"prisma migrate resolve --rolled-back {MIGRATION}",
    }
    assert releases.executions[0].name.startswith("v41-resolve-")
    assert f"Started prisma migrate resolve --rolled-back {MIGRATION} in qa with migrate image v41" in out
    assert f"migrate | Migration {MIGRATION} marked as rolled back." in out


def test_resolve_refuses_what_is_not_a_migration_name_before_anything_starts(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("resolve", "--applied", "add_invoice; DROP TABLE x", "--yes", "--image-tag", "v1") == ExitCode.USAGE
    assert "not a Prisma migration folder name" in capsys.readouterr().err
    assert run("resolve", "--applied", MIGRATION, "--rolled-back", MIGRATION, "--yes") == ExitCode.USAGE
    assert releases.executions == []


def test_resolve_asks_first(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("resolve", "--applied", MIGRATION, "--image-tag", "v1") == ExitCode.USAGE  # no terminal, no --yes
    assert "pass --yes" in capsys.readouterr().err
    assert releases.questions == [f"Mark migration {MIGRATION} as applied in qa's database (prisma migrate resolve --applied)?"]
    assert releases.executions == []


def test_migrate_status_that_finds_a_failed_migration_exits_13_and_names_its_log(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    migration = {
        "outcome": "failed",
        "exitCode": 1,
        "reason": None,
        "taskArn": "arn:aws:ecs:x:1:task/default/abc",
        "stoppedByRelease": False,
    }
    releases.script = release_script(
        {"status": "FAILED", "error": "MigrationFailed", "cause": "migrate task exited 1", "record": {"migration": migration}},
        migration_logs=["[migrate] lock taken", f"Following migration have failed: {MIGRATION}", "[migrate] exit 1"],
    )
    code = run("migrate-status", "--image-tag", "v42", "--poll-interval", "1")
    out, err = capsys.readouterr()
    assert code == ExitCode.MIGRATION_FAILED
    sent = _sent(releases)
    assert (sent["action"], sent["services"], sent["migrate"], "resolve" in sent) == ("status", [], True, False)
    assert f"migrate | Following migration have failed: {MIGRATION}" in out
    assert f"migration log: aws logs tail {LOG_GROUP} --log-stream-names migrate/migrate/abc" in out
    assert "MigrationFailed" in err


def test_migrate_status_with_nothing_released_asks_for_the_image(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("migrate-status") == ExitCode.USAGE
    assert "nothing has been released in qa yet: name the migrate image with --image-tag" in capsys.readouterr().err
    assert releases.executions == []
