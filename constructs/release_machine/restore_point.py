"""Phase "restore point": before a release migrates, a way back.

    RestorePoint ─▶ DescribeDatabase ─▶ WantsSnapshot ─▶ [CreateSnapshot ─▶ (SnapshotPollDelay
    ─▶ DescribeSnapshot ─▶ SnapshotProgress)*] ─▶ RecordRestorePoint ─▶ ShouldMigrate

Every release that migrates reads the instance (rds:DescribeDBInstances) under the lease, right
before the migration: its LatestRestorableTime proves point-in-time restore works (automated
backups on) and the time recorded just before the migrate task starts is the point to restore to.
The record (`restorePoint`), `release status` and every MigrationFailed / MigrationTimedOut cause
carry the command an operator can paste. With `snapshot: true` in the input it also takes a manual
snapshot (rds:CreateDBSnapshot) and waits, bounded, until it is available: a snapshot that fails or
takes too long fails the release before anything is migrated.

Step Functions' aws-sdk integration names response members in PascalCase ("DbInstances"); where
AWS's casing of an acronym is not certain, both spellings are read.
"""

from __future__ import annotations

import math

from constructs.release_machine.asl import (
    FAIL_RELEASE,
    DefinitionSettings,
    Grant,
    Phase,
    State,
    catch_all,
    expr,
    fail_with,
    js,
    retry_transient,
)
from constructs.release_machine.record import progress_record
from release import contract, limits

RESTORE_POINT = "RestorePoint"
DESCRIBE_DATABASE = "DescribeDatabase"
WANTS_SNAPSHOT = "WantsSnapshot"
CREATE_SNAPSHOT = "CreateSnapshot"
SNAPSHOT_POLL_DELAY = "SnapshotPollDelay"
DESCRIBE_SNAPSHOT = "DescribeSnapshot"
SNAPSHOT_PROGRESS = "SnapshotProgress"
RECORD_RESTORE_POINT = "RecordRestorePoint"

# RDS's throttling code is "Throttling"; 5xx arrive as InternalFailure / ServiceUnavailable, and an
# error the SDK does not model as the service's base exception (asl.py, "error names").
RDS_TRANSIENT = [
    f"{service}.{name}"
    for name in ("Throttling", "ThrottlingException", "InternalFailure", "ServiceUnavailable", "RdsException", "InternalServerError")
    for service in ("Rds", "RDS")
]
SNAPSHOT_POLL_SECONDS = limits.SNAPSHOT_POLL_SECONDS


def snapshot_polls(timeout_seconds: int) -> int:
    return max(1, math.ceil(timeout_seconds / SNAPSHOT_POLL_SECONDS))


def _first(result: str, member: str) -> str:
    """The first element of a list member, in either casing of the DB acronym."""
    pascal = member.replace("DB", "Db")
    return f"($exists({result}.{pascal}) ? {result}.{pascal}[0] : {result}.{member}[0])"


