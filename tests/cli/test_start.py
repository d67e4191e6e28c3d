"""`start`: following a release through its record and the migration's logs, every error name's exit
code, attaching to a running release, who started it. The execution history is never read."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from release.errors import ExitCode, ReleaseError
from release.migration_logs import MigrationLogs
from tests.cli.conftest import Run
from tests.cli.fakes import (
    LOG_GROUP,
    LOG_STREAM,
    REGION,
    ScriptedReleases,
    Step,
    release_script,
    success_record,
)

SHA = "3f9c2a7d1e4b8c6a0f5d2e9b7a1c4d8e6f0a2b3c"
FOLLOW = ("--wait", "--poll-interval", "1")


def _executions() -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    return list(sfn.list_executions(stateMachineArn=machine)["executions"])


def _sent(execution: dict[str, Any]) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    return dict(json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"]))


def test_success_follows_phases_and_logs_and_prints_the_record(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    releases.script = release_script({"status": "SUCCEEDED", "record": success_record(("api", "admin"))})
    summary = tmp_path / "summary.md"

    code = run("start", "--image-tag", SHA, *FOLLOW, "--summary-file", str(summary))

    out, err = capsys.readouterr()
    assert code == ExitCode.OK, err
    assert err == ""
    order = [out.index(f"▶ {phase}\n") for phase in ("images", "lease", "migrate", "deploy", "done")]
    assert order == sorted(order)
    # The migrate task's log lines, between the migration's start and the deploy; brackets kept.
    assert "migrate | [migrate] waiting for the migration lock (key 7286150011)" in out
    assert out.index("▶ migrate") < out.index("Applying migration `20261120093000_add_invoice_due_date`") < out.index("▶ deploy")
    assert out.count("All migrations have been successfully applied.") == 1
    # The outcome, from the record.
    assert f"Release {SHA} succeeded" in out
    assert "succeeded, exit code 0" in out
    assert "api-cashsouk-09ff:7" in out and "admin-cashsouk-544e:7" in out
    assert "octocat (GitHub Actions run 4242)" in out
    markdown = summary.read_text()
    assert "SUCCEEDED" in markdown and "| api | deployed |" in markdown and "Migration: succeeded, exit code 0" in markdown
    (execution,) = _executions()
    assert _sent(execution) == {"imageTag": SHA, "migrate": True, "startedBy": "octocat (GitHub Actions run 4242)"}
    # Only metadata was asked for (CI cannot decrypt input or output); the last call is the test's own.
    assert set(releases.described_with[:-1]) == {"METADATA_ONLY"}


def test_started_by_outside_ci_is_the_caller_identity(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    assert run("start", "--image-tag", "v1", "--note", "hotfix for INC-12") == ExitCode.OK
    sent = _sent(_executions()[0])
    assert sent["startedBy"].startswith("arn:aws:") and sent["note"] == "hotfix for INC-12"  # moto's caller ARN


def test_services_and_no_migrate_go_into_the_input(run: Run) -> None:
    assert run("start", "--image-tag", "v1.2.3", "--services", "admin", "api", "admin", "--no-migrate") == ExitCode.OK
    sent = _sent(_executions()[0])
    assert {k: sent[k] for k in ("imageTag", "services", "migrate")} == {
        "imageTag": "v1.2.3",
        "services": ["api", "admin"],
        "migrate": False,
    }


def test_snapshot_goes_into_the_input_only_when_asked(run: Run) -> None:
    assert run("start", "--image-tag", "v1.2.3", "--snapshot") == ExitCode.OK
    assert _sent(_executions()[0])["snapshot"] is True
    assert run("start", "--image-tag", "v1.2.4") == ExitCode.OK
    assert "snapshot" not in _sent(next(e for e in _executions() if e["name"].startswith("v1-2-4")))


FAILURES = [
    ("InvalidInput", "imageTag: does not match the tag pattern", ExitCode.INVALID_INPUT),
    ("ImageNotFound", "admin-cashsouk:3f9c2a7 not found", ExitCode.IMAGE_NOT_FOUND),
    ("ReleaseInProgress", "lease held by arn:aws:states:...:other for tag abc", ExitCode.RELEASE_IN_PROGRESS),
    ("MigrationFailed", "migrate task exited with code 1 (logs: /ecs/cashsouk-migrate migrate/migrate/0f1e)", ExitCode.MIGRATION_FAILED),
    ("MigrationTimedOut", "migrate task ran longer than 15 minutes", ExitCode.MIGRATION_TIMED_OUT),
    ("DeploymentFailed", "api-cashsouk-09ff: rollout FAILED (circuit breaker rolled back)", ExitCode.DEPLOYMENT_FAILED),
    ("States.TaskFailed", "an unexpected task failure", ExitCode.RELEASE_FAILED),
    ("States.Runtime", "a bug in the state machine", ExitCode.RELEASE_FAILED),
]


@pytest.mark.parametrize(("error", "cause", "expected"), FAILURES, ids=[f[0] for f in FAILURES])
def test_each_error_name_has_its_exit_code(  # noqa: PLR0917 (fixtures and parameters)
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], error: str, cause: str, expected: ExitCode
) -> None:
    record: dict[str, Any] = {}
    if error == "MigrationFailed":
        record = {"migration": {"outcome": "failed", "exitCode": 1, "reason": "Essential container in task exited", "taskArn": None}}
    releases.script = release_script({"status": "FAILED", "error": error, "cause": cause, "record": record})

    code = run("start", "--image-tag", SHA, *FOLLOW)

    out, err = capsys.readouterr()
    assert code == expected
    assert f"FAILED: {error}" in err
    assert f"cause: {cause}" in err
    assert f"exit code {int(expected)}" in err
    if error == "MigrationFailed":
        assert "failed, exit code 1 (Essential container in task exited)" in out


@pytest.mark.parametrize("status", ["TIMED_OUT", "ABORTED"])
def test_timeout_and_abort_exit_20(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], status: str) -> None:
    releases.script = [Step(phase="lease"), Step(finish={"status": status})]
    assert run("start", "--image-tag", SHA, *FOLLOW) == ExitCode.RELEASE_FAILED
    assert status in capsys.readouterr().err


def test_the_outcome_waits_for_the_cleanup_to_complete_the_record(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    """After an abort the cleanup machine writes the record a little later: the CLI waits for it."""
    releases.script = [
        Step(phase="migrate", end_execution="ABORTED"),
        Step(),
        Step(record={"status": "ABORTED", "leaseReleased": True, "endedAt": "2026-11-24T06:40:00.000Z"}),
    ]
    assert run("start", "--image-tag", SHA, *FOLLOW) == ExitCode.RELEASE_FAILED
    out, err = capsys.readouterr()
    assert "ABORTED" in err
    assert releases.ticks == 3  # it read the record until the cleanup had written it
    assert "lease" not in out.split("phase")[1].splitlines()[0] and "NOT released" not in out


def test_starting_the_same_release_again_attaches_to_the_running_one(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("start", "--image-tag", SHA) == ExitCode.OK
    first = capsys.readouterr().out
    assert "Started release" in first

    # Same request, from someone else, while it runs: no second execution; the CLI follows the first.
    monkeypatch.setenv("USER", "someone-else")
    releases.script = release_script({"status": "SUCCEEDED", "record": success_record()})
    assert run("start", "--image-tag", SHA, *FOLLOW) == ExitCode.OK
    second = capsys.readouterr().out
    assert "Attached to running release" in second
    assert first.split("execution: ")[1].split()[0] == second.split("execution: ")[1].split()[0]
    assert len(_executions()) == 1

    # Once it has finished, the same request is a new release under a suffixed name.
    assert run("start", "--image-tag", SHA) == ExitCode.OK
    assert "Started release" in capsys.readouterr().out
    names = sorted(e["name"] for e in _executions())
    assert len(names) == 2 and names[1] == f"{names[0]}-2"


def test_other_options_are_another_release(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("start", "--image-tag", SHA) == ExitCode.OK
    assert run("start", "--image-tag", SHA, "--no-migrate") == ExitCode.OK
    assert run("start", "--image-tag", SHA, "--services", "api") == ExitCode.OK
    assert len({e["name"] for e in _executions()}) == 3
    assert capsys.readouterr().out.count("Started release") == 3


def test_without_wait_it_prints_the_execution_and_returns(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("start", "--image-tag", SHA) == ExitCode.OK
    out = capsys.readouterr().out
    assert "execution: arn:aws:states:ap-southeast-5:123456789012:execution:cashsouk-qa-release:" in out
    assert _executions()[0]["status"] == "RUNNING"


def test_logs_are_polled_when_live_tail_is_refused(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An account or role without logs:StartLiveTail: FilterLogEvents polling shows every line once."""
    modes: list[str] = []
    original_start = MigrationLogs.start

    def refused(self: MigrationLogs) -> None:
        def deny(**kwargs: Any) -> None:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "StartLiveTail")

        monkeypatch.setattr(self.logs, "start_live_tail", deny)
        original_start(self)
        modes.append(self.mode)

    monkeypatch.setattr(MigrationLogs, "start", refused)
    releases.script = release_script({"status": "SUCCEEDED", "record": success_record()}, migration_logs=["one", "two", "three"])
    assert run("start", "--image-tag", SHA, *FOLLOW) == ExitCode.OK
    out = capsys.readouterr().out
    assert modes == ["polling"]
    assert [line.split("migrate | ")[1] for line in out.splitlines() if "migrate | " in line] == ["one", "two", "three"]


