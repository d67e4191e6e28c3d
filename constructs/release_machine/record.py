"""Phase "record": the release record (DynamoDB history, docs/release.md), the SSM "released" parameter,
freeing the lease, and the failure path every phase ends in when something goes wrong.

Variables every phase keeps current (assigned by ValidateInput, then updated):
`$record` (the fixed part: execution, name, kind, tag, who, note, start), `$recordKey`, `$phase`,
`$errorName`, `$errorCause`, `$digests`, `$migration`, `$serviceResults`, `$leaseReleased`,
`$migrationMayRun` (a migrate task the release asked to stop was not yet seen STOPPED).
"""

from __future__ import annotations

from constructs.release_machine.asl import (
    CAUSE,
    CONDITIONAL_CHECK_FAILED,
    DYNAMODB_TRANSIENT,
    ERROR,
    EXECUTION_ARN,
    FAIL_RELEASE,
    FAILED,
    RECORD_FAILURE,
    RELEASE_LEASE_AFTER_FAILURE,
    SSM_TRANSIENT,
    STATES_ALL,
    DefinitionSettings,
    Grant,
    Phase,
    State,
    expr,
    js,
    retry_transient,
    rule_scoped_assigns,
)
from release import contract

RECORD_RELEASE = "RecordRelease"
RELEASE_LEASE = "ReleaseLease"
RECORD_SUCCESS = "RecordSuccess"
RELEASED = "Released"
ENDED = {"endedAt": "{% $now() %}"}
DONE = {**ENDED, "phase": "done"}


def summary(status: str, ended: bool) -> str:
    """The whole record (its `Summary`, docs/release.md) as a JSONata object; `status` is a JSONata body."""
    return (
        "$merge([$record, {"
        f"'status': {status}, 'endedAt': {'$endedAt' if ended else 'null'}, 'phase': $phase, "
        "'error': $errorName, 'cause': $errorCause, 'digests': $digests, 'migration': $migration, "
        "'services': $serviceResults, 'restorePoint': $restorePoint, 'leaseReleased': $leaseReleased}])"
    )


def put_record(s: DefinitionSettings, status: str, *, ended: bool) -> State:
    """A PutItem of this execution's history item (one item per execution, rewritten)."""
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::dynamodb:putItem",
        "Arguments": {
            "TableName": s.history_table_name,
            "Item": {
                contract.RECORD_PK: {"S": contract.RECORD_PARTITION},
                contract.RECORD_SK: {"S": "{% $recordKey %}"},
                contract.RECORD_STATUS: {"S": expr(status)},
                contract.RECORD_IMAGE_TAG: {"S": "{% $record.imageTag %}"},
                contract.RECORD_STARTED_AT: {"S": "{% $record.startedAt %}"},
                contract.RECORD_EXECUTION_ARN: {"S": "{% $record.execution %}"},
                contract.RECORD_SUMMARY: {"S": expr("$string(" + summary(status, ended) + ")")},
            },
        },
        "Output": "{% $states.input %}",
        "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
    }


def progress_record(s: DefinitionSettings, next_state: str) -> State:
    """A RUNNING record between phases (best effort: the end of the release writes it again)."""
    return {
        **put_record(s, js(contract.STATUS_RUNNING), ended=False),
        "Catch": [{"ErrorEquals": [STATES_ALL], "Next": next_state}],
        "Next": next_state,
    }


def delete_lease(s: DefinitionSettings) -> State:
    return {
        "Type": "Task",
        "Comment": "Conditional DeleteItem: only this execution's lease.",
        "Resource": "arn:aws:states:::dynamodb:deleteItem",
        "Arguments": {
            "TableName": s.lease_table_name,
            "Key": {"LeaseId": {"S": contract.LEASE_ID}},
            "ConditionExpression": "#owner = :me",
            "ExpressionAttributeNames": {"#owner": "Owner"},
            "ExpressionAttributeValues": {":me": {"S": expr(EXECUTION_ARN)}},
        },
        "Output": "{% $states.input %}",
        "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
    }


