"""Stateful fakes of the AWS APIs a release calls, behind real botocore clients.

The interpreter's requests pass botocore's parameter validation (so a read-only field left in a
RegisterTaskDefinition, or a misspelt argument, fails as it would against AWS); a `before-call`
hook then runs the checks (FakeClients.checks: authorization and the stricter parameter rules,
emulation/strict.py) and answers from these fakes instead of the network. Errors are returned the way AWS
returns them, so botocore raises its modeled exceptions and the interpreter names them.

Time is the interpreter's virtual clock: a migration runs for `duration` virtual seconds, a
rollout completes `rollout_seconds` after UpdateService.
"""

# The fake's handlers are named and keyed exactly like the AWS APIs they stand in for.
# ruff: noqa: N802, N803

from __future__ import annotations

import copy
import hashlib
import importlib
import itertools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulation.interpreter import CLOCK

# boto3/botocore ship no type information.
boto3: Any = importlib.import_module("boto3")
AWSResponse: Any = importlib.import_module("botocore.awsrequest").AWSResponse
Config: Any = importlib.import_module("botocore.config").Config

ACCOUNT = "123456789012"
REGION = "ap-southeast-5"
CLUSTER = "default"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"


class FakeError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def digest_of(repository: str, tag: str) -> str:
    return "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()


@dataclass
class MigrationPlan:
    """How the next migrate task behaves."""

    exit_code: int | None = 0
    duration: float = 60.0  # virtual seconds from RunTask to STOPPED
    stop_code: str = "EssentialContainerExited"
    stopped_reason: str = "Essential container in task exited"
    container_reason: str | None = None
    never_stops: bool = False
    # RunTask answers with these failures and no task (e.g. [{"reason": "RESOURCE:MEMORY"}]).
    failures: list[dict[str, str]] = field(default_factory=list)


@dataclass
class RolloutPlan:
    """How the next deployment of a service behaves."""

    outcome: str = "COMPLETED"  # COMPLETED | FAILED (circuit breaker rolls back) | GONE
    rollout_seconds: float = 120.0
    reason: str = "ECS deployment circuit breaker: tasks failed to start."


@dataclass
class Call:
    at: float
    service: str
    operation: str
    params: dict[str, Any]
    error: str | None = None


