"""`hold`, `unhold`, `unlock`, and what `start` says at once: held (refused, exit 16) or another
release holding the lease (named, with what this one will do)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import boto3
import pytest

from release import contract
from release.errors import ExitCode
from tests.cli.conftest import Run
from tests.cli.fakes import ACCOUNT, LEASE_TABLE, REGION, STATE_MACHINE, ScriptedReleases, create_services, finished_record, push_image

OWNER = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STATE_MACHINE}:v0-all-mig-00000000"


def _items() -> dict[str, dict[str, dict[str, str]]]:
    table = boto3.client("dynamodb", region_name=REGION).scan(TableName=LEASE_TABLE)
    return {item["LeaseId"]["S"]: item for item in table["Items"]}


def _take_lease(owner: str) -> None:
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=LEASE_TABLE,
        Item={
            "LeaseId": {"S": contract.LEASE_ID},
            "Owner": {"S": owner},
            "ImageTag": {"S": "v0"},
            "AcquiredAt": {"S": "2026-12-03T01:00:00Z"},
            "ExpiresAt": {"N": str(int(time.time()) + 3600)},
        },
    )


def test_hold_refuses_start_at_once_and_unhold_lets_it_through(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("hold", "--reason", "INC-42:  failover  in progress") == ExitCode.OK
    out = capsys.readouterr().out
    assert "Releases of qa are held: INC-42: failover in progress" in out
    assert "Lift it: python -m release unhold --env qa" in out
    hold = _items()[contract.HOLD_ID]
    assert hold["Reason"]["S"] == "INC-42: failover in progress" and hold["HeldBy"]["S"].startswith("arn:aws:")

    assert run("start", "--image-tag", "v1") == ExitCode.RELEASE_HELD
    err = capsys.readouterr().err
    assert "releases are held by arn:aws:" in err and "INC-42: failover in progress" in err
    assert "python -m release unhold --env qa" in err
    assert releases.executions == []  # refused before StartExecution

    assert run("unhold", "--format", "json") == ExitCode.OK
    lifted = json.loads(capsys.readouterr().out)
    assert lifted["held"] is False and lifted["lifted"]["reason"] == "INC-42: failover in progress"
    assert contract.HOLD_ID not in _items()
    assert run("start", "--image-tag", "v1") == ExitCode.OK
    assert run("unhold") == ExitCode.OK
    assert "were not held: nothing to lift" in capsys.readouterr().out


def test_hold_names_the_release_that_goes_on_and_replaces_an_earlier_hold(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("start", "--image-tag", "v1") == ExitCode.OK
    name = releases.executions[0].name
    assert run("hold", "--reason", "freeze") == ExitCode.OK
    out = capsys.readouterr().out
    assert f"Release {name} started before the hold and goes on; stop it: python -m release stop --env qa --execution {name}" in out
    assert run("hold", "--reason", "freeze until Monday", "--format", "json") == ExitCode.OK
    document = json.loads(capsys.readouterr().out)
    assert document["hold"]["reason"] == "freeze until Monday" and document["replaced"]["reason"] == "freeze"
    assert document["running"] == [name]


def test_hold_needs_a_reason(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("hold", "--reason", "   ") == ExitCode.USAGE
    assert "--reason must say why" in capsys.readouterr().err


def test_start_names_the_release_holding_the_lease_and_what_it_will_do(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("start", "--image-tag", "v0") == ExitCode.OK
    first = releases.executions[0]
    _take_lease(first.execution_arn)
    releases.update_record(first, phase="migrate")
    capsys.readouterr()
    assert run("start", "--image-tag", "v1") == ExitCode.OK
    out = capsys.readouterr().out
    assert f"Another release is running: {first.name} (tag v0, started by arn:aws:" in out
    assert "phase migrate" in out and "waits for the lease up to 20 min" in out and "ReleaseInProgress (exit 12)" in out
    assert f"python -m release watch --env qa --execution {first.name}" in out


def test_unlock_frees_a_stale_lease_after_checking_its_owner(
    run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str], answers: list[bool]
) -> None:
    _take_lease(OWNER)  # the owner execution does not exist (any more)
    answers.append(True)
    assert run("unlock") == ExitCode.OK
    assert "Freed the lease of release v0-all-mig-00000000 (execution not found)" in capsys.readouterr().out
    assert releases.questions == ["Free the lease of release v0-all-mig-00000000 (execution not found)?"]
    assert contract.LEASE_ID not in _items()
    assert run("unlock") == ExitCode.OK
    assert "is free: nothing to unlock" in capsys.readouterr().out


def test_unlock_refuses_a_lease_whose_owner_runs(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("start", "--image-tag", "v0") == ExitCode.OK
    running = releases.executions[0]
    _take_lease(running.execution_arn)
    assert run("unlock", "--yes") == ExitCode.RELEASE_IN_PROGRESS
    err = capsys.readouterr().err
    assert "which is RUNNING: it is not stale" in err and f"python -m release stop --env qa --execution {running.name}" in err
    assert _items()[contract.LEASE_ID]["Owner"]["S"] == running.execution_arn


def test_unlock_without_a_terminal_needs_yes(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    finished_record("v0-all-mig-00000000", "v0", started=datetime(2026, 12, 1, tzinfo=UTC), status="FAILED", leaseReleased=False)
    _take_lease(OWNER)
    assert run("unlock") == ExitCode.USAGE
    assert "pass --yes" in capsys.readouterr().err
    assert contract.LEASE_ID in _items()


def test_plan_shows_the_hold_as_a_blocker(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    create_services()
    for repository in ("api-cashsouk", "cashsouk-migrate"):
        push_image(repository, "v1")
    assert run("hold", "--reason", "quarter-end freeze") == ExitCode.OK
    capsys.readouterr()
    assert run("plan", "--image-tag", "v1", "--format", "json") == ExitCode.RELEASE_HELD
    blockers = [b["text"] for b in json.loads(capsys.readouterr().out)["blockers"]]
    assert blockers[0].startswith("releases are held by arn:aws:") and "quarter-end freeze" in blockers[0]
    assert blockers[0].endswith("(lift it: python -m release unhold --env qa)")


def test_stop_json(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("stop", "--yes", "--format", "json") == ExitCode.OK
    assert json.loads(capsys.readouterr().out) == {"stopped": None}
    assert run("start", "--image-tag", "v1") == ExitCode.OK
    capsys.readouterr()
    assert run("stop", "--yes", "--format", "json") == ExitCode.OK
    document = json.loads(capsys.readouterr().out)
    assert document["stopped"] == releases.executions[0].name and document["record"]["status"] == "ABORTED"


def test_status_json_shows_the_lease_and_the_hold(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    _take_lease(OWNER)
    assert run("hold", "--reason", "freeze") == ExitCode.OK
    capsys.readouterr()
    assert run("status", "--format", "json") == ExitCode.OK
    status = json.loads(capsys.readouterr().out)
    assert status["lease"]["Owner"] == OWNER and status["lease"]["ownerStatus"] is None  # the owner is gone
    assert status["hold"]["reason"] == "freeze" and status["latest"] is None
    assert run("status") == ExitCode.OK
    assert "Hold: releases are held by arn:aws:" in capsys.readouterr().out
