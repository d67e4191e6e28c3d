"""`history`, `rollback` and `stop`: read from the release record, act through the same state machine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from release.errors import ExitCode
from tests.cli.conftest import Run
from tests.cli.fakes import REGION, ScriptedReleases, finished_record, push_image, release_script, success_record

OLD, NEW = "a1b2c3d4", "b7e1c0de"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _sent(execution: Any) -> dict[str, Any]:
    return dict(json.loads(execution.execution_input))


# --- history -----------------------------------------------------------------------------------------


def test_history_lists_releases_newest_first(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    finished_record(f"{OLD}-all-mig-00000001", OLD, started=T0, started_by="alice", seconds=75)
    finished_record(f"{NEW}-all-mig-00000002", NEW, started=T0 + timedelta(days=1), status="FAILED", deployed=("api", "admin"))
    finished_record(f"{OLD}-1svc-nomig-00000003", OLD, started=T0 + timedelta(days=2), kind="rollback", started_by="bob")
    assert run("history") == ExitCode.OK
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("│ 2026-")]
    assert [row.split("│")[2].strip() for row in rows] == [OLD, NEW, OLD]
    assert "rollback" in rows[0] and "skipped" in rows[0] and "bob" in rows[0]
    assert "FAILED DeploymentFailed" in rows[1] and "api failed, admin failed" in rows[1]
    assert "api deployed" in rows[2] and "1m15s" in rows[2] and "alice" in rows[2]


def test_history_pages_through_the_table_and_stops_at_the_limit(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(60):
        finished_record(f"t{i:02d}-all-mig-0000{i:04d}", f"t{i:02d}", started=T0 + timedelta(minutes=i))
    assert run("history", "--limit", "55", "--format", "json") == ExitCode.OK
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 55  # more than one Query page of 50
    assert records[0]["imageTag"] == "t59" and records[-1]["imageTag"] == "t05"


def test_history_when_nothing_was_recorded(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("history") == ExitCode.OK
    assert "No releases recorded yet." in capsys.readouterr().out


# --- rollback ----------------------------------------------------------------------------------------


@pytest.fixture
def two_releases(releases: ScriptedReleases) -> dict[str, str]:
    """OLD then NEW released successfully (api and admin), their images still in ECR."""
    digests = {f"{app}:{tag}": push_image(f"{app}-cashsouk", tag) for app in ("api", "admin") for tag in (OLD, NEW)}
    for day, tag in enumerate((OLD, NEW)):
        finished_record(
            f"{tag}-all-mig-0000000{day}",
            tag,
            started=T0 + timedelta(days=day),
            deployed=("api", "admin"),
            digests={"api": digests[f"api:{tag}"], "admin": digests[f"admin:{tag}"], "migrate": "sha256:m"},
        )
    return digests


def test_rollback_redeploys_the_previous_release_without_migrating(
    run: Run, releases: ScriptedReleases, two_releases: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("rollback", "--yes") == ExitCode.OK
    out = capsys.readouterr().out
    assert f"Rollback to {OLD} (release {OLD}-all-mig-00000000" in out
    assert f"api: {two_releases[f'api:{OLD}']}" in out
    assert "The database schema stays as it is: a rollback runs no migration" in out
    (execution,) = releases.executions
    sent = _sent(execution)
    assert {k: v for k, v in sent.items() if k != "startedBy"} == {
        "imageTag": OLD,
        "migrate": False,
        "services": ["api", "admin"],
        "rollbackOf": f"{NEW}-all-mig-00000001",
        "note": f"rollback to {OLD}",
    }
    assert releases.questions == []  # --yes


def test_rollback_to_a_named_tag_for_some_services_and_follow_it(
    run: Run, releases: ScriptedReleases, two_releases: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    releases.script = release_script({"status": "SUCCEEDED", "record": success_record(("admin",))}, migration_logs=[])
    assert run("rollback", "--to", OLD, "--services", "admin", "--yes", "--wait", "--poll-interval", "1") == ExitCode.OK
    out = capsys.readouterr().out
    assert _sent(releases.executions[0])["services"] == ["admin"]
    assert f"Release {OLD} succeeded" in out and "rollback of" in out


def test_rollback_refuses_when_the_tag_no_longer_resolves_to_the_recorded_digest(
    run: Run, releases: ScriptedReleases, two_releases: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("ecr", region_name=REGION).batch_delete_image(repositoryName="api-cashsouk", imageIds=[{"imageTag": OLD}])
    push_image("api-cashsouk", f"{OLD}-rebuilt")
    # The same tag now points at other bytes (possible only where tags are mutable).
    ecr = boto3.client("ecr", region_name=REGION)
    manifest = ecr.batch_get_image(repositoryName="api-cashsouk", imageIds=[{"imageTag": f"{OLD}-rebuilt"}])["images"][0]["imageManifest"]
    ecr.put_image(repositoryName="api-cashsouk", imageManifest=manifest, imageTag=OLD)
    assert run("rollback", "--yes") == ExitCode.IMAGE_NOT_FOUND
    err = capsys.readouterr().err
    assert f"api: api-cashsouk:{OLD} is now sha256:" in err and "refusing to roll back to other bytes" in err
    assert releases.executions == []


def test_rollback_refuses_when_the_image_is_gone(
    run: Run, releases: ScriptedReleases, two_releases: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("ecr", region_name=REGION).batch_delete_image(repositoryName="admin-cashsouk", imageIds=[{"imageTag": OLD}])
    assert run("rollback", "--yes") == ExitCode.IMAGE_NOT_FOUND
    assert f"admin: image admin-cashsouk:{OLD} no longer exists" in capsys.readouterr().err
    assert releases.executions == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--to", "nope"], f"no successful release of tag nope is recorded (recent ones: {NEW}, {OLD})"),
        ([], "no terminal to confirm on: pass --yes to confirm"),
    ],
)
def test_rollback_refusals_change_nothing(  # noqa: PLR0917 (fixtures and parameters)
    run: Run, releases: ScriptedReleases, two_releases: dict[str, str], capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert run("rollback", *args) == ExitCode.USAGE
    assert expected in capsys.readouterr().err
    assert releases.executions == []


def test_rollback_with_only_one_successful_tag(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    finished_record(f"{NEW}-all-mig-1", NEW, started=T0)
    finished_record(f"{OLD}-all-mig-2", OLD, started=T0 + timedelta(days=1), status="FAILED")
    assert run("rollback", "--yes") == ExitCode.USAGE
    assert f"only tag {NEW} was released successfully: nothing earlier to roll back to" in capsys.readouterr().err


# --- stop --------------------------------------------------------------------------------------------


def _running_release(run: Run, releases: ScriptedReleases, phase: str = "migrate") -> Any:
    assert run("start", "--image-tag", NEW) == ExitCode.OK
    execution = releases.running()
    releases.update_record(execution, phase=phase)
    return execution


def test_stop_with_yes_stops_and_reports_where(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    execution = _running_release(run, releases)
    capsys.readouterr()
    assert run("stop", "--yes") == ExitCode.OK
    out = capsys.readouterr().out
    assert execution.status == "ABORTED"
    assert f"Stopped release {execution.name}." in out
    assert "It stopped in phase migrate." in out
    assert "The lease is released; a new release can start." in out
    # No error or cause: stopping then needs no KMS rights on the state machine's data.
    assert releases.stop_calls == [{"executionArn": execution.execution_arn, "error": None, "cause": None}]


def test_stop_asks_on_a_terminal(run: Run, releases: ScriptedReleases, answers: list[bool], capsys: pytest.CaptureFixture[str]) -> None:
    execution = _running_release(run, releases, phase="deploy")
    answers += [False]
    assert run("stop") == ExitCode.USAGE
    assert "not confirmed: nothing was changed" in capsys.readouterr().err
    assert execution.status == "RUNNING"
    assert releases.questions == [f"Stop release {execution.name} (tag {NEW}, phase deploy, started by {_sent(execution)['startedBy']})?"]
    answers += [True]
    assert run("stop") == ExitCode.OK
    assert execution.status == "ABORTED"


def test_stop_without_a_terminal_or_yes_refuses(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    execution = _running_release(run, releases)
    assert run("stop") == ExitCode.USAGE
    assert "no terminal to confirm on: pass --yes to confirm" in capsys.readouterr().err
    assert execution.status == "RUNNING" and releases.stop_calls == []


def test_stop_when_nothing_runs(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("stop", "--yes") == ExitCode.OK
    assert "No release is running: nothing to stop." in capsys.readouterr().out


def test_stop_says_when_the_cleanup_has_not_recorded_the_lease_yet(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    releases.cleanup_on_abort = False
    _running_release(run, releases)
    assert run("stop", "--yes") == ExitCode.OK
    assert "The cleanup has not recorded the lease's release yet" in capsys.readouterr().out
    assert releases.ticks == 30  # a bounded wait


def test_stop_needs_a_name_when_several_run(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("start", "--image-tag", NEW) == ExitCode.OK
    assert run("start", "--image-tag", OLD) == ExitCode.OK
    assert run("stop", "--yes") == ExitCode.USAGE
    assert "2 releases are running" in capsys.readouterr().err
    name = releases.executions[1].name
    assert run("stop", "--yes", "--execution", name) == ExitCode.OK
    assert [e.status for e in releases.executions] == ["RUNNING", "ABORTED"]
