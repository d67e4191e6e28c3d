"""The restore point before a migration (constructs/release_machine/restore_point.py): executed
against the fakes, and its IAM read from the synthesized template."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emulation.driver import Interpreter
from emulation.fakes import FakeAws, FakeError, MigrationPlan
from emulation.world import DATABASE, build_world
from release.commands.status import restore_point_lines
from tests.release.test_release_machine import TAG, assert_lease_released, record, untouched_services

RESTORE = "aws rds restore-db-instance-to-point-in-time --region ap-southeast-5 --source-db-instance-identifier cashsouk-db "


@pytest.fixture
def fake(sfn: Interpreter) -> FakeAws:
    return build_world(sfn.reset())


def rds_calls(fake: FakeAws) -> list[str]:
    return [c.operation for c in fake.calls if c.service == "rds"]


def test_a_release_that_migrates_records_where_to_restore_to_before_the_migration(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.fail("DescribeDBInstances", "Throttling", times=2)  # RDS's throttle is retried
    result = sfn.run(machine, {"imageTag": TAG, "services": ["api"]})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    point = record(fake)["restorePoint"]
    assert point == result.output["restorePoint"]
    assert point["instance"] == DATABASE and point["latestRestorableTime"] == "2026-12-03T09:55:00Z"
    assert point["backupRetentionDays"] == 7 and point["snapshotId"] is None
    assert point["command"].startswith(RESTORE + "--target-db-instance-identifier cashsouk-db-before-")
    assert point["command"].endswith("--restore-time " + point["restoreTime"])
    # Read under the lease, before the migrate task starts.
    ops = fake.operations()
    assert ops.index("DescribeDBInstances") < ops.index("RunTask")
    assert [c.params["TableName"].endswith("-lease") for c in fake.calls_of("PutItem")][:2] == [False, True]
    assert fake.calls_of("DescribeDBInstances")[0].params == {"DBInstanceIdentifier": DATABASE}
    assert rds_calls(fake) == ["DescribeDBInstances"] * 3


def test_a_release_without_migration_takes_no_restore_point(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    result = sfn.run(machine, {"imageTag": TAG, "services": ["api"], "migrate": False, "snapshot": True})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert record(fake)["restorePoint"] is None and rds_calls(fake) == []


def test_a_failed_migration_says_how_to_restore(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.migration = MigrationPlan(exit_code=1, duration=30)
    result = sfn.run(machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    point = record(fake)["restorePoint"]
    assert result.cause.endswith("; to restore the database to just before the migration: " + point["command"])
    untouched_services(fake)
    assert_lease_released(fake, result)


def test_without_automated_backups_the_record_says_there_is_no_point_in_time_restore(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.add_database(DATABASE, backup_retention_days=0)
    fake.migration = MigrationPlan(exit_code=1, duration=30)
    result = sfn.run(machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    point = record(fake)["restorePoint"]
    assert point["command"] is None and "automated backups are off" in point["note"]
    assert "to restore the database" not in result.cause


def test_a_snapshot_is_taken_and_waited_for_before_the_migration(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.snapshot_seconds = 300
    result = sfn.run(machine, {"imageTag": TAG, "services": ["api"], "snapshot": True})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    point = record(fake)["restorePoint"]
    (created,) = fake.calls_of("CreateDBSnapshot")
    assert created.params["DBInstanceIdentifier"] == DATABASE
    assert point["snapshotId"] == created.params["DBSnapshotIdentifier"] and point["snapshotId"].startswith("cashsouk-example-release-")
    assert point["snapshotStatus"] == "available" and point["snapshotId"] in point["snapshotCommand"]
    run_task = fake.calls_of("RunTask")[0]
    assert run_task.at - created.at >= 300  # the migration waited for the snapshot
    polls = fake.calls_of("DescribeDBSnapshots")
    assert len(polls) == 10 and polls[-1].at - created.at == 300
    # What `release status` prints of it.
    lines = restore_point_lines(point)
    assert lines[0].startswith(f"Restore point: {DATABASE} at {point['restoreTime']}")
    assert f"  restore: {point['command']}" in lines and f"  from the snapshot: {point['snapshotCommand']}" in lines
    assert restore_point_lines(None) == []


@pytest.fixture(scope="module")
def short_snapshot_bound(sfn: Interpreter, definition: dict[str, Any]) -> str:
    """The synthesized definition with a 2-minute snapshot bound (4 polls instead of 120)."""
    text = json.dumps(definition)
    for example, short in {"$snapshotPolls < 120": "$snapshotPolls < 4", "within 3600 s": "within 120 s"}.items():
        assert example in text
        text = text.replace(example, short)
    return sfn.machine(json.loads(text), "release-short-snapshot-bound")


def test_a_snapshot_that_never_becomes_available_fails_the_release_before_migrating(
    sfn: Interpreter, short_snapshot_bound: str, fake: FakeAws
) -> None:
    fake.snapshot_seconds = None
    result = sfn.run(short_snapshot_bound, {"imageTag": TAG, "snapshot": True})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    assert "was not available within 120 s (status creating) (nothing was migrated)" in result.cause
    assert not fake.calls_of("RunTask") and record(fake)["migration"]["outcome"] == "not-run"
    polls = fake.calls_of("DescribeDBSnapshots")
    assert len(polls) == 4 and polls[-1].at - fake.calls_of("CreateDBSnapshot")[0].at == 120
    untouched_services(fake)
    assert_lease_released(fake, result)


def test_a_database_that_cannot_be_read_fails_before_migrating_with_rds_error_name(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.faults["DescribeDBInstances"] = [FakeError("DBInstanceNotFound", "DBInstance cashsouk-db not found.", 404)]
    result = sfn.run(machine, {"imageTag": TAG})
    # The error keeps the name the aws-sdk integration gives RDS's DBInstanceNotFound (never renamed).
    assert result.status == "FAILED" and result.error is not None and result.error.startswith("Rds.")
    assert "reading the database before the migration (nothing was migrated)" in result.cause
    assert not fake.calls_of("RunTask")


def test_snapshot_must_be_a_boolean(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    result = sfn.run(machine, {"imageTag": TAG, "snapshot": "yes"})
    assert (result.status, result.error) == ("FAILED", "InvalidInput")
    assert "snapshot: must be true or false" in result.cause


# ---- IAM ---------------------------------------------------------------------------------------------
def _statements(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy":
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                if "Sid" in statement:
                    found[statement["Sid"]] = statement
    return found


def _flat(value: Any) -> str:
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(_flat(v) for v in value["Fn::Join"][1])
    if isinstance(value, dict) and "Ref" in value:
        return "<" + str(value["Ref"]) + ">"
    return str(value)


def test_rds_rights_are_the_instance_and_this_machines_snapshots_only(release_stack_template: dict[str, Any]) -> None:
    statements = _statements(release_stack_template)
    instance = "arn:<AWS::Partition>:rds:ap-southeast-5:123456789012:db:cashsouk-db"
    snapshots = "arn:<AWS::Partition>:rds:ap-southeast-5:123456789012:snapshot:cashsouk-example-release-*"
    expected = {
        "ReadDatabaseRestoreWindow": ("rds:DescribeDBInstances", [instance]),
        "SnapshotBeforeMigration": ("rds:CreateDBSnapshot", [instance, snapshots]),
        "WatchSnapshot": ("rds:DescribeDBSnapshots", [instance, snapshots]),
    }
    for sid, (action, resources) in expected.items():
        statement = statements[sid]
        assert statement["Effect"] == "Allow" and statement["Action"] == action, sid
        listed = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert sorted(_flat(r) for r in listed) == sorted(resources), sid
    rds_actions = {
        a for s in statements.values() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]) if a.startswith("rds:")
    }
    assert rds_actions == {"rds:DescribeDBInstances", "rds:CreateDBSnapshot", "rds:DescribeDBSnapshots"}