@dataclass
class FakeAws:
    """ECR, ECS, DynamoDB, SSM and RDS, as much as a release uses, with state and a call log."""

    images: dict[str, dict[str, str]] = field(default_factory=dict)  # repository -> tag -> digest
    services: dict[str, dict[str, Any]] = field(default_factory=dict)  # service name -> description
    task_definitions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # family -> revisions
    tags: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # task definition arn -> tags
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    lease_items: dict[str, dict[str, Any]] = field(default_factory=dict)  # LeaseId -> item (the lease table)
    history: dict[str, dict[str, Any]] = field(default_factory=dict)  # Sk -> item (the release history table)
    run_task_tokens: dict[str, str] = field(default_factory=dict)  # cluster NUL clientToken -> task ARN NUL request
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    migration: MigrationPlan = field(default_factory=MigrationPlan)
    rollouts: dict[str, RolloutPlan] = field(default_factory=dict)  # service -> plan
    calls: list[Call] = field(default_factory=list)
    # Errors the next calls of an operation fail with, one per call, before the handler runs
    # (transient failures: throttling, a 5xx). Operation name as in the API, e.g. "PutItem".
    faults: dict[str, list[FakeError]] = field(default_factory=dict)
    # The migrate task definition's task and execution roles (emulation/world.py).
    migrate_roles: tuple[str, str] = (f"arn:aws:iam::{ACCOUNT}:role/migrate-task", f"arn:aws:iam::{ACCOUNT}:role/migrate-execution")
    # Calls a check refused: ("service:Operation", error code, message).
    refusals: list[tuple[str, str, str]] = field(default_factory=list)
    # Events EventBridge could not deliver, as the dead-letter queue holds them.
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    # Called after every PutItem on the lease (to let a test free a lease "in time").
    on_put_item: Callable[[FakeAws, int], None] | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ---- set-up helpers --------------------------------------------------------------------------
    def push_image(self, repository: str, tag: str) -> str:
        digest = digest_of(repository, tag)
        self.images.setdefault(repository, {})[tag] = digest
        return digest

    def add_task_definition(self, definition: dict[str, Any], tags: list[dict[str, str]] | None = None) -> str:
        family = definition["family"]
        revisions = self.task_definitions.setdefault(family, [])
        revision = len(revisions) + 1
        arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}"
        stored = {
            **copy.deepcopy(definition),
            "taskDefinitionArn": arn,
            "revision": revision,
            "status": "ACTIVE",
            "compatibilities": ["EC2", "FARGATE"],
            "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"}],
            "registeredAt": 1700000000.0 + revision,
            "registeredBy": f"arn:aws:sts::{ACCOUNT}:assumed-role/release/x",
        }
        revisions.append(stored)
        self.tags[arn] = list(tags or [])
        return arn

    def add_service(self, name: str, task_definition_arn: str, *, circuit_breaker: bool = True, rollback: bool = True) -> None:
        self.services[name] = {
            "serviceName": name,
            "serviceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{name}",
            "clusterArn": CLUSTER_ARN,
            "status": "ACTIVE",
            "taskDefinition": task_definition_arn,
            "desiredCount": 2,
            "runningCount": 2,
            "deploymentController": {"type": "ECS"},
            "deploymentConfiguration": {
                "deploymentCircuitBreaker": {"enable": circuit_breaker, "rollback": rollback},
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
            },
            "deployments": [
                {
                    "id": f"ecs-svc/{next(self._ids):019d}",
                    "status": "PRIMARY",
                    "taskDefinition": task_definition_arn,
                    "rolloutState": "COMPLETED",
                    "desiredCount": 2,
                    "runningCount": 2,
                }
            ],
        }

    def fail(
        self, operation: str, code: str = "ThrottlingException", times: int = 1, status: int = 400, message: str = "Rate exceeded"
    ) -> None:
        """The next `times` calls of `operation` fail with `code` before the handler runs."""
        self.faults.setdefault(operation, []).extend(FakeError(code, message, status) for _ in range(times))

    def records(self) -> list[dict[str, Any]]:
        """The release history's Summary documents, oldest first."""
        return [json.loads(item["Summary"]["S"]) for _, item in sorted(self.history.items())]

    def refused(self, service: str, operation: str, params: dict[str, Any], error: FakeError) -> None:
        """A call a check refused (authorization, parameters): logged like the calls that ran."""
        with self._lock:
            self.calls.append(Call(at=CLOCK.now(), service=service, operation=operation, params=copy.deepcopy(params), error=error.code))
            self.refusals.append((f"{service}:{operation}", error.code, error.message))

    # ---- queries for assertions ---------------------------------------------------------------------
    def operations(self, service: str | None = None) -> list[str]:
        return [c.operation for c in self.calls if service is None or c.service == service]

    def calls_of(self, operation: str) -> list[Call]:
        return [c for c in self.calls if c.operation == operation]

    def latest(self, family: str) -> dict[str, Any]:
        return self.task_definitions[family][-1]

    # ---- dispatch -------------------------------------------------------------------------------------
    def handle(self, service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            call = Call(at=CLOCK.now(), service=service, operation=operation, params=copy.deepcopy(params))
            self.calls.append(call)
            handler = getattr(self, f"_{service}_{operation}", None)
            if handler is None:
                call.error = "NotImplemented"
                raise FakeError("InvalidAction", f"the fake does not implement {service}:{operation}")
            if self.faults.get(operation):
                fault = self.faults[operation].pop(0)
                call.error = fault.code
                raise fault
            try:
                # A copy: the interpreter rewrites responses in place (PascalCase).
                result: dict[str, Any] = copy.deepcopy(handler(**copy.deepcopy(params)))
                return result
            except FakeError as error:
                call.error = error.code
                raise

    # ---- ECR ------------------------------------------------------------------------------------------
    def _ecr_DescribeImages(self, repositoryName: str, imageIds: list[dict[str, str]], **_: Any) -> dict[str, Any]:
        if repositoryName not in self.images:
            raise FakeError(
                "RepositoryNotFoundException",
                f"The repository with name '{repositoryName}' does not exist in the registry with id '{ACCOUNT}'",
            )
        details = []
        for image_id in imageIds:
            tag = image_id["imageTag"]
            digest = self.images[repositoryName].get(tag)
            if digest is None:
                raise FakeError(
                    "ImageNotFoundException",
                    f"The image with imageId {{imageDigest:'null', imageTag:'{tag}'}} does not exist within the repository "
                    f"with name '{repositoryName}' in the registry with id '{ACCOUNT}'",
                )
            details.append({"registryId": ACCOUNT, "repositoryName": repositoryName, "imageDigest": digest, "imageTags": [tag]})
        return {"imageDetails": details}

    # ---- ECS task definitions ---------------------------------------------------------------------
    def _find_task_definition(self, ref: str) -> dict[str, Any]:
        """A family alone names its latest ACTIVE revision; family:revision (or the ARN) names that
        revision whatever its status, as in ECS (an INACTIVE or DELETE_IN_PROGRESS revision a
        service still runs can be described)."""
        name = ref.split("task-definition/", 1)[-1]
        family, _, revision = name.partition(":")
        revisions = self.task_definitions.get(family, [])
        if revision:
            revisions = [r for r in revisions if str(r["revision"]) == revision]
        else:
            revisions = [r for r in revisions if r["status"] == "ACTIVE"]
        if not revisions:
            raise FakeError("ClientException", "Unable to describe task definition.")
        return revisions[-1]

    def _ecs_DescribeTaskDefinition(self, taskDefinition: str, include: list[str] | None = None) -> dict[str, Any]:
        found = copy.deepcopy(self._find_task_definition(taskDefinition))
        result: dict[str, Any] = {"taskDefinition": found}
        if include and "TAGS" in include:
            result["tags"] = copy.deepcopy(self.tags.get(found["taskDefinitionArn"], []))
        return result

    def delete_task_definition(self, arn: str) -> None:
        """Deregister a revision and request its deletion (it stays describable while in use)."""
        revision = self._find_task_definition(arn)
        revision.update(status="DELETE_IN_PROGRESS", deregisteredAt=1800000000.0, deleteRequestedAt=1800000001.0)

    def _ecs_RegisterTaskDefinition(self, **params: Any) -> dict[str, Any]:
        tags = params.pop("tags", None)
        for tag in tags or []:
            # ECS reserves the aws: prefix, in any letter case, for its own and AWS's tags.
            if tag["key"][:4].lower() == "aws:":
                raise FakeError("InvalidParameterException", "Tag keys or values cannot start with 'aws:'. This prefix is reserved.")
        arn = self.add_task_definition(params, tags)
        return {"taskDefinition": copy.deepcopy(self._find_task_definition(arn)), "tags": tags or []}

    # ---- ECS tasks (the migration) --------------------------------------------------------------------
    def _ecs_RunTask(self, cluster: str, taskDefinition: str, **params: Any) -> dict[str, Any]:
        definition = self._find_task_definition(taskDefinition)
        network = params.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
        if network.get("assignPublicIp") != "DISABLED":
            raise FakeError("InvalidParameterException", "the fake insists on assignPublicIp DISABLED")
        token = params.get("clientToken")
        if token:
            # ECS: a token is idempotent per cluster; the same token and parameters return the first
            # call's task, the same token with other parameters is a ConflictException.
            request = json.dumps({"cluster": cluster, "taskDefinition": taskDefinition, **params}, sort_keys=True, default=str)
            token = f"{cluster}\0{token}"
            if token in self.run_task_tokens:
                task_arn, first = self.run_task_tokens[token].split("\0", 1)
                if first != request:
                    raise FakeError("ConflictException", "The specified client token has already been used with different parameters.")
                return {"tasks": [self._describe_task(task_arn)], "failures": []}
        if self.migration.failures:
            return {"tasks": [], "failures": copy.deepcopy(self.migration.failures)}
        task_id = hashlib.sha256(str(next(self._ids)).encode()).hexdigest()[:32]
        task_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/{task_id}"
        if token:
            self.run_task_tokens[token] = f"{task_arn}\0{request}"
        plan = copy.deepcopy(self.migration)
        self.tasks[task_arn] = {
            "plan": plan,
            "startedAt": CLOCK.now(),
            "stopped": False,
            "description": {
                "taskArn": task_arn,
                "clusterArn": CLUSTER_ARN,
                "taskDefinitionArn": definition["taskDefinitionArn"],
                "launchType": params.get("launchType"),
                "lastStatus": "PROVISIONING",
                "desiredStatus": "RUNNING",
                "startedBy": params.get("startedBy"),
                "containers": [
                    {"name": c["name"], "lastStatus": "PENDING", "essential": c.get("essential", True)}
                    for c in definition["containerDefinitions"]
                ],
            },
        }
        return {"tasks": [self._describe_task(task_arn)], "failures": []}

    def _ecs_ListTasks(
        self, cluster: str | None = None, startedBy: str | None = None, desiredStatus: str = "RUNNING", **_: Any
    ) -> dict[str, Any]:
        found = []
        for arn in self.tasks:
            description = self._describe_task(arn)
            if startedBy is not None and description.get("startedBy") != startedBy:
                continue
            if description["desiredStatus"] != desiredStatus:
                continue
            found.append(arn)
        return {"taskArns": found}

    def _describe_task(self, task_arn: str) -> dict[str, Any]:
        task = self.tasks[task_arn]
        plan: MigrationPlan = task["plan"]
        description = task["description"]
        if not task["stopped"] and not plan.never_stops and CLOCK.now() - task["startedAt"] >= plan.duration:
            self._stop(task_arn, plan.stop_code, plan.stopped_reason, plan.exit_code, plan.container_reason)
        elif not task["stopped"]:
            description["lastStatus"] = "RUNNING"
            for container in description["containers"]:
                container["lastStatus"] = "RUNNING"
        return copy.deepcopy(description)

    def _stop(self, task_arn: str, stop_code: str, reason: str, exit_code: int | None, container_reason: str | None) -> None:
        task = self.tasks[task_arn]
        task["stopped"] = True
        description = task["description"]
        description.update(lastStatus="STOPPED", desiredStatus="STOPPED", stopCode=stop_code, stoppedReason=reason)
        for container in description["containers"]:
            container["lastStatus"] = "STOPPED"
            if exit_code is not None:
                container["exitCode"] = exit_code
            if container_reason:
                container["reason"] = container_reason

    def _ecs_DescribeTasks(self, tasks: list[str], cluster: str | None = None, **_: Any) -> dict[str, Any]:
        # ECS answers a task it does not know (or no longer shows) in failures, reason MISSING.
        return {
            "tasks": [self._describe_task(t) for t in tasks if t in self.tasks],
            "failures": [{"arn": t, "reason": "MISSING"} for t in tasks if t not in self.tasks],
        }

    def _ecs_StopTask(self, task: str, cluster: str | None = None, reason: str = "", **_: Any) -> dict[str, Any]:
        if task in self.tasks and not self.tasks[task]["stopped"]:
            self._stop(task, "UserInitiated", reason or "stopped by Step Functions", None, None)
        return {"task": self._describe_task(task)}

    # ---- ECS services ---------------------------------------------------------------------------------
    def _advance_rollout(self, service: dict[str, Any]) -> None:
        for deployment in list(service["deployments"]):
            plan = deployment.get("_plan")
            if plan is None or deployment["rolloutState"] != "IN_PROGRESS":
                continue
            if CLOCK.now() - deployment["_createdAt"] < plan.rollout_seconds:
                continue
            if plan.outcome == "COMPLETED":
                deployment["rolloutState"] = "COMPLETED"
                service["deployments"] = [deployment]
            elif plan.outcome == "FAILED":
                # The circuit breaker: the new deployment FAILED, a rollback deployment to the previous
                # task definition becomes PRIMARY and completes.
                deployment.update(status="ACTIVE", rolloutState="FAILED", rolloutStateReason=plan.reason)
                previous = deployment["_previous"]
                rollback = {
                    "id": f"ecs-svc/{next(self._ids):019d}",
                    "status": "PRIMARY",
                    "taskDefinition": previous,
                    "rolloutState": "COMPLETED",
                    "rolloutStateReason": "ECS deployment circuit breaker: rolled back to the last completed deployment.",
                }
                service["deployments"] = [rollback, deployment]
                service["taskDefinition"] = previous
            else:  # GONE: replaced by a deployment someone else started
                service["deployments"] = [d for d in service["deployments"] if d is not deployment]

    def _public_service(self, service: dict[str, Any]) -> dict[str, Any]:
        public = copy.deepcopy(service)
        public["deployments"] = [{k: v for k, v in d.items() if not k.startswith("_")} for d in public["deployments"]]
        return public

    def _ecs_DescribeServices(self, services: list[str], cluster: str | None = None, **_: Any) -> dict[str, Any]:
        found, failures = [], []
        for name in services:
            service = self.services.get(name)
            if service is None:
                failures.append({"arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{name}", "reason": "MISSING"})
                continue
            self._advance_rollout(service)
            found.append(self._public_service(service))
        return {"services": found, "failures": failures}

    def _ecs_UpdateService(self, service: str, taskDefinition: str, cluster: str | None = None, **_: Any) -> dict[str, Any]:
        current = self.services.get(service)
        if current is None:
            raise FakeError("ServiceNotFoundException", "Service not found.")
        self._find_task_definition(taskDefinition)
        previous = current["taskDefinition"]
        for deployment in current["deployments"]:
            deployment["status"] = "ACTIVE"
        deployment = {
            "id": f"ecs-svc/{next(self._ids):019d}",
            "status": "PRIMARY",
            "taskDefinition": taskDefinition,
            "rolloutState": "IN_PROGRESS",
            "rolloutStateReason": "ECS deployment in progress.",
            "_plan": self.rollouts.get(service, RolloutPlan()),
            "_createdAt": CLOCK.now(),
            "_previous": previous,
        }
        current["deployments"].insert(0, deployment)
        current["taskDefinition"] = taskDefinition
        return {"service": self._public_service(current)}

    # ---- DynamoDB (the lease) -------------------------------------------------------------------------
    @staticmethod
    def _value(attribute: dict[str, str]) -> Any:
        if "N" in attribute:
            return float(attribute["N"])
        return attribute["S"]

    def _condition(self, expression: str, item: dict[str, Any] | None, names: dict[str, str], values: dict[str, Any]) -> bool:
        """The conditions the release uses: OR of attribute_not_exists(a), a < :v, a = :v."""
        result = False
        for part in re.split(r"\s+OR\s+", expression.strip()):
            clause = part.strip()
            match = re.fullmatch(r"attribute_not_exists\((\S+)\)", clause)
            if match:
                result = result or item is None or names.get(match[1], match[1]) not in item
                continue
            match = re.fullmatch(r"(\S+)\s*(<|=)\s*(:\w+)", clause)
            if not match:
                raise FakeError("ValidationException", f"the fake does not understand the condition {clause!r}")
            attribute = names.get(match[1], match[1])
            if item is None or attribute not in item:
                continue
            left, right = self._value(item[attribute]), self._value(values[match[3]])
            result = result or (left < right if match[2] == "<" else left == right)
        return result

    def _check(self, params: dict[str, Any], item: dict[str, Any] | None) -> None:
        expression = params.get("ConditionExpression")
        if expression and not self._condition(
            expression, item, params.get("ExpressionAttributeNames", {}), params.get("ExpressionAttributeValues", {})
        ):
            raise FakeError("ConditionalCheckFailedException", "The conditional request failed")

    def _table(self, name: str, key: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], str]:
        """The items of the lease or the history table, and this item's key."""
        if name.endswith("-lease"):
            return self.lease_items, key["LeaseId"]["S"]
        if name.endswith("-history"):
            if key.get("Pk") != {"S": "release"}:
                raise FakeError("ValidationException", "the history table's partition key is Pk = release")
            return self.history, key["Sk"]["S"]
        raise FakeError("ResourceNotFoundException", f"Requested resource not found: Table: {name} not found")

    def _dynamodb_PutItem(self, TableName: str, Item: dict[str, Any], **params: Any) -> dict[str, Any]:
        items, key = self._table(TableName, Item)
        try:
            self._check(params, items.get(key))
            items[key] = copy.deepcopy(Item)
        finally:
            if self.on_put_item and items is self.lease_items:
                self.on_put_item(self, len([c for c in self.calls_of("PutItem") if c.params["TableName"].endswith("-lease")]))
        return {}

    def _dynamodb_GetItem(self, TableName: str, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        items, key = self._table(TableName, Key)
        item = items.get(key)
        return {"Item": copy.deepcopy(item)} if item else {}

    def _dynamodb_UpdateItem(self, TableName: str, Key: dict[str, Any], UpdateExpression: str, **params: Any) -> dict[str, Any]:
        items, key = self._table(TableName, Key)
        item = items.get(key)
        self._check(params, item)
        match = re.fullmatch(r"SET (\w+) = (:\w+)", UpdateExpression.strip())
        if not match:
            raise FakeError("ValidationException", f"the fake does not understand {UpdateExpression!r}")
        updated = copy.deepcopy(item) if item else copy.deepcopy(Key)
        updated[match[1]] = params["ExpressionAttributeValues"][match[2]]
        items[key] = updated
        return {}

    def _dynamodb_DeleteItem(self, TableName: str, Key: dict[str, Any], **params: Any) -> dict[str, Any]:
        items, key = self._table(TableName, Key)
        self._check(params, items.get(key))
        items.pop(key, None)
        return {}

    # ---- SSM ----------------------------------------------------------------------------------------
    def _ssm_PutParameter(self, Name: str, Value: str, Overwrite: bool = False, **params: Any) -> dict[str, Any]:
        current = self.parameters.get(Name)
        if current and not Overwrite:
            raise FakeError("ParameterAlreadyExists", "The parameter already exists.")
        version = (current["Version"] + 1) if current else 1
        self.parameters[Name] = {"Value": Value, "Version": version, "Type": params.get("Type", "String")}
        return {"Version": version, "Tier": "Standard"}

    # ---- RDS (the restore point before a migration: constructs/release_machine/restore_point.py) ----
    # instance identifier -> DescribeDBInstances' member for it; snapshot id -> its state.
    databases: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Virtual seconds from CreateDBSnapshot to "available" (AWS documents no duration; the bench
    # states its assumption), or None for a snapshot that never becomes available.
    snapshot_seconds: float | None = 300.0
    snapshot_outcome: str = "available"  # or "failed"

    def add_database(self, identifier: str, *, backup_retention_days: int = 7) -> None:
        self.databases[identifier] = {
            "DBInstanceIdentifier": identifier,
            "DBInstanceStatus": "available",
            "Engine": "postgres",
            "BackupRetentionPeriod": backup_retention_days,
            # About five minutes behind, as RDS reports it.
            "LatestRestorableTime": "2026-12-03T09:55:00Z",
            "DBInstanceArn": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{identifier}",
        }

    def _rds_DescribeDBInstances(self, DBInstanceIdentifier: str, **_: Any) -> dict[str, Any]:
        if DBInstanceIdentifier not in self.databases:
            raise FakeError("DBInstanceNotFound", f"DBInstance {DBInstanceIdentifier} not found.", 404)
        return {"DBInstances": [copy.deepcopy(self.databases[DBInstanceIdentifier])]}

    def _rds_CreateDBSnapshot(self, DBSnapshotIdentifier: str, DBInstanceIdentifier: str, **_: Any) -> dict[str, Any]:
        if DBInstanceIdentifier not in self.databases:
            raise FakeError("DBInstanceNotFound", f"DBInstance {DBInstanceIdentifier} not found.", 404)
        if DBSnapshotIdentifier in self.snapshots:
            raise FakeError(
                "DBSnapshotAlreadyExists",
                f"Cannot create the snapshot because a snapshot with the identifier {DBSnapshotIdentifier} already exists.",
            )
        self.snapshots[DBSnapshotIdentifier] = {"instance": DBInstanceIdentifier, "createdAt": CLOCK.now()}
        return {"DBSnapshot": self._snapshot(DBSnapshotIdentifier)}

    def _rds_DescribeDBSnapshots(self, DBSnapshotIdentifier: str | None = None, **_: Any) -> dict[str, Any]:
        if DBSnapshotIdentifier not in self.snapshots:
            raise FakeError("DBSnapshotNotFound", f"DBSnapshot {DBSnapshotIdentifier} not found.", 404)
        return {"DBSnapshots": [self._snapshot(DBSnapshotIdentifier)]}

    def _snapshot(self, identifier: str) -> dict[str, Any]:
        snapshot = self.snapshots[identifier]
        done = self.snapshot_seconds is not None and CLOCK.now() - snapshot["createdAt"] >= self.snapshot_seconds
        return {
            "DBSnapshotIdentifier": identifier,
            "DBInstanceIdentifier": snapshot["instance"],
            "SnapshotType": "manual",
            "Status": self.snapshot_outcome if done else "creating",
            "DBSnapshotArn": f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:{identifier}",
        }


# A check runs before the fake answers: (service, operation model, parameters, fake); it raises
# FakeError to refuse the call as AWS would (emulation/strict.py installs authorization and
# parameter validation). A handler added above is checked like every other: its operation needs a
# row in emulation/authorization.py's RULES, and its parameters pass emulation/parameters.py.
Check = Callable[[str, Any, dict[str, Any], "FakeAws"], None]


class FakeClients:
    """Real botocore clients (cached per service) whose requests the current FakeAws answers."""

    def __init__(self) -> None:
        self.fake = FakeAws()
        self.checks: list[Check] = []
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str) -> Any:
        with self._lock:
            key = (service, region)
            if key not in self._clients:
                client = boto3.client(
                    service,
                    region_name=region,
                    aws_access_key_id="fake",
                    aws_secret_access_key="fake",
                    # One attempt per call: a fault the fake injects reaches the state machine's own
                    # Retry instead of being absorbed by botocore's retries.
                    config=Config(retries={"total_max_attempts": 1}),
                )
                client.meta.events.register("before-parameter-build", self._remember_params)
                client.meta.events.register("before-call", self._answer)
                self._clients[key] = client
            return self._clients[key]

    @staticmethod
    def _remember_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["fake_api_params"] = copy.deepcopy(params)

    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        service = model.service_model.service_name
        params = context.get("fake_api_params", {})
        try:
            for check in self.checks:
                try:
                    check(service, model, params, self.fake)
                except FakeError as refused:
                    self.fake.refused(service, model.name, params, refused)
                    raise
            body = self.fake.handle(service, model.name, params)
            return AWSResponse("https://fake", 200, {}, None), {**body, "ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "fake"}}
        except FakeError as error:
            parsed = {
                "Error": {"Code": error.code, "Message": error.message},
                "ResponseMetadata": {"HTTPStatusCode": error.status, "RequestId": "fake"},
            }
            return AWSResponse("https://fake", error.status, {}, None), parsed
