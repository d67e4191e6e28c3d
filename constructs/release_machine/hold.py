"""Phase "hold": a release refuses to start while someone holds releases (`release hold`), naming
who and why, before it takes the lease or changes anything.

The hold is one item of the lease table (`LeaseId` = contract.HOLD_ID: `Reason`, `HeldBy`,
`HeldAt`), read with a consistent GetItem right after the pre-flight checks. A release already past
this state (running, or waiting for the lease) goes on: `release hold` says so and names it.
"""

from __future__ import annotations

from constructs.release_machine.asl import (
    DYNAMODB_TRANSIENT,
    FAIL_RELEASE,
    DefinitionSettings,
    Grant,
    Phase,
    State,
    catch_all,
    expr,
    retry_transient,
)
from release import contract

CHECK_HOLD = "CheckHold"
HELD = "Held"
_HOLD = "$releaseHold"


def hold_phase(s: DefinitionSettings, next_state: str) -> Phase:
    def field(name: str) -> str:
        return f"($exists({_HOLD}.{name}.S) ? {_HOLD}.{name}.S : '?')"

    states: dict[str, State] = {
        CHECK_HOLD: {
            "Type": "Task",
            "Comment": "Are releases held (release hold)? Read before the lease is taken or anything changes.",
            "Resource": "arn:aws:states:::dynamodb:getItem",
            "Arguments": {"TableName": s.lease_table_name, "Key": {"LeaseId": {"S": contract.HOLD_ID}}, "ConsistentRead": True},
            # An Assign that evaluates to nothing fails the state: no item is null, not absent.
            "Assign": {"releaseHold": "{% $exists($states.result.Item) ? $states.result.Item : null %}"},
            "Output": "{% $states.input %}",
            "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
            "Catch": [catch_all("checking the release hold", "validate")],
            "Next": HELD,
        },
        HELD: {
            "Type": "Choice",
            "Choices": [
                {
                    # Recoveries (migrate status/resolve) are the way out of an incident: not held.
                    "Condition": "{% $releaseHold != null and $migrateAction = 'deploy' %}",
                    "Assign": {
                        "errorName": contract.RELEASE_HELD,
                        "phase": "validate",
                        "errorCause": expr(
                            "'releases are held by ' & "
                            + field("HeldBy")
                            + " & ' since ' & "
                            + field("HeldAt")
                            + " & ': ' & "
                            + field("Reason")
                            + " & ' (nothing was changed; start the release again after release unhold)'"
                        ),
                    },
                    "Next": FAIL_RELEASE,
                }
            ],
            "Default": next_state,
        },
    }
    # The hold item only: the machine's other lease rights are the lease phase's own.
    grants = [
        Grant(
            "ReadHold",
            ("dynamodb:GetItem",),
            (s.lease_table_arn,),
            {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [contract.HOLD_ID]}},
        )
    ]
    return Phase(states, grants)
