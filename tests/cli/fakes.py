"""Stateful fakes for the CLI tests: moto for CloudFormation, Step Functions, Logs, DynamoDB, SSM, ECR, ECS.

moto runs no state machine: a started execution stays RUNNING. `ScriptedReleases` plays the state
machine's part the CLI can see, one step each time the CLI sleeps between polls (the CLI's `sleep`
is injected): the release record in the history table (written as docs/release.md specifies: phase,
then the outcome), log lines put into a migrate log stream through the Logs API, and at the end
the execution's status, error and cause set on moto's own execution object, so DescribeExecution,
ListExecutions and StartExecution see the same state. The execution history is never served: the
CLI must not read it (issue 9.6), and a test fails if it tries.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.core.responses import ActionResult
from moto.ecs.models import ecs_backends
from moto.stepfunctions.models import Execution, stepfunctions_backends
from moto.stepfunctions.responses import StepFunctionResponse

ACCOUNT = "123456789012"
REGION = "ap-southeast-5"
PREFIX = "cashsouk"
ENV = "qa"
STATE_MACHINE = f"{PREFIX}-{ENV}-release"
LOG_GROUP = "/ecs/cashsouk-migrate"
LEASE_TABLE = f"{PREFIX}-{ENV}-release-lease"
HISTORY_TABLE = f"{PREFIX}-{ENV}-release-history"
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


def _moto(module: str) -> Any:
    """A moto module by name, as tests/cli/conftest.py imports some: these import every service's
    models, which mypy skips (pyproject.toml; tests/test_gates.py checks what we import by statement)."""
    return importlib.import_module(f"moto.{module}")


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
    reads them (state machine, lease table, log group, parameter), literal values elsewhere.

    Created by moto's CloudFormation backend, with the arguments its CreateStack handler passes for
    a request naming only StackName and TemplateBody: the same stacks and resources, without
    signing, sending and parsing a request per stack (most of the time a test took to set up).
    """
    cfn = _moto("cloudformation.models").cloudformation_backends[ACCOUNT][REGION]
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
                "History": {
                    "Type": "AWS::DynamoDB::Table",
                    "Properties": {
                        "TableName": HISTORY_TABLE,
                        "BillingMode": "PAY_PER_REQUEST",
                        "KeySchema": [{"AttributeName": "Pk", "KeyType": "HASH"}, {"AttributeName": "Sk", "KeyType": "RANGE"}],
                        "AttributeDefinitions": [
                            {"AttributeName": "Pk", "AttributeType": "S"},
                            {"AttributeName": "Sk", "AttributeType": "S"},
                        ],
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
                "ReleaseHistoryTableName": {"Ref": "History"},
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
        template = _template(resources, outputs).replace("{STACK}", name)
        cfn.create_stack(
            name=name,
            template=template,
            parameters={},
            notification_arns=[],
            tags={},
            role_arn=None,
            enable_termination_protection=None,
            timeout_in_mins=None,
            stack_policy_body=None,
        )


# --- the release record, as the state machine writes it (docs/release.md) ---------------------------


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def put_record(summary: dict[str, Any], deployments: dict[str, str] | None = None) -> None:
    """One item of the history table: the key, the top-level copies and the whole Summary (and,
    mid-rollout, `Deployment_<app>` per service whose UpdateService returned).

    Written by moto's DynamoDB backend, as its PutItem handler writes an item with no condition:
    the same item, without a request signed, sent and parsed (the fake state machine writes one at
    every step of a followed release)."""
    item = {
        **{
            f"Deployment_{app}": {"S": json.dumps({"app": app, "deploymentId": d, "state": "IN_PROGRESS"})}
            for app, d in (deployments or {}).items()
        },
        "Pk": {"S": "release"},
        "Sk": {"S": f"{summary['startedAt']}#{summary['name']}"},
        "Status": {"S": summary["status"]},
        "ImageTag": {"S": summary["imageTag"]},
        "StartedAt": {"S": summary["startedAt"]},
        "ExecutionArn": {"S": summary["execution"]},
        "Summary": {"S": json.dumps(summary)},
    }
    # What botocore's parameter validation would refuse: a value that is not a string.
    assert all(isinstance(value["S"], str) for value in item.values()), item
    backend = _moto("dynamodb.models").dynamodb_backends[ACCOUNT][REGION]
    table = backend.get_table(HISTORY_TABLE)
    handler = _moto("dynamodb.responses")
    handler.validate_put_has_empty_keys(item, table)
    handler.validate_put_has_empty_attrs(item, table)
    handler.validate_put_has_gsi_keys_set_to_none(item, table)
    backend.put_item(
        HISTORY_TABLE,
        item,
        expected=None,
        condition_expression=None,
        expression_attribute_names={},
        expression_attribute_values={},
        overwrite=True,
        return_values_on_condition_check_failure=None,
    )


def finished_record(
    name: str,
    tag: str,
    *,
    started: datetime,
    status: str = "SUCCEEDED",
    deployed: tuple[str, ...] = ("api",),
    digests: dict[str, str] | None = None,
    kind: str = "release",
    started_by: str = "octocat (GitHub Actions run 1)",
    seconds: int = 312,
    **extra: Any,
) -> dict[str, Any]:
    """A finished release's record, e.g. for history and rollback."""
    digests = digests if digests is not None else {app: digest_of(f"{app}:{tag}") for app in [*deployed, "migrate"]}
    outcome = "deployed" if status == "SUCCEEDED" else "failed"
    summary: dict[str, Any] = {
        "execution": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STATE_MACHINE}:{name}",
        "name": name,
        "kind": kind,
        "imageTag": tag,
        "startedBy": started_by,
        "note": None,
        "startedAt": iso(started),
        "endedAt": iso(started + timedelta(seconds=seconds)),
        "status": status,
        "phase": "done" if status == "SUCCEEDED" else "deploy",
        "error": None if status == "SUCCEEDED" else "DeploymentFailed",
        "cause": None if status == "SUCCEEDED" else "api-cashsouk-09ff: rollout FAILED",
        "digests": digests,
        "migration": {
            "outcome": "skipped" if kind == "rollback" else "succeeded",
            "exitCode": None if kind == "rollback" else 0,
            "reason": None,
            "taskArn": None if kind == "rollback" else TASK_ARN,
            "stoppedByRelease": False,
        },
        "services": {
            app: {"outcome": outcome, "taskDefinition": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{APPS[app]}:7", "reason": None}
            for app in deployed
        },
        "leaseReleased": True,
    }
    summary |= extra
    put_record(summary)
    return summary


# --- images and services ---------------------------------------------------------------------------


def push_image(repository: str, tag: str) -> str:
    """An image in moto's ECR; each (repository, tag) gets its own manifest, so its own digest.

    Pushed through moto's ECR backend with the arguments its CreateRepository, PutImage and
    DescribeImages handlers pass for these requests (no request signed, sent and parsed)."""
    ecr = _moto("ecr.models").ecr_backends[ACCOUNT][REGION]
    with contextlib.suppress(_moto("ecr.exceptions").RepositoryAlreadyExistsException):
        ecr.create_repository(
            repository_name=repository,
            registry_id=None,
            encryption_config=None,
            image_scan_config=None,
            image_tag_mutability=None,
            image_tag_mutability_exclusion_filters=None,
            tags=[],
        )
    layer = digest_of(f"{repository}:{tag}")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": layer},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1, "digest": layer}],
        }
    )
    ecr.put_image(repository, manifest, tag, None, None)
    (image,) = ecr.describe_images(repository, None, [{"imageTag": tag}])
    return str(image.image_digest)