def restore_point_phase(s: DefinitionSettings, next_state: str) -> Phase:
    if not s.database_instance_identifier or not s.database_instance_arn:
        raise ValueError("the restore point needs the database instance's identifier and ARN")
    instance = js(s.database_instance_identifier)
    region = "$split($states.context.Execution.Id, ':')[3]"
    stamp = "$fromMillis($toMillis($states.context.Execution.StartTime), '[Y0001][M01][D01]-[H01][m01][s01]')"
    target = "$replace($substring(" + instance + ", 0, 40), /-+$/, '') & '-before-' & " + stamp
    database = _first("$states.result", "DBInstances")
    command = (
        "'aws rds restore-db-instance-to-point-in-time --region ' & "
        + region
        + " & ' --source-db-instance-identifier ' & "
        + instance
        + " & ' --target-db-instance-identifier ' & "
        + target
        + " & ' --restore-time ' & $restoreTime"
    )
    restore_point = (
        "($db := " + database + "; $restoreTime := $now(); $days := $exists($db.BackupRetentionPeriod) ? $db.BackupRetentionPeriod : 0; "
        "{'instance': " + instance + ", 'restoreTime': $restoreTime, "
        "'latestRestorableTime': $exists($db.LatestRestorableTime) ? $string($db.LatestRestorableTime) : null, "
        "'backupRetentionDays': $days, "
        "'command': $days > 0 ? " + command + " : null, "
        "'note': $days > 0 ? 'restore once the instance can be restored to restoreTime (its latest restorable time passes it, "
        "usually within 5 minutes); the restore creates a new instance' : "
        "'automated backups are off (BackupRetentionPeriod 0): no point-in-time restore', "
        "'snapshotId': null, 'snapshotStatus': null, 'snapshotCommand': null})"
    )
    snapshot_id = js(s.snapshot_prefix + "-") + " & " + stamp
    snapshot = _first("$states.result", "DBSnapshots")
    polls = snapshot_polls(s.snapshot_timeout_seconds)
    snapshot_command = (
        "'aws rds restore-db-instance-from-db-snapshot --region ' & "
        + region
        + " & ' --db-instance-identifier ' & "
        + target
        + " & ' --db-snapshot-identifier ' & $restorePoint.snapshotId"
    )
    not_migrated = "' (nothing was migrated)'"
    states: dict[str, State] = {
        RESTORE_POINT: {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $migrate %}", "Next": DESCRIBE_DATABASE}],
            "Default": next_state,
        },
        DESCRIBE_DATABASE: {
            "Type": "Task",
            "Comment": "The instance's latest restorable time, and the time to restore to: right before the migration.",
            "Resource": "arn:aws:states:::aws-sdk:rds:describeDBInstances",
            "Arguments": {"DbInstanceIdentifier": s.database_instance_identifier},
            "Assign": {"restorePoint": expr(restore_point)},
            "Retry": [retry_transient(RDS_TRANSIENT)],
            "Catch": [catch_all("reading the database before the migration (nothing was migrated)", "migrate")],
            "Next": WANTS_SNAPSHOT,
        },
        WANTS_SNAPSHOT: {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $snapshot %}", "Next": CREATE_SNAPSHOT}],
            "Default": RECORD_RESTORE_POINT,
        },
        CREATE_SNAPSHOT: {
            "Type": "Task",
            "Comment": "A manual snapshot before a migration the lint found destructive (input snapshot: true).",
            "Resource": "arn:aws:states:::aws-sdk:rds:createDBSnapshot",
            "Arguments": {"DbInstanceIdentifier": s.database_instance_identifier, "DbSnapshotIdentifier": expr(snapshot_id)},
            "Assign": {
                "restorePoint": expr("$merge([$restorePoint, {'snapshotId': " + snapshot_id + ", 'snapshotStatus': 'creating'}])"),
                "snapshotPolls": 0,
            },
            "Retry": [retry_transient(RDS_TRANSIENT)],
            "Catch": [catch_all("creating the snapshot before the migration (nothing was migrated)", "migrate")],
            "Next": SNAPSHOT_POLL_DELAY,
        },
        SNAPSHOT_POLL_DELAY: {"Type": "Wait", "Seconds": SNAPSHOT_POLL_SECONDS, "Next": DESCRIBE_SNAPSHOT},
        DESCRIBE_SNAPSHOT: {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:rds:describeDBSnapshots",
            "Arguments": {"DbSnapshotIdentifier": "{% $restorePoint.snapshotId %}"},
            "Assign": {
                "restorePoint": expr(
                    "$merge([$restorePoint, {'snapshotStatus': ($d := " + snapshot + "; $exists($d.Status) ? $d.Status : 'missing')}])"
                ),
                "snapshotPolls": "{% $snapshotPolls + 1 %}",
            },
            "Retry": [retry_transient(RDS_TRANSIENT)],
            "Catch": [catch_all("watching the snapshot before the migration (nothing was migrated)", "migrate")],
            "Next": SNAPSHOT_PROGRESS,
        },
        SNAPSHOT_PROGRESS: {
            "Type": "Choice",
            "Choices": [
                {
                    "Condition": "{% $restorePoint.snapshotStatus = 'available' %}",
                    "Assign": {"restorePoint": expr("$merge([$restorePoint, {'snapshotCommand': " + snapshot_command + "}])")},
                    "Next": RECORD_RESTORE_POINT,
                },
                {
                    "Condition": "{% $restorePoint.snapshotStatus in ['creating', 'pending', 'backing-up'] and $snapshotPolls < "
                    + str(polls)
                    + " %}",
                    "Next": SNAPSHOT_POLL_DELAY,
                },
            ],
            "Default": FAIL_RELEASE,
            "Assign": fail_with(
                contract.MIGRATION_FAILED,
                "'snapshot ' & $restorePoint.snapshotId & ' was not available within "
                + str(s.snapshot_timeout_seconds)
                + " s (status ' & $restorePoint.snapshotStatus & ')' & "
                + not_migrated,
                "migrate",
            ),
        },
        RECORD_RESTORE_POINT: progress_record(s, next_state),
    }
    snapshots = s.snapshot_arn_prefix + "*"
    grants = [
        Grant("ReadDatabaseRestoreWindow", ("rds:DescribeDBInstances",), (s.database_instance_arn,)),
        # CreateDBSnapshot is authorized on the instance and on the new snapshot's ARN; only
        # snapshots named with this release machine's prefix.
        Grant("SnapshotBeforeMigration", ("rds:CreateDBSnapshot",), (s.database_instance_arn, snapshots)),
        Grant("WatchSnapshot", ("rds:DescribeDBSnapshots",), (s.database_instance_arn, snapshots)),
    ]
    return Phase(states, grants)
