"""The lease cleanup machine: EventBridge starts it when a release ends (any status). It completes
the release from what really happened: it finds the migrate task the execution started (the task
ARN the record holds, else ListTasks by startedBy alone, as ECS requires), stops it if it still
runs and waits until ECS reports it STOPPED, frees the lease if that execution still owns it, and
completes the record: status and end, the migration's outcome read from its task, and every
service whose UpdateService ran but did not finish marked "interrupted" with its deployment id.

A lookup that fails (ListTasks, DescribeTasks, StopTask refused or failing after retries) is never
read as "no task": the lease stays (its ExpiresAt still frees it), the record says why, and the
execution fails (CleanupIncomplete), which the cleanup-failure alarm reports.
Express: every call is request-response."""

from __future__ import annotations

from typing import Any

from constructs.release_machine.asl import (
    CONDITIONAL_CHECK_FAILED,
    DYNAMODB_TRANSIENT,
    ECS_TRANSIENT,
    STATES_ALL,
    Grant,
    State,
    expr,
    retry_transient,
)
from release import contract

DETAIL = "$states.input.detail"
# ECS: "the default is 30 seconds" between SIGTERM and SIGKILL, up to 120 s on Fargate; 13 polls
# 10 s apart cover the longest stop timeout with room, inside the machine's 300 s.
STOP_POLL_SECONDS = 10
STOP_POLLS = 13
# RunTask's startedBy character set ("letters, numbers, hyphens (-), forward slash (/), and
# underscores (_)", up to 128); a name the release accepted passes through unchanged.
STARTED_BY = "$substring($replace($name, /[^A-Za-z0-9_\\/-]/, '-'), 0, 128)"
LOOKUP_FAILED = "$states.errorOutput.Error & ': ' & ($exists($states.errorOutput.Cause) ? $states.errorOutput.Cause : '')"


def cleanup_grants(*, lease_table_arn: str, history_table_arn: str, cluster_arn: str, cluster_tasks_arn: str) -> list[Grant]:
    cluster = {"ArnEquals": {"ecs:cluster": cluster_arn}}
    return [
        Grant("FreeEndedLease", ("dynamodb:DeleteItem",), (lease_table_arn,)),
        Grant("CompleteRecord", ("dynamodb:GetItem", "dynamodb:PutItem"), (history_table_arn,)),
        Grant("StopLeftMigrateTask", ("ecs:DescribeTasks", "ecs:StopTask"), (cluster_tasks_arn,), cluster),
        # ListTasks has no resource-level permission on tasks; the condition keeps it to the cluster.
        Grant("FindMigrateTask", ("ecs:ListTasks",), ("*",), cluster),
    ]


def build_cleanup(*, lease_table_name: str, history_table_name: str, cluster_name: str) -> dict[str, Any]:
    states = {
        **_ended(history_table_name),
        **_find_task(cluster_name),
        **_stop_task(cluster_name),
        **_free_lease(lease_table_name),
        **_record(history_table_name),
    }
    return {
        "Comment": "Completes a release that ended: stops its migrate task, frees its lease, completes its record.",
        "QueryLanguage": "JSONata",
        "TimeoutSeconds": 300,
        "StartAt": "ExecutionEnded",
        "States": states,
    }


def _ended(history_table_name: str) -> dict[str, State]:
    detail = DETAIL
    return {
        "ExecutionEnded": {
            "Type": "Pass",
            "Assign": {
                "execution": "{% " + detail + ".executionArn %}",
                "status": "{% " + detail + ".status %}",
                "recordKey": expr("$fromMillis(" + detail + ".startDate) & '#' & " + detail + ".name"),
                "endedAt": expr("$exists(" + detail + ".stopDate) ? $fromMillis(" + detail + ".stopDate) : $now()"),
                "error": expr("$exists(" + detail + ".error) ? " + detail + ".error : null"),
                "cause": expr("$exists(" + detail + ".cause) ? " + detail + ".cause : null"),
                "name": "{% " + detail + ".name %}",
                "taskArn": "{% null %}",
                "stoppedTask": "{% null %}",
                "migrationEnd": "{% null %}",
                "lookupError": "{% null %}",
                "stopPolls": 0,
                "leaseFreed": False,
            },
            "Next": "ReadRecord",
        },
        "ReadRecord": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:getItem",
            "Arguments": {
                "TableName": history_table_name,
                "Key": {contract.RECORD_PK: {"S": contract.RECORD_PARTITION}, contract.RECORD_SK: {"S": "{% $recordKey %}"}},
                "ConsistentRead": True,
            },
            "Assign": {
                "record": "{% $exists($states.result.Item.Summary.S) ? $parse($states.result.Item.Summary.S) : null %}",
                # The migrate task the release recorded right after RunTask, if it got that far.
                "taskArn": expr(
                    "($r := $exists($states.result.Item.Summary.S) ? $parse($states.result.Item.Summary.S) : null; "
                    "$exists($r.migration.taskArn) ? $r.migration.taskArn : null)"
                ),
            },
            "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
            "Catch": [{"ErrorEquals": [STATES_ALL], "Assign": {"record": "{% null %}"}, "Next": "WhatToLookUp"}],
            "Next": "WhatToLookUp",
        },
        "WhatToLookUp": {
            "Type": "Choice",
            "Choices": [
                # A release that succeeded stopped its task itself; only its lease may be left.
                {"Condition": "{% $status = 'SUCCEEDED' %}", "Next": "FreeLease"},
                {"Condition": "{% $taskArn != null %}", "Next": "DescribeMigrateTask"},
            ],
            "Default": "FindMigrateTask",
        },
    }


