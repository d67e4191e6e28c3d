"""What every phase of the release definition shares: the settings, JSONata helpers, retriers,
the error names AWS gives, and `Grant`, the IAM statement a state needs, declared beside it.

The definition is plain data (Amazon States Language, JSONata throughout); values CDK only knows
at deploy time (table names, ARNs) arrive as token strings that CloudFormation resolves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from release import contract, limits

State = dict[str, Any]

# ---- error names ------------------------------------------------------------------------------
# aws-sdk integrations name an error "<Service>.<ErrorName>" in PascalCase (AWS: "the resulting
# Error field will be composed of the service name and error name, separated by a period"); an
# error the SDK does not model, throttling among them for ECS, arrives as the service's base
# exception ("<Service>.<Service>Exception"). Where AWS's spelling of the service is not certain
# (ECS or Ecs), both are listed: an ErrorEquals that names an error never raised costs nothing.
QUERY_ERROR = "States.QueryEvaluationError"
STATES_ALL = "States.ALL"
CONDITIONAL_CHECK_FAILED = "DynamoDB.ConditionalCheckFailedException"


def _both(service: str, names: Sequence[str]) -> list[str]:
    spellings = dict.fromkeys([service.capitalize(), service.upper()])
    return [f"{s}.{n}" for n in names for s in spellings]


# "<Service>.SdkClientException": the SDK inside Step Functions lost the connection mid-request
# (reported for every aws-sdk service); the call may or may not have reached the service, so it is
# retried only where a retry is harmless (every call here: reads, conditional writes, RunTask with
# its clientToken, UpdateService with the same task definition).
SDK_CLIENT = ["SdkClientException"]
ECS_TRANSIENT = _both("ecs", ["ThrottlingException", "ServerException", "EcsException", "AmazonECSException", *SDK_CLIENT])
ECR_TRANSIENT = _both("ecr", ["ThrottlingException", "ServerException", "EcrException", *SDK_CLIENT])
SSM_TRANSIENT = _both(
    "ssm",
    ["ThrottlingException", "InternalServerError", "InternalServerErrorException", "SsmException", "TooManyUpdatesException", *SDK_CLIENT],
)
# UpdateService only: ECS reports ELB throttling during UpdateService as ClientException. The same
# name covers real client errors (a bad parameter); retrying one of those only delays the failure
# by the retrier's backoff (at most about a minute). A retried UpdateService with the same task
# definition and no forceNewDeployment starts no second deployment (docs/release.md, "Retries").
ECS_UPDATE_SERVICE_TRANSIENT = [*ECS_TRANSIENT, *_both("ecs", ["ClientException"])]
# The optimized DynamoDB integration: "DynamoDB.<error code>". Two transient codes have no
# "Exception" suffix in DynamoDB's API; Step Functions' guide says to add it: both are listed.
DYNAMODB_TRANSIENT = [
    "DynamoDB.ProvisionedThroughputExceededException",
    "DynamoDB.ThrottlingException",
    "DynamoDB.InternalServerError",
    "DynamoDB.InternalServerErrorException",
    "DynamoDB.RequestLimitExceeded",
    "DynamoDB.RequestLimitExceededException",
    "DynamoDB.AmazonDynamoDBException",
    "DynamoDB.SdkClientException",
]
# ECR's own "not found" errors: the only ones that become ImageNotFound (a throttle never does).
IMAGE_MISSING_ERRORS = _both("ecr", ["ImageNotFoundException", "RepositoryNotFoundException"])


def retry_transient(errors: Sequence[str]) -> State:
    """Throttling and 5xx: retried with exponential backoff and full jitter; the last failure keeps
    its own error name (no Catch renames it)."""
    return {
        "ErrorEquals": list(errors),
        "IntervalSeconds": 1,
        "MaxAttempts": limits.TRANSIENT_RETRIES,
        "BackoffRate": 2.0,
        "MaxDelaySeconds": 20,
        "JitterStrategy": "FULL",
    }


# Read-only fields of DescribeTaskDefinition's output that RegisterTaskDefinition refuses (every
# member of the API's TaskDefinition shape that RegisterTaskDefinition's request lacks).
READ_ONLY_TASK_DEFINITION_FIELDS = (
    "TaskDefinitionArn",
    "Revision",
    "Status",
    "RequiresAttributes",
    "Compatibilities",
    "RegisteredAt",
    "RegisteredBy",
    "DeregisteredAt",
    "DeleteRequestedAt",
)


# ---- JSONata ------------------------------------------------------------------------------------
def js(value: Any) -> str:
    """A JSON literal, which is also a JSONata literal."""
    return json.dumps(value, separators=(",", ":"))


def expr(body: str) -> str:
    return "{% " + body + " %}"


# Guarded reads of an error output: AWS says the error output "usually" has a Cause; an expression
# that evaluates to nothing in a Catcher's Assign would fail the Catcher itself.
ERROR = "($exists($states.errorOutput.Error) ? $states.errorOutput.Error : 'States.Unknown')"
CAUSE = "($exists($states.errorOutput.Cause) ? $string($states.errorOutput.Cause) : '(no cause given)')"
EXECUTION_NAME = "$states.context.Execution.Name"
# "; already deployed: a, b" (or nothing), from $serviceResults.
DEPLOYED_SO_FAR = (
    "($d := [$filter($keys($serviceResults), function($k) { $lookup($serviceResults, $k).outcome = 'deployed' })]; "
    "$count($d) > 0 ? '; already deployed: ' & $join($d, ', ') : '')"
)
EXECUTION_ARN = "$states.context.Execution.Id"
# How many times this execution was redriven (AWS: "The value of the RedriveCount context object is
# 0, if you've not yet redriven an execution"); guarded, so an engine without it reads 0.
REDRIVES = "($r := $states.context.Execution.RedriveCount; $exists($r) ? $r : 0)"
# When this attempt's machine timeout started counting: redrive resets it ("the state machine level
# timeout, if defined, is reset to 0"), and RedriveTime exists only once redriven.
ATTEMPT_STARTED = "($t := $states.context.Execution.RedriveTime; $exists($t) ? $t : $states.context.Execution.StartTime)"
RESTORE_HINT = (
    "($type($restorePoint) = 'object' and $type($restorePoint.command) = 'string' ? '; to restore the database to just before "
    "the migration: ' & $restorePoint.command & ($type($restorePoint.snapshotCommand) = 'string' ? ' (or from the snapshot: ' & "
    "$restorePoint.snapshotCommand & ')' : '') : '')"
)


@dataclass(frozen=True)
class Grant:
    """One IAM statement a state needs. `resources == ("*",)` only for APIs AWS gives no
    resource-level permissions (the construct puts those in a policy of their own)."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: Mapping[str, Any] | None = None


