"""The release state machine's Amazon States Language document, built as plain data.

One execution is one release. The document is JSONata throughout (AWS's recommended query
language); values that CDK only knows at deploy time (table name, ARNs, repository URIs) arrive
here as token strings and are resolved by CloudFormation. Nothing secret ever enters the document:
it names resources, never their contents.

Shape (see docs/release.md for the contract, the diagram and the runbook):

    ValidateInput ─▶ ResolveImages (Map: ecr:DescribeImages per repository)
      ─▶ CheckServices (ecs:DescribeServices: circuit breaker + rollback on?) ─▶ ServicesReady?
      ─▶ AcquireLease (DynamoDB conditional PutItem, retried while another release holds it)
      ─▶ ShouldMigrate? ─▶ DescribeMigrateTaskDefinition ─▶ RegisterMigrateTaskDefinition
      ─▶ RunMigration (ecs:runTask.sync) ─▶ MigrationExitCode?
      ─▶ DeployServices (Map, one at a time: describe, render, register, UpdateService, wait)
      ─▶ RecordRelease (SSM) ─▶ ReleaseLease ─▶ Released
    every failure after the lease: ─▶ ReleaseLeaseAfterFailure ─▶ Failed

A rollout is polled in one of two modes (`rollout_poll`):

- "retry" (the default): one state transition per poll. The poll task's Assign raises a JSONata
  error (`States.QueryEvaluationError`) while the deployment is IN_PROGRESS, and a Retrier with a
  constant interval re-runs the task. The Amazon States Language specification allows this
  ("Task, Map, and Parallel states MAY use a Retrier to retry on the error, and a Catcher to catch
  the error", in its section on JSONata evaluation), but AWS's developer guide does not say
  whether Step Functions retries an error raised by a Task's Assign (after its API call
  succeeded): confirm it on AWS once (docs/release.md, "How a rollout is polled").
- "wait-loop": three transitions per poll, only documented behaviour. PollDelay (Wait) ─▶
  WaitForRollout (DescribeServices, assigns the deployment's state and counts the poll) ─▶
  RolloutProgress (Choice: COMPLETED, or IN_PROGRESS within the poll budget back to PollDelay,
  or a failure).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

# Error names of the contract (CI, the release CLI and docs/release.md rely on them).
INVALID_INPUT = "InvalidInput"
IMAGE_NOT_FOUND = "ImageNotFound"
RELEASE_IN_PROGRESS = "ReleaseInProgress"
MIGRATION_FAILED = "MigrationFailed"
MIGRATION_TIMED_OUT = "MigrationTimedOut"
DEPLOYMENT_FAILED = "DeploymentFailed"
ERROR_NAMES = (INVALID_INPUT, IMAGE_NOT_FOUND, RELEASE_IN_PROGRESS, MIGRATION_FAILED, MIGRATION_TIMED_OUT, DEPLOYMENT_FAILED)

LEASE_ID = "release"
TAG_REGEX = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
INPUT_FIELDS = ("imageTag", "services", "migrate")
# Read-only fields of DescribeTaskDefinition's output that RegisterTaskDefinition refuses (every
# member of the API's TaskDefinition shape that RegisterTaskDefinition's request lacks).
# DeleteRequestedAt is present when the revision a service runs was deregistered and its deletion
# requested (DELETE_IN_PROGRESS: still describable, and still running, while a service uses it).
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
# The optimized DynamoDB integration names its errors "DynamoDB.<error>". Two of DynamoDB's
# transient errors have no "Exception" in their API error code (InternalServerError,
# RequestLimitExceeded) while the Java SDK class Step Functions reports may have it: both
# spellings are listed, so a retrier never misses one of them by a suffix.
CONDITIONAL_CHECK_FAILED = "DynamoDB.ConditionalCheckFailedException"
DYNAMODB_TRANSIENT = [
    "DynamoDB.ProvisionedThroughputExceededException",
    "DynamoDB.ThrottlingException",
    "DynamoDB.InternalServerError",
    "DynamoDB.InternalServerErrorException",
    "DynamoDB.RequestLimitExceeded",
    "DynamoDB.RequestLimitExceededException",
]
QUERY_ERROR = "States.QueryEvaluationError"
STATES_TIMEOUT = "States.Timeout"
STATES_ALL = "States.ALL"
STATES_TASK_FAILED = "States.TaskFailed"

# How a rollout is polled (module docstring; docs/release.md, "How a rollout is polled").
RolloutPoll = Literal["retry", "wait-loop"]
ROLLOUT_POLL_MODES: tuple[str, ...] = get_args(RolloutPoll)

# State names (the diagram, the tests and the runbook refer to them).
VALIDATE_INPUT = "ValidateInput"
INVALID_INPUT_STATE = "InvalidInput"
RESOLVE_IMAGES = "ResolveImages"
DESCRIBE_IMAGE = "DescribeImage"
IMAGE_MISSING = "ImageMissing"
CHECK_SERVICES = "CheckServices"
SERVICES_READY = "ServicesReady"
ACQUIRE_LEASE = "AcquireLease"
READ_LEASE_HOLDER = "ReadLeaseHolder"
SHOULD_MIGRATE = "ShouldMigrate"
DESCRIBE_MIGRATE_TD = "DescribeMigrateTaskDefinition"
REGISTER_MIGRATE_TD = "RegisterMigrateTaskDefinition"
RUN_MIGRATION = "RunMigration"
MIGRATION_EXIT_CODE = "MigrationExitCode"
DEPLOY_SERVICES = "DeployServices"
DESCRIBE_SERVICE = "DescribeService"
SERVICE_FOUND = "ServiceFound"  # "wait-loop" mode: the service still exists (no JSONata error)
DESCRIBE_SERVICE_TD = "DescribeServiceTaskDefinition"
REGISTER_SERVICE_TD = "RegisterServiceTaskDefinition"
UPDATE_SERVICE = "UpdateService"
WAIT_FOR_ROLLOUT = "WaitForRollout"
ROLLOUT_RESULT = "RolloutResult"  # "retry" mode: the poll task's result decided once
POLL_DELAY = "PollDelay"  # "wait-loop" mode: Wait between two polls
ROLLOUT_PROGRESS = "RolloutProgress"  # "wait-loop" mode: decide, or poll again
SERVICE_DEPLOYED = "ServiceDeployed"
ROLLOUT_FAILED = "RolloutFailed"
RECORD_RELEASE = "RecordRelease"
RELEASE_LEASE = "ReleaseLease"
RELEASED = "Released"
RELEASE_LEASE_AFTER_FAILURE = "ReleaseLeaseAfterFailure"
FAILED = "Failed"


@dataclass(frozen=True)
class AppTarget:
    """One service a release may deploy, as the document needs it (strings may be CDK tokens)."""

    app: str
    service_name: str
    container_name: str
    repository_name: str
    repository_uri: str
    uses_schema: bool


@dataclass(frozen=True)
class DefinitionSettings:
    cluster_name: str
    subnet_ids: Sequence[str]
    security_group_ids: Sequence[str]
    migrate_family: str
    migrate_container: str
    migrate_repository_name: str
    migrate_repository_uri: str
    apps: Sequence[AppTarget]
    lease_table_name: str
    released_parameter_name: str
    lease_wait_seconds: int
    lease_retry_seconds: int
    migrate_timeout_seconds: int
    rollout_timeout_seconds: int
    poll_seconds: int
    execution_timeout_seconds: int
    rollout_poll: RolloutPoll = "retry"

    @property
    def lease_attempts(self) -> int:
        return max(0, math.ceil(self.lease_wait_seconds / self.lease_retry_seconds))

    @property
    def poll_attempts(self) -> int:
        """Polls after the first ("retry": the Retrier's MaxAttempts) or in all ("wait-loop": the
        polls, each after a PollDelay): either way the last poll is at the rollout timeout."""
        return max(1, math.ceil(self.rollout_timeout_seconds / self.poll_seconds))

    def __post_init__(self) -> None:
        if self.rollout_poll not in ROLLOUT_POLL_MODES:
            raise ValueError(f"rollout_poll must be one of {', '.join(ROLLOUT_POLL_MODES)}, got {self.rollout_poll!r}")


def _js(value: Any) -> str:
    """A JSON literal, which is also a JSONata literal."""
    return json.dumps(value, separators=(",", ":"))


def _expr(body: str) -> str:
    return "{% " + body + " %}"


def _catch(errors: Sequence[str], next_state: str, assign: dict[str, Any] | None = None, output: Any = None) -> dict[str, Any]:
    catcher: dict[str, Any] = {"ErrorEquals": list(errors), "Next": next_state}
    if assign:
        catcher["Assign"] = assign
    if output is not None:
        catcher["Output"] = output
    return catcher


# A failure whose error and cause pass through unchanged (an AWS error the contract does not rename).
PASS_THROUGH = {"errorName": "{% $states.errorOutput.Error %}", "errorCause": "{% $states.errorOutput.Cause %}"}


def _with_context(prefix: str) -> dict[str, str]:
    """Pass the error name through, prefixing the cause with what the release was doing."""
    return {
        "errorName": "{% $states.errorOutput.Error %}",
        "errorCause": _expr(_js(prefix + ": ") + " & $states.errorOutput.Cause"),
    }


def _describe_service_states(s: DefinitionSettings) -> dict[str, Any]:
    """DescribeService: the task definition the service runs now, read under the lease and right
    before it is rendered. CheckServices ran before the lease wait, the migration and the earlier
    services' rollouts, and a revision someone deployed meanwhile (a configuration change) must not
    be reverted by rendering from an older one. A service gone by now fails with DeploymentFailed.

    "retry" mode: a missing service raises a JSONata error in Assign, caught (one transition).
    "wait-loop" mode: no JSONata error anywhere in the deployment; a Choice (ServiceFound) decides.
    """
    found = "$states.result.Services[ServiceName = $states.input.service and Status = 'ACTIVE']"
    missing = "'service ' & $states.input.service & ' not found (or not ACTIVE) in cluster ' & " + _js(s.cluster_name)
    describe: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
        "Arguments": {"Cluster": s.cluster_name, "Services": ["{% $states.input.service %}"]},
        "Output": "{% $states.input %}",
    }
    transient = {"ErrorEquals": [STATES_TASK_FAILED], "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 2.0}
    if s.rollout_poll == "wait-loop":
        return {
            DESCRIBE_SERVICE: {
                **describe,
                # taskDefinition is left out (undefined) when the service is not found.
                "Assign": {"target": _expr("$merge([$states.input, {'taskDefinition': " + found + ".TaskDefinition}])")},
                "Retry": [transient],
                "Next": SERVICE_FOUND,
            },
            SERVICE_FOUND: {
                "Type": "Choice",
                "Choices": [{"Condition": "{% $exists($target.taskDefinition) %}", "Next": DESCRIBE_SERVICE_TD}],
                "Default": ROLLOUT_FAILED,
                "Output": _expr("$merge([$states.input, {'cause': 'not deployed: ' & " + missing + "}])"),
            },
        }
    return {
        DESCRIBE_SERVICE: {
            **describe,
            "Assign": {
                "target": _expr(
                    "($found := " + found + "; "
                    "$exists($found.TaskDefinition) ? $merge([$states.input, {'taskDefinition': $found.TaskDefinition}]) "
                    ": $error(" + missing + "))"
                )
            },
            "Retry": [
                # A missing service is not retried (States.TaskFailed may match any error).
                {"ErrorEquals": [QUERY_ERROR], "MaxAttempts": 0},
                transient,
            ],
            "Catch": [
                _catch(
                    [QUERY_ERROR],
                    ROLLOUT_FAILED,
                    output={"service": "{% $states.input.service %}", "cause": "{% 'not deployed: ' & $states.errorOutput.Cause %}"},
                )
            ],
            "Next": DESCRIBE_SERVICE_TD,
        },
    }


def _rollout_states(s: DefinitionSettings) -> dict[str, Any]:
    """The states after UpdateService that wait for its deployment, in the mode `s.rollout_poll`.

    Both end in ServiceDeployed or RolloutFailed (the input's `cause`, error DeploymentFailed).
    """
    # The deployment UpdateService started, by id (not the PRIMARY one: after a rollback the
    # PRIMARY deployment is the rollback, and reads COMPLETED).
    deployment = "$states.result.Services[0].Deployments[Id = $deploymentId]"
    gone = "{'state': 'GONE', 'reason': 'deployment ' & $deploymentId & ' is no longer listed (replaced or rolled back)'}"
    reported = "{'state': $d.RolloutState, 'reason': $exists($d.RolloutStateReason) ? $d.RolloutStateReason : ''}"
    # "retry": IN_PROGRESS raises States.QueryEvaluationError, which the poll's Retrier retries.
    rollout_check = (
        "($d := " + deployment + "; "
        "$not($exists($d)) ? " + gone + " : "
        "$d.RolloutState = 'IN_PROGRESS' ? $error('rollout of ' & $states.input.service & ' deployment ' & $deploymentId & ' is IN_PROGRESS') : "
        + reported
        + ")"
    )
    # "wait-loop": the state as it is, IN_PROGRESS included; RolloutProgress decides.
    rollout_state = "($d := " + deployment + "; $not($exists($d)) ? " + gone + " : " + reported + ")"
    rollout_reason = "($rollout.reason != '' ? ': ' & $rollout.reason : '')"

    def timed_out(last: str) -> str:
        return (
            "'deployment ' & $deploymentId & ' of service ' & $states.input.service & ' did not finish within "
            + str(s.rollout_timeout_seconds)
            + " s (last: ' & "
            + last
            + " & '); the deployment circuit breaker rolls it back if it fails'"
        )

    # FAILED: the circuit breaker rolled the service back. GONE: the deployment left the list,
    # replaced by a deployment someone else started or, once a rollback finished, cleaned up: the
    # service's events say which.
    rollout_ended = (
        "'service ' & $states.input.service & ' deployment ' & $deploymentId & ' rollout ' & $rollout.state & "
        + rollout_reason
        + " & ($rollout.state = 'GONE' "
        "? '; another deployment replaced it, or the circuit breaker rolled it back: see the service events' "
        ": '; the deployment circuit breaker rolled the service back to its previous task definition')"
    )
    # Both modes' Choice keeps its input and adds the cause: RolloutFailed reads the cause,
    # ServiceDeployed (or the next PollDelay) the rest, whether or not a Choice state's Output
    # applies on a rule's transition as well as on the Default one.
    if s.rollout_poll == "wait-loop":
        return {
            POLL_DELAY: {
                "Type": "Wait",
                "Comment": "Three transitions per poll (PollDelay, WaitForRollout, RolloutProgress), all documented behaviour.",
                "Seconds": s.poll_seconds,
                "Next": WAIT_FOR_ROLLOUT,
            },
            WAIT_FOR_ROLLOUT: {
                "Type": "Task",
                "Comment": "One poll: the deployment's rollout state, and the number of polls so far.",
                "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
                "Arguments": {"Cluster": s.cluster_name, "Services": ["{% $states.input.service %}"]},
                "Assign": {"rollout": _expr(rollout_state), "polls": "{% $polls + 1 %}"},
                "Output": "{% $states.input %}",
                "Retry": [
                    {"ErrorEquals": [STATES_TASK_FAILED], "IntervalSeconds": s.poll_seconds, "MaxAttempts": 3, "BackoffRate": 2.0},
                ],
                "Next": ROLLOUT_PROGRESS,
            },
            ROLLOUT_PROGRESS: {
                "Type": "Choice",
                "Choices": [
                    {"Condition": "{% $rollout.state = 'COMPLETED' %}", "Next": SERVICE_DEPLOYED},
                    {
                        "Condition": _expr("$rollout.state = 'IN_PROGRESS' and $polls < " + str(s.poll_attempts)),
                        "Next": POLL_DELAY,
                    },
                ],
                # FAILED, GONE, or still IN_PROGRESS at the last poll of the budget.
                "Default": ROLLOUT_FAILED,
                "Output": _expr(
                    "$merge([$states.input, {'cause': ($rollout.state = 'IN_PROGRESS' ? "
                    + timed_out("'rollout IN_PROGRESS' & " + rollout_reason)
                    + " : "
                    + rollout_ended
                    + ")}])"
                ),
            },
        }
    return {
        WAIT_FOR_ROLLOUT: {
            "Type": "Task",
            "Comment": "One transition per poll: IN_PROGRESS raises a JSONata error and the Retrier polls again.",
            "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
            "Arguments": {"Cluster": s.cluster_name, "Services": ["{% $states.input.service %}"]},
            "Assign": {"rollout": _expr(rollout_check)},
            "Output": "{% $states.input %}",
            "Retry": [
                {
                    "ErrorEquals": [QUERY_ERROR],
                    "IntervalSeconds": s.poll_seconds,
                    "MaxAttempts": s.poll_attempts,
                    "BackoffRate": 1.0,
                },
                {"ErrorEquals": [STATES_TASK_FAILED], "IntervalSeconds": s.poll_seconds, "MaxAttempts": 3, "BackoffRate": 2.0},
            ],
            "Catch": [
                _catch(
                    [QUERY_ERROR],
                    ROLLOUT_FAILED,
                    output={"service": "{% $states.input.service %}", "cause": _expr(timed_out("$states.errorOutput.Cause"))},
                )
            ],
            "Next": ROLLOUT_RESULT,
        },
        ROLLOUT_RESULT: {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $rollout.state = 'COMPLETED' %}", "Next": SERVICE_DEPLOYED}],
            "Default": ROLLOUT_FAILED,
            "Output": _expr("$merge([$states.input, {'cause': " + rollout_ended + "}])"),
        },
    }


def build_definition(s: DefinitionSettings) -> dict[str, Any]:
    """The release state machine's definition (a dict ready for json.dumps / Stack.to_json_string)."""
    apps_literal = _js(
        {
            a.app: {
                "app": a.app,
                "service": a.service_name,
                "container": a.container_name,
                "repositoryName": a.repository_name,
                "repositoryUri": a.repository_uri,
                "usesSchema": a.uses_schema,
            }
            for a in s.apps
        }
    )
    known_literal = _js([a.app for a in s.apps])
    default_services = [a.app for a in s.apps if a.uses_schema] or [a.app for a in s.apps]
    migrate_literal = _js({"app": "migrate", "repositoryName": s.migrate_repository_name, "repositoryUri": s.migrate_repository_uri})

    # ---- input validation: a list of problems, each naming its field -----------------------------
    problems = (
        "($in := $states.input; $known := " + known_literal + "; "
        "$isObject := $type($in) = 'object'; "
        "$unknown := $isObject ? [$filter([$keys($in)], function($k) { $not($k in " + _js(list(INPUT_FIELDS)) + ") })] : []; "
        "$tag := $isObject ? $lookup($in, 'imageTag'); "
        "$svc := $isObject ? $lookup($in, 'services'); "
        "$badApps := $type($svc) = 'array' ? [$filter($svc, function($v) { $type($v) != 'string' or $not($v in $known) })] : []; "
        "["
        '$isObject ? () : \'input: must be a JSON object such as {"imageTag": "<tag>"}\', '
        "$count($unknown) > 0 ? 'input: unknown field ' & $join($unknown, ', ') & ' (allowed: imageTag, services, migrate)' : (), "
        "$not($isObject) ? () : "
        "$not($exists($tag)) ? 'imageTag: required' : "
        "($type($tag) = 'string' and $contains($tag, /" + TAG_REGEX + "/)) ? () : "
        "'imageTag: must be a string of 1-128 characters matching [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}', "
        "$not($exists($svc)) ? () : "
        "$type($svc) != 'array' ? 'services: must be a non-empty array of app names (' & $join($known, ', ') & ')' : "
        "$count($svc) = 0 ? 'services: must not be empty (omit it to deploy ' & $join(" + _js(default_services) + ", ', ') & ')' : "
        "$count($badApps) > 0 ? 'services: unknown app ' & $join($map($badApps, function($v) { $string($v) }), ', ') & ' (known: ' & $join($known, ', ') & ')' : "
        "$count($distinct($svc)) != $count($svc) ? 'services: duplicate app names' : (), "
        "($isObject and $exists($lookup($in, 'migrate')) and $type($lookup($in, 'migrate')) != 'boolean') ? 'migrate: must be true or false' : ()"
        "])"
    )

    # ---- the request, normalised (evaluated where the input is still the execution input) --------
    requested_services = "($exists($states.input.services) ? $states.input.services : " + _js(default_services) + ")"
    requested_migrate = "($exists($states.input.migrate) ? $states.input.migrate : true)"
    image_items = (
        "($apps := " + apps_literal + "; $tag := $states.input.imageTag; "
        "[([$map("
        + requested_services
        + ", function($a) { $lookup($apps, $a) }), "
        + requested_migrate
        + " ? "
        + migrate_literal
        + " : ()])"
        ".{'app': app, 'repositoryName': repositoryName, 'repositoryUri': repositoryUri, 'imageTag': $tag}])"
    )

    image_missing_cause = (
        "'repository ' & $states.input.repositoryName & ' has no image tagged ' & $states.input.imageTag"
        " & ' (' & $states.input.error & ': ' & $states.input.cause & ')'"
    )
    resolve_images = {
        "Type": "Map",
        "Comment": "Resolve the tag to a digest in every repository involved, before anything changes.",
        "Items": _expr(image_items),
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"},
            "StartAt": DESCRIBE_IMAGE,
            "States": {
                DESCRIBE_IMAGE: {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:ecr:describeImages",
                    "Arguments": {
                        "RepositoryName": "{% $states.input.repositoryName %}",
                        "ImageIds": [{"ImageTag": "{% $states.input.imageTag %}"}],
                    },
                    "Output": {
                        "app": "{% $states.input.app %}",
                        "image": "{% $states.input.repositoryUri & '@' & $states.result.ImageDetails[0].ImageDigest %}",
                        "digest": "{% $states.result.ImageDetails[0].ImageDigest %}",
                    },
                    "Catch": [
                        _catch(
                            [STATES_ALL],
                            IMAGE_MISSING,
                            output={
                                "repositoryName": "{% $states.input.repositoryName %}",
                                "imageTag": "{% $states.input.imageTag %}",
                                "error": "{% $states.errorOutput.Error %}",
                                "cause": "{% $states.errorOutput.Cause %}",
                            },
                        )
                    ],
                    "End": True,
                },
                IMAGE_MISSING: {
                    "Type": "Fail",
                    "Error": _expr(
                        "($contains($states.input.error, 'ImageNotFound') or $contains($states.input.error, 'RepositoryNotFound'))"
                        " ? " + _js(IMAGE_NOT_FOUND) + " : $states.input.error"
                    ),
                    "Cause": _expr(image_missing_cause),
                },
            },
        },
        "Assign": {
            "imageTag": "{% $states.input.imageTag %}",
            "migrate": _expr(requested_migrate),
            "services": _expr("($apps := " + apps_literal + "; [$map(" + requested_services + ", function($a) { $lookup($apps, $a) })])"),
            "images": "{% $merge($states.result.{app: {'image': image, 'digest': digest}}) %}",
        },
        "Catch": [_catch([STATES_ALL], FAILED, assign=PASS_THROUGH)],
        "Next": CHECK_SERVICES,
    }

    # ---- pre-flight: every service exists, is ACTIVE, uses the ECS deployment controller and has
    #      the deployment circuit breaker with rollback on. Checked before the lease and before the
    #      migration, so a service that could not be deployed safely stops the release with nothing
    #      changed.
    service_problems = (
        "[$services.("
        "$name := service; "
        "$found := $states.result.Services[ServiceName = $name]; "
        "$not($exists($found)) ? 'service ' & $name & ' not found in cluster " + "' & " + _js(s.cluster_name) + " : "
        "$found.Status != 'ACTIVE' ? 'service ' & $name & ' is ' & $found.Status : "
        "($exists($found.DeploymentController.Type) and $found.DeploymentController.Type != 'ECS') "
        "? 'service ' & $name & ' uses the ' & $found.DeploymentController.Type & ' deployment controller, not ECS' : "
        "($found.DeploymentConfiguration.DeploymentCircuitBreaker.Enable = true and $found.DeploymentConfiguration.DeploymentCircuitBreaker.Rollback = true) "
        "? () : 'service ' & $name & ' has no deployment circuit breaker with rollback (enable both on the service)'"
        ")]"
    )
    check_services = {
        "Type": "Task",
        "Comment": "Pre-flight: services exist, are ACTIVE and roll back on a failed deployment.",
        "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
        "Arguments": {"Cluster": s.cluster_name, "Services": "{% [$services.service] %}"},
        "Assign": {"serviceProblems": _expr(service_problems)},
        "Catch": [_catch([STATES_ALL], FAILED, assign=_with_context("checking the services"))],
        "Next": SERVICES_READY,
    }
    services_ready = {
        "Type": "Choice",
        "Choices": [
            {
                "Condition": "{% $count($serviceProblems) > 0 %}",
                "Assign": {
                    "errorName": DEPLOYMENT_FAILED,
                    "errorCause": "{% 'not deploying, nothing was changed: ' & $join($serviceProblems, '; ') %}",
                },
                "Next": FAILED,
            }
        ],
        "Default": ACQUIRE_LEASE,
    }

    # ---- the lease: one release at a time ----------------------------------------------------------
    now_epoch = "$floor($millis() / 1000)"
    expires_epoch = "$floor($toMillis($states.context.Execution.StartTime) / 1000) + " + str(s.execution_timeout_seconds + 60)
    owner_is_me = {":me": {"S": "{% $states.context.Execution.Id %}"}}
    acquire_lease = {
        "Type": "Task",
        "Comment": "Conditional PutItem: the lease is free, expired, or already this execution's.",
        "Resource": "arn:aws:states:::dynamodb:putItem",
        "Arguments": {
            "TableName": s.lease_table_name,
            "Item": {
                "LeaseId": {"S": LEASE_ID},
                "Owner": {"S": "{% $states.context.Execution.Id %}"},
                "ImageTag": {"S": "{% $imageTag %}"},
                "AcquiredAt": {"S": "{% $now() %}"},
                "ExpiresAt": {"N": _expr("$string(" + expires_epoch + ")")},
            },
            "ConditionExpression": "attribute_not_exists(LeaseId) OR ExpiresAt < :now OR #owner = :me",
            "ExpressionAttributeNames": {"#owner": "Owner"},
            "ExpressionAttributeValues": {":now": {"N": _expr("$string(" + now_epoch + ")")}, **owner_is_me},
        },
        "Output": "{% $states.input %}",
        "Retry": [
            {
                "ErrorEquals": [CONDITIONAL_CHECK_FAILED],
                "IntervalSeconds": s.lease_retry_seconds,
                "MaxAttempts": s.lease_attempts,
                "BackoffRate": 1.0,
            },
            {"ErrorEquals": DYNAMODB_TRANSIENT, "IntervalSeconds": 2, "MaxAttempts": 5, "BackoffRate": 2.0},
        ],
        "Catch": [
            _catch([CONDITIONAL_CHECK_FAILED], READ_LEASE_HOLDER),
            # The write may have landed before the error: the conditional delete is safe either way.
            _catch([STATES_ALL], RELEASE_LEASE_AFTER_FAILURE, assign=_with_context("taking the release lease")),
        ],
        "Next": SHOULD_MIGRATE,
    }
    holder = "$states.result.Item"
    read_lease_holder = {
        "Type": "Task",
        "Comment": "Name the release that holds the lease, for the error's cause.",
        "Resource": "arn:aws:states:::dynamodb:getItem",
        "Arguments": {"TableName": s.lease_table_name, "Key": {"LeaseId": {"S": LEASE_ID}}, "ConsistentRead": True},
        "Assign": {
            "errorName": RELEASE_IN_PROGRESS,
            "errorCause": _expr(
                "$exists(" + holder + ".Owner.S) ? "
                "'another release holds the lease: ' & " + holder + ".Owner.S & ' (image ' & " + holder + ".ImageTag.S & ')'"
                " & ' since ' & " + holder + ".AcquiredAt.S & ', expires ' & $fromMillis($number(" + holder + ".ExpiresAt.N) * 1000)"
                " & '; waited " + str(s.lease_wait_seconds) + " s' : "
                "'the release lease stayed taken for " + str(s.lease_wait_seconds) + " s (now free: start the release again)'"
            ),
        },
        "Catch": [
            _catch(
                [STATES_ALL],
                FAILED,
                assign={
                    "errorName": RELEASE_IN_PROGRESS,
                    "errorCause": "{% 'another release held the lease; reading it failed: ' & $states.errorOutput.Cause %}",
                },
            )
        ],
        "Next": FAILED,
    }

    # ---- migration ------------------------------------------------------------------------------------
    def render(task_definition: str, container: str, image: str, tags: str) -> str:
        """RegisterTaskDefinition's arguments: the description less read-only fields, one image pinned."""
        return (
            "($td := " + task_definition + "; $c := " + container + "; $img := " + image + "; "
            # Tags are copied, except those with the reserved aws: prefix (in any case), which
            # RegisterTaskDefinition refuses (a tag AWS put there, never one a person can set).
            "$tags := [$filter(" + tags + ", function($t) { $lowercase($substring($t.Key, 0, 4)) != 'aws:' })]; "
            "$count($td.ContainerDefinitions[Name = $c]) = 1 ? "
            "$merge(["
            "$sift($td, function($v, $k) { $not($k in " + _js(list(READ_ONLY_TASK_DEFINITION_FIELDS)) + ") }), "
            "{'ContainerDefinitions': [$map($td.ContainerDefinitions, function($d) { $merge([$d, $d.Name = $c ? {'Image': $img} : {}]) })]}, "
            "$count($tags) > 0 ? {'Tags': $tags} : {}"
            "]) : $error('task definition ' & $td.Family & ' has no container named ' & $c))"
        )

    migrate_container = _js(s.migrate_container)
    describe_migrate_td = {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:ecs:describeTaskDefinition",
        "Arguments": {"TaskDefinition": s.migrate_family, "Include": ["TAGS"]},
        "Catch": [
            _catch(
                [STATES_ALL],
                RELEASE_LEASE_AFTER_FAILURE,
                assign={
                    "errorName": MIGRATION_FAILED,
                    "errorCause": _expr(
                        _js("describing task definition family " + s.migrate_family + ": ") + " & $states.errorOutput.Cause"
                    ),
                },
            )
        ],
        "Next": REGISTER_MIGRATE_TD,
    }
    register_migrate_td = {
        "Type": "Task",
        "Comment": "A new revision of the migrate family with the image pinned by digest.",
        "Resource": "arn:aws:states:::aws-sdk:ecs:registerTaskDefinition",
        "Arguments": _expr(render("$states.input.TaskDefinition", migrate_container, "$images.migrate.image", "$states.input.Tags")),
        "Assign": {
            "migrateTaskDefinitionArn": "{% $states.result.TaskDefinition.TaskDefinitionArn %}",
            "migrateLogOptions": _expr(
                "($o := $states.result.TaskDefinition.ContainerDefinitions[Name = " + migrate_container + "].LogConfiguration.Options; "
                "$exists($o) ? $o : {})"
            ),
        },
        "Catch": [
            _catch(
                [STATES_ALL],
                RELEASE_LEASE_AFTER_FAILURE,
                assign={
                    "errorName": MIGRATION_FAILED,
                    "errorCause": "{% 'rendering the migrate task definition: ' & $states.errorOutput.Cause %}",
                },
            )
        ],
        "Next": RUN_MIGRATION,
    }
    # The log stream of the migrate container: awslogs names it <prefix>/<container>/<task id>.
    log_stream = (
        "($tid := $split(%s, '/')[-1]; "
        "$exists($lookup($migrateLogOptions, 'awslogs-stream-prefix')) ? "
        "$lookup($migrateLogOptions, 'awslogs-stream-prefix') & '/' & " + migrate_container + " & '/' & $tid : $tid)"
    )
    log_where = "' (log group ' & ($exists($lookup($migrateLogOptions, 'awslogs-group')) ? $lookup($migrateLogOptions, 'awslogs-group') : '?') & ', stream ' & %s & ')'"
    # The cause of a failed ecs:runTask.sync is the described task as JSON.
    failed_task = "($c := $states.errorOutput.Cause; $t := $substring($c, 0, 1) = '{' ? $parse($c) : {}; $exists($t.Containers) ? $t : {})"
    migration_failed_cause = (
        "($t := " + failed_task + "; "
        "$mc := $t.Containers[Name = " + migrate_container + "]; "
        "$exists($mc.ExitCode) ? "
        "'migration exited with code ' & $string($mc.ExitCode) & '; stop reason: ' & $t.StoppedReason & "
        + (log_where % (log_stream % "$t.TaskArn"))
        + " : $exists($t.TaskArn) ? "
        "'migration task never started (no exit code); stop code ' & $t.StopCode & ', reason: ' & $t.StoppedReason & "
        "($exists($mc.Reason) ? '; container: ' & $mc.Reason : '') & " + (log_where % (log_stream % "$t.TaskArn")) + " : "
        "'migration task failed: ' & $states.errorOutput.Cause)"
    )
    run_migration = {
        "Type": "Task",
        "Comment": "Private subnets, no public IP, bounded time; .sync waits for the task to stop.",
        "Resource": "arn:aws:states:::ecs:runTask.sync",
        "Arguments": {
            "Cluster": s.cluster_name,
            "TaskDefinition": "{% $migrateTaskDefinitionArn %}",
            "LaunchType": "FARGATE",
            "NetworkConfiguration": {
                "AwsvpcConfiguration": {
                    "Subnets": list(s.subnet_ids),
                    "SecurityGroups": list(s.security_group_ids),
                    "AssignPublicIp": "DISABLED",
                }
            },
            "PropagateTags": "TASK_DEFINITION",
        },
        "TimeoutSeconds": s.migrate_timeout_seconds,
        "Assign": {"migrationTask": "{% $states.result %}"},
        "Catch": [
            _catch(
                [STATES_TIMEOUT],
                RELEASE_LEASE_AFTER_FAILURE,
                assign={
                    "errorName": MIGRATION_TIMED_OUT,
                    "errorCause": _expr(
                        "'the migration did not finish within " + str(s.migrate_timeout_seconds) + " s and was stopped; '"
                        " & 'see log group ' & ($exists($lookup($migrateLogOptions, 'awslogs-group')) ? $lookup($migrateLogOptions, 'awslogs-group') : '?')"
                        " & ', streams ' & ($exists($lookup($migrateLogOptions, 'awslogs-stream-prefix')) ? $lookup($migrateLogOptions, 'awslogs-stream-prefix') & '/' : '')"
                        " & " + migrate_container + " & '/*'"
                    ),
                },
            ),
            _catch(
                [STATES_ALL],
                RELEASE_LEASE_AFTER_FAILURE,
                assign={"errorName": MIGRATION_FAILED, "errorCause": _expr(migration_failed_cause)},
            ),
        ],
        "Next": MIGRATION_EXIT_CODE,
    }
    exit_code = "$migrationTask.Containers[Name = " + migrate_container + "].ExitCode"
    migration_exit_code = {
        "Type": "Choice",
        "Comment": "Check the exit code explicitly: a task that never started has none.",
        "Choices": [
            {
                "Condition": _expr("$exists(" + exit_code + ") and " + exit_code + " = 0"),
                "Assign": {
                    "migration": _expr(
                        "{'taskArn': $migrationTask.TaskArn, 'taskDefinitionArn': $migrateTaskDefinitionArn, "
                        "'imageDigest': $images.migrate.digest, 'exitCode': " + exit_code + ", "
                        "'logStream': " + (log_stream % "$migrationTask.TaskArn") + "}"
                    )
                },
                "Next": DEPLOY_SERVICES,
            }
        ],
        "Default": RELEASE_LEASE_AFTER_FAILURE,
        "Assign": {
            "errorName": MIGRATION_FAILED,
            "errorCause": _expr(
                "$exists(" + exit_code + ") ? 'migration exited with code ' & $string(" + exit_code + ") & '; stop reason: ' & "
                "$migrationTask.StoppedReason & " + (log_where % (log_stream % "$migrationTask.TaskArn")) + " : "
                "'migration task stopped without an exit code (never started); stop code ' & $migrationTask.StopCode & "
                "', reason: ' & $migrationTask.StoppedReason & " + (log_where % (log_stream % "$migrationTask.TaskArn"))
            ),
        },
    }
    should_migrate = {
        "Type": "Choice",
        "Choices": [{"Condition": "{% $migrate %}", "Next": DESCRIBE_MIGRATE_TD}],
        "Default": DEPLOY_SERVICES,
        "Assign": {"migration": "{% null %}"},
    }

    # ---- services, one at a time, in the order given ----------------------------------------------
    wait_loop = s.rollout_poll == "wait-loop"
    deploy_services = {
        "Type": "Map",
        "Comment": "One service at a time, in the order given; a failure stops the rest.",
        "Items": "{% [$services.{'app': app, 'service': service, 'container': container, 'image': $lookup($images, app).image}] %}",
        "MaxConcurrency": 1,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"},
            "StartAt": DESCRIBE_SERVICE,
            "States": {
                **_describe_service_states(s),
                DESCRIBE_SERVICE_TD: {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:ecs:describeTaskDefinition",
                    "Arguments": {"TaskDefinition": "{% $target.taskDefinition %}", "Include": ["TAGS"]},
                    "Next": REGISTER_SERVICE_TD,
                },
                REGISTER_SERVICE_TD: {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:ecs:registerTaskDefinition",
                    "Arguments": _expr(render("$states.input.TaskDefinition", "$target.container", "$target.image", "$states.input.Tags")),
                    "Output": "{% $merge([$target, {'newTaskDefinition': $states.result.TaskDefinition.TaskDefinitionArn}]) %}",
                    "Next": UPDATE_SERVICE,
                },
                UPDATE_SERVICE: {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:ecs:updateService",
                    "Arguments": {
                        "Cluster": s.cluster_name,
                        "Service": "{% $states.input.service %}",
                        "TaskDefinition": "{% $states.input.newTaskDefinition %}",
                    },
                    "Assign": {
                        "deploymentId": _expr(
                            "$states.result.Service.Deployments[Status = 'PRIMARY' and TaskDefinition = $states.input.newTaskDefinition][0].Id"
                        ),
                        **({"polls": 0} if wait_loop else {}),
                    },
                    "Output": "{% $states.input %}",
                    "Next": POLL_DELAY if wait_loop else WAIT_FOR_ROLLOUT,
                },
                **_rollout_states(s),
                SERVICE_DEPLOYED: {
                    "Type": "Succeed",
                    "Output": {
                        "app": "{% $states.input.app %}",
                        "service": "{% $states.input.service %}",
                        "taskDefinitionArn": "{% $states.input.newTaskDefinition %}",
                        "deploymentId": "{% $deploymentId %}",
                        "rolloutState": "{% $rollout.state %}",
                    },
                },
                ROLLOUT_FAILED: {"Type": "Fail", "Error": DEPLOYMENT_FAILED, "Cause": "{% $states.input.cause %}"},
            },
        },
        "Assign": {"deployed": "{% [$states.result] %}"},
        "Catch": [_catch([STATES_ALL], RELEASE_LEASE_AFTER_FAILURE, assign=PASS_THROUGH)],
        "Next": RECORD_RELEASE,
    }

    # ---- record, release, succeed -----------------------------------------------------------------
    summary = "{% {'imageTag': $imageTag, 'migration': $migration, 'services': $deployed} %}"
    record_release = {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:ssm:putParameter",
        "Arguments": {
            "Name": s.released_parameter_name,
            "Type": "String",
            "Overwrite": True,
            "Value": _expr(
                "$string({'imageTag': $imageTag, 'digests': $merge($services.{app: $lookup($images, app).digest}), "
                "'execution': $states.context.Execution.Id, 'releasedAt': $now()})"
            ),
        },
        "Retry": [
            {
                "ErrorEquals": ["Ssm.TooManyUpdatesException", "SSM.TooManyUpdatesException"],
                "IntervalSeconds": 2,
                "MaxAttempts": 5,
                "BackoffRate": 2.0,
            }
        ],
        "Catch": [
            _catch(
                [STATES_ALL],
                RELEASE_LEASE_AFTER_FAILURE,
                assign=_with_context("the services were deployed, but recording the release failed"),
            )
        ],
        "Next": RELEASE_LEASE,
    }
    delete_lease_arguments = {
        "TableName": s.lease_table_name,
        "Key": {"LeaseId": {"S": LEASE_ID}},
        "ConditionExpression": "#owner = :me",
        "ExpressionAttributeNames": {"#owner": "Owner"},
        "ExpressionAttributeValues": owner_is_me,
    }
    release_lease = {
        "Type": "Task",
        "Comment": "Conditional DeleteItem: only this execution's lease.",
        "Resource": "arn:aws:states:::dynamodb:deleteItem",
        "Arguments": delete_lease_arguments,
        "Retry": [{"ErrorEquals": DYNAMODB_TRANSIENT, "IntervalSeconds": 2, "MaxAttempts": 5, "BackoffRate": 2.0}],
        # Not ours any more (it expired and another release took it): nothing to release.
        "Catch": [_catch([STATES_ALL], RELEASED)],
        "Next": RELEASED,
    }
    released = {"Type": "Succeed", "Output": summary}
    release_lease_after_failure = {
        "Type": "Task",
        "Resource": "arn:aws:states:::dynamodb:deleteItem",
        "Arguments": delete_lease_arguments,
        "Retry": [{"ErrorEquals": DYNAMODB_TRANSIENT, "IntervalSeconds": 2, "MaxAttempts": 5, "BackoffRate": 2.0}],
        "Catch": [_catch([STATES_ALL], FAILED)],
        "Next": FAILED,
    }
    failed = {"Type": "Fail", "Error": "{% $errorName %}", "Cause": "{% $errorCause %}"}

    validate_input = {
        "Type": "Choice",
        "Comment": "Unknown fields or bad values fail here, before any AWS call.",
        "Choices": [{"Condition": _expr("$count(" + problems + ") > 0"), "Next": INVALID_INPUT_STATE}],
        "Default": RESOLVE_IMAGES,
    }
    invalid_input = {"Type": "Fail", "Error": INVALID_INPUT, "Cause": _expr("$join(" + problems + ", '; ')")}

    return {
        "Comment": "One execution = one release: validate, resolve digests, lease, migrate, deploy, record.",
        "QueryLanguage": "JSONata",
        "TimeoutSeconds": s.execution_timeout_seconds,
        "StartAt": VALIDATE_INPUT,
        "States": {
            VALIDATE_INPUT: validate_input,
            INVALID_INPUT_STATE: invalid_input,
            RESOLVE_IMAGES: resolve_images,
            CHECK_SERVICES: check_services,
            SERVICES_READY: services_ready,
            ACQUIRE_LEASE: acquire_lease,
            READ_LEASE_HOLDER: read_lease_holder,
            SHOULD_MIGRATE: should_migrate,
            DESCRIBE_MIGRATE_TD: describe_migrate_td,
            REGISTER_MIGRATE_TD: register_migrate_td,
            RUN_MIGRATION: run_migration,
            MIGRATION_EXIT_CODE: migration_exit_code,
            DEPLOY_SERVICES: deploy_services,
            RECORD_RELEASE: record_release,
            RELEASE_LEASE: release_lease,
            RELEASED: released,
            RELEASE_LEASE_AFTER_FAILURE: release_lease_after_failure,
            FAILED: failed,
        },
    }


