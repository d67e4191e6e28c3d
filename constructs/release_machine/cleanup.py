"""The lease cleanup machine: EventBridge starts it when a release ends (any status). It stops a
migrate task the execution left running, frees the lease if that execution still owns it, and
completes the record (status, end, lease) when the execution could not: ABORTED, TIMED_OUT, a failed
final write. Express: every call is request-response."""

from __future__ import annotations

from typing import Any

from constructs.release_machine.asl import (
    CONDITIONAL_CHECK_FAILED,
    DYNAMODB_TRANSIENT,
    ECS_TRANSIENT,
    STATES_ALL,
    State,
    expr,
    retry_transient,
)
from release import contract

DETAIL = "$states.input.detail"


def build_cleanup(*, lease_table_name: str, history_table_name: str, cluster_name: str) -> dict[str, Any]:
    states = {**_ended(), **_stop_left_task(cluster_name), **_free_lease(lease_table_name), **_record(history_table_name)}
    return {
        "Comment": "Completes a release that ended: stops its migrate task, frees its lease, completes its record.",
        "QueryLanguage": "JSONata",
        "TimeoutSeconds": 300,
        "StartAt": "ExecutionEnded",
        "States": states,
    }


def _ended() -> dict[str, State]:
    detail = DETAIL
    return {
        "ExecutionEnded": {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $status = 'SUCCEEDED' %}", "Next": "FreeLease"}],
            "Default": "FindMigrateTask",
            "Assign": {
                "execution": "{% " + detail + ".executionArn %}",
                "status": "{% " + detail + ".status %}",
                "recordKey": expr("$fromMillis(" + detail + ".startDate) & '#' & " + detail + ".name"),
                "endedAt": expr("$exists(" + detail + ".stopDate) ? $fromMillis(" + detail + ".stopDate) : $now()"),
                "error": expr("$exists(" + detail + ".error) ? " + detail + ".error : null"),
                "cause": expr("$exists(" + detail + ".cause) ? " + detail + ".cause : null"),
                "name": "{% " + detail + ".name %}",
                "stoppedTask": "{% null %}",
                "leaseFreed": False,
            },
        },
    }


def _stop_left_task(cluster_name: str) -> dict[str, State]:
    return {
        "FindMigrateTask": {
            "Type": "Task",
            "Comment": "A migrate task the execution started (startedBy = execution name) and left running.",
            "Resource": "arn:aws:states:::aws-sdk:ecs:listTasks",
            "Arguments": {"Cluster": cluster_name, "StartedBy": "{% $name %}", "DesiredStatus": "RUNNING"},
            "Assign": {"taskArns": "{% $exists($states.result.TaskArns) ? [$states.result.TaskArns] : [] %}"},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": [{"ErrorEquals": [STATES_ALL], "Assign": {"taskArns": expr("[]")}, "Next": "FreeLease"}],
            "Next": "MigrateTaskRunning",
        },
        "MigrateTaskRunning": {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $count($taskArns) > 0 %}", "Next": "StopMigrateTask"}],
            "Default": "FreeLease",
        },
        "StopMigrateTask": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:ecs:stopTask",
            "Arguments": {
                "Cluster": cluster_name,
                "Task": "{% $taskArns[0] %}",
                "Reason": "{% 'release ' & $name & ' ended ' & $status %}",
            },
            "Assign": {"stoppedTask": "{% $taskArns[0] %}"},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": [{"ErrorEquals": [STATES_ALL], "Next": "FreeLease"}],
            "Next": "FreeLease",
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
            "Catch": [{"ErrorEquals": [CONDITIONAL_CHECK_FAILED], "Next": "ReadRecord"}],
            "Next": "ReadRecord",
        },
    }


def _record(history_table_name: str) -> dict[str, State]:
    return {
        "ReadRecord": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:getItem",
            "Arguments": {
                "TableName": history_table_name,
                "Key": {contract.RECORD_PK: {"S": contract.RECORD_PARTITION}, contract.RECORD_SK: {"S": "{% $recordKey %}"}},
                "ConsistentRead": True,
            },
            "Assign": {"record": "{% $exists($states.result.Item.Summary.S) ? $parse($states.result.Item.Summary.S) : null %}"},
            "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
            "Next": "RecordComplete",
        },
        "RecordComplete": {
            "Type": "Choice",
            "Choices": [
                {"Condition": "{% $record = null %}", "Next": "Done"},
                {
                    "Condition": "{% $record.status = $status and ($record.leaseReleased or $not($leaseFreed)) and $stoppedTask = null %}",
                    "Next": "Done",
                },
            ],
            "Default": "CompleteRecord",
        },
        "CompleteRecord": _complete_record(history_table_name),
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
    migration = (
        "$stoppedTask = null ? $record.migration : $merge([$record.migration, {'outcome': 'failed', 'taskArn': $stoppedTask, "
        "'stoppedByRelease': true, 'reason': 'stopped by the lease cleanup: the release ended ' & $status}])"
    )
    completed = (
        "$merge([$record, {'status': $status, 'endedAt': $record.endedAt != null ? $record.endedAt : $endedAt, "
        "'error': $record.error != null ? $record.error : $error, 'cause': $record.cause != null ? $record.cause : $cause, "
        "'migration': " + migration + ", 'leaseReleased': $record.leaseReleased or $leaseFreed}])"
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
        "Next": "Done",
    }
