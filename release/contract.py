"""Names the release state machine shares with the release CLI and CI (one place, written once).

The state machine's definition (constructs/release_machine/), the CLI (release/) and the workflows
read these; docs/release.md documents them. Changing one is a contract change: the deployed state
machine and the CLI that talks to it must agree.
"""

from __future__ import annotations

from typing import Final

# ---- error names of a failed release and the CLI's exit code for each --------------------------
INVALID_INPUT: Final = "InvalidInput"
IMAGE_NOT_FOUND: Final = "ImageNotFound"
RELEASE_IN_PROGRESS: Final = "ReleaseInProgress"
MIGRATION_FAILED: Final = "MigrationFailed"
MIGRATION_TIMED_OUT: Final = "MigrationTimedOut"
DEPLOYMENT_FAILED: Final = "DeploymentFailed"
RELEASE_HELD: Final = "ReleaseHeld"  # releases are held (`release hold`): nothing was taken or changed
ERROR_EXIT_CODES: Final[dict[str, int]] = {
    INVALID_INPUT: 10,
    IMAGE_NOT_FOUND: 11,
    RELEASE_IN_PROGRESS: 12,
    MIGRATION_FAILED: 13,
    MIGRATION_TIMED_OUT: 14,
    DEPLOYMENT_FAILED: 15,
    RELEASE_HELD: 16,
}
ERROR_NAMES: Final = tuple(ERROR_EXIT_CODES)

# ---- the execution input -----------------------------------------------------------------------
INPUT_FIELDS: Final = ("imageTag", "services", "migrate", "startedBy", "note", "rollbackOf")
MAX_TEXT_FIELD: Final = 256  # startedBy, note
# A Docker image tag (what ECR accepts): first character, then up to 127 of the rest.
TAG_FIRST_CHARACTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
TAG_CHARACTERS: Final = TAG_FIRST_CHARACTERS + ".-"
TAG_MAX_LENGTH: Final = 128
TAG_PATTERN: Final = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
# Step Functions execution names are at most 80 characters; ECS RunTask's clientToken at most 64.
MAX_EXECUTION_NAME: Final = 80
MAX_CLIENT_TOKEN: Final = 64

# ---- the lease (one release at a time per environment) -----------------------------------------
LEASE_ID: Final = "release"

# ---- the release record: one DynamoDB item per execution in <prefix>-<env>-release-history -----
RECORD_PARTITION: Final = "release"  # Pk of every item: Query(Pk=RECORD_PARTITION, ScanIndexForward=False)
RECORD_PK: Final = "Pk"
RECORD_SK: Final = "Sk"  # "<execution start time, ISO-8601 UTC>#<execution name>"
RECORD_STATUS: Final = "Status"
RECORD_IMAGE_TAG: Final = "ImageTag"
RECORD_STARTED_AT: Final = "StartedAt"
RECORD_EXECUTION_ARN: Final = "ExecutionArn"
RECORD_SUMMARY: Final = "Summary"  # JSON text: the whole record (schema in docs/release.md)

STATUS_RUNNING: Final = "RUNNING"
STATUS_SUCCEEDED: Final = "SUCCEEDED"
STATUS_FAILED: Final = "FAILED"
STATUS_ABORTED: Final = "ABORTED"
STATUS_TIMED_OUT: Final = "TIMED_OUT"
STATUSES: Final = (STATUS_RUNNING, STATUS_SUCCEEDED, STATUS_FAILED, STATUS_ABORTED, STATUS_TIMED_OUT)
ENDED_BADLY: Final = (STATUS_FAILED, STATUS_TIMED_OUT, STATUS_ABORTED)

KIND_RELEASE: Final = "release"
KIND_ROLLBACK: Final = "rollback"
PHASES: Final = ("validate", "images", "lease", "migrate", "deploy", "record", "done")
MIGRATION_OUTCOMES: Final = ("succeeded", "failed", "timed-out", "skipped", "not-run")
SERVICE_OUTCOMES: Final = ("deployed", "failed", "untouched")

# ---- names of the migrate task ------------------------------------------------------------------
MIGRATE_APP: Final = "migrate"  # the migrate image's key among the digests (never an app name)
MIGRATE_CONTAINER_NAME: Final = "migrate"
MIGRATE_LOG_STREAM_PREFIX: Final = "migrate"

# ---- the migration runner's exit codes (migrate/runner.py) -------------------------------------
# The runner is copied into the migrate image alone, so it keeps its own EXIT_* constants;
# tests/migrate/test_migrate_config.py checks they equal these. The release names each in its cause.
RUNNER_EXIT_DEADLINE: Final = 6  # the runner's own deadline stopped the command: MigrationTimedOut
RUNNER_EXIT_MEANINGS: Final[dict[int, str]] = {
    2: "runner configuration error, nothing ran",
    3: "database unreachable for the whole connect wait, nothing ran",
    4: "another migration held the lock for the whole lock wait, nothing ran",
    5: "lock lost while the command ran: the command was stopped",
    RUNNER_EXIT_DEADLINE: "the runner's deadline passed: the command was stopped",
    7: "the database refused the login, nothing ran",
    70: "internal error of the runner",
    126: "the migration command is not executable",
    127: "the migration command was not found",
    137: "killed (SIGKILL)",
}

# ---- stack output keys the CLI and CI read ------------------------------------------------------
OUTPUT_STATE_MACHINE_ARN: Final = "StateMachineArn"
OUTPUT_LEASE_TABLE_NAME: Final = "LeaseTableName"
OUTPUT_RELEASE_HISTORY_TABLE_NAME: Final = "ReleaseHistoryTableName"
OUTPUT_RELEASED_PARAMETER_NAME: Final = "ReleasedParameterName"
OUTPUT_FAILURE_TOPIC_ARN: Final = "FailureTopicArn"
OUTPUT_CLUSTER_NAME: Final = "ClusterName"
OUTPUT_MIGRATE_TASK_FAMILY: Final = "MigrateTaskFamily"
OUTPUT_MIGRATE_LOG_GROUP_NAME: Final = "MigrateLogGroupName"

# ---- the hold (`release hold`): an item of the lease table that the machine reads first --------
HOLD_ID: Final = "hold"  # LeaseId of the hold item: Reason, HeldBy, HeldAt (S)

# ---- migration recovery through the release path (`migrate-status`, `resolve`) ---------------
# Optional input fields: {"action": "status"|"resolve", "resolve": "rolled-back:NAME"|"applied:NAME",
# "migrate": true, "services": []}. Such an execution runs the migrate task only and deploys nothing.
RECOVERY_INPUT_FIELDS: Final = ("action", "resolve")
ACTION_DEPLOY: Final = "deploy"
ACTION_STATUS: Final = "status"
ACTION_RESOLVE: Final = "resolve"
ACTIONS: Final = (ACTION_DEPLOY, ACTION_STATUS, ACTION_RESOLVE)
RESOLVE_KINDS: Final = ("rolled-back", "applied")
# A Prisma migration folder: <14-digit timestamp>_<letters, digits, _> (the runner checks the same).
MIGRATION_NAME_DIGITS: Final = 14
MIGRATION_NAME_CHARACTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
MIGRATION_NAME_MAX: Final = 215
KIND_MIGRATE_STATUS: Final = "migrate-status"
KIND_MIGRATE_RESOLVE: Final = "migrate-resolve"
# The migrate container's environment the runner reads (migrate/runner.py).
MIGRATE_ACTION_ENV: Final = "MIGRATE_ACTION"
MIGRATE_RESOLVE_ENV: Final = "MIGRATE_RESOLVE"