def build_lease_cleanup_definition(*, lease_table_name: str) -> dict[str, Any]:
    """A second, tiny machine: EventBridge starts it when a release ends ABORTED, TIMED_OUT or
    FAILED; it deletes the lease only if that execution still owns it."""
    return {
        "Comment": "Release the release lease of an execution that ended without releasing it.",
        "QueryLanguage": "JSONata",
        "TimeoutSeconds": 300,
        "StartAt": "ReleaseLeaseOfEndedExecution",
        "States": {
            "ReleaseLeaseOfEndedExecution": {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:deleteItem",
                "Arguments": {
                    "TableName": lease_table_name,
                    "Key": {"LeaseId": {"S": LEASE_ID}},
                    "ConditionExpression": "#owner = :ended",
                    "ExpressionAttributeNames": {"#owner": "Owner"},
                    "ExpressionAttributeValues": {":ended": {"S": "{% $states.input.detail.executionArn %}"}},
                },
                "Output": {"released": True, "execution": "{% $states.input.detail.executionArn %}"},
                "Retry": [{"ErrorEquals": DYNAMODB_TRANSIENT, "IntervalSeconds": 2, "MaxAttempts": 5, "BackoffRate": 2.0}],
                "Catch": [
                    _catch(
                        [CONDITIONAL_CHECK_FAILED],
                        "NotOwner",
                        output={"released": False, "execution": "{% $states.input.detail.executionArn %}"},
                    )
                ],
                "End": True,
            },
            "NotOwner": {"Type": "Succeed", "Comment": "Released already, or another release owns it now."},
        },
    }