@dataclass
class Phase:
    """The states of one release phase and the IAM statements they need."""

    states: dict[str, State] = field(default_factory=dict)
    grants: list[Grant] = field(default_factory=list)

    def add(self, other: Phase) -> Phase:
        self.states.update(other.states)
        self.grants.extend(other.grants)
        return self


@dataclass(frozen=True)
class AppTarget:
    """One service a release may deploy (strings may be CDK tokens)."""

    app: str
    service_name: str
    service_arn: str
    container_name: str
    repository_name: str
    repository_uri: str
    repository_arn: str
    uses_schema: bool
    after: tuple[str, ...] = ()  # apps whose rollout completes before this one starts


@dataclass(frozen=True)
class DefinitionSettings:
    """Everything the definition needs, resolved by the construct (strings may be tokens)."""

    cluster_name: str
    cluster_arn: str
    subnet_ids: Sequence[str]
    security_group_ids: Sequence[str]
    migrate_family: str
    migrate_task_definitions_arn: str  # task-definition/<family>:*
    cluster_tasks_arn: str  # task/<cluster>/*
    all_task_definitions_arn: str  # task-definition/*
    migrate_repository_name: str
    migrate_repository_uri: str
    migrate_repository_arn: str
    pass_role_arns: Sequence[str]
    apps: Sequence[AppTarget]
    lease_table_name: str
    lease_table_arn: str
    history_table_name: str
    history_table_arn: str
    released_parameter_name: str
    released_parameter_arn: str
    lease_wait_seconds: int
    migrate_timeout_seconds: int
    rollout_timeout_seconds: int
    execution_timeout_seconds: int
    migrate_container: str = contract.MIGRATE_CONTAINER_NAME
    max_parallel_rollouts: int = 5
    # The restore point before a migration (restore_point.py); no identifier: no restore point phase.
    database_instance_identifier: str | None = None
    database_instance_arn: str | None = None
    snapshot_prefix: str = "release"  # manual snapshots are named <prefix>-<start time>
    snapshot_arn_prefix: str = ""  # arn:...:snapshot:<prefix>- (the IAM resource, with "*")
    snapshot_timeout_seconds: int = 3600

    @property
    def bounds(self) -> limits.ReleaseBounds:
        return limits.ReleaseBounds(
            services=len(self.apps),
            lease_wait_seconds=self.lease_wait_seconds,
            migrate_timeout_seconds=self.migrate_timeout_seconds,
            rollout_timeout_seconds=self.rollout_timeout_seconds,
            snapshot_timeout_seconds=self.snapshot_timeout_seconds if self.database_instance_identifier else 0,
        )


# ---- state names shared between phases (the diagram, the tests and the runbook use them) -------
FAIL_RELEASE = "FailRelease"
RELEASE_LEASE_AFTER_FAILURE = "ReleaseLeaseAfterFailure"
RECORD_FAILURE = "RecordFailure"
FAILED = "Failed"


def fail_with(error_name: str, cause: str, phase: str, **more: str) -> State:
    """The Assign block that sends a failure down the failure path: names are JSONata bodies,
    except `error_name`, which may be a literal contract name or a JSONata body."""
    literal = error_name in contract.ERROR_NAMES
    if error_name in (contract.MIGRATION_FAILED, contract.MIGRATION_TIMED_OUT):
        # The way back (restore_point.py): null when the release took no restore point.
        cause = "(" + cause + ") & " + RESTORE_HINT
    return {
        "errorName": error_name if literal else expr(error_name),
        "errorCause": expr(cause),
        "phase": phase,
        **{k: expr(v) for k, v in more.items()},
    }


def rule_scoped_assigns(states: dict[str, State]) -> dict[str, State]:
    """Every Choice of `states` without a state-level Assign: its default's Assign moves into a last
    rule whose Condition is true (same Next). The States Language spec says a chosen rule's Assign
    replaces the state-level one; AWS's guide says the state-level block "applies regardless of
    which choice rule matches". With no state-level Assign both readings assign the same."""
    for state in states.values():
        if state.get("Type") == "Choice" and "Assign" in state:
            otherwise = {"Condition": "{% true %}", "Assign": state.pop("Assign"), "Next": state["Default"]}
            state["Choices"] = [*state["Choices"], otherwise]
    return states


def catch_all(cause_prefix: str, phase: str, *, error_name: str = ERROR, **more: str) -> State:
    """Catch anything left after the retriers: keep the error's own name unless told otherwise."""
    return {
        "ErrorEquals": [STATES_ALL],
        "Assign": fail_with(error_name, js(cause_prefix + ": ") + " & " + ERROR + " & ': ' & " + CAUSE, phase, **more),
        "Next": FAIL_RELEASE,
    }