def _lookup_failed(step: str) -> list[dict[str, Any]]:
    """A lookup that failed after its retries: recorded, the lease kept, the execution failed."""
    return [
        {
            "ErrorEquals": [STATES_ALL],
            "Assign": {"lookupError": expr("'" + step + " failed: ' & " + LOOKUP_FAILED)},
            "Next": "RecordComplete",
        }
    ]


def _find_task(cluster_name: str) -> dict[str, State]:
    return {
        "FindMigrateTask": {
            "Type": "Task",
            "Comment": "No task ARN in the record: the execution's running task by startedBy (ECS: it must be the only filter).",
            "Resource": "arn:aws:states:::aws-sdk:ecs:listTasks",
            "Arguments": {"Cluster": cluster_name, "StartedBy": expr(STARTED_BY)},
            "Assign": {"taskArn": "{% $exists($states.result.TaskArns[0]) ? $states.result.TaskArns[0] : null %}"},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": _lookup_failed("ListTasks"),
            "Next": "MigrateTaskFound",
        },
        "MigrateTaskFound": {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $taskArn != null %}", "Next": "DescribeMigrateTask"}],
            "Default": "FreeLease",
        },
        "DescribeMigrateTask": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:ecs:describeTasks",
            "Arguments": {"Cluster": cluster_name, "Tasks": ["{% $taskArn %}"]},
            "Assign": {"task": "{% $exists($states.result.Tasks[0]) ? $states.result.Tasks[0] : null %}"},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": _lookup_failed("DescribeTasks"),
            "Next": "MigrateTaskState",
        },
        "MigrateTaskState": {
            "Type": "Choice",
            "Choices": [
                {
                    # ECS keeps a stopped task visible for at least an hour; gone means older than that.
                    "Condition": "{% $task = null %}",
                    "Assign": {
                        "migrationEnd": expr(
                            "{'taskArn': $taskArn, 'outcome': 'unknown', 'reason': 'ECS no longer describes the migrate task "
                            "(DescribeTasks: MISSING): read its log stream'}"
                        )
                    },
                    "Next": "FreeLease",
                },
                {
                    "Condition": "{% $task.LastStatus = 'STOPPED' %}",
                    "Assign": {"migrationEnd": expr(_ended_migration(stopped=False))},
                    "Next": "FreeLease",
                },
            ],
            "Default": "StopMigrateTask",
        },
    }


def _ended_migration(*, stopped: bool) -> str:
    """The migration's outcome from its STOPPED task ($task). Exit 0 means it applied what it had."""
    exit_code = "$task.Containers[0].ExitCode"
    outcome = "'stopped'" if stopped else "($exists(" + exit_code + ") and " + exit_code + " = 0 ? 'succeeded' : 'failed')"
    reason = (
        "'stopped by the lease cleanup: the release ended ' & $status"
        if stopped
        else "'the task ended on its own after the release ended ' & $status & ': ' & "
        "($exists($task.StoppedReason) ? $task.StoppedReason : 'no reason')"
    )
    return (
        "{'taskArn': $taskArn, 'outcome': " + outcome + ", 'exitCode': $exists(" + exit_code + ") ? " + exit_code + " : null, "
        "'stoppedByRelease': " + ("true" if stopped else "false") + ", "
        # Exit 0 applied its migrations; a stopped or failed run may have applied some before it ended.
        "'schemaMayHaveChanged': true, 'reason': " + reason + "}"
    )


def _stop_task(cluster_name: str) -> dict[str, State]:
    return {
        "StopMigrateTask": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:ecs:stopTask",
            "Arguments": {"Cluster": cluster_name, "Task": "{% $taskArn %}", "Reason": "{% 'release ' & $name & ' ended ' & $status %}"},
            "Assign": {"stoppedTask": "{% $taskArn %}"},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": _lookup_failed("StopTask"),
            "Next": "MigrateTaskStopping",
        },
        # StopTask sends SIGTERM; the task is STOPPED after the stop timeout at the latest. The lease
        # is freed only then, so no other migration starts while this one still runs.
        "MigrateTaskStopping": {"Type": "Wait", "Seconds": STOP_POLL_SECONDS, "Next": "DescribeStoppingTask"},
        "DescribeStoppingTask": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:ecs:describeTasks",
            "Arguments": {"Cluster": cluster_name, "Tasks": ["{% $taskArn %}"]},
            "Assign": {
                "task": "{% $exists($states.result.Tasks[0]) ? $states.result.Tasks[0] : {'LastStatus': 'STOPPED'} %}",
                "stopPolls": "{% $stopPolls + 1 %}",
            },
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": _lookup_failed("DescribeTasks"),
            "Next": "MigrateTaskStopped",
        },
        "MigrateTaskStopped": {
            "Type": "Choice",
            "Choices": [
                {
                    "Condition": "{% $task.LastStatus = 'STOPPED' %}",
                    "Assign": {"migrationEnd": expr(_ended_migration(stopped=True))},
                    "Next": "FreeLease",
                },
                {"Condition": "{% $stopPolls < " + str(STOP_POLLS) + " %}", "Next": "MigrateTaskStopping"},
            ],
            "Default": "MigrateTaskNotStopped",
        },
        "MigrateTaskNotStopped": {
            "Type": "Pass",
            "Assign": {
                "lookupError": expr(
                    "'the migrate task ' & $taskArn & ' was not STOPPED " + str(STOP_POLLS * STOP_POLL_SECONDS) + " s after StopTask'"
                )
            },
            "Next": "RecordComplete",
        },
    }


