"""Phase "lease": one release at a time per environment (a DynamoDB conditional write with an owner
and an expiry), and the re-check of the owner before anything changes (a late or redriven
execution that no longer holds it fails ReleaseInProgress instead of acting without it)."""

from __future__ import annotations

from constructs.release_machine.asl import (
    CAUSE,
    CONDITIONAL_CHECK_FAILED,
    DEPLOYED_SO_FAR,
    DYNAMODB_TRANSIENT,
    EXECUTION_ARN,
    FAIL_RELEASE,
    STATES_ALL,
    DefinitionSettings,
    Grant,
    Phase,
    State,
    catch_all,
    expr,
    retry_transient,
)
from release import contract, limits

ACQUIRE_LEASE = "AcquireLease"
READ_LEASE_HOLDER = "ReadLeaseHolder"
OWNER_IS_ME = {":me": {"S": expr(EXECUTION_ARN)}}
NOW_EPOCH = "$string($floor($millis() / 1000))"


def lease_phase(s: DefinitionSettings, next_state: str) -> Phase:
    expires = "$string($floor($toMillis($states.context.Execution.StartTime) / 1000) + " + str(s.execution_timeout_seconds + 60) + ")"
    holder = "$states.result.Item"
    wait = str(s.lease_wait_seconds)
    states: dict[str, State] = {
        ACQUIRE_LEASE: {
            "Type": "Task",
            "Comment": "Conditional PutItem: the lease is free, expired, or already this execution's.",
            "Resource": "arn:aws:states:::dynamodb:putItem",
            "Arguments": {
                "TableName": s.lease_table_name,
                "Item": {
                    "LeaseId": {"S": contract.LEASE_ID},
                    "Owner": {"S": expr(EXECUTION_ARN)},
                    "ImageTag": {"S": "{% $imageTag %}"},
                    "AcquiredAt": {"S": "{% $now() %}"},
                    "ExpiresAt": {"N": expr(expires)},
                },
                "ConditionExpression": "attribute_not_exists(LeaseId) OR ExpiresAt < :now OR #owner = :me",
                "ExpressionAttributeNames": {"#owner": "Owner"},
                "ExpressionAttributeValues": {":now": {"N": expr(NOW_EPOCH)}, **OWNER_IS_ME},
            },
            "Output": "{% $states.input %}",
            "Assign": {"leaseReleased": False, "phase": "migrate"},
            "Retry": [
                {
                    "ErrorEquals": [CONDITIONAL_CHECK_FAILED],
                    "IntervalSeconds": limits.LEASE_RETRY_SECONDS,
                    "MaxAttempts": s.bounds.lease_attempts,
                    "BackoffRate": 1.0,
                },
                retry_transient(DYNAMODB_TRANSIENT),
            ],
            "Catch": [
                {"ErrorEquals": [CONDITIONAL_CHECK_FAILED], "Next": READ_LEASE_HOLDER},
                # The write may have landed before the error: the conditional delete is safe either way.
                catch_all("taking the release lease", "lease", leaseReleased="false"),
            ],
            "Next": next_state,
        },
        READ_LEASE_HOLDER: {
            "Type": "Task",
            "Comment": "Name the release that holds the lease, for the error's cause.",
            "Resource": "arn:aws:states:::dynamodb:getItem",
            "Arguments": {"TableName": s.lease_table_name, "Key": {"LeaseId": {"S": contract.LEASE_ID}}, "ConsistentRead": True},
            "Assign": {
                "errorName": contract.RELEASE_IN_PROGRESS,
                "phase": "lease",
                "errorCause": expr(
                    "$exists(" + holder + ".Owner.S) ? "
                    "'another release holds the lease: ' & " + holder + ".Owner.S & ' (image ' & " + holder + ".ImageTag.S & ')'"
                    " & ' since ' & " + holder + ".AcquiredAt.S & ', expires ' & $fromMillis($number(" + holder + ".ExpiresAt.N) * 1000)"
                    " & '; waited " + wait + " s' : "
                    "'the release lease stayed taken for " + wait + " s (now free: start the release again)'"
                ),
            },
            "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
            "Catch": [
                {
                    "ErrorEquals": [STATES_ALL],
                    "Assign": {
                        "errorName": contract.RELEASE_IN_PROGRESS,
                        "phase": "lease",
                        "errorCause": expr("'another release held the lease; reading it failed: ' & " + CAUSE),
                    },
                    "Next": FAIL_RELEASE,
                }
            ],
            "Next": FAIL_RELEASE,
        },
    }
    grants = [
        Grant("TakeLease", ("dynamodb:PutItem", "dynamodb:GetItem"), (s.lease_table_arn,)),
        Grant("CheckLease", ("dynamodb:UpdateItem",), (s.lease_table_arn,)),
    ]
    return Phase(states, grants)


def check_lease(s: DefinitionSettings, before: str, phase: str, next_state: str) -> State:
    """A conditional UpdateItem that succeeds only while this execution owns the lease (it also
    stamps when it last checked). Not the owner: ReleaseInProgress, and nothing more is changed."""
    return {
        "Type": "Task",
        "Comment": f"Still the lease owner? Checked right before {before}.",
        "Resource": "arn:aws:states:::dynamodb:updateItem",
        "Arguments": {
            "TableName": s.lease_table_name,
            "Key": {"LeaseId": {"S": contract.LEASE_ID}},
            "UpdateExpression": "SET CheckedAt = :now",
            "ConditionExpression": "#owner = :me",
            "ExpressionAttributeNames": {"#owner": "Owner"},
            "ExpressionAttributeValues": {":now": {"S": "{% $now() %}"}, **OWNER_IS_ME},
        },
        "Output": "{% $states.input %}",
        "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
        "Catch": [
            {
                "ErrorEquals": [CONDITIONAL_CHECK_FAILED],
                "Assign": {
                    "errorName": contract.RELEASE_IN_PROGRESS,
                    "phase": phase,
                    # Not ours: nothing to free (the failure path must not delete another's lease).
                    "leaseReleased": True,
                    "errorCause": expr(
                        "'this execution no longer holds the release lease (it expired, the lease cleanup freed it after the "
                        "execution failed, or another release took it): not " + before + "; start a new release' & " + DEPLOYED_SO_FAR
                    ),
                },
                "Next": FAIL_RELEASE,
            },
            catch_all("checking the release lease before " + before, phase),
        ],
        "Next": next_state,
    }
