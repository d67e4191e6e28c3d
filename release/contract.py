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
INPUT_FIELDS: Final = ("imageTag", "services", "migrate", "startedBy", "note", "rollbackOf", "snapshot")
MAX_TEXT_FIELD: Final = 256  # startedBy, note
# A Docker image tag (what ECR accepts): first character, then up to 127 of the rest.
TAG_FIRST_CHARACTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
TAG_CHARACTERS: Final = TAG_FIRST_CHARACTERS + ".-"
TAG_MAX_LENGTH: Final = 128
TAG_PATTERN: Final = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
# The execution name: Step Functions allows up to 80 characters, but the release passes it raw to
# ECS RunTask as startedBy (up to 128 letters, numbers, '-', '/', '_') and clientToken (up to 64
# ASCII 33-126), and the lease cleanup finds the migrate task by startedBy = execution name. One
# rule satisfies both: 1-64 of A-Z a-z 0-9 _ -. ValidateInput refuses any other name (InvalidInput,
# before anything is taken); the CLI's generated names (release/naming.py) always pass it.
EXECUTION_NAME_CHARACTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
MAX_EXECUTION_NAME: Final = 64
EXECUTION_NAME_PATTERN: Final = "[A-Za-z0-9_-]{1,64}"
EXECUTION_NAME_RULE: Final = (
    "execution name: must be 1-64 characters of A-Z a-z 0-9 _ - (ECS takes it as the migrate task's startedBy and clientToken)"
)
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
# "interrupted": its UpdateService ran, then the execution was aborted (the cleanup machine says so).
SERVICE_OUTCOMES: Final = ("deployed", "failed", "interrupted", "untouched")
# While services roll out, each one's deployment is also written to its own attribute of the
# record item as soon as UpdateService returns (JSON text: app, service, deploymentId,
# taskDefinition, state), so an aborted execution's cleanup can name it; the next PutItem of the
# record replaces the item, with the same facts in the Summary.
RECORD_DEPLOYMENT_PREFIX: Final = "Deployment_"  # + app name
# The lease item's deploy gate: this execution's ARN while services may start, closed by the first
# failure so that no new service starts (those already rolling finish).
LEASE_GATE: Final = "Gate"

# ---- names of the migrate task ------------------------------------------------------------------
MIGRATE_APP: Final = "migrate"  # the migrate image's key among the digests (never an app name)
MIGRATE_CONTAINER_NAME: Final = "migrate"
MIGRATE_LOG_STREAM_PREFIX: Final = "migrate"
# RunTask's container override: the absolute deadline (integer Unix epoch seconds) the runner
# honours besides its own MIGRATE_DEADLINE_SECONDS (the earlier of the two wins).
MIGRATE_DEADLINE_AT_ENV: Final = "MIGRATE_DEADLINE_AT"

# ---- the migration runner's exit codes (migrate/runnerlib/exits.py) ---------------------------
# The runner is copied into the migrate image alone, so it keeps its own EXIT_* constants;
# tests/migrate/test_migrate_config.py checks they equal these. The release names each in its cause.
# The runner's own codes sit in 80-89; a command's own code in that range reads as 88, so any other
# code is the command's own (1, 2, 6 … are never "nothing ran").
RUNNER_EXIT_DEADLINE: Final = 84  # the runner's own deadline stopped the command: MigrationTimedOut
RUNNER_EXIT_MEANINGS: Final[dict[int, str]] = {
    80: "runner configuration error, nothing ran",
    81: "database unreachable for the whole connect wait, nothing ran",
    82: "another migration held the lock for the whole lock wait, nothing ran",
    83: "lock lost while the command ran: the command was stopped",
    RUNNER_EXIT_DEADLINE: "the runner's deadline passed: the command was stopped",
    85: "the database refused the login, nothing ran",
    86: "the migration command is not executable, nothing ran",
    87: "the migration command was not found, nothing ran",
    88: "the migration command failed with an exit code in the runner's reserved range 80-89 (its code is in the log)",
    89: "internal error of the runner",
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