def create_services(breaker: dict[str, dict[str, bool]] | None = None, controller: dict[str, str] | None = None) -> None:
    """The cluster and the five services; circuit breaker with rollback on unless `breaker` says otherwise.

    moto does not keep a service's deploymentConfiguration: it is set on moto's service object,
    which DescribeServices then returns as ECS does.
    """
    ecs = boto3.client("ecs", region_name=REGION)
    ecs.create_cluster(clusterName="default")
    ecs.register_task_definition(family="app", containerDefinitions=[{"name": "Main", "image": "app", "memory": 512}])
    backend = ecs_backends[ACCOUNT][REGION]
    for app, service in APPS.items():
        kind = (controller or {}).get(app, "ECS")
        ecs.create_service(
            cluster="default", serviceName=service, taskDefinition="app", desiredCount=1, deploymentController={"type": kind}
        )
        setting = (breaker or {}).get(app, {"enable": True, "rollback": True})
        service_object: Any = backend.services[f"default:{service}"]
        service_object.deployment_configuration = {"deploymentCircuitBreaker": setting}


def set_rollout(app: str, deployment: str, state: str, *, running: int, desired: int, events: list[str], failed: int = 0) -> None:
    """ECS's side of a rollout as DescribeServices returns it (set on moto's service object, which
    keeps no deployments of its own after UpdateService)."""
    service: Any = ecs_backends[ACCOUNT][REGION].services[f"default:{APPS[app]}"]
    now = datetime.now(UTC)
    service.deployments = [
        {
            "id": deployment,
            "status": "PRIMARY",
            "rolloutState": state,
            "rolloutStateReason": f"ECS deployment {deployment} {state.lower().replace('_', ' ')}.",
            "runningCount": running,
            "pendingCount": max(0, desired - running),
            "desiredCount": desired,
            "failedTasks": failed,
            "createdAt": now,
            "updatedAt": now,
        }
    ]
    service.events = [
        {"id": f"{deployment}-{len(service.events) + i}", "createdAt": now + timedelta(milliseconds=i), "message": message}
        for i, message in enumerate(events)
    ] + service.events


