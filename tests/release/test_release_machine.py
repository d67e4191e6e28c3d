"""The synthesized release definition, executed by moto's ASL interpreter against stateful fakes
(emulation/): success paths, the record, rendering, the lease, the pre-flight check."""

from __future__ import annotations

import copy
import importlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from emulation.driver import Execution, Interpreter
from emulation.fakes import ACCOUNT, REGION, FakeAws, digest_of
from emulation.world import APPS, BY_KEY, MIGRATE_FAMILY, MIGRATE_REPOSITORY, build_world
from release import contract
from release.naming import execution_input, execution_name

TAG = "abc1234"
PARAMETER = "/cashsouk/example/release/current"
MUTATING = {"RegisterTaskDefinition", "RunTask", "UpdateService", "PutParameter", "StopTask"}
OTHER_EXECUTION = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:cashsouk-example-release:someone-else"
READ_ONLY = {
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    "deleteRequestedAt",
}


@pytest.fixture
def fake(sfn: Interpreter) -> FakeAws:
    return build_world(sfn.reset())


def lease_puts(fake: FakeAws) -> list[Any]:
    return [c for c in fake.calls_of("PutItem") if c.params["TableName"].endswith("-lease")]


def assert_lease_free(fake: FakeAws) -> None:
    assert contract.LEASE_ID not in fake.lease_items, fake.lease_items


def assert_lease_released(fake: FakeAws, result: Execution) -> None:
    """This execution took the lease and freed it itself (conditional DeleteItem on its own ARN)."""
    assert [c.params["Item"]["Owner"]["S"] for c in lease_puts(fake)][-1:] == [result.arn]
    assert any(c.params["ExpressionAttributeValues"] == {":me": {"S": result.arn}} for c in fake.calls_of("DeleteItem"))
    assert_lease_free(fake)


def untouched_services(fake: FakeAws, *, except_: tuple[str, ...] = ()) -> None:
    for app in APPS:
        if app.key in except_:
            continue
        assert len(fake.task_definitions[app.family]) == 1, f"{app.key} got a new revision"
        assert not [c for c in fake.calls_of("UpdateService") if c.params["service"] == app.service]


def record(fake: FakeAws) -> dict[str, Any]:
    (only,) = fake.records()
    return only


def update_deployment_id(fake: FakeAws, service: str) -> str:
    """The id of the deployment the release's UpdateService started (the PRIMARY one it returned)."""
    (call,) = [c for c in fake.calls_of("UpdateService") if c.params["service"] == service]
    (deployment,) = [d for d in fake.services[service]["deployments"] if d["taskDefinition"] == call.params["taskDefinition"]]
    return str(deployment["id"])


def run_task_arn(fake: FakeAws) -> str:
    (arn,) = fake.tasks
    return arn


