"""Migration recovery through the release path, executed: `action` status/resolve runs the migrate
task with the runner's MIGRATE_ACTION/MIGRATE_RESOLVE under the lease and the record, deploys no
service and leaves the released parameter alone; bad recovery input is InvalidInput naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from emulation.driver import Interpreter
from emulation.fakes import FakeAws
from emulation.world import build_world
from release import contract
from tests.release.test_release_machine import TAG, assert_lease_released, record

MIGRATION = "20261120093000_add_invoice_due_date"


@pytest.fixture
def fake(sfn: Interpreter) -> FakeAws:
    return build_world(sfn.reset())


def _environment(fake: FakeAws) -> dict[str, str]:
    (call,) = fake.calls_of("RunTask")
    (override,) = call.params["overrides"]["containerOverrides"]
    assert override["name"] == contract.MIGRATE_CONTAINER_NAME
    return {e["name"]: e["value"] for e in override["environment"]}


def _recovery(action: str, **more: Any) -> dict[str, Any]:
    return {"imageTag": TAG, "action": action, "migrate": True, "services": [], **more}


def test_resolve_runs_the_migrate_task_with_the_runners_variables_and_deploys_nothing(
    sfn: Interpreter, machine: str, fake: FakeAws
) -> None:
    result = sfn.run(machine, _recovery("resolve", resolve=f"rolled-back:{MIGRATION}"))
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    environment = _environment(fake)
    assert environment["MIGRATE_ACTION"] == "resolve" and environment["MIGRATE_RESOLVE"] == f"rolled-back:{MIGRATION}"
    # No service checked or touched, the released parameter left alone, the lease taken and freed.
    assert not fake.calls_of("DescribeServices") and not fake.calls_of("UpdateService") and not fake.calls_of("PutParameter")
    assert [c.params["repositoryName"] for c in fake.calls_of("DescribeImages")] == ["cashsouk-migrate"]
    assert_lease_released(fake, result)
    rec = record(fake)
    assert (rec["kind"], rec["status"], rec["migration"]["outcome"], rec["services"]) == ("migrate-resolve", "SUCCEEDED", "succeeded", {})


def test_status_sends_no_resolve_and_a_release_sends_deploy(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    assert sfn.run(machine, _recovery("status")).status == "SUCCEEDED"
    environment = _environment(fake)
    assert environment["MIGRATE_ACTION"] == "status" and "MIGRATE_RESOLVE" not in environment
    assert record(fake)["kind"] == "migrate-status"


def test_a_release_tells_the_runner_to_deploy(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    assert sfn.run(machine, {"imageTag": TAG}).status == "SUCCEEDED"
    environment = _environment(fake)
    assert environment["MIGRATE_ACTION"] == "deploy" and "MIGRATE_RESOLVE" not in environment


def test_a_hold_does_not_stop_a_recovery(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.lease_items[contract.HOLD_ID] = {"LeaseId": {"S": contract.HOLD_ID}, "Reason": {"S": "P3009"}}
    assert sfn.run(machine, _recovery("status")).status == "SUCCEEDED"


BAD = [
    (_recovery("drop"), "action: must be one of deploy, status, resolve"),
    ({"imageTag": TAG, "action": "status"}, "services: must be [] with action status"),
    (_recovery("status", services=["api"]), "services: must be [] with action status"),
    (_recovery("status", migrate=False), "migrate: must be true with action status"),
    (_recovery("resolve"), "resolve: must be rolled-back:NAME or applied:NAME"),
    (_recovery("resolve", resolve=f"forgotten:{MIGRATION}"), "resolve: must be rolled-back:NAME"),
    (_recovery("resolve", resolve="rolled-back:add_invoice"), "resolve: must be rolled-back:NAME"),
    (_recovery("resolve", resolve=f"applied:{MIGRATION}; DROP TABLE x"), "resolve: must be rolled-back:NAME"),
    ({"imageTag": TAG, "resolve": f"applied:{MIGRATION}"}, "resolve: only with action resolve"),
    ({"imageTag": TAG, "services": []}, "services: must not be empty"),
]


@pytest.mark.parametrize(("payload", "problem"), BAD, ids=[b[1].split(":")[0] + f"-{i}" for i, b in enumerate(BAD)])
def test_bad_recovery_input_is_invalid_input_naming_the_field(
    sfn: Interpreter, machine: str, fake: FakeAws, payload: dict[str, Any], problem: str
) -> None:
    result = sfn.run(machine, payload)
    assert (result.status, result.error) == ("FAILED", contract.INVALID_INPUT)
    assert problem in result.cause, result.cause
    assert not fake.calls_of("RunTask") and not fake.calls_of("DescribeImages")