def record_phase(s: DefinitionSettings) -> Phase:
    """Success: the SSM parameter, the lease freed, the record SUCCEEDED, the summary as output."""
    digests = "$merge([$services.{app: $lookup($digests, app)}])"
    lease_failed = "'freeing the release lease failed (' & " + ERROR + " & ': ' & " + CAUSE + " & '); the lease cleanup retries it'"
    states: dict[str, State] = {
        RECORD_RELEASE: {
            "Type": "Task",
            "Comment": "The released tag and digests, for people and tools that read the parameter.",
            "Resource": "arn:aws:states:::aws-sdk:ssm:putParameter",
            "Arguments": {
                "Name": s.released_parameter_name,
                "Type": "String",
                "Overwrite": True,
                "Value": expr(
                    "$string({'imageTag': $imageTag, 'digests': " + digests + ", 'execution': " + EXECUTION_ARN + ", 'releasedAt': $now()})"
                ),
            },
            "Assign": {"phase": "record"},
            "Retry": [retry_transient(SSM_TRANSIENT)],
            "Catch": [
                {
                    "ErrorEquals": [STATES_ALL],
                    "Assign": {
                        "phase": "record",
                        "errorName": expr(ERROR),
                        "errorCause": expr("'the services were deployed, but recording the release in SSM failed: ' & " + CAUSE),
                    },
                    "Next": FAIL_RELEASE,
                }
            ],
            "Next": RELEASE_LEASE,
        },
        RELEASE_LEASE: {
            **delete_lease(s),
            "Assign": {"leaseReleased": True, **DONE},
            "Catch": [
                # Not this execution's any more (it expired and another release took it).
                {"ErrorEquals": [CONDITIONAL_CHECK_FAILED], "Assign": {"leaseReleased": True, **DONE}, "Next": RECORD_SUCCESS},
                {
                    "ErrorEquals": [STATES_ALL],
                    "Assign": {"leaseReleased": False, "errorCause": expr(lease_failed), **DONE},
                    "Next": RECORD_SUCCESS,
                },
            ],
            "Next": RECORD_SUCCESS,
        },
        RECORD_SUCCESS: {
            **put_record(s, js(contract.STATUS_SUCCEEDED), ended=True),
            # The release happened: a record that cannot be written does not undo it (the lease
            # cleanup, started by the SUCCEEDED event, completes the record).
            "Catch": [{"ErrorEquals": [STATES_ALL], "Next": RELEASED}],
            "Next": RELEASED,
        },
        RELEASED: {"Type": "Succeed", "Output": expr(summary(js(contract.STATUS_SUCCEEDED), ended=True))},
    }
    return Phase(states, _record_grants(s))


def failure_phase(s: DefinitionSettings) -> Phase:
    """Every failure: free the lease if this execution holds it, record FAILED, fail with the name."""
    states: dict[str, State] = {
        FAIL_RELEASE: {
            "Type": "Choice",
            # Not held, or held while a migrate task the release asked to stop may still run: the
            # lease is freed only once that task is STOPPED (the cleanup machine, or its expiry).
            "Choices": [{"Condition": "{% $leaseReleased or $migrationMayRun %}", "Assign": ENDED, "Next": RECORD_FAILURE}],
            "Default": RELEASE_LEASE_AFTER_FAILURE,
            "Assign": ENDED,
        },
        RELEASE_LEASE_AFTER_FAILURE: {
            **delete_lease(s),
            "Assign": {"leaseReleased": True},
            "Catch": [
                {"ErrorEquals": [CONDITIONAL_CHECK_FAILED], "Assign": {"leaseReleased": True}, "Next": RECORD_FAILURE},
                {"ErrorEquals": [STATES_ALL], "Assign": {"leaseReleased": False}, "Next": RECORD_FAILURE},
            ],
            "Next": RECORD_FAILURE,
        },
        RECORD_FAILURE: {
            **put_record(s, js(contract.STATUS_FAILED), ended=True),
            "Catch": [{"ErrorEquals": [STATES_ALL], "Next": FAILED}],
            "Next": FAILED,
        },
        # Error names starting "States." are reserved to Step Functions: such an error (an
        # expression that failed, say) ends as "Release.<rest>", its cause unchanged.
        FAILED: {
            "Type": "Fail",
            "Error": "{% $substring($errorName, 0, 7) = 'States.' ? 'Release.' & $substring($errorName, 7) : $errorName %}",
            "Cause": "{% $errorCause %}",
        },
    }
    return Phase(rule_scoped_assigns(states), [])


def _record_grants(s: DefinitionSettings) -> list[Grant]:
    return [
        Grant("RecordReleaseHistory", ("dynamodb:PutItem",), (s.history_table_arn,)),
        Grant("RecordReleasedParameter", ("ssm:PutParameter",), (s.released_parameter_arn,)),
        Grant("FreeLease", ("dynamodb:DeleteItem",), (s.lease_table_arn,)),
    ]
