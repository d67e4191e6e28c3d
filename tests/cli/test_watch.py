"""Live progress: each service's rollout while a release deploys (`start --wait`, `watch`), the
stopped tasks' reasons when one fails, and a release's migration log (`logs`, `status`)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from moto.core.exceptions import JsonRESTError
from moto.ecs.responses import EC2ContainerServiceResponse
from rich.console import Console

from release.errors import ExitCode
from release.progress import ServiceState
from release.record import Record
from release.report import ConsoleReporter
from tests.cli.conftest import Run
from tests.cli.fakes import (
    ACCOUNT,
    LOG_GROUP,
    REGION,
    TASK_ARN,
    ScriptedReleases,
    Step,
    create_services,
    digest_of,
    finished_record,
    set_rollout,
    stopped_task,
)

SHA = "3f9c2a7d1e4b8c6a0f5d2e9b7a1c4d8e6f0a2b3c"
FOLLOW = ("--wait", "--poll-interval", "1")
API_DEPLOYMENT, ADMIN_DEPLOYMENT = "ecs-svc/1111111111111111111", "ecs-svc/2222222222222222222"


def _two_services_rolling_out(admin_fails: bool) -> list[Step]:
    """api and admin roll out at the same time; api's deployment is in the item's Deployment_api
    attribute (written as UpdateService returns), admin's is found as the PRIMARY created since the start."""
    digests = {"api": digest_of("api"), "admin": digest_of("admin"), "migrate": digest_of("migrate")}
    rolling = {"api": {"outcome": "untouched"}, "admin": {"outcome": "untouched"}}
    admin_end = "FAILED" if admin_fails else "COMPLETED"

    def first() -> None:
        set_rollout("api", API_DEPLOYMENT, "IN_PROGRESS", running=0, desired=2, events=["(service api-cashsouk-09ff) has started 2 tasks."])
        set_rollout("admin", ADMIN_DEPLOYMENT, "IN_PROGRESS", running=0, desired=1, events=[])

    def second() -> None:
        set_rollout(
            "api", API_DEPLOYMENT, "COMPLETED", running=2, desired=2, events=["(service api-cashsouk-09ff) has reached a steady state."]
        )
        if admin_fails:
            stopped_task("admin", ADMIN_DEPLOYMENT, "Task failed container health checks")
        set_rollout(
            "admin",
            ADMIN_DEPLOYMENT,
            admin_end,
            running=0,
            desired=1,
            failed=3 if admin_fails else 0,
            events=["(service admin-cashsouk-544e) deployment failed: tasks failed to start."] if admin_fails else [],
        )

    ended = {
        "api": {"outcome": "deployed", "deploymentId": API_DEPLOYMENT, "taskDefinition": None, "reason": None},
        "admin": {
            "outcome": "failed" if admin_fails else "deployed",
            "taskDefinition": None,
            "reason": "rollout FAILED" if admin_fails else None,
        },
    }
    finish: dict[str, Any] = (
        {"status": "FAILED", "error": "DeploymentFailed", "cause": "admin-cashsouk-544e: rollout FAILED", "record": {"services": ended}}
        if admin_fails
        else {"status": "SUCCEEDED", "record": {"services": ended}}
    )
    return [
        Step(phase="images", record={"digests": digests}),
        Step(phase="deploy", record={"services": rolling}, deployments={"api": API_DEPLOYMENT}, act=first),
        Step(act=second, deployments={"api": API_DEPLOYMENT}),
        Step(phase="record", finish=finish),
    ]