# ---- success ----------------------------------------------------------------------------------------
def test_default_release_migrates_then_deploys_and_records_it(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    result = sfn.run(machine, {"imageTag": TAG, "startedBy": "ci: push 1a2b", "note": "weekly"})
    assert result.status == "SUCCEEDED", (result.error, result.cause)

    migrate = fake.latest(MIGRATE_FAMILY)
    assert migrate["revision"] == 2
    assert migrate["containerDefinitions"][0]["image"] == (
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{MIGRATE_REPOSITORY}@{digest_of(MIGRATE_REPOSITORY, TAG)}"
    )
    first = fake.task_definitions[MIGRATE_FAMILY][0]
    assert (
        migrate["taskRoleArn"] == first["taskRoleArn"]
        and migrate["containerDefinitions"][0]["secrets"] == first["containerDefinitions"][0]["secrets"]
    )
    (run_task,) = fake.calls_of("RunTask")
    name = result.arn.rsplit(":", 1)[-1]
    assert run_task.params["startedBy"] == name and run_task.params["clientToken"] == name
    assert run_task.params["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"
    api = BY_KEY["api"]
    (update,) = fake.calls_of("UpdateService")
    assert update.params == {"cluster": "default", "service": api.service, "taskDefinition": fake.latest(api.family)["taskDefinitionArn"]}
    untouched_services(fake, except_=("api",))
    ops = fake.operations()
    assert ops.index("RunTask") < ops.index("UpdateService")
    assert max(i for i, op in enumerate(ops) if op == "DescribeImages") < ops.index("RegisterTaskDefinition")

    summary = result.output
    assert summary == record(fake)  # the output and the durable record say the same
    assert {k: summary[k] for k in ("status", "phase", "kind", "imageTag", "startedBy", "note", "error", "leaseReleased")} == {
        "status": "SUCCEEDED",
        "phase": "done",
        "kind": "release",
        "imageTag": TAG,
        "startedBy": "ci: push 1a2b",
        "note": "weekly",
        "error": None,
        "leaseReleased": True,
    }
    assert summary["execution"] == result.arn and summary["name"] == name and summary["endedAt"]
    assert summary["digests"] == {"api": digest_of(api.repository, TAG), "migrate": digest_of(MIGRATE_REPOSITORY, TAG)}
    assert summary["migration"] == {
        "outcome": "succeeded",
        "exitCode": 0,
        "reason": "stop code EssentialContainerExited; task: Essential container in task exited",
        "taskArn": run_task_arn(fake),
        "taskDefinition": migrate["taskDefinitionArn"],
        "logGroup": "/ecs/cashsouk-migrate",
        "logStream": "migrate/migrate/" + run_task_arn(fake).rsplit("/", 1)[-1],
        "deadlineAt": summary["migration"]["deadlineAt"],
        "stoppedByRelease": False,
    }
    assert summary["services"] == {
        "api": {
            "outcome": "deployed",
            "taskDefinition": fake.latest(api.family)["taskDefinitionArn"],
            "deploymentId": update_deployment_id(fake, api.service),
            "reason": None,
        }
    }
    (item,) = fake.history.values()
    assert item["Pk"] == {"S": "release"} and item["Sk"]["S"].endswith("#" + name) and item["Status"] == {"S": "SUCCEEDED"}
    assert item["ImageTag"] == {"S": TAG} and item["ExecutionArn"] == {"S": result.arn}
    # The record was written RUNNING first, then rewritten at each phase and at the end.
    statuses = [c.params["Item"]["Status"]["S"] for c in fake.calls_of("PutItem") if c.params["TableName"].endswith("-history")]
    assert statuses[0] == "RUNNING" and statuses[-1] == "SUCCEEDED"
    released = json.loads(fake.parameters[PARAMETER]["Value"])
    assert released["imageTag"] == TAG and released["digests"] == {"api": digest_of(api.repository, TAG)}
    assert_lease_released(fake, result)


def test_without_migration_deploys_several_services(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.images.pop(MIGRATE_REPOSITORY)  # migrate=false needs no migrate image
    result = sfn.run(machine, {"imageTag": TAG, "services": ["landing", "api", "admin"], "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output["migration"]["outcome"] == "skipped"
    # Concurrently (tests/release/test_release_parallel.py has the order `after:` imposes).
    assert sorted(c.params["service"] for c in fake.calls_of("UpdateService")) == sorted(
        BY_KEY[k].service for k in ("landing", "api", "admin")
    )
    assert not fake.calls_of("RunTask") and len(fake.task_definitions[MIGRATE_FAMILY]) == 1
    untouched_services(fake, except_=("landing", "api", "admin"))
    assert set(json.loads(fake.parameters[PARAMETER]["Value"])["digests"]) == {"landing", "api", "admin"}
    assert_lease_released(fake, result)


def test_all_five_services_with_migration(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    result = sfn.run(machine, {"imageTag": TAG, "services": [a.key for a in APPS]})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert [v["outcome"] for v in result.output["services"].values()] == ["deployed"] * 5
    assert len(fake.calls_of("UpdateService")) == 5
    assert_lease_released(fake, result)


def test_a_rollback_is_recorded_as_one(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    payload = {"imageTag": TAG, "migrate": False, "services": ["api"], "rollbackOf": "abc-all-mig-1234", "note": "rollback to abc1234"}
    result = sfn.run(machine, payload)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert record(fake)["kind"] == "rollback" and record(fake)["note"] == "rollback to abc1234"


def test_retries_add_no_transitions_when_nothing_fails(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED"
    assert result.transitions == len(result.states_entered)


# ---- rendering task definitions -------------------------------------------------------------------
def test_a_revision_whose_deletion_was_requested_is_rendered_without_read_only_fields(
    sfn: Interpreter, machine: str, fake: FakeAws
) -> None:
    api = BY_KEY["api"]
    fake.delete_task_definition(fake.services[api.service]["taskDefinition"])
    result = sfn.run(machine, {"imageTag": TAG, "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    (register,) = fake.calls_of("RegisterTaskDefinition")
    assert not READ_ONLY & set(register.params), sorted(READ_ONLY & set(register.params))


def test_reserved_aws_tags_are_not_copied_to_the_new_revision(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    first = fake.latest(MIGRATE_FAMILY)["taskDefinitionArn"]
    fake.tags[first] += [{"key": "aws:cloudformation:stack-name", "value": "x"}, {"key": "AWS:Owner", "value": "someone"}]
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert fake.tags[fake.latest(MIGRATE_FAMILY)["taskDefinitionArn"]] == [{"key": "project", "value": "cashsouk"}]


def test_a_task_definition_without_the_named_container_fails_before_registering(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.latest(MIGRATE_FAMILY)["containerDefinitions"][0]["name"] = "renamed"
    result = sfn.run(machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    assert "has no container named migrate" in result.cause
    assert not fake.calls_of("RegisterTaskDefinition") and not fake.calls_of("RunTask")
    assert_lease_free(fake)


# ---- input validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "imageTag: required"),
        ({"imageTag": ""}, "imageTag"),
        ({"imageTag": "has space"}, "imageTag"),
        ({"imageTag": "tag\n"}, "imageTag"),
        ({"imageTag": "\ntag"}, "imageTag"),
        ({"imageTag": "caf\u00e9"}, "imageTag"),
        ({"imageTag": ".starts-with-dot"}, "imageTag"),
        ({"imageTag": "x" * 129}, "imageTag"),
        ({"imageTag": 1234567}, "imageTag"),
        ({"imageTag": None}, "imageTag"),
        ({"imageTag": TAG, "tag": TAG}, "unknown field tag"),
        ({"imageTag": TAG, "services": "api"}, "services"),
        ({"imageTag": TAG, "services": []}, "services: must not be empty"),
        ({"imageTag": TAG, "services": ["api", "nope"]}, "services: unknown app nope"),
        ({"imageTag": TAG, "services": ["api", "api"]}, "services: duplicate"),
        ({"imageTag": TAG, "migrate": "yes"}, "migrate"),
        ({"imageTag": TAG, "note": "x" * 257}, "note: must be a string of at most 256"),
        ({"imageTag": TAG, "startedBy": 7}, "startedBy"),
        (["not", "an", "object"], "input: must be a JSON object"),
    ],
)
def test_invalid_input_fails_first_changes_nothing_and_is_recorded(
    sfn: Interpreter, machine: str, fake: FakeAws, payload: Any, field: str
) -> None:
    result = sfn.run(machine, payload)
    assert (result.status, result.error) == ("FAILED", "InvalidInput")
    assert field in result.cause
    assert result.states_entered == ["ValidateInput", "RecordFailure", "Failed"]
    assert fake.operations() == ["PutItem"]  # the record, nothing else
    assert (record(fake)["status"], record(fake)["phase"], record(fake)["error"]) == ("FAILED", "validate", "InvalidInput")


def test_a_tag_of_128_characters_is_valid(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    tag = "a" * 127 + "-"
    build_world(fake, (tag,))
    result = sfn.run(machine, {"imageTag": tag, "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)


# ---- images ----------------------------------------------------------------------------------------
def test_missing_image_fails_before_anything_changes(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    del fake.images["admin-cashsouk"][TAG]
    result = sfn.run(machine, {"imageTag": TAG, "services": ["api", "admin"]})
    assert (result.status, result.error) == ("FAILED", "ImageNotFound")
    assert "admin-cashsouk" in result.cause and TAG in result.cause
    assert not MUTATING & set(fake.operations()) and not lease_puts(fake)
    assert (record(fake)["phase"], record(fake)["error"]) == ("images", "ImageNotFound")


def test_a_persistent_describe_images_throttle_is_not_reported_as_a_missing_image(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.fail("DescribeImages", "ThrottlingException", times=20)
    result = sfn.run(machine, {"imageTag": TAG, "migrate": False})
    assert result.status == "FAILED" and result.error != "ImageNotFound"
    assert (result.error or "").startswith("Ecr."), result.error
    assert "Rate exceeded" in result.cause and "has no image" not in result.cause
    assert not MUTATING & set(fake.operations())


# ---- pre-flight -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "why"),
    [
        (
            lambda s: s["deploymentConfiguration"]["deploymentCircuitBreaker"].update(rollback=False),
            "no deployment circuit breaker with rollback",
        ),
        (lambda s: s.update(deploymentController={"type": "CODE_DEPLOY"}), "uses the CODE_DEPLOY deployment controller"),
        (lambda s: s["deploymentConfiguration"].update(strategy="BLUE_GREEN"), "uses the BLUE_GREEN deployment strategy"),
        (
            lambda s: s.update(loadBalancers=[{"loadBalancerName": "classic-lb", "containerName": "Main", "containerPort": 80}]),
            "behind a Classic Load Balancer",
        ),
        (lambda s: s.update(status="DRAINING"), "is DRAINING"),
    ],
)
def test_services_that_could_not_be_deployed_safely_stop_the_release_before_anything_changes(
    sfn: Interpreter, machine: str, fake: FakeAws, change: Any, why: str
) -> None:
    admin = BY_KEY["admin"]
    change(fake.services[admin.service])
    result = sfn.run(machine, {"imageTag": TAG, "services": ["api", "admin"]})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    assert "nothing was changed" in result.cause and admin.service in result.cause and why in result.cause
    assert not MUTATING & set(fake.operations()) and not lease_puts(fake)


def test_a_service_behind_a_target_group_is_fine(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.services[BY_KEY["api"].service]["loadBalancers"] = [{"targetGroupArn": "arn:aws:elasticloadbalancing:x", "containerName": "Main"}]
    result = sfn.run(machine, {"imageTag": TAG, "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)


# ---- the lease ---------------------------------------------------------------------------------------------
def hold_lease(fake: FakeAws, *, owner: str = OTHER_EXECUTION, expires_in: int = 3600) -> None:
    fake.lease_items[contract.LEASE_ID] = {
        "LeaseId": {"S": contract.LEASE_ID},
        "Owner": {"S": owner},
        "ImageTag": {"S": "older"},
        "AcquiredAt": {"S": "2026-01-01T00:00:00.000Z"},
        "ExpiresAt": {"N": str(int(time.time()) + expires_in)},
    }


def test_lease_held_by_a_live_release_fails_with_who_and_since(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    hold_lease(fake)
    result = sfn.run(machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "ReleaseInProgress")
    assert OTHER_EXECUTION in result.cause and "2026-01-01T00:00:00.000Z" in result.cause
    assert fake.lease_items[contract.LEASE_ID]["Owner"]["S"] == OTHER_EXECUTION  # not taken, not deleted
    assert not MUTATING & set(fake.operations())
    assert len(lease_puts(fake)) == 1 + 80  # every 15 s for 20 minutes


def test_lease_released_in_time_lets_the_release_proceed(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    hold_lease(fake)

    def other_release_finishes(f: FakeAws, attempts: int) -> None:
        if attempts == 3:
            f.lease_items.pop(contract.LEASE_ID, None)

    fake.on_put_item = other_release_finishes
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert len(lease_puts(fake)) == 4
    assert_lease_free(fake)


def test_an_expired_lease_is_taken_over(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    hold_lease(fake, expires_in=-5)
    result = sfn.run(machine, {"imageTag": TAG, "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert_lease_free(fake)


def test_the_lease_item_has_the_contract_attributes(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    result = sfn.run(machine, {"imageTag": TAG, "migrate": False})
    (put,) = lease_puts(fake)
    item = put.params["Item"]
    assert item["LeaseId"] == {"S": "release"} and item["Owner"] == {"S": result.arn} and item["ImageTag"] == {"S": TAG}
    assert int(item["ExpiresAt"]["N"]) > time.time() + 3600


@pytest.mark.parametrize(("migrate", "blocked"), [(True, "RunTask"), (False, "UpdateService")])
def test_an_execution_that_lost_the_lease_changes_nothing_more(
    sfn: Interpreter, machine: str, fake: FakeAws, migrate: bool, blocked: str
) -> None:
    # What a redriven or late execution meets: its lease expired and another release took it
    # (or the lease cleanup freed it after the execution failed). The owner check before the
    # migration and before each UpdateService stops it.
    def another_release_takes_it(f: FakeAws, attempts: int) -> None:
        hold_lease(f)

    fake.on_put_item = another_release_takes_it
    result = sfn.run(machine, {"imageTag": TAG, "migrate": migrate})
    assert (result.status, result.error) == ("FAILED", "ReleaseInProgress")
    assert "no longer holds the release lease" in result.cause
    assert not fake.calls_of(blocked) and not fake.calls_of("UpdateService")
    assert fake.lease_items[contract.LEASE_ID]["Owner"]["S"] == OTHER_EXECUTION  # the other's lease is left alone
    assert not fake.calls_of("DeleteItem")


def test_the_service_task_definition_is_read_under_the_lease_not_before_it(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    # While this release waits for the lease, a person deploys a configuration change of the API:
    # the release renders from what the service runs when it deploys it.
    hold_lease(fake)
    api = BY_KEY["api"]

    def change_configuration_then_free_the_lease(f: FakeAws, attempts: int) -> None:
        if attempts != 3:
            return
        current = copy.deepcopy(f.latest(api.family))
        changed = {k: v for k, v in current.items() if k not in READ_ONLY}
        changed["containerDefinitions"][0]["environment"].append({"name": "FEATURE_X", "value": "on"})
        arn = f.add_task_definition(changed)
        f.services[api.service]["taskDefinition"] = arn
        f.services[api.service]["deployments"][0]["taskDefinition"] = arn
        f.lease_items.pop(contract.LEASE_ID, None)

    fake.on_put_item = change_configuration_then_free_the_lease
    result = sfn.run(machine, {"imageTag": TAG, "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    rendered = fake.latest(api.family)
    assert rendered["revision"] == 3 and {"name": "FEATURE_X", "value": "on"} in rendered["containerDefinitions"][0]["environment"]


def test_a_failed_lease_delete_after_success_is_visible_and_the_cleanup_frees_it(
    sfn: Interpreter, machine: str, cleanup: str, fake: FakeAws
) -> None:
    fake.fail("DeleteItem", "InternalServerError", times=6, status=500)
    result = sfn.run(machine, {"imageTag": TAG, "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output["leaseReleased"] is False, result.output
    assert "freeing the release lease failed" in result.output["cause"]
    assert record(fake)["leaseReleased"] is False
    assert fake.lease_items[contract.LEASE_ID]["Owner"]["S"] == result.arn
    # EventBridge starts the cleanup on SUCCEEDED too: it frees the lease and completes the record.
    cleaned = sfn.run(cleanup, ended(result, "SUCCEEDED", fake))
    assert cleaned.status == "SUCCEEDED" and cleaned.output["released"] is True
    assert_lease_free(fake)
    assert record(fake)["leaseReleased"] is True and record(fake)["status"] == "SUCCEEDED"


def test_two_releases_started_together_never_interleave(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    build_world(fake, ("aaa1111", "bbb2222"))
    first = sfn.start(machine, {"imageTag": "aaa1111", "services": ["api", "admin"]})
    second = sfn.start(machine, {"imageTag": "bbb2222", "services": ["api", "admin"]})
    results = [sfn.wait(first, timeout=60), sfn.wait(second, timeout=60)]
    assert [r.status for r in results] == ["SUCCEEDED", "SUCCEEDED"], [(r.error, r.cause) for r in results]
    # The lease windows (successful PutItem to the owner's DeleteItem) do not overlap, and every
    # change happened inside one of them.
    calls = list(enumerate(fake.calls))
    taken = [(i, c.params["Item"]["Owner"]["S"]) for i, c in calls if c in lease_puts(fake) and c.error is None]
    freed = {c.params["ExpressionAttributeValues"][":me"]["S"]: i for i, c in calls if c.operation == "DeleteItem" and c.error is None}
    assert len(taken) == 2 and {owner for _, owner in taken} == {first, second}
    windows = [(start, freed[owner]) for start, owner in taken]
    assert windows[0][1] < windows[1][0]
    changes = [i for i, c in calls if c.operation in MUTATING]
    assert changes and all(any(start < i < end for start, end in windows) for i in changes)
    assert len(fake.calls_of("UpdateService")) == 4
    assert_lease_free(fake)


# ---- the cleanup machine (EventBridge starts it when an execution ends) ---------------------------------
def ended(result: Execution | str, status: str, fake: FakeAws | None = None) -> dict[str, Any]:
    """The EventBridge event of an execution that ended. Its startDate is the execution's start
    (what $states.context.Execution.StartTime says, as the record has it)."""
    arn = result.arn if isinstance(result, Execution) else result
    started = 0
    if fake is not None:
        started_at = next(r["startedAt"] for r in fake.records() if r["execution"] == arn)
        started = int(datetime.fromisoformat(started_at.replace("Z", "+00:00")).timestamp() * 1000)
    return {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "detail": {"executionArn": arn, "name": arn.rsplit(":", 1)[-1], "status": status, "startDate": started, "stopDate": started + 1000},
    }


def test_cleanup_frees_the_lease_of_an_aborted_execution_and_leaves_anothers(sfn: Interpreter, cleanup: str, fake: FakeAws) -> None:
    hold_lease(fake, owner=OTHER_EXECUTION)
    assert sfn.run(cleanup, ended(OTHER_EXECUTION + "-not-me", "TIMED_OUT")).output["released"] is False
    assert fake.lease_items[contract.LEASE_ID]["Owner"]["S"] == OTHER_EXECUTION
    result = sfn.run(cleanup, ended(OTHER_EXECUTION, "ABORTED"))
    assert result.status == "SUCCEEDED" and result.output["released"] is True
    assert_lease_free(fake)


def test_cleanup_retries_transient_dynamodb_errors(sfn: Interpreter, cleanup: str, fake: FakeAws) -> None:
    hold_lease(fake, owner=OTHER_EXECUTION)
    fake.fail("DeleteItem", "InternalServerError", times=2, status=500)
    result = sfn.run(cleanup, ended(OTHER_EXECUTION, "TIMED_OUT"))
    assert result.status == "SUCCEEDED" and result.output["released"] is True
    assert_lease_free(fake)


# ---- names ECS accepts (issue 14) --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["v1.2.3", "hotfix+1", "a" * 65])
def test_an_execution_name_ecs_would_refuse_fails_first_before_the_lease(sfn: Interpreter, machine: str, fake: FakeAws, name: str) -> None:
    result = sfn.run(machine, {"imageTag": TAG}, name=name)
    assert (result.status, result.error) == ("FAILED", "InvalidInput")
    assert contract.EXECUTION_NAME_RULE in result.cause
    assert fake.operations() == ["PutItem"]  # the FAILED record only: no lease, no ECS call
    assert record(fake)["phase"] == "validate"


def test_the_longest_name_the_cli_generates_passes_the_first_state(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    tag = "a" * 128
    payload = execution_input(tag, ["api"], True)
    name = execution_name(payload, 50)
    assert len(name) == 61  # "-10svc-nomig-" would make it 64 (tests/release/test_release_names.py)
    fake.push_image(BY_KEY["api"].repository, tag)
    fake.push_image(MIGRATE_REPOSITORY, tag)
    result = sfn.run(machine, payload, name=name)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    (run_task,) = fake.calls_of("RunTask")
    assert run_task.params["startedBy"] == run_task.params["clientToken"] == name


# ---- redrive (issue 14) ------------------------------------------------------------------------------
execution_worker: Any = importlib.import_module("moto.stepfunctions.parser.backend.execution_worker")
REDRIVE_PRESET: dict[str, Any] = {}  # context fields every execution starts with (fixture `contexts`)


@pytest.fixture
def contexts(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The context object's Execution of every execution started from now on (moto has no
    RedriveCount: a test sets it to stand for a redrive)."""
    found: list[dict[str, Any]] = []
    original = execution_worker.ExecutionWorker._get_evaluation_environment

    def capture(self: Any) -> Any:
        env = original(self)
        execution = env.states.context_object.context_object_data["Execution"]
        execution.update(REDRIVE_PRESET)
        found.append(execution)
        return env

    monkeypatch.setattr(execution_worker.ExecutionWorker, "_get_evaluation_environment", capture)
    return found


def test_a_redriven_execution_never_acts_on_the_lease_of_its_earlier_attempt(
    sfn: Interpreter, machine: str, fake: FakeAws, contexts: list[dict[str, Any]]
) -> None:
    # The lease was taken in attempt 0; the execution then resumes redriven (same ARN).
    def redriven(f: FakeAws, attempts: int) -> None:
        contexts[-1].update(RedriveCount=1, RedriveTime=datetime.now(UTC).isoformat())

    fake.on_put_item = redriven
    result = sfn.run(machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "ReleaseInProgress")
    assert "this execution was redriven (redrive 1)" in result.cause
    assert not fake.calls_of("RunTask") and not fake.calls_of("UpdateService")
    # Nothing it does not hold is freed: the cleanup machine frees the execution's lease.
    assert fake.lease_items[contract.LEASE_ID]["Holder"]["S"] == result.arn + "#0"
    assert not fake.calls_of("DeleteItem")


def test_a_redriven_execution_takes_the_lease_as_its_own_attempt_with_an_expiry_from_the_redrive(
    sfn: Interpreter, machine: str, fake: FakeAws, contexts: list[dict[str, Any]], definition: dict[str, Any]
) -> None:
    # Redriven before it held the lease (say, aborted while waiting for it), two hours after its
    # start: redrive resets the machine timeout, so the lease's expiry counts from the redrive.
    redrive = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)

    REDRIVE_PRESET.update(RedriveCount=1, RedriveTime=redrive.isoformat().replace("+00:00", ".000Z"))
    try:
        result = sfn.run(machine, {"imageTag": TAG})
    finally:
        REDRIVE_PRESET.clear()
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    (put,) = lease_puts(fake)
    assert put.params["Item"]["Holder"] == {"S": result.arn + "#1"}
    assert int(put.params["Item"]["ExpiresAt"]["N"]) == int(redrive.timestamp()) + definition["TimeoutSeconds"] + 60
    assert_lease_released(fake, result)


# ---- the runner's deadline and the record of the migration (issue 14) --------------------------------
def test_run_task_passes_the_runner_an_absolute_deadline_below_the_release_bound(
    sfn: Interpreter, machine: str, fake: FakeAws, definition: dict[str, Any]
) -> None:
    before = time.time()
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    (run_task,) = fake.calls_of("RunTask")
    (override,) = run_task.params["overrides"]["containerOverrides"]
    assert override["name"] == "migrate"
    assert override["environment"] == [
        {"name": contract.MIGRATE_DEADLINE_AT_ENV, "value": str(result.output["migration"]["deadlineAt"])},
        {"name": contract.MIGRATE_ACTION_ENV, "value": contract.ACTION_DEPLOY},  # tests/release/test_release_recovery.py
    ]
    # The example's migration bound is 900 s from RunTask; the runner's deadline 60 s before it.
    assert "$migrationPolls < 90" in json.dumps(definition)
    deadline = int(override["environment"][0]["value"])
    assert before + 900 - 60 - 5 <= deadline <= time.time() + 900 - 60


def test_a_throttled_run_task_is_retried_with_the_same_deadline(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    # Same clientToken with other parameters would be ConflictException: the deadline is fixed
    # before RunTask, not computed by each attempt.
    fake.fail("RunTask", "ThrottlingException", times=2)
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    overrides = {json.dumps(c.params["overrides"], sort_keys=True) for c in fake.calls_of("RunTask")}
    assert len(fake.calls_of("RunTask")) == 3 and len(overrides) == 1


def test_the_record_names_the_migrate_task_revision_and_log_stream_as_soon_as_run_task_returns(
    sfn: Interpreter, machine: str, fake: FakeAws
) -> None:
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED"
    (run_task,) = fake.calls_of("RunTask")
    history = [c for c in fake.calls_of("PutItem") if c.params["TableName"].endswith("-history")]
    first_after = next(c for c in history if fake.calls.index(c) > fake.calls.index(run_task))
    # Before the first DescribeTasks: the record names the task while it runs.
    assert fake.calls.index(first_after) < fake.calls.index(fake.calls_of("DescribeTasks")[0])
    running = json.loads(first_after.params["Item"]["Summary"]["S"])
    task_arn = run_task_arn(fake)
    assert running["status"] == "RUNNING"
    assert running["migration"]["taskArn"] == task_arn
    assert running["migration"]["taskDefinition"] == fake.latest(MIGRATE_FAMILY)["taskDefinitionArn"]
    assert running["migration"]["logStream"] == "migrate/migrate/" + task_arn.rsplit("/", 1)[-1]
    assert result.output["migration"]["taskDefinition"] == running["migration"]["taskDefinition"]
