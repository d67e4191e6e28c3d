"""`start`: success with --wait, every error name's exit code, attaching to a running release."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from release.errors import ExitCode, ReleaseError
from release.follow import ExecutionFollower
from tests.cli.conftest import Run
from tests.cli.fakes import (
    LOG_GROUP,
    LOG_STREAM,
    REGION,
    ScriptedReleases,
    Step,
    entered,
    exited,
    release_script,
    success_output,
    task_failed,
)

SHA = "3f9c2a7d1e4b8c6a0f5d2e9b7a1c4d8e6f0a2b3c"


def _executions() -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    return list(sfn.list_executions(stateMachineArn=machine)["executions"])


def test_success_follows_steps_and_logs_and_prints_the_summary(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    releases.script = release_script({"status": "SUCCEEDED", "output": success_output(SHA, ["api", "admin"])})
    summary = tmp_path / "summary.md"

    code = run("start", "--image-tag", SHA, "--wait", "--poll-interval", "0", "--summary-file", str(summary))

    out, err = capsys.readouterr()
    assert code == ExitCode.OK, err
    assert err == ""
    # Each step as it happened, in order.
    order = [
        out.index(f"▶ {name}")
        for name in ("ValidateInput", "VerifyImages", "AcquireLease", "RunMigration", "DeployServices", "ReleaseLease")
    ]
    assert order == sorted(order)
    assert "✓ RunMigration" in out
    # The migrate task's log lines, streamed between the migration's start and its end; brackets kept.
    assert f"logs {LOG_GROUP} {LOG_STREAM}" in out
    assert "migrate | [migrate] waiting for the migration lock (key 7286150011)" in out
    assert "Applying migration `20261120093000_add_invoice_due_date`" in out
    assert out.index("▶ RunMigration") < out.index("Applying migration") < out.index("✓ RunMigration")
    # The summary table.
    assert f"Release {SHA} succeeded" in out
    assert "api-cashsouk-09ff" in out and "admin-cashsouk-544e" in out
    assert "cashsouk-migrate:42" in out and "COMPLETED" in out
    markdown = summary.read_text()
    assert "SUCCEEDED" in markdown and "| api | api-cashsouk-09ff | api-cashsouk-09ff:7 | COMPLETED |" in markdown
    # Input as the contract has it.
    (execution,) = _executions()
    assert execution["status"] == "SUCCEEDED"
    sfn = boto3.client("stepfunctions", region_name=REGION)
    sent = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert sent == {"imageTag": SHA, "migrate": True}


def test_services_and_no_migrate_go_into_the_input(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("start", "--image-tag", "v1.2.3", "--services", "admin", "api", "admin", "--no-migrate") == ExitCode.OK
    (execution,) = _executions()
    sfn = boto3.client("stepfunctions", region_name=REGION)
    sent = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert sent == {"imageTag": "v1.2.3", "services": ["api", "admin"], "migrate": False}  # config order, once each


FAILURES = [
    ("InvalidInput", "imageTag: does not match the tag pattern", ExitCode.INVALID_INPUT),
    ("ImageNotFound", "admin-cashsouk:3f9c2a7 not found", ExitCode.IMAGE_NOT_FOUND),
    ("ReleaseInProgress", "lease held by arn:aws:states:...:other for tag abc", ExitCode.RELEASE_IN_PROGRESS),
    ("MigrationFailed", "migrate task exited with code 1", ExitCode.MIGRATION_FAILED),
    ("MigrationTimedOut", "migrate task ran longer than 15 minutes", ExitCode.MIGRATION_TIMED_OUT),
    ("DeploymentFailed", "api-cashsouk-09ff: rollout FAILED (circuit breaker rolled back)", ExitCode.DEPLOYMENT_FAILED),
    ("States.TaskFailed", "an unexpected task failure", ExitCode.RELEASE_FAILED),
    ("States.Runtime", "a bug in the state machine", ExitCode.RELEASE_FAILED),
]


@pytest.mark.parametrize(("error", "cause", "expected"), FAILURES, ids=[f[0] for f in FAILURES])
def test_each_error_name_has_its_exit_code(  # noqa: PLR0917 (fixtures and parameters)
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], error: str, cause: str, expected: ExitCode
) -> None:
    script = release_script({"status": "FAILED", "error": error, "cause": cause})
    if error == "MigrationFailed":
        script[4] = Step(events=[task_failed("States.TaskFailed", '{"StopCode":"EssentialContainerExited"}')])
    releases.script = script

    code = run("start", "--image-tag", SHA, "--wait", "--poll-interval", "0")

    out, err = capsys.readouterr()
    assert code == expected
    assert f"FAILED: {error}" in err
    assert f"cause: {cause}" in err
    assert f"exit code {int(expected)}" in err
    if error == "MigrationFailed":
        assert f"(logs: {LOG_GROUP} {LOG_STREAM})" in err  # where to read the whole log
        assert "failed: States.TaskFailed" in out


@pytest.mark.parametrize("status", ["TIMED_OUT", "ABORTED"])
def test_timeout_and_abort_exit_20(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], status: str) -> None:
    releases.script = [Step(events=[entered("AcquireLease")]), Step(finish={"status": status})]
    assert run("start", "--image-tag", SHA, "--wait", "--poll-interval", "0") == ExitCode.RELEASE_FAILED
    assert status in capsys.readouterr().err


def test_starting_the_same_release_again_attaches_to_the_running_one(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("start", "--image-tag", SHA) == ExitCode.OK
    first = capsys.readouterr().out
    assert "Started release" in first

    # Same request while it runs: no second execution, the CLI follows the first one to its end.
    releases.script = release_script({"status": "SUCCEEDED", "output": success_output(SHA)})
    assert run("start", "--image-tag", SHA, "--wait", "--poll-interval", "0") == ExitCode.OK
    second = capsys.readouterr().out
    assert "Attached to running release" in second
    assert first.split("execution: ")[1].split()[0] == second.split("execution: ")[1].split()[0]
    assert len(_executions()) == 1

    # Once it has finished, the same request is a new release under a suffixed name.
    assert run("start", "--image-tag", SHA) == ExitCode.OK
    third = capsys.readouterr().out
    assert "Started release" in third
    names = sorted(e["name"] for e in _executions())
    assert len(names) == 2 and names[1] == f"{names[0]}-2"


def test_other_options_are_another_release(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("start", "--image-tag", SHA) == ExitCode.OK
    assert run("start", "--image-tag", SHA, "--no-migrate") == ExitCode.OK
    assert run("start", "--image-tag", SHA, "--services", "api") == ExitCode.OK
    assert len({e["name"] for e in _executions()}) == 3
    assert capsys.readouterr().out.count("Started release") == 3


def test_repeated_wait_states_are_shown_sparingly(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    loop = [entered("WaitForRollout", "Wait"), exited("WaitForRollout", "Wait"), entered("DescribeService"), exited("DescribeService")]
    releases.script = [Step(events=loop * 25), Step(finish={"status": "SUCCEEDED", "output": success_output(SHA)})]
    assert run("start", "--image-tag", SHA, "--wait", "--poll-interval", "0") == ExitCode.OK
    out = capsys.readouterr().out
    shown = [line for line in out.splitlines() if "▶ WaitForRollout" in line]
    assert [line.split("▶ ")[1] for line in shown] == [
        "WaitForRollout",
        "WaitForRollout (#2)",
        "WaitForRollout (#3)",
        "WaitForRollout (#10)",
        "WaitForRollout (#20)",
    ]


def test_log_stream_from_the_output_when_the_history_never_named_the_task(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    releases.script = [
        Step(log_lines=["No pending migrations to apply."]),
        Step(finish={"status": "SUCCEEDED", "output": success_output(SHA)}),
    ]
    assert run("start", "--image-tag", SHA, "--wait", "--poll-interval", "0") == ExitCode.OK
    assert "migrate | No pending migrations to apply." in capsys.readouterr().out


def test_without_wait_it_prints_the_execution_and_returns(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("start", "--image-tag", SHA) == ExitCode.OK
    out = capsys.readouterr().out
    assert "execution: arn:aws:states:ap-southeast-5:123456789012:execution:cashsouk-qa-release:" in out
    assert _executions()[0]["status"] == "RUNNING"


def test_history_is_read_newest_first_one_call_per_poll(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    """A long history (a rollout loop adds thousands of events) is not re-read on every poll: each
    poll pages back only to the last event it reported, and every event is reported exactly once."""
    many = [event for i in range(300) for event in (entered(f"Step{i}"), exited(f"Step{i}"))]
    releases.script = [
        Step(events=many),  # 600 events at once: several pages back to the first event
        Step(events=[entered("AcquireLease"), exited("AcquireLease")]),
        Step(events=[entered("ReleaseLease"), exited("ReleaseLease")]),
        Step(finish={"status": "SUCCEEDED", "output": success_output(SHA)}),
    ]
    assert run("start", "--image-tag", SHA, "--wait", "--poll-interval", "0") == ExitCode.OK
    out = capsys.readouterr().out
    for i in range(300):
        assert out.count(f"▶ Step{i}\n") == 1 and out.count(f"✓ Step{i}\n") == 1
    assert out.index("▶ Step299") < out.index("▶ AcquireLease") < out.index("▶ ReleaseLease")
    calls = releases.history_calls
    assert all(call["reverseOrder"] for call in calls)
    # 5 polls plus one after the end; only the poll that met the 600 new events needed more pages.
    assert len(calls) <= 6 + 3, calls


def test_an_aws_error_while_following_says_the_release_goes_on(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """E.g. the CI credentials expire mid-release: one line, exit 3, and the execution to look at."""
    releases.script = release_script({"status": "SUCCEEDED", "output": success_output(SHA)})
    original = ExecutionFollower.poll_logs

    def expire(self: ExecutionFollower) -> None:
        if releases.ticks >= 2:
            raise ReleaseError(
                "reading the migrate task's logs: ExpiredTokenException: The security token included in the request is expired",
                ExitCode.AWS,
            )
        original(self)

    monkeypatch.setattr(ExecutionFollower, "poll_logs", expire)
    assert run("start", "--image-tag", SHA, "--wait", "--poll-interval", "0") == ExitCode.AWS
    (line,) = capsys.readouterr().err.strip().splitlines()
    (execution,) = _executions()
    assert line.startswith("release: reading the migrate task's logs: ExpiredTokenException")
    assert line.endswith(f"(stopped following; the release goes on: {execution['executionArn']})")


def test_an_unwritable_summary_file_does_not_hide_the_outcome(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    releases.script = release_script({"status": "FAILED", "error": "DeploymentFailed", "cause": "rolled back"})
    code = run("start", "--image-tag", SHA, "--wait", "--poll-interval", "0", "--summary-file", str(tmp_path / "missing" / "summary.md"))
    assert code == ExitCode.DEPLOYMENT_FAILED
    err = capsys.readouterr().err
    assert "release: warning: cannot write the summary to" in err and "Traceback" not in err
