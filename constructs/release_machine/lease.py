"""Phase "lease": one release at a time per environment (a DynamoDB conditional write with an owner
and an expiry), and the re-check of the holder before anything changes (a late or redriven
execution that no longer holds it fails ReleaseInProgress instead of acting without it).

The lease names its `Owner` (the execution ARN: the cleanup machine and people read it) and its
`Holder`, the ARN and the redrive count of the attempt that took it. Redrive keeps the execution
ARN but resets the machine timeout, so a lease is valid only for the attempt that took it: a
redriven execution that resumes past AcquireLease fails the next holder check and changes
nothing; one that resumes at AcquireLease takes the lease as its own attempt, with an expiry
counted from the redrive.
"""

from __future__ import annotations

from constructs.release_machine.asl import (
    ATTEMPT_STARTED,
    CAUSE,
    CONDITIONAL_CHECK_FAILED,
    DEPLOYED_SO_FAR,
    DYNAMODB_TRANSIENT,
    EXECUTION_ARN,
    FAIL_RELEASE,
    REDRIVES,
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
HOLDER = EXECUTION_ARN + " & '#' & $string(" + REDRIVES + ")"
HOLDER_IS_ME = {":holder": {"S": expr(HOLDER)}}
NOW_EPOCH = "$string($floor($millis() / 1000))"


def lease_phase(s: DefinitionSettings, next_state: str) -> Phase:
    # The attempt's machine timeout (redrive resets it) + 60 s.
    expires = "$string($floor($toMillis(" + ATTEMPT_STARTED + ") / 1000) + " + str(s.execution_timeout_seconds + 60) + ")"
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
                    "Holder": {"S": expr(HOLDER)},
                    "ImageTag": {"S": "{% $imageTag %}"},
                    "AcquiredAt": {"S": "{% $now() %}"},
                    "ExpiresAt": {"N": expr(expires)},
                },
                "ConditionExpression": "attribute_not_exists(LeaseId) OR ExpiresAt < :now OR Holder = :holder",
                "ExpressionAttributeValues": {":now": {"N": expr(NOW_EPOCH)}, **HOLDER_IS_ME},
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


def check_lease(s: DefinitionSettings, before: str, phase: str, next_state: str, *, assign: dict[str, str] | None = None) -> State:
    """A conditional UpdateItem that succeeds only while this attempt of this execution holds the
    lease (it also stamps when it last checked). Not the holder: ReleaseInProgress, and nothing
    more is changed. `assign`: variables set when the check passed."""
    not_holder = (
        "(" + REDRIVES + " > 0 ? 'this execution was redriven (redrive ' & $string(" + REDRIVES + ") & '): a redriven release "
        "never acts on the lease of its earlier attempt: not " + before + "; start a new release' : "
        "'this execution no longer holds the release lease (it expired, the lease cleanup freed it after the "
        "execution failed, or another release took it): not " + before + "; start a new release') & " + DEPLOYED_SO_FAR
    )
    state: State = {
        "Type": "Task",
        "Comment": f"Still the lease holder? Checked right before {before}.",
        "Resource": "arn:aws:states:::dynamodb:updateItem",
        "Arguments": {
            "TableName": s.lease_table_name,
            "Key": {"LeaseId": {"S": contract.LEASE_ID}},
            "UpdateExpression": "SET CheckedAt = :now",
            "ConditionExpression": "Holder = :holder",
            "ExpressionAttributeValues": {":now": {"S": "{% $now() %}"}, **HOLDER_IS_ME},
        },
        "Output": "{% $states.input %}",
        "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
        "Catch": [
            {
                "ErrorEquals": [CONDITIONAL_CHECK_FAILED],
                "Assign": {
                    "errorName": contract.RELEASE_IN_PROGRESS,
                    "phase": phase,
                    # Not this attempt's: nothing to free (the failure path must not delete a lease
                    # it does not hold; the cleanup machine frees this execution's own, if any).
                    "leaseReleased": True,
                    "errorCause": expr(not_holder),
                },
                "Next": FAIL_RELEASE,
            },
            catch_all("checking the release lease before " + before, phase),
        ],
        "Next": next_state,
    }
    if assign:
        state["Assign"] = assign
    return state