def test_start_wait_shows_every_service_as_it_rolls_out_and_why_a_failed_one_stopped(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    create_services()
    releases.script = _two_services_rolling_out(admin_fails=True)
    summary = tmp_path / "summary.md"

    code = run("start", "--image-tag", SHA, "--services", "api", "admin", "--no-migrate", *FOLLOW, "--summary-file", str(summary))

    out = capsys.readouterr().out
    assert code == ExitCode.DEPLOYMENT_FAILED
    lines = out.splitlines()

    def first(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    # Both services at once, each state as one timestamped line (no terminal here), in order.
    assert first(f"◆ api: IN_PROGRESS ({API_DEPLOYMENT}), running 0/2, pending 2") < first(
        f"◆ api: COMPLETED ({API_DEPLOYMENT}), running 2/2"
    )
    assert first(f"◆ admin: IN_PROGRESS ({ADMIN_DEPLOYMENT}), running 0/1") < first(f"◆ admin: FAILED ({ADMIN_DEPLOYMENT})")
    assert "3 failed task(s)" in lines[first("◆ admin: FAILED")]
    # New service events once each, under the app's name.
    assert out.count("api | (service api-cashsouk-09ff) has started 2 tasks.") == 1
    assert "api | (service api-cashsouk-09ff) has reached a steady state." in out
    assert "admin | (service admin-cashsouk-544e) deployment failed" in out
    # The failed rollout's stopped task and its reason.
    assert "admin | stopped task " in out and "Task failed container health checks" in out
    markdown = summary.read_text()
    assert "| api | COMPLETED | 2/2 | (service api-cashsouk-09ff) has reached a steady state. |" in markdown
    assert "| admin | FAILED | 0/1 |" in markdown and "- admin: stopped task" in markdown


def test_a_service_not_yet_updated_is_not_mistaken_for_the_release(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before UpdateService, the service's PRIMARY deployment is the previous one: not shown as this release's."""
    create_services()  # their deployments were created now, i.e. before the release starts below
    digests = {"landing": digest_of("landing"), "migrate": digest_of("migrate")}
    releases.script = [Step(phase="deploy", record={"digests": digests}), Step(phase="record", finish={"status": "SUCCEEDED"})]
    assert run("start", "--image-tag", SHA, "--services", "landing", *FOLLOW) == ExitCode.OK
    out = capsys.readouterr().out
    assert "◆ landing: waiting" in out and "◆ landing: IN_PROGRESS" not in out and "running" not in out


def test_live_block_on_a_terminal() -> None:
    buffer = io.StringIO()
    reporter = ConsoleReporter(Console(file=buffer, force_terminal=True, width=160))
    assert reporter.live
    reporter.open()
    state = ServiceState(
        "api", "api-cashsouk-09ff", "ecs-svc/1", "IN_PROGRESS", running=1, desired=2, pending=1, last_event="started 1 task"
    )
    reporter.service_changed(datetime.now(UTC), state)
    reporter.service_event(datetime.now(UTC), "api", "has started 1 tasks")
    reporter.close()
    text = buffer.getvalue()
    assert "Services" in text and "IN_PROGRESS" in text and "1/2" in text and "api | has started 1 tasks" in text
    assert "◆ api" not in text  # no per-change line on a terminal: the block redraws


def test_no_ecs_rights_is_one_warning_and_the_release_is_still_followed(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(response: Any) -> Any:
        raise JsonRESTError("AccessDeniedException", "not authorized to perform: ecs:DescribeServices")

    monkeypatch.setattr(EC2ContainerServiceResponse, "describe_services", denied)
    create_services()
    releases.script = _two_services_rolling_out(admin_fails=False)
    assert run("start", "--image-tag", SHA, "--services", "api", "admin", *FOLLOW) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.count("no ecs:DescribeServices right") == 1 and "succeeded" in out


# --- watch ---------------------------------------------------------------------------------------------


def test_watch_attaches_to_the_running_release_and_exits_with_its_outcome(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    create_services()
    assert run("start", "--image-tag", SHA, "--services", "api", "admin") == ExitCode.OK  # CI started it, did not wait
    releases.script = _two_services_rolling_out(admin_fails=True)
    capsys.readouterr()

    code = run("watch", "--poll-interval", "1")

    out = capsys.readouterr().out
    assert code == ExitCode.DEPLOYMENT_FAILED
    assert "Watching release " in out
    assert "▶ deploy" in out and f"◆ api: COMPLETED ({API_DEPLOYMENT})" in out and "Task failed container health checks" in out


def test_watch_with_nothing_running(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    finished_record("v1-all-mig-00000001", "v1", started=datetime(2026, 11, 20, tzinfo=UTC))
    assert run("watch") == ExitCode.OK
    assert "No release is running in qa; the latest was v1-all-mig-00000001: SUCCEEDED." in capsys.readouterr().out


def test_watch_a_named_release_that_is_not_running(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("watch", "--execution", "nope") == ExitCode.USAGE
    assert "no running release is named nope" in capsys.readouterr().err


# --- logs and status -----------------------------------------------------------------------------------


def test_logs_prints_the_migration_stream_of_a_finished_release(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    started = datetime.now(UTC)
    other_task = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/default/ffffffffffffffffffffffffffffffff"
    releases.put_logs(f"migrate/migrate/{TASK_ARN.rsplit('/', 1)[-1]}", ["Applying migration `20261120_a`", "[migrate] exit 1"])
    releases.put_logs(f"migrate/migrate/{other_task.rsplit('/', 1)[-1]}", ["a later release's line"])
    migration = {"outcome": "failed", "exitCode": 1, "reason": None, "taskArn": TASK_ARN, "stoppedByRelease": False}
    finished_record("v2-all-mig-00000002", "v2", started=started, status="FAILED", migration=migration)

    assert run("logs", "--release", "v2-all-mig-00000002") == ExitCode.OK
    out = capsys.readouterr().out
    assert "migrate | Applying migration `20261120_a`" in out and "migrate | [migrate] exit 1" in out
    assert "a later release's line" not in out
    assert f"aws logs tail {LOG_GROUP} --log-stream-names migrate/migrate/{TASK_ARN.rsplit('/', 1)[-1]}" in out

    # status shows where that log is, as commands to paste (docs/operations.md promises it).
    assert run("status") == ExitCode.OK
    out = capsys.readouterr().out
    assert "migration log: python -m release logs --env qa --release v2-all-mig-00000002" in out
    assert f"migration log: aws logs tail {LOG_GROUP} --log-stream-names migrate/migrate/" in out


def test_logs_follows_a_running_release_to_its_end(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("start", "--image-tag", SHA) == ExitCode.OK
    releases.script = [
        Step(phase="migrate", log_lines=["[migrate] waiting for the migration lock"]),
        Step(log_lines=["All migrations have been successfully applied."]),
        Step(phase="record", finish={"status": "SUCCEEDED"}),
    ]
    releases.apply(releases.running(), Step(phase="lease"))  # the record exists before `logs` looks
    capsys.readouterr()
    assert run("logs", "--follow", "--poll-interval", "1", "--no-live-tail") == ExitCode.OK
    out = capsys.readouterr().out
    assert out.index("waiting for the migration lock") < out.index("successfully applied") < out.index("ended: SUCCEEDED")


def test_logs_of_a_release_that_ran_no_migration(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    finished_record("v1-1svc-nomig-00000001", "v1", started=datetime.now(UTC), kind="rollback")
    assert run("logs") == ExitCode.OK
    assert "No migrate task ran (yet)." in capsys.readouterr().out
    assert run("logs", "--release", "nope") == ExitCode.USAGE
    assert "no release named nope" in capsys.readouterr().err


def test_json_output_of_status_and_logs(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    started = datetime.now(UTC)
    releases.put_logs(f"migrate/migrate/{TASK_ARN.rsplit('/', 1)[-1]}", ["Applying migration `20261120_a`"])
    finished_record("v2-1svc-mig-00000002", "v2", started=started)
    assert run("status", "--format", "json") == ExitCode.OK
    status = json.loads(capsys.readouterr().out)
    assert status["latest"]["name"] == "v2-1svc-mig-00000002" and status["lease"] is None and status["hold"] is None
    assert status["migrationLog"][0] == "python -m release logs --env qa --release v2-1svc-mig-00000002"
    assert run("logs", "--format", "json") == ExitCode.OK
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert line["message"] == "Applying migration `20261120_a`" and line["timestamp"].startswith(str(started.year))


def test_start_wait_json_keeps_stdout_for_the_outcome(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    create_services()
    releases.script = _two_services_rolling_out(admin_fails=True)
    code = run("start", "--image-tag", SHA, "--services", "api", "admin", *FOLLOW, "--format", "json")
    out, err = capsys.readouterr()
    assert code == ExitCode.DEPLOYMENT_FAILED
    document = json.loads(out)  # stdout is one JSON document; the progress went to stderr
    assert (document["status"], document["exitCode"], document["record"]["error"]) == ("FAILED", 15, "DeploymentFailed")
    assert {s["app"]: s["state"] for s in document["services"]} == {"api": "COMPLETED", "admin": "FAILED"}
    assert "Task failed container health checks" in document["services"][1]["stoppedTasks"][0]
    assert "▶ deploy" in err


def test_a_deployment_id_written_mid_rollout_is_read_from_its_attribute() -> None:
    """i17's record: `Deployment_<app>` as soon as UpdateService returns, before the next Summary."""
    item = {
        "Sk": {"S": "2026-12-03T00:00:00.000Z#v1-1svc-mig-00000001"},
        "Summary": {"S": json.dumps({"services": {"api": {"outcome": "untouched", "deploymentId": None}}})},
        "Deployment_api": {"S": json.dumps({"app": "api", "deploymentId": API_DEPLOYMENT, "state": "IN_PROGRESS"})},
        "Deployment_admin": {"S": json.dumps({"app": "admin", "deploymentId": ADMIN_DEPLOYMENT})},
    }
    services = Record.from_item(item).services
    assert services["api"] == {"outcome": "untouched", "deploymentId": API_DEPLOYMENT}
    assert services["admin"]["deploymentId"] == ADMIN_DEPLOYMENT
