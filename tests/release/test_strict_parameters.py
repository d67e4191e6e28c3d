"""Parameters checked as AWS checks them (emulation/parameters.py): the service model's limits,
enums and patterns, and the documented rules a model cannot express. Each test adds one invalid
parameter."""

from __future__ import annotations

import copy
import importlib
from typing import Any

import pytest

from emulation.driver import Interpreter
from emulation.fakes import FakeError
from emulation.parameters import DOCUMENTED, validate
from emulation.world import MIGRATE_FAMILY, build_world
from tests.release.conftest import MACHINE, synthesized_machine

_SESSION: Any = importlib.import_module("botocore.session").get_session()
TAG = "abc1234"


def operation(service: str, name: str) -> Any:
    return _SESSION.get_service_model(service).operation_model(name)


def test_list_tasks_takes_started_by_alone() -> None:
    validate("ecs", operation("ecs", "ListTasks"), {"cluster": "default", "startedBy": "release-1"})
    with pytest.raises(FakeError) as refused:
        validate("ecs", operation("ecs", "ListTasks"), {"cluster": "default", "startedBy": "release-1", "desiredStatus": "RUNNING"})
    assert refused.value.code == "InvalidParameterException" and "only filter" in refused.value.message


@pytest.mark.parametrize(("started_by", "valid"), [("release-2026_01/a", True), ("v1.2.3", False), ("a b", False), ("x" * 129, False)])
def test_run_task_started_by_character_set(started_by: str, valid: bool) -> None:
    params = {"taskDefinition": "cashsouk-migrate:1", "startedBy": started_by}
    if valid:
        validate("ecs", operation("ecs", "RunTask"), params)
    else:
        with pytest.raises(FakeError, match="startedBy"):
            validate("ecs", operation("ecs", "RunTask"), params)


@pytest.mark.parametrize(("token", "valid"), [("a" * 64, True), ("a" * 65, False), ("with space", False), ("ümlaut", False)])
def test_run_task_client_token(token: str, valid: bool) -> None:
    params = {"taskDefinition": "cashsouk-migrate:1", "clientToken": token}
    if valid:
        validate("ecs", operation("ecs", "RunTask"), params)
    else:
        with pytest.raises(FakeError, match="clientToken"):
            validate("ecs", operation("ecs", "RunTask"), params)


def test_the_model_enums_lengths_and_ranges_botocore_leaves_out() -> None:
    with pytest.raises(FakeError, match="desiredStatus"):
        validate("ecs", operation("ecs", "ListTasks"), {"desiredStatus": "FINISHED"})
    with pytest.raises(FakeError, match="TableName") as refused:
        validate("dynamodb", operation("dynamodb", "GetItem"), {"TableName": "x" * 1025, "Key": {}})
    assert refused.value.code == "ValidationException"
    with pytest.raises(FakeError, match="Name"):
        validate("ssm", operation("ssm", "PutParameter"), {"Name": "/" + "n" * 2048, "Value": "v"})


def test_every_documented_rule_quotes_aws() -> None:
    assert all(rule.quote.count('"') >= 2 for rule in DOCUMENTED)


def test_client_token_is_idempotent_per_cluster_and_conflicts_with_other_parameters(sfn: Interpreter) -> None:
    fake = build_world(sfn.reset())
    network = {"awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "DISABLED"}}
    first = fake.handle(
        "ecs", "RunTask", {"cluster": "default", "taskDefinition": MIGRATE_FAMILY, "clientToken": "t", "networkConfiguration": network}
    )
    again = fake.handle(
        "ecs", "RunTask", {"cluster": "default", "taskDefinition": MIGRATE_FAMILY, "clientToken": "t", "networkConfiguration": network}
    )
    assert first["tasks"][0]["taskArn"] == again["tasks"][0]["taskArn"] and len(fake.tasks) == 1
    with pytest.raises(FakeError) as conflict:
        fake.handle(
            "ecs",
            "RunTask",
            {"cluster": "default", "taskDefinition": MIGRATE_FAMILY, "clientToken": "t", "networkConfiguration": network, "startedBy": "x"},
        )
    assert conflict.value.code == "ConflictException"
    fake.handle(
        "ecs", "RunTask", {"cluster": "other", "taskDefinition": MIGRATE_FAMILY, "clientToken": "t", "networkConfiguration": network}
    )
    assert len(fake.tasks) == 2


def _with_run_task_argument(node: Any, name: str, value: str) -> bool:
    """Set one RunTask argument wherever the definition calls RunTask (whatever the state's name)."""
    found = False
    if isinstance(node, dict):
        if str(node.get("Resource", "")).split(":")[-1].startswith("runTask") and isinstance(node.get("Arguments"), dict):
            node["Arguments"][name] = value
            found = True
        for child in node.values():
            found = _with_run_task_argument(child, name, value) or found
    elif isinstance(node, list):
        for child in node:
            found = _with_run_task_argument(child, name, value) or found
    return found


def test_a_release_whose_run_task_breaks_a_documented_rule_fails_as_ecs_refuses_it(
    sfn: Interpreter, strict: Any, definition: dict[str, Any]
) -> None:
    broken = copy.deepcopy(definition)
    assert _with_run_task_argument(broken, "StartedBy", "{% 'v1.2.3' %}")
    machine = synthesized_machine(sfn, strict, broken, "release-bad-started-by", MACHINE)
    fake = build_world(sfn.reset())
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "FAILED"
    assert {(op, code) for op, code, _ in fake.refusals} == {("ecs:RunTask", "InvalidParameterException")}
    assert not fake.tasks and not fake.calls_of("UpdateService")
