"""The synthesized release definition, executed by a real ASL interpreter against stateful fakes."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from tests.release.conftest import Rollout
from tests.release.driver import Execution, Interpreter
from tests.release.fakes import ACCOUNT, REGION, FakeAws, FakeError, MigrationPlan, RolloutPlan, digest_of
from tests.release.world import APPS, BY_KEY, MIGRATE_FAMILY, MIGRATE_REPOSITORY, build_world

TAG = "abc1234"
PARAMETER = "/cashsouk/example/release/current"
MUTATING = {"RegisterTaskDefinition", "RunTask", "UpdateService", "PutParameter", "StopTask"}
OTHER_EXECUTION = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:cashsouk-example-release:someone-else"


@pytest.fixture
def fake(sfn: Interpreter) -> FakeAws:
    return build_world(sfn.reset())


def run(sfn: Interpreter, machine: str, payload: Any) -> Execution:
    return sfn.run(machine, payload)


def assert_lease_free(fake: FakeAws) -> None:
    assert "release" not in fake.lease_items, fake.lease_items


def assert_lease_released(fake: FakeAws, result: Execution) -> None:
    """This execution took the lease and freed it itself (conditional DeleteItem on its own ARN)."""
    assert [c.params["Item"]["Owner"]["S"] for c in fake.calls_of("PutItem")][-1:] == [result.arn]
    assert any(c.params["ExpressionAttributeValues"] == {":me": {"S": result.arn}} for c in fake.calls_of("DeleteItem"))
    assert_lease_free(fake)


def untouched_services(fake: FakeAws, *, except_: tuple[str, ...] = ()) -> None:
    for app in APPS:
        if app.key in except_:
            continue
        assert len(fake.task_definitions[app.family]) == 1, f"{app.key} got a new revision"
        assert not [c for c in fake.calls_of("UpdateService") if c.params["service"] == app.service]


# ---- success -------------------------------------------------------------------------------------
def test_default_release_migrates_then_deploys_the_schema_services(sfn: Interpreter, rollout: Rollout, fake: FakeAws) -> None:
    result = run(sfn, rollout.machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED", (result.error, result.cause)

    migrate = fake.latest(MIGRATE_FAMILY)
    migrate_image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{MIGRATE_REPOSITORY}@{digest_of(MIGRATE_REPOSITORY, TAG)}"
    assert migrate["revision"] == 2
    assert migrate["containerDefinitions"][0]["image"] == migrate_image
    # The rendering kept everything else of the revision it copied (roles, secrets by reference, logs).
    first = fake.task_definitions[MIGRATE_FAMILY][0]
    assert migrate["taskRoleArn"] == first["taskRoleArn"] and migrate["executionRoleArn"] == first["executionRoleArn"]
    assert migrate["containerDefinitions"][0]["secrets"] == first["containerDefinitions"][0]["secrets"]
    assert fake.tags[migrate["taskDefinitionArn"]] == [{"key": "project", "value": "cashsouk"}]

    (run_task,) = fake.calls_of("RunTask")
    assert run_task.params["taskDefinition"] == migrate["taskDefinitionArn"]
    assert run_task.params["launchType"] == "FARGATE"
    network = run_task.params["networkConfiguration"]["awsvpcConfiguration"]
    assert network["assignPublicIp"] == "DISABLED"
    assert network["subnets"] and all(s.startswith("subnet-") for s in network["subnets"])
    assert len(network["securityGroups"]) == 1

    api = BY_KEY["api"]
    api_revision = fake.latest(api.family)
    assert api_revision["containerDefinitions"][0]["image"].endswith(f"/{api.repository}@{digest_of(api.repository, TAG)}")
    (update,) = fake.calls_of("UpdateService")
    assert update.params == {"cluster": "default", "service": api.service, "taskDefinition": api_revision["taskDefinitionArn"]}
    untouched_services(fake, except_=("api",))
    # Migration strictly before the deployment, digests resolved before anything changed.
    ops = fake.operations()
    assert ops.index("RunTask") < ops.index("UpdateService")
    assert max(i for i, op in enumerate(ops) if op == "DescribeImages") < ops.index("PutItem") < ops.index("RegisterTaskDefinition")

    assert result.output == {
        "imageTag": TAG,
        "migration": {
            "taskArn": run_task_arn(fake),
            "taskDefinitionArn": migrate["taskDefinitionArn"],
            "imageDigest": digest_of(MIGRATE_REPOSITORY, TAG),
            "exitCode": 0,
            "logStream": "migrate/migrate/" + run_task_arn(fake).rsplit("/", 1)[-1],
        },
        "services": [
            {
                "app": "api",
                "service": api.service,
                "taskDefinitionArn": api_revision["taskDefinitionArn"],
                "deploymentId": result.output["services"][0]["deploymentId"],
                "rolloutState": "COMPLETED",
            }
        ],
    }
    recorded = json.loads(fake.parameters[PARAMETER]["Value"])
    assert recorded["imageTag"] == TAG
    assert recorded["digests"] == {"api": digest_of(api.repository, TAG)}
    assert recorded["execution"] == result.arn
    assert recorded["releasedAt"]
    assert_lease_released(fake, result)
    assert_polls(rollout, result, fake, rollout_seconds=RolloutPlan().rollout_seconds)


def assert_polls(rollout: Rollout, result: Execution, fake: FakeAws, *, rollout_seconds: float) -> None:
    """One DescribeServices call (one TaskScheduled event, what docs/release.md says to look for on
    AWS) per poll; "retry" enters WaitForRollout once and polls at once after UpdateService, then
    every 10 s; "wait-loop" waits 10 s first and enters three states per poll."""
    scheduled = [e for e in result.history if e["type"] == "TaskScheduled" and "describeServices" in json.dumps(e, default=str)]
    polls = len(fake.calls_of("DescribeServices")) - 2  # CheckServices and DescribeService before
    assert len(scheduled) == polls + 2
    entered = result.states_entered
    if rollout.poll == "retry":
        assert polls == rollout_seconds // 10 + 1
        assert entered.count("WaitForRollout") == 1
    else:
        assert polls == rollout_seconds // 10
        assert [entered.count(s) for s in ("PollDelay", "WaitForRollout", "RolloutProgress")] == [polls] * 3


def run_task_arn(fake: FakeAws) -> str:
    (arn,) = fake.tasks
    return arn


def test_without_migration_deploys_several_services_in_the_order_given(sfn: Interpreter, rollout: Rollout, fake: FakeAws) -> None:
    fake.images.pop(MIGRATE_REPOSITORY)  # migrate=false needs no migrate image
    result = run(sfn, rollout.machine, {"imageTag": TAG, "services": ["landing", "api", "admin"], "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output["migration"] is None
    assert [s["app"] for s in result.output["services"]] == ["landing", "api", "admin"]
    assert [c.params["service"] for c in fake.calls_of("UpdateService")] == [BY_KEY[k].service for k in ("landing", "api", "admin")]
    assert not fake.calls_of("RunTask") and len(fake.task_definitions[MIGRATE_FAMILY]) == 1
    # Each service's rollout finished before the next one started.
    ops = [(c.operation, c.params.get("service")) for c in fake.calls if c.operation in ("UpdateService", "DescribeServices")]
    updates = [i for i, (op, _) in enumerate(ops) if op == "UpdateService"]
    assert updates == sorted(updates)
    untouched_services(fake, except_=("landing", "api", "admin"))
    assert set(json.loads(fake.parameters[PARAMETER]["Value"])["digests"]) == {"landing", "api", "admin"}
    assert_lease_released(fake, result)


def test_all_five_services_with_migration(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    result = run(sfn, machine, {"imageTag": TAG, "services": [a.key for a in APPS]})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert [s["rolloutState"] for s in result.output["services"]] == ["COMPLETED"] * 5
    assert len(fake.calls_of("UpdateService")) == 5
    assert_lease_released(fake, result)


# ---- rendering task definitions ------------------------------------------------------------------
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


def test_a_service_running_a_revision_whose_deletion_was_requested_is_rendered_without_read_only_fields(
    sfn: Interpreter, machine: str, fake: FakeAws
) -> None:
    # The revision the service runs was deregistered and its deletion requested: ECS still
    # describes it (DELETE_IN_PROGRESS, with deleteRequestedAt), and RegisterTaskDefinition
    # refuses that field like the other read-only ones.
    api = BY_KEY["api"]
    fake.delete_task_definition(fake.services[api.service]["taskDefinition"])
    result = run(sfn, machine, {"imageTag": TAG, "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    (register,) = fake.calls_of("RegisterTaskDefinition")
    assert not READ_ONLY & set(register.params), sorted(READ_ONLY & set(register.params))
    assert fake.latest(api.family)["status"] == "ACTIVE" and fake.latest(api.family)["revision"] == 2


def test_reserved_aws_tags_are_not_copied_to_the_new_revision(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    # A tag AWS itself put on the revision (aws: prefix) cannot be passed to RegisterTaskDefinition.
    first = fake.latest(MIGRATE_FAMILY)["taskDefinitionArn"]
    fake.tags[first].append({"key": "aws:cloudformation:stack-name", "value": "cashsouk-example-release"})
    fake.tags[first].append({"key": "AWS:Owner", "value": "someone"})
    result = run(sfn, machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert fake.tags[fake.latest(MIGRATE_FAMILY)["taskDefinitionArn"]] == [{"key": "project", "value": "cashsouk"}]


def test_transient_dynamodb_errors_on_the_lease_are_retried(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    # DynamoDB's own error codes for these two carry no "Exception" suffix.
    fake.faults["PutItem"] = [
        FakeError("InternalServerError", "Internal server error", 500),
        FakeError("RequestLimitExceeded", "Throughput exceeds the current throughput limit for your account", 400),
    ]
    fake.faults["DeleteItem"] = [FakeError("InternalServerError", "Internal server error", 500)]
    result = run(sfn, machine, {"imageTag": TAG, "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert len(fake.calls_of("PutItem")) == 3 and len(fake.calls_of("DeleteItem")) == 2
    assert_lease_free(fake)


def test_transient_dynamodb_errors_are_retried_when_freeing_the_lease_after_a_failure(
    sfn: Interpreter, machine: str, fake: FakeAws
) -> None:
    fake.migration = MigrationPlan(exit_code=1)
    fake.faults["DeleteItem"] = [FakeError("InternalServerError", "Internal server error", 500)]
    result = run(sfn, machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    assert len(fake.calls_of("DeleteItem")) == 2
    assert_lease_free(fake)


# ---- input validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "imageTag: required"),
        ({"imageTag": ""}, "imageTag"),
        ({"imageTag": "has space"}, "imageTag"),
        ({"imageTag": ".starts-with-dot"}, "imageTag"),
        ({"imageTag": "x" * 129}, "imageTag"),
        ({"imageTag": 1234567}, "imageTag"),
        ({"imageTag": None}, "imageTag"),
        ({"imageTag": TAG, "tag": TAG}, "unknown field tag"),
        ({"imageTag": TAG, "services": "api"}, "services"),
        ({"imageTag": TAG, "services": []}, "services: must not be empty"),
        ({"imageTag": TAG, "services": ["api", "nope"]}, "services: unknown app nope"),
        ({"imageTag": TAG, "services": ["api", 7]}, "services: unknown app 7"),
        ({"imageTag": TAG, "services": ["api", "api"]}, "services: duplicate"),
        ({"imageTag": TAG, "migrate": "yes"}, "migrate"),
        (["not", "an", "object"], "input: must be a JSON object"),
    ],
)
def test_invalid_input_fails_the_first_state_naming_the_field(
    sfn: Interpreter, machine: str, fake: FakeAws, payload: Any, field: str
) -> None:
    result = run(sfn, machine, payload)
    assert (result.status, result.error) == ("FAILED", "InvalidInput")
    assert field in (result.cause or "")
    assert result.states_entered == ["ValidateInput", "InvalidInput"]
    assert fake.calls == []


def test_a_tag_of_128_characters_is_valid(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    tag = "a" * 128
    build_world(fake, (tag,))
    result = run(sfn, machine, {"imageTag": tag, "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)


# ---- images ----------------------------------------------------------------------------------------
def test_missing_image_fails_before_anything_changes(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    del fake.images["admin-cashsouk"][TAG]
    result = run(sfn, machine, {"imageTag": TAG, "services": ["api", "admin"]})
    assert (result.status, result.error) == ("FAILED", "ImageNotFound")
    assert "admin-cashsouk" in result.cause and TAG in result.cause
    assert not MUTATING & set(fake.operations()) and not fake.calls_of("PutItem")
    assert_lease_free(fake)


def test_missing_migrate_image_fails_when_migrating(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    del fake.images[MIGRATE_REPOSITORY]
    result = run(sfn, machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "ImageNotFound")
    assert MIGRATE_REPOSITORY in result.cause
    assert not MUTATING & set(fake.operations())


# ---- the lease -------------------------------------------------------------------------------------
def hold_lease(fake: FakeAws, *, owner: str = OTHER_EXECUTION, expires_in: int = 3600) -> None:
    fake.lease_items["release"] = {
        "LeaseId": {"S": "release"},
        "Owner": {"S": owner},
        "ImageTag": {"S": "older"},
        "AcquiredAt": {"S": "2026-01-01T00:00:00.000Z"},
        "ExpiresAt": {"N": str(int(time.time()) + expires_in)},
    }


def test_lease_held_by_a_live_release_fails_with_who_and_since(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    hold_lease(fake)
    result = run(sfn, machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "ReleaseInProgress")
    assert OTHER_EXECUTION in result.cause and "2026-01-01T00:00:00.000Z" in result.cause
    assert fake.lease_items["release"]["Owner"]["S"] == OTHER_EXECUTION  # not taken, not deleted
    assert not MUTATING & set(fake.operations())
    # It waited: one PutItem per retry, each a state transition.
    assert len(fake.calls_of("PutItem")) > 10
    assert result.transitions > len(fake.calls_of("PutItem"))


def test_lease_released_in_time_lets_the_release_proceed(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    hold_lease(fake)

    def other_release_finishes(f: FakeAws, attempts: int) -> None:
        if attempts == 3:
            f.lease_items.pop("release", None)

    fake.on_put_item = other_release_finishes
    result = run(sfn, machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert len(fake.calls_of("PutItem")) == 4
    assert_lease_free(fake)


def test_an_expired_lease_is_taken_over(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    hold_lease(fake, expires_in=-5)
    result = run(sfn, machine, {"imageTag": TAG, "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert len(fake.calls_of("PutItem")) == 1
    assert_lease_free(fake)


def test_the_lease_item_has_the_contract_attributes(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    result = run(sfn, machine, {"imageTag": TAG, "migrate": False})
    (put,) = fake.calls_of("PutItem")
    item = put.params["Item"]
    assert item["LeaseId"] == {"S": "release"}
    assert item["Owner"] == {"S": result.arn}
    assert item["ImageTag"] == {"S": TAG}
    assert item["AcquiredAt"]["S"].endswith("Z")
    # Expires when the execution can no longer be running (its start + the machine's timeout).
    assert int(item["ExpiresAt"]["N"]) > time.time() + 3600
    (delete,) = fake.calls_of("DeleteItem")
    assert delete.params["ExpressionAttributeValues"] == {":me": {"S": result.arn}}


def test_the_service_task_definition_is_read_under_the_lease_not_before_it(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    # While this release waits for the lease, a person deploys a configuration change of the API
    # (a new revision with one more environment variable). The release must render its revision
    # from what the service runs when it deploys it, not from what it ran at the pre-flight check,
    # or it would silently revert that change.
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
        f.lease_items.pop("release", None)

    fake.on_put_item = change_configuration_then_free_the_lease
    result = run(sfn, machine, {"imageTag": TAG, "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    rendered = fake.latest(api.family)
    assert rendered["revision"] == 3
    assert {"name": "FEATURE_X", "value": "on"} in rendered["containerDefinitions"][0]["environment"]
    assert rendered["containerDefinitions"][0]["image"].endswith(f"@{digest_of(api.repository, TAG)}")


def test_a_service_deleted_before_its_turn_fails_the_release_naming_it(sfn: Interpreter, rollout: Rollout, fake: FakeAws) -> None:
    api, admin = BY_KEY["api"], BY_KEY["admin"]

    def delete_admin_after_the_pre_flight_check(f: FakeAws, attempts: int) -> None:
        f.services.pop(admin.service, None)

    fake.on_put_item = delete_admin_after_the_pre_flight_check
    result = run(sfn, rollout.machine, {"imageTag": TAG, "services": ["api", "admin"], "migrate": False})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    assert admin.service in result.cause and "not found" in result.cause and result.cause.startswith("not deployed: ")
    assert [c.params["service"] for c in fake.calls_of("UpdateService")] == [api.service]
    assert_lease_released(fake, result)


def test_two_releases_started_together_never_interleave(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    build_world(fake, ("aaa1111", "bbb2222"))
    first = sfn.start(machine, {"imageTag": "aaa1111", "services": ["api", "admin"]})
    second = sfn.start(machine, {"imageTag": "bbb2222", "services": ["api", "admin"]})
    results = [sfn.wait(first), sfn.wait(second)]
    assert [r.status for r in results] == ["SUCCEEDED", "SUCCEEDED"], [(r.error, r.cause) for r in results]

    owner_tag = {first: "aaa1111", second: "bbb2222"}
    revision_tag = {}
    for revisions in fake.task_definitions.values():
        for revision in revisions:
            for tag in owner_tag.values():
                if tag in json.dumps(revision) or any(digest_of(r, tag) in json.dumps(revision) for r in fake.images):
                    revision_tag[revision["taskDefinitionArn"]] = tag

    def tag_of(call: Any) -> str | None:
        params = call.params
        if call.operation == "DeleteItem":
            return owner_tag.get(params["ExpressionAttributeValues"][":me"]["S"])
        if call.operation == "UpdateService":
            return revision_tag.get(params["taskDefinition"])
        if call.operation == "RunTask":
            return revision_tag.get(params["taskDefinition"])
        text = json.dumps(params)
        return next((t for t in owner_tag.values() if t in text or any(digest_of(r, t) in text for r in fake.images)), None)

    # Every change one release made happened while it held the lease, and never between two
    # changes of the other one.
    changes = [tag_of(c) for c in fake.calls if c.operation in MUTATING | {"DeleteItem"}]
    assert None not in changes, changes
    runs = [t for i, t in enumerate(changes) if i == 0 or t != changes[i - 1]]
    assert len(runs) == 2, changes
    assert changes[-1] == runs[-1] and changes.count(runs[0]) == len(changes) - changes.count(runs[1])
    assert len(fake.calls_of("UpdateService")) == 4
    assert_lease_free(fake)


# ---- migration -------------------------------------------------------------------------------------
def assert_no_service_touched(fake: FakeAws) -> None:
    assert not fake.calls_of("UpdateService")
    registered = [c.params["family"] for c in fake.calls_of("RegisterTaskDefinition")]
    assert set(registered) <= {MIGRATE_FAMILY}
    untouched_services(fake)


def test_migration_exit_1_fails_and_touches_no_service(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.migration = MigrationPlan(exit_code=1)
    result = run(sfn, machine, {"imageTag": TAG, "services": ["api", "admin"]})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    task_id = run_task_arn(fake).rsplit("/", 1)[-1]
    assert "exited with code 1" in result.cause
    assert f"migrate/migrate/{task_id}" in result.cause and "/ecs/cashsouk-migrate" in result.cause
    assert "Essential container in task exited" in result.cause
    assert_no_service_touched(fake)
    assert PARAMETER not in fake.parameters
    assert_lease_free(fake)


def test_migration_that_never_started_fails_with_the_stop_reason(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.migration = MigrationPlan(
        exit_code=None,
        duration=20,
        stop_code="TaskFailedToStart",
        stopped_reason="CannotPullContainerError: pull image manifest has been retried 5 time(s)",
    )
    result = run(sfn, machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    assert "never started" in result.cause and "CannotPullContainerError" in result.cause
    assert_no_service_touched(fake)
    assert_lease_free(fake)


def test_migration_stopped_without_exit_code_is_a_failure_even_if_ecs_reports_success(
    sfn: Interpreter, machine: str, fake: FakeAws
) -> None:
    fake.migration = MigrationPlan(exit_code=None, stop_code="UserInitiated", stopped_reason="Task stopped by a person")
    result = run(sfn, machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    assert "without an exit code" in result.cause and "Task stopped by a person" in result.cause
    assert "MigrationExitCode" in result.states_entered
    assert_no_service_touched(fake)
    assert_lease_free(fake)


def test_migration_timeout(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.migration = MigrationPlan(never_stops=True)
    result = run(sfn, machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationTimedOut")
    assert "900 s" in result.cause and "/ecs/cashsouk-migrate" in result.cause
    assert_no_service_touched(fake)
    assert_lease_free(fake)


# ---- deployments -------------------------------------------------------------------------------------
def test_rollout_failed_and_rolled_back_is_a_deployment_failure(sfn: Interpreter, rollout: Rollout, fake: FakeAws) -> None:
    fake.rollouts[BY_KEY["admin"].service] = RolloutPlan(outcome="FAILED", rollout_seconds=90, reason="tasks failed to start")
    result = run(sfn, rollout.machine, {"imageTag": TAG, "services": ["api", "admin", "landing"], "migrate": False})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    assert BY_KEY["admin"].service in result.cause and "FAILED" in result.cause
    assert "tasks failed to start" in result.cause and "rolled the service back" in result.cause
    # The first service stays deployed, the one after the failure is never touched.
    assert [c.params["service"] for c in fake.calls_of("UpdateService")] == [BY_KEY["api"].service, BY_KEY["admin"].service]
    untouched_services(fake, except_=("api", "admin"))
    assert PARAMETER not in fake.parameters
    assert_lease_released(fake, result)


def test_a_deployment_that_disappears_is_a_deployment_failure(sfn: Interpreter, rollout: Rollout, fake: FakeAws) -> None:
    fake.rollouts[BY_KEY["api"].service] = RolloutPlan(outcome="GONE", rollout_seconds=30)
    result = run(sfn, rollout.machine, {"imageTag": TAG, "migrate": False})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    assert "no longer listed" in result.cause
    # Not necessarily a rollback: the cause sends the reader to the service events, it does not
    # claim the circuit breaker restored the previous task definition.
    assert "rolled the service back to its previous task definition" not in result.cause
    assert "another deployment replaced it" in result.cause
    assert_lease_released(fake, result)


def test_a_rollout_slower_than_the_timeout_is_a_deployment_failure(sfn: Interpreter, rollout: Rollout, fake: FakeAws) -> None:
    fake.rollouts[BY_KEY["api"].service] = RolloutPlan(rollout_seconds=3 * 3600)
    result = run(sfn, rollout.machine, {"imageTag": TAG, "migrate": False})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    assert "did not finish within 1800 s" in result.cause and BY_KEY["api"].service in result.cause
    # Bounded: one poll every 10 s for 30 minutes (after the pre-flight check and the read of the
    # service's current task definition).
    assert_polls(rollout, result, fake, rollout_seconds=1800)
    # The last poll is at the rollout timeout, not before.
    update = fake.calls_of("UpdateService")[0].at
    assert fake.calls_of("DescribeServices")[-1].at - update == pytest.approx(1800, abs=1)
    assert_lease_released(fake, result)


def test_the_wait_loop_poll_budget_is_per_service(sfn: Interpreter, wait_loop_definition: dict[str, Any], fake: FakeAws) -> None:
    # The poll counter starts again at UpdateService: two rollouts whose polls together exceed one
    # rollout's budget (150 + 31 > 180) both succeed. ("retry" mode's budget is its Retrier's,
    # which starts again each time WaitForRollout is entered.)
    fake.rollouts[BY_KEY["api"].service] = RolloutPlan(rollout_seconds=1500)
    fake.rollouts[BY_KEY["admin"].service] = RolloutPlan(rollout_seconds=310)
    result = run(
        sfn, sfn.machine(wait_loop_definition, "release-wait-loop"), {"imageTag": TAG, "services": ["api", "admin"], "migrate": False}
    )
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert [s["rolloutState"] for s in result.output["services"]] == ["COMPLETED"] * 2
    assert result.states_entered.count("PollDelay") == 150 + 31
    assert_lease_released(fake, result)


def test_services_without_circuit_breaker_rollback_stop_the_release_before_anything_changes(
    sfn: Interpreter, machine: str, fake: FakeAws
) -> None:
    fake.services[BY_KEY["admin"].service]["deploymentConfiguration"]["deploymentCircuitBreaker"]["rollback"] = False
    result = run(sfn, machine, {"imageTag": TAG, "services": ["api", "admin"]})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    assert "nothing was changed" in result.cause and BY_KEY["admin"].service in result.cause
    assert not MUTATING & set(fake.operations()) and not fake.calls_of("PutItem")


# ---- the lease cleanup machine (EventBridge starts it when an execution ends badly) --------------------
def ended(execution_arn: str, status: str = "ABORTED") -> dict[str, Any]:
    return {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "detail": {"executionArn": execution_arn, "status": status},
    }


def test_cleanup_frees_the_lease_of_an_aborted_execution(sfn: Interpreter, cleanup_definition: dict[str, Any], fake: FakeAws) -> None:
    cleanup = sfn.machine(cleanup_definition, "cleanup")
    hold_lease(fake, owner=OTHER_EXECUTION)
    result = sfn.run(cleanup, ended(OTHER_EXECUTION))
    assert result.status == "SUCCEEDED" and result.output["released"] is True
    assert_lease_free(fake)


def test_cleanup_leaves_a_lease_another_execution_owns(sfn: Interpreter, cleanup_definition: dict[str, Any], fake: FakeAws) -> None:
    cleanup = sfn.machine(cleanup_definition, "cleanup")
    hold_lease(fake, owner=OTHER_EXECUTION)
    result = sfn.run(cleanup, ended(OTHER_EXECUTION + "-not-me", "TIMED_OUT"))
    assert result.status == "SUCCEEDED"
    assert fake.lease_items["release"]["Owner"]["S"] == OTHER_EXECUTION


def test_cleanup_retries_transient_dynamodb_errors(sfn: Interpreter, cleanup_definition: dict[str, Any], fake: FakeAws) -> None:
    cleanup = sfn.machine(cleanup_definition, "cleanup")
    hold_lease(fake, owner=OTHER_EXECUTION)
    fake.faults["DeleteItem"] = [FakeError("InternalServerError", "Internal server error", 500)]
    result = sfn.run(cleanup, ended(OTHER_EXECUTION, "TIMED_OUT"))
    assert result.status == "SUCCEEDED" and result.output["released"] is True
    assert_lease_free(fake)
