"""The strict emulator authorizes every call of the synthesized machines against the synthesized
templates (emulation/authorization.py): each test removes one grant and sees the call refused as
AWS refuses it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from emulation.authorization import RULES, DeniedError, Request, kms_on_behalf
from emulation.driver import Interpreter
from emulation.fakes import ACCOUNT, REGION, FakeAws, MigrationPlan
from emulation.strict import Strict
from emulation.world import build_world
from release import contract

TAG = "abc1234"
RELEASE = "cashsouk-example-release"
CLEANUP = "cashsouk-example-release-lease-cleanup"
CLUSTER = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/default"

Revoke = Callable[[str, str], None]


@pytest.fixture
def fake(sfn: Interpreter) -> FakeAws:
    return build_world(sfn.reset())


def refused(fake: FakeAws) -> list[tuple[str, str]]:
    return [(operation, code) for operation, code, _ in fake.refusals]


def test_a_whole_release_is_authorized_call_by_call(sfn: Interpreter, machine: str, strict: Strict, fake: FakeAws) -> None:
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert fake.refusals == []
    # Every operation the release used has an authorization row (none answered unchecked).
    assert {"RunTask", "RegisterTaskDefinition", "UpdateService", "PutItem", "DescribeImages"} <= set(fake.operations())
    assert strict.authorizer.decisions > 0


def test_without_its_run_task_grant_the_release_fails_before_any_service(
    sfn: Interpreter, machine: str, fake: FakeAws, revoke: Revoke
) -> None:
    revoke(RELEASE, "RunMigrateTaskRevisions")
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "FAILED"
    assert ("ecs:RunTask", "AccessDeniedException") in refused(fake)
    assert "AccessDenied" in (result.error or "") + result.cause
    assert not fake.tasks and not fake.calls_of("UpdateService")
    assert contract.LEASE_ID not in fake.lease_items


def test_without_pass_role_no_task_definition_is_registered(sfn: Interpreter, machine: str, fake: FakeAws, revoke: Revoke) -> None:
    revoke(RELEASE, "PassTaskRoles")
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "FAILED"
    assert ("ecs:RegisterTaskDefinition", "AccessDeniedException") in refused(fake)
    assert all(len(revisions) == 1 for revisions in fake.task_definitions.values())


def test_a_condition_decides_ecs_cluster(strict: Strict) -> None:
    role = strict.account.machine(RELEASE).role_arn
    definition = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/cashsouk-migrate:7"
    assert strict.authorizer.allowed(role, Request("ecs:RunTask", definition, (("ecs:cluster", CLUSTER),)))
    other = CLUSTER.replace("/default", "/other")
    assert not strict.authorizer.allowed(role, Request("ecs:RunTask", definition, (("ecs:cluster", other),)))
    assert not strict.authorizer.allowed(role, Request("ecs:RunTask", definition.replace("cashsouk-migrate", "api-cashsouk")))


def test_the_key_is_used_only_with_each_machines_own_encryption_context(strict: Strict) -> None:
    release, cleanup = strict.account.machine(RELEASE), strict.account.machine(CLEANUP)
    for request in kms_on_behalf(cleanup, "StartExecution"):
        assert strict.authorizer.allowed(cleanup.role_arn, request)
        assert not strict.authorizer.allowed(release.role_arn, request)


def test_the_events_role_starts_the_encrypted_cleanup_only_with_the_data_key(strict: Strict, revoke: Revoke) -> None:
    (target,) = [t for rule in strict.account.rules for t in rule.targets if t.arn == strict.account.machine(CLEANUP).arn]
    assert target.role_arn is not None
    strict.authorizer.start_execution(target.role_arn, target.arn)
    revoke(target.role_arn, "StartCleanupWithTheDataKey")
    with pytest.raises(DeniedError) as denied:
        strict.authorizer.start_execution(target.role_arn, target.arn)
    assert denied.value.code == "KmsAccessDeniedException" and denied.value.request.action.startswith("kms:")


def test_an_operation_without_an_authorization_row_is_refused(strict: Strict, fake: FakeAws) -> None:
    role = strict.account.machine(RELEASE).role_arn
    with pytest.raises(Exception, match="EmulatorHasNoAuthorizationRule"):
        strict.authorizer.authorize_call(role, "ecs", "DeleteService", {"service": "api"}, fake)


def test_the_cleanup_without_its_stop_grant_fails_loudly_and_keeps_the_lease(
    sfn: Interpreter, machine: str, cleanup: str, fake: FakeAws, revoke: Revoke
) -> None:
    fake.migration = MigrationPlan(never_stops=True)
    execution = sfn.start(machine, {"imageTag": TAG})
    deadline = time.monotonic() + 60
    while not fake.tasks and time.monotonic() < deadline:
        time.sleep(0.01)
    sfn.sfn.stop_execution(executionArn=execution)
    stopped = sfn.wait(execution)
    revoke(CLEANUP, "StopLeftMigrateTask")
    result = sfn.run(cleanup, _ended(sfn, stopped.arn))
    assert (result.status, result.error) == ("FAILED", "CleanupIncomplete"), result.cause
    assert "AccessDenied" in result.cause
    (task_arn,) = fake.tasks
    assert not fake.tasks[task_arn]["stopped"]
    # The lease stays with the ended execution (its ExpiresAt still frees it): no second migration.
    assert fake.lease_items[contract.LEASE_ID]["Owner"]["S"] == stopped.arn
    (summary,) = fake.records()
    assert summary["status"] == "ABORTED" and "AccessDenied" in summary["cleanupError"]


def _ended(sfn: Interpreter, arn: str) -> dict[str, Any]:
    description = sfn.sfn.describe_execution(executionArn=arn)
    started = int(description["startDate"].timestamp() * 1000)
    return {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "detail": {"executionArn": arn, "name": description["name"], "status": description["status"], "startDate": started},
    }


def test_a_machine_whose_role_cannot_use_its_key_does_not_run(sfn: Interpreter, machine: str, fake: FakeAws, revoke: Revoke) -> None:
    sfn.run(machine, {"imageTag": TAG})  # runs with the grant CDK writes
    revoke(RELEASE, "kms:GenerateDataKey")
    with pytest.raises(DeniedError) as denied:
        sfn.start(machine, {"imageTag": TAG})
    assert denied.value.code == "KmsAccessDeniedException"


SAMPLE_PARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("ecr", "DescribeImages"): {"repositoryName": "api-cashsouk"},
    ("ecs", "DescribeTaskDefinition"): {"taskDefinition": "api-cashsouk"},
    ("ecs", "RegisterTaskDefinition"): {"family": "api-cashsouk", "taskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/x", "tags": [{"key": "a"}]},
    ("ecs", "RunTask"): {"cluster": "default", "taskDefinition": "cashsouk-migrate", "tags": [{"key": "a"}]},
    ("ecs", "DescribeTasks"): {"cluster": "default", "tasks": ["0123"]},
    ("ecs", "StopTask"): {"cluster": "default", "task": "0123"},
    ("ecs", "ListTasks"): {"cluster": "default", "startedBy": "x"},
    ("ecs", "DescribeServices"): {"cluster": "default", "services": ["api-cashsouk-09ff"]},
    ("ecs", "UpdateService"): {"cluster": "default", "service": "api-cashsouk-09ff"},
    ("dynamodb", "GetItem"): {"TableName": "t"},
    ("dynamodb", "PutItem"): {"TableName": "t"},
    ("dynamodb", "UpdateItem"): {"TableName": "t"},
    ("dynamodb", "DeleteItem"): {"TableName": "t"},
    ("dynamodb", "Query"): {"TableName": "t"},
    ("ssm", "PutParameter"): {"Name": "/a/b"},
    ("ssm", "GetParameter"): {"Name": "/a/b"},
    ("rds", "DescribeDBInstances"): {"DBInstanceIdentifier": "cashsouk-db"},
    ("rds", "CreateDBSnapshot"): {"DBInstanceIdentifier": "cashsouk-db", "DBSnapshotIdentifier": "s1", "Tags": [{"Key": "a"}]},
    ("rds", "DescribeDBSnapshots"): {"DBSnapshotIdentifier": "s1"},
    ("rds", "DeleteDBSnapshot"): {"DBSnapshotIdentifier": "s1"},
}


def test_every_authorization_row_is_a_request_the_evaluator_understands(strict: Strict, sfn: Interpreter) -> None:
    """Each row's action, resource ARN and context keys pass iam-simulate's validation (a wrong
    ARN shape or action name raises instead of quietly denying)."""
    assert set(SAMPLE_PARAMS) == set(RULES)
    fake = build_world(sfn.reset())
    role = strict.account.machine(RELEASE).role_arn
    for (service, operation), rule in RULES.items():
        for request in rule(SAMPLE_PARAMS[(service, operation)], fake, strict.account):
            strict.authorizer.allowed(role, request)  # raises AssertionError on an evaluator error


def test_calls_inside_map_iterations_are_authorized_too(sfn: Interpreter, machine: str, fake: FakeAws, revoke: Revoke) -> None:
    # Digests are resolved per image in a Map: each iteration's DescribeImages runs as the role.
    revoke(RELEASE, "ResolveDigests")
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "FAILED"
    assert ("ecr:DescribeImages", "AccessDeniedException") in refused(fake)
    assert not fake.tasks