def _free_lease(lease_table_name: str) -> dict[str, State]:
    return {
        "FreeLease": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:deleteItem",
            "Arguments": {
                "TableName": lease_table_name,
                "Key": {"LeaseId": {"S": contract.LEASE_ID}},
                "ConditionExpression": "#owner = :ended",
                "ExpressionAttributeNames": {"#owner": "Owner"},
                "ExpressionAttributeValues": {":ended": {"S": "{% $execution %}"}},
            },
            "Assign": {"leaseFreed": True},
            "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
            # Released already, or another release owns it now.
            "Catch": [{"ErrorEquals": [CONDITIONAL_CHECK_FAILED], "Next": "RecordComplete"}],
            "Next": "RecordComplete",
        },
    }


# Services whose UpdateService ran (a deployment id is recorded) but whose outcome was not settled.
INTERRUPTED = "$filter($keys($record.services), function($k) { ($s := $lookup($record.services, $k); $exists($s.deploymentId) and $s.deploymentId != null and $not($s.outcome in ['deployed', 'failed', 'rolled-back'])) })"


def _record(history_table_name: str) -> dict[str, State]:
    return {
        "RecordComplete": {
            "Type": "Choice",
            "Choices": [
                {"Condition": "{% $lookupError != null and $record = null %}", "Next": "CleanupIncomplete"},
                {"Condition": "{% $record = null %}", "Next": "Done"},
                {
                    "Condition": "{% $record.status = $status and ($record.leaseReleased or $not($leaseFreed)) and $migrationEnd = null "
                    "and $lookupError = null and $count(" + INTERRUPTED + ") = 0 %}",
                    "Next": "Done",
                },
            ],
            "Default": "CompleteRecord",
        },
        "CompleteRecord": _complete_record(history_table_name),
        "CleanupOutcome": {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $lookupError != null %}", "Next": "CleanupIncomplete"}],
            "Default": "Done",
        },
        "CleanupIncomplete": {
            "Type": "Fail",
            "Error": "CleanupIncomplete",
            "Cause": "{% $lookupError & ' (execution ' & $execution & ')' %}",
        },
        "Done": {
            "Type": "Succeed",
            "Output": {
                "execution": "{% $execution %}",
                "released": "{% $leaseFreed %}",
                "stoppedTask": "{% $stoppedTask %}",
                "recordFound": "{% $record != null %}",
            },
        },
    }


def _complete_record(history_table_name: str) -> State:
    migration = "$migrationEnd = null ? $record.migration : $merge([$record.migration, $migrationEnd])"
    interrupted = (
        "$merge([$record.services, $merge($map(" + INTERRUPTED + ", function($k) { {$k: $merge([$lookup($record.services, $k), "
        "{'outcome': 'interrupted', 'reason': 'the release ended ' & $status & ' while deployment ' & "
        "$lookup($record.services, $k).deploymentId & ' rolled out'}])} }))])"
    )
    completed = (
        "$merge([$record, {'status': $status, 'endedAt': $record.endedAt != null ? $record.endedAt : $endedAt, "
        "'error': $record.error != null ? $record.error : $error, 'cause': $record.cause != null ? $record.cause : $cause, "
        "'migration': " + migration + ", 'services': $record.services = null ? null : " + interrupted + ", "
        "'leaseReleased': $record.leaseReleased or $leaseFreed, 'cleanupError': $lookupError}])"
    )
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::dynamodb:putItem",
        "Arguments": {
            "TableName": history_table_name,
            "Item": {
                contract.RECORD_PK: {"S": contract.RECORD_PARTITION},
                contract.RECORD_SK: {"S": "{% $recordKey %}"},
                contract.RECORD_STATUS: {"S": "{% $status %}"},
                contract.RECORD_IMAGE_TAG: {"S": "{% $record.imageTag %}"},
                contract.RECORD_STARTED_AT: {"S": "{% $record.startedAt %}"},
                contract.RECORD_EXECUTION_ARN: {"S": "{% $execution %}"},
                contract.RECORD_SUMMARY: {"S": expr("$string(" + completed + ")")},
            },
        },
        "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
        "Next": "CleanupOutcome",
    }