def test_a_live_tail_session_that_ends_falls_back_to_polling_without_losing_or_repeating_lines(aws: None) -> None:
    """moto's Live Tail answers with the lines already there and ends (a real session runs up to three
    hours, which cannot be run here): the follower then polls from the last line it saw."""
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=LOG_STREAM)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName="other/stream")

    def put(stream: str, *lines: str) -> None:
        now = int(time.time() * 1000)
        logs.put_log_events(
            logGroupName=LOG_GROUP, logStreamName=stream, logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)]
        )

    put(LOG_STREAM, "first", "second")
    put("other/stream", "not the migration")
    follower = MigrationLogs(logs, LOG_GROUP, f"arn:aws:logs:{REGION}:123456789012:log-group:{LOG_GROUP}", since_ms=0)
    follower.start()
    assert follower.mode == "live-tail"
    seen: list[str] = []
    for _ in range(200):  # the reader thread hands over the session's lines, then its end
        seen += [line.message for line in follower.poll()]
        if follower.mode == "polling":
            break
        time.sleep(0.01)
    put(LOG_STREAM, "third")
    seen += [line.message for line in follower.poll()]
    follower.close()
    assert follower.mode == "polling"
    assert seen == ["first", "second", "third"]


def test_an_aws_error_while_following_says_the_release_goes_on(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """E.g. the CI credentials expire mid-release: one line, exit 3, and the execution to look at."""
    releases.script = release_script({"status": "SUCCEEDED", "record": success_record()})
    original = MigrationLogs.poll

    def expire(self: MigrationLogs) -> list[Any]:
        if releases.ticks >= 2:
            raise ReleaseError(
                "reading the migrate task's logs: ExpiredTokenException: The security token included in the request is expired",
                ExitCode.AWS,
            )
        return original(self)

    monkeypatch.setattr(MigrationLogs, "poll", expire)
    assert run("start", "--image-tag", SHA, *FOLLOW) == ExitCode.AWS
    (line,) = capsys.readouterr().err.strip().splitlines()
    (execution,) = _executions()
    assert line.startswith("release: reading the migrate task's logs: ExpiredTokenException")
    assert line.endswith(f"(stopped following; the release goes on: {execution['executionArn']})")


def test_an_unwritable_summary_file_does_not_hide_the_outcome(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    releases.script = release_script({"status": "FAILED", "error": "DeploymentFailed", "cause": "rolled back"})
    code = run("start", "--image-tag", SHA, *FOLLOW, "--summary-file", str(tmp_path / "missing" / "summary.md"))
    assert code == ExitCode.DEPLOYMENT_FAILED
    err = capsys.readouterr().err
    assert "release: warning: cannot write the summary to" in err and "Traceback" not in err