def stopped_task(app: str, deployment: str, reason: str) -> str:
    """A task of the service's deployment that ECS stopped (moto: RunTask, then StopTask)."""
    ecs = boto3.client("ecs", region_name=REGION)
    task = ecs.run_task(
        cluster="default",
        taskDefinition="app",
        launchType="FARGATE",
        startedBy=deployment,
        group=f"service:{APPS[app]}",
        networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d4e5f60001"]}},
    )["tasks"][0]["taskArn"]
    ecs.stop_task(cluster="default", task=task, reason=reason)
    return str(task)


@dataclass
class Step:
    """What happens between two polls of the CLI."""

    phase: str | None = None
    log_lines: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)  # fields merged into the record
    deployments: dict[str, str] = field(default_factory=dict)  # app -> deployment id, as Deployment_<app> attributes
    finish: dict[str, Any] | None = None  # {"status": ..., "error"?, "cause"?, "record"?: {...}}
    end_execution: str | None = None  # the execution ends (e.g. ABORTED) before anything writes its record
    act: Callable[[], None] | None = None  # what else changes meanwhile (e.g. a service's rollout in ECS)


def success_record(services: tuple[str, ...] = ("api",), exit_code: int = 0) -> dict[str, Any]:
    return {
        "migration": {"outcome": "succeeded", "exitCode": exit_code, "reason": None, "taskArn": TASK_ARN, "stoppedByRelease": False},
        "services": {
            app: {"outcome": "deployed", "taskDefinition": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{APPS[app]}:7", "reason": None}
            for app in services
        },
    }


def release_script(finish: dict[str, Any], *, migration_logs: list[str] | None = None) -> list[Step]:
    """A release as the state machine runs it: validate, images, lease, migrate (with logs), deploy, finish."""
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
        Step(phase="images"),
        Step(phase="lease"),
        Step(phase="migrate", log_lines=logs[:1]),
        Step(log_lines=logs[1:]),
        Step(phase="deploy"),
        Step(phase="record", finish=finish),
    ]


