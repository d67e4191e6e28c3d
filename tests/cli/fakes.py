"""Stateful fakes for the CLI tests: moto for CloudFormation, Step Functions, Logs, DynamoDB, SSM.

moto runs no state machine: a started execution stays RUNNING and GetExecutionHistory returns a
fixed, made-up history. `ScriptedReleases` replaces that history with events the test writes and
moves the execution along one step each time the CLI sleeps between polls (the CLI's `sleep` is
injected): events appended to the history, log lines put into the migrate log stream through the
Logs API, and at the end the execution's status, output or error and cause set on moto's own
execution object, so DescribeExecution/ListExecutions/StartExecution see the same state.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto.core.responses import ActionResult
from moto.stepfunctions.models import Execution, stepfunctions_backends
from moto.stepfunctions.responses import StepFunctionResponse

ACCOUNT = "123456789012"
REGION = "ap-southeast-5"
PREFIX = "cashsouk"
ENV = "qa"
STATE_MACHINE = f"{PREFIX}-{ENV}-release"
LOG_GROUP = "/ecs/cashsouk-migrate"
LEASE_TABLE = f"{PREFIX}-{ENV}-release-lease"
RELEASED_PARAMETER = f"/{PREFIX}/{ENV}/release/current"
APPS = {
    "api": "api-cashsouk-09ff",
    "admin": "admin-cashsouk-544e",
    "investor": "investor-cashsouk-50e5",
    "issuer": "issuer-cashsouk-ff47",
    "landing": "landing-cashsouk-1156",
}
TASK_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TASK_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/default/{TASK_ID}"
LOG_STREAM = f"migrate/migrate/{TASK_ID}"


def stack_name(unit: str) -> str:
    return f"{PREFIX}-{ENV}-{unit}"


def _template(resources: dict[str, Any], outputs: dict[str, Any]) -> str:
    return json.dumps(
        {
            "Resources": resources,
            "Outputs": {key: {"Value": value, "Export": {"Name": f"{{STACK}}-{key}"}} for key, value in outputs.items()},
        }
    )


def create_stacks(units: tuple[str, ...] = ("data", "images", "release", "ci")) -> None:
    """The environment's stacks as CloudFormation has them: real (moto) resources where the CLI
    reads them (state machine, lease table, log group, parameter), literal values elsewhere."""
    cfn = boto3.client("cloudformation", region_name=REGION)
    marker = {"Marker": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "{STACK}/marker"}}}
    definition = {"StartAt": "ValidateInput", "States": {"ValidateInput": {"Type": "Pass", "End": True}}}
    templates: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "data": (
            marker,
            {
                "VpcId": "vpc-0a1b2c3d4e5f60718",
                "PrivateSubnetIds": "subnet-0a1b2c3d4e5f60001,subnet-0a1b2c3d4e5f60002",
                "MigrateSecurityGroupId": "sg-0a1b2c3d4e5f60005",
                "ProxyEndpoint": "cashsouk-qa-proxy.proxy-c0example0.ap-southeast-5.rds.amazonaws.com",
                "DatabaseEndpoint": "cashsouk-db.c0example0.ap-southeast-5.rds.amazonaws.com",
                "ExportsOutputRefNetworkVpc1234ABCD": "vpc-0a1b2c3d4e5f60718",
            },
        ),
        "images": (
            marker,
            {f"RepositoryUri{name.capitalize()}": f"{ACCOUNT}.dkr.ecr.{REGION}.example/{name}-cashsouk" for name in [*APPS, "migrate"]},
        ),
        "release": (
            {
                "MigrateLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": LOG_GROUP}},
                "Lease": {
                    "Type": "AWS::DynamoDB::Table",
                    "Properties": {
                        "TableName": LEASE_TABLE,
                        "BillingMode": "PAY_PER_REQUEST",
                        "KeySchema": [{"AttributeName": "LeaseId", "KeyType": "HASH"}],
                        "AttributeDefinitions": [{"AttributeName": "LeaseId", "AttributeType": "S"}],
                    },
                },
                "Machine": {
                    "Type": "AWS::StepFunctions::StateMachine",
                    "Properties": {
                        "StateMachineName": STATE_MACHINE,
                        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/{STATE_MACHINE}",
                        "DefinitionString": json.dumps(definition),
                    },
                },
            },
            {
                "StateMachineArn": {"Ref": "Machine"},
                "LeaseTableName": {"Ref": "Lease"},
                "MigrateTaskFamily": "cashsouk-migrate",
                "MigrateLogGroupName": {"Ref": "MigrateLogs"},
                "ClusterName": "default",
                "ReleasedParameterName": RELEASED_PARAMETER,
            },
        ),
        "ci": (
            marker,
            {
                "DeployRoleArn": f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-{ENV}-ci-deploy",
                "ReviewRoleArn": f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-{ENV}-ci-review",
            },
        ),
    }
    for unit in units:
        resources, outputs = templates[unit]
        name = stack_name(unit)
        cfn.create_stack(StackName=name, TemplateBody=_template(resources, outputs).replace("{STACK}", name))


# --- execution history events, in the API's shapes -------------------------------------------------


def entered(name: str, kind: str = "Task") -> dict[str, Any]:
    return {"type": f"{kind}StateEntered", "stateEnteredEventDetails": {"name": name, "input": "{}"}}


def exited(name: str, kind: str = "Task") -> dict[str, Any]:
    return {"type": f"{kind}StateExited", "stateExitedEventDetails": {"name": name, "output": "{}"}}


def run_task_submitted(task_arn: str = TASK_ARN) -> dict[str, Any]:
    output = {"Tasks": [{"TaskArn": task_arn, "LastStatus": "PROVISIONING", "Containers": [{"Name": "migrate"}]}]}
    return {
        "type": "TaskSubmitted",
        "taskSubmittedEventDetails": {"resourceType": "ecs", "resource": "runTask.sync", "output": json.dumps(output)},
    }


def run_task_started() -> dict[str, Any]:
    return {"type": "TaskStarted", "taskStartedEventDetails": {"resourceType": "ecs", "resource": "runTask.sync"}}


def task_failed(error: str, cause: str) -> dict[str, Any]:
    return {
        "type": "TaskFailed",
        "taskFailedEventDetails": {"resourceType": "ecs", "resource": "runTask.sync", "error": error, "cause": cause},
    }


@dataclass
class Step:
    """What happens between two polls of the CLI."""

    events: list[dict[str, Any]] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    finish: dict[str, Any] | None = None  # {"status": ..., "output"|"error"+"cause": ...}


def success_output(tag: str, services: list[str] | None = None) -> dict[str, Any]:
    names = services or ["api"]
    return {
        "imageTag": tag,
        "migration": {
            "taskArn": TASK_ARN,
            "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/cashsouk-migrate:42",
            "imageDigest": "sha256:" + "ab" * 32,
            "exitCode": 0,
            "logStream": LOG_STREAM,
        },
        "services": [
            {
                "app": app,
                "service": APPS[app],
                "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{APPS[app]}:7",
                "deploymentId": f"ecs-svc/{1000 + i}",
                "rolloutState": "COMPLETED",
            }
            for i, app in enumerate(names)
        ],
    }


def release_script(outcome: dict[str, Any], *, migration_logs: list[str] | None = None) -> list[Step]:
    """A release as the state machine runs it: validate, lease, migrate (with logs), deploy, finish."""
    logs = (
        migration_logs
        if migration_logs is not None
        else [
            "[migrate] waiting for the migration lock (key 7286150011)",
            "Applying migration `20261120093000_add_invoice_due_date`",
            "All migrations have been successfully applied.",
        ]
    )
    return [
        Step(events=[entered("ValidateInput", "Pass"), exited("ValidateInput", "Pass"), entered("VerifyImages"), exited("VerifyImages")]),
        Step(events=[entered("AcquireLease"), exited("AcquireLease"), entered("RunMigration"), run_task_submitted(), run_task_started()]),
        Step(log_lines=logs[:1]),
        Step(log_lines=logs[1:]),
        Step(events=[exited("RunMigration"), entered("DeployServices", "Map"), exited("DeployServices", "Map")]),
        Step(events=[entered("ReleaseLease"), exited("ReleaseLease")], finish=outcome),
    ]


class ScriptedReleases:
    """Drives moto's executions of the release state machine (see the module docstring)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.script: list[Step] = []
        self.ticks = 0
        self.logs = boto3.client("logs", region_name=REGION)
        histories = self.histories

        def history(execution: Execution, role_arn: str) -> list[dict[str, Any]]:
            return histories.setdefault(execution.execution_arn, self._started(execution))

        monkeypatch.setattr(Execution, "get_execution_history", history)

        # moto ignores GetExecutionHistory's paging: answer as Step Functions does (maxResults
        # default 100, at most 1000; reverseOrder; an opaque nextToken), and count the calls.
        self.history_calls: list[dict[str, Any]] = []
        calls = self.history_calls

        def paged_history(response: StepFunctionResponse) -> ActionResult:
            params = {key: response._get_param(key) for key in ("executionArn", "maxResults", "reverseOrder", "nextToken")}
            calls.append(params)
            events = list(response.stepfunction_backend.get_execution_history(params["executionArn"])["events"])
            size = int(params["maxResults"] or 100)
            assert 1 <= size <= 1000, f"maxResults {size}: GetExecutionHistory allows 1-1000"
            if params["reverseOrder"]:
                events.reverse()
            start = int(params["nextToken"] or 0)
            page: dict[str, Any] = {"events": events[start : start + size]}
            if start + size < len(events):
                page["nextToken"] = str(start + size)
            return ActionResult(page)

        monkeypatch.setattr(StepFunctionResponse, "get_execution_history", paged_history)

    @staticmethod
    def _started(execution: Execution) -> list[dict[str, Any]]:
        return [
            {
                "id": 1,
                "previousEventId": 0,
                "timestamp": datetime.now(UTC),
                "type": "ExecutionStarted",
                "executionStartedEventDetails": {"input": execution.execution_input, "roleArn": "arn:aws:iam::1:role/x"},
            }
        ]

    @property
    def executions(self) -> list[Execution]:
        machines = stepfunctions_backends[ACCOUNT][REGION].state_machines
        return [execution for machine in machines for execution in machine.executions]

    def running(self) -> Execution:
        running = [e for e in self.executions if e.status == "RUNNING"]
        assert running, "no running execution to drive"
        return running[-1]

    def sleep(self, seconds: float) -> None:
        """The CLI's sleep between polls: the release moves on by one step."""
        assert seconds == 0, "tests run with --poll-interval 0"
        assert self.ticks < 100, "the CLI kept polling a finished script"
        if self.ticks < len(self.script):
            self.apply(self.running(), self.script[self.ticks])
        self.ticks += 1

    def apply(self, execution: Execution, step: Step) -> None:
        events = self.histories.setdefault(execution.execution_arn, self._started(execution))
        for event in step.events:
            events.append({"id": len(events) + 1, "previousEventId": len(events), "timestamp": datetime.now(UTC), **event})
        if step.log_lines:
            self.put_logs(LOG_STREAM, step.log_lines)
        if step.finish is not None:
            self.finish(execution, **step.finish)

    def put_logs(self, stream: str, lines: list[str]) -> None:
        with contextlib.suppress(self.logs.exceptions.ResourceAlreadyExistsException):
            self.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        now = int(datetime.now(UTC).timestamp() * 1000)
        self.logs.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=stream,
            logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
        )

    def finish(self, execution: Execution, status: str, output: Any = None, error: str | None = None, cause: str | None = None) -> None:
        events = self.histories.setdefault(execution.execution_arn, self._started(execution))
        kind = {"SUCCEEDED": "Succeeded", "FAILED": "Failed", "TIMED_OUT": "TimedOut", "ABORTED": "Aborted"}[status]
        details: dict[str, Any] = {"output": json.dumps(output)} if status == "SUCCEEDED" else {"error": error or "", "cause": cause or ""}
        key = f"execution{kind}EventDetails"
        events.append(
            {
                "id": len(events) + 1,
                "previousEventId": len(events),
                "timestamp": datetime.now(UTC),
                "type": f"Execution{kind}",
                key: details,
            }
        )
        execution.status = status
        execution.stop_date = datetime.now(UTC)
        execution.output = json.dumps(output) if output is not None else None
        execution.error = error
        execution.cause = cause


SleepFn = Callable[[float], None]