class ScriptedReleases:
    """Plays the state machine for moto's executions (see the module docstring)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.script: list[Step] = []
        self.ticks = 0
        self.records: dict[str, dict[str, Any]] = {}
        self.described_with: list[str | None] = []
        self.cleanup_on_abort = True
        self.current: Execution | None = None
        self.questions: list[str] = []
        self.stop_calls: list[dict[str, Any]] = []
        stop_calls = self.stop_calls
        original_stop_response = StepFunctionResponse.stop_execution

        def stop_response(response: StepFunctionResponse) -> ActionResult:
            stop_calls.append({key: response._get_param(key) for key in ("executionArn", "error", "cause")})
            return original_stop_response(response)

        monkeypatch.setattr(StepFunctionResponse, "stop_execution", stop_response)

        def no_history(response: StepFunctionResponse) -> ActionResult:
            raise AssertionError("the CLI read GetExecutionHistory: it must read the release record (issue 9.6)")

        monkeypatch.setattr(StepFunctionResponse, "get_execution_history", no_history)
        original_describe = StepFunctionResponse.describe_execution
        calls = self.described_with

        def describe(response: StepFunctionResponse) -> ActionResult:
            calls.append(response._get_param("includedData"))
            return original_describe(response)

        monkeypatch.setattr(StepFunctionResponse, "describe_execution", describe)
        original_stop = Execution.stop
        releases = self

        def stop(execution: Execution, *args: Any, **kwargs: Any) -> None:
            original_stop(execution, *args, **kwargs)
            if releases.cleanup_on_abort:  # the lease-cleanup machine's part
                releases.update_record(execution, status="ABORTED", endedAt=iso(datetime.now(UTC)), leaseReleased=True)

        monkeypatch.setattr(Execution, "stop", stop)

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
        assert self.ticks < 100, "the CLI kept polling a finished script"
        if self.ticks < len(self.script):
            self.current = self.current or self.running()
            self.apply(self.current, self.script[self.ticks])
        self.ticks += 1

    def record_of(self, execution: Execution) -> dict[str, Any]:
        """The record the state machine writes when it starts (after validating the input)."""
        if execution.execution_arn not in self.records:
            sent = json.loads(execution.execution_input or "{}")
            self.records[execution.execution_arn] = {
                "execution": execution.execution_arn,
                "name": execution.name,
                "kind": "rollback" if sent.get("rollbackOf") else "release",
                "imageTag": sent.get("imageTag"),
                "startedBy": sent.get("startedBy", "unknown"),
                "note": sent.get("note"),
                "rollbackOf": sent.get("rollbackOf"),
                "startedAt": iso(execution.start_date),
                "endedAt": None,
                "status": "RUNNING",
                "phase": "validate",
                "error": None,
                "cause": None,
                "digests": {},
                "migration": {"outcome": "not-run", "exitCode": None, "reason": None, "taskArn": None, "stoppedByRelease": False},
                "services": {},
                "leaseReleased": False,
            }
        return self.records[execution.execution_arn]

    def update_record(self, execution: Execution, deployments: dict[str, str] | None = None, **fields: Any) -> None:
        record = self.record_of(execution)
        record.update(fields)
        put_record(record, deployments)

    def apply(self, execution: Execution, step: Step) -> None:
        fields = dict(step.record)
        if step.phase:
            fields["phase"] = step.phase
        self.update_record(execution, step.deployments or None, **fields)
        if step.act is not None:
            step.act()
        if step.log_lines:
            self.put_logs(LOG_STREAM, step.log_lines)
        if step.finish is not None:
            self.finish(execution, **step.finish)
        if step.end_execution is not None:
            execution.status = step.end_execution
            execution.stop_date = datetime.now(UTC)

    def put_logs(self, stream: str, lines: list[str]) -> None:
        """Lines of the migrate task's log stream, put by moto's Logs backend as its
        CreateLogStream and PutLogEvents handlers put them."""
        logs = _moto("logs.models").logs_backends[ACCOUNT][REGION]
        with contextlib.suppress(_moto("logs.exceptions").ResourceAlreadyExistsException):
            logs.create_log_stream(LOG_GROUP, stream)
        now = int(datetime.now(UTC).timestamp() * 1000)
        logs.put_log_events(LOG_GROUP, stream, [{"timestamp": now + i, "message": line} for i, line in enumerate(lines)])

    def finish(
        self, execution: Execution, status: str, error: str | None = None, cause: str | None = None, record: dict[str, Any] | None = None
    ) -> None:
        """The end: the state machine rewrites the record, then the execution ends."""
        fields: dict[str, Any] = {
            "status": status,
            "endedAt": iso(datetime.now(UTC)),
            "error": error,
            "cause": cause,
            "leaseReleased": True,
        }
        if status == "SUCCEEDED":
            fields["phase"] = "done"
        self.update_record(execution, **fields, **(record or {}))
        execution.status = status
        execution.stop_date = datetime.now(UTC)
        execution.error = error
        execution.cause = cause


SleepFn = Callable[[float], None]
