"""How the release fails, executed (emulation/): transient AWS errors at every call, the
migration's bound, exit codes and ECS's reasons, partial deployments, the cleanup of what an
ended execution left behind."""

from __future__ import annotations

import importlib
import json
import time
from typing import Any

import pytest

from emulation.driver import Interpreter
from emulation.fakes import FakeAws, FakeError, MigrationPlan, RolloutPlan
from emulation.interpreter import CLOCK
from emulation.world import APPS, BY_KEY, MIGRATE_FAMILY, build_world
from release import contract, limits
from tests.release.test_release_machine import MUTATING, TAG, assert_lease_free, assert_lease_released, ended, record, untouched_services

# Every AWS call of a release with migration (and the one more a failure needs), the table it
# writes where it matters, and the error code a throttle or a 5xx has there.
THROTTLED_CALLS = [
    ("PutItem", "ThrottlingException", 400),  # the first record
    ("DescribeServices", "ThrottlingException", 400),
    ("DescribeImages", "ThrottlingException", 400),
    ("UpdateItem", "ProvisionedThroughputExceededException", 400),
    ("DescribeTaskDefinition", "ThrottlingException", 400),
    ("RegisterTaskDefinition", "ServerException", 500),
    ("RunTask", "ThrottlingException", 400),
    ("DescribeTasks", "ThrottlingException", 400),
    ("UpdateService", "ThrottlingException", 400),
    ("PutParameter", "ThrottlingException", 400),
    ("DeleteItem", "InternalServerError", 500),
]


@pytest.fixture
def fake(sfn: Interpreter) -> FakeAws:
    return build_world(sfn.reset())


def test_a_throttle_or_5xx_at_any_call_ends_in_success(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    # Every call at once, in one release: each Task state retries its own API, so the faults are
    # independent, and each one's three failures are seen and retried past.
    for operation, code, status in THROTTLED_CALLS:
        fake.fail(operation, code, times=3, status=status)
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    for operation, code, _ in THROTTLED_CALLS:
        assert [c.error for c in fake.calls_of(operation)][:3] == [code] * 3, operation
    assert len(fake.calls_of("RunTask")) >= 1 and len(fake.tasks) == 1  # a retried RunTask started one task
    assert len(fake.calls_of("UpdateService")) >= 1
    assert_lease_free(fake)


def test_a_throttled_run_task_whose_first_call_started_the_task_does_not_start_another(
    sfn: Interpreter, machine: str, fake: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first RunTask reached ECS (the task started) but its answer was lost: the retry with
    # the same clientToken gets the same task back.
    original = fake._ecs_RunTask

    def start_then_fail(**params: Any) -> dict[str, Any]:
        answer = original(**params)
        if len(fake.calls_of("RunTask")) == 1:
            raise FakeError("ServerException", "Service unavailable", 500)
        return answer

    monkeypatch.setattr(fake, "_ecs_RunTask", start_then_fail)
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert len(fake.calls_of("RunTask")) == 2 and len(fake.tasks) == 1


@pytest.mark.parametrize(
    ("operation", "expected_prefix"),
    [("UpdateService", "Ecs."), ("DescribeTasks", "Ecs."), ("PutParameter", "Ssm."), ("UpdateItem", "DynamoDB.")],
)
def test_exhausted_retries_keep_the_error_name(sfn: Interpreter, machine: str, fake: FakeAws, operation: str, expected_prefix: str) -> None:
    code = "ProvisionedThroughputExceededException" if operation == "UpdateItem" else "ThrottlingException"
    fake.fail(operation, code, times=6)
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "FAILED"
    assert (result.error or "").startswith(expected_prefix) and result.error not in contract.ERROR_NAMES, result.error
    # The call and 5 retries (after a lost DescribeTasks the release stops the task and describes
    # it once more to see it STOPPED).
    assert len(fake.calls_of(operation)) == (7 if operation == "DescribeTasks" else 6)
    assert [c.error for c in fake.calls_of(operation)][:6] == [code] * 6
    assert record(fake)["error"] == result.error and record(fake)["status"] == "FAILED"
    if operation == "DescribeTasks":
        # The release lost sight of the task: it stops it before failing.
        assert fake.calls_of("StopTask") and "the release stopped the migrate task" in result.cause
    assert_lease_free(fake)


# ---- the migration ----------------------------------------------------------------------------------
def assert_no_service_touched(fake: FakeAws) -> None:
    assert not fake.calls_of("UpdateService")
    assert {c.params["family"] for c in fake.calls_of("RegisterTaskDefinition")} <= {MIGRATE_FAMILY}
    untouched_services(fake)


def test_migration_exit_1_fails_and_touches_no_service(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.migration = MigrationPlan(exit_code=1)
    result = sfn.run(machine, {"imageTag": TAG, "services": ["api", "admin"]})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    (task_arn,) = fake.tasks
    assert "exited with code 1" in result.cause and f"migrate/migrate/{task_arn.rsplit('/', 1)[-1]}" in result.cause
    assert "/ecs/cashsouk-migrate" in result.cause and "Essential container in task exited" in result.cause
    assert "task definition " + fake.latest(MIGRATE_FAMILY)["taskDefinitionArn"] in result.cause and task_arn in result.cause
    assert_no_service_touched(fake)
    migration = record(fake)["migration"]
    assert (migration["outcome"], migration["exitCode"], migration["taskArn"]) == ("failed", 1, task_arn)
    assert record(fake)["services"] == {"api": _untouched(), "admin": _untouched()}
    assert_lease_free(fake)


def _untouched() -> dict[str, Any]:
    return {"outcome": "untouched", "taskDefinition": None, "deploymentId": None, "reason": None}


def test_exit_137_carries_ecs_out_of_memory_reason(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.migration = MigrationPlan(exit_code=137, container_reason="OutOfMemoryError: Container killed due to memory usage")
    result = sfn.run(machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    assert "exited with code 137" in result.cause and "OutOfMemoryError: Container killed due to memory usage" in result.cause
    migration = record(fake)["migration"]
    assert migration["exitCode"] == 137 and "OutOfMemoryError" in migration["reason"]


def test_lock_lost_exit_is_named_in_the_cause(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.migration = MigrationPlan(exit_code=83)
    result = sfn.run(machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    assert "exited with code 83 (lock lost while the command ran: the command was stopped)" in result.cause
    assert_no_service_touched(fake)


def test_runner_deadline_exit_is_a_timeout(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    """Exit 84: the runner's MIGRATE_DEADLINE_SECONDS (below the release's bound) stopped the command."""
    fake.migration = MigrationPlan(exit_code=84)
    result = sfn.run(machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationTimedOut")
    assert "exited with code 84 (the runner's deadline passed: the command was stopped)" in result.cause
    migration = record(fake)["migration"]
    assert (migration["outcome"], migration["exitCode"]) == ("timed-out", 84)
    assert not fake.calls_of("StopTask")  # it had already stopped: nothing left to stop
    assert_no_service_touched(fake)
    assert_lease_free(fake)


def test_run_task_failures_are_a_migration_failure_naming_the_reason(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.migration = MigrationPlan(failures=[{"arn": "arn:aws:ecs:x", "reason": "RESOURCE:MEMORY", "detail": "no capacity"}])
    result = sfn.run(machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    # Every MigrationFailed cause ends with the restore command (test_restore_point.py).
    assert result.cause.startswith("ECS did not start the migrate task: RESOURCE:MEMORY (no capacity); to restore the database")
    assert record(fake)["migration"]["outcome"] == "failed" and record(fake)["migration"]["reason"] == "RESOURCE:MEMORY (no capacity)"
    assert_no_service_touched(fake)
    assert_lease_free(fake)


def test_migration_that_never_started_fails_with_the_stop_reason(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.migration = MigrationPlan(
        exit_code=None, duration=20, stop_code="TaskFailedToStart", stopped_reason="CannotPullContainerError: pull failed"
    )
    result = sfn.run(machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    assert "without an exit code" in result.cause and "CannotPullContainerError" in result.cause and "TaskFailedToStart" in result.cause
    assert_no_service_touched(fake)


def test_migration_timeout_stops_the_task_and_says_so(sfn: Interpreter, short_bounds_machine: str, fake: FakeAws) -> None:
    fake.migration = MigrationPlan(never_stops=True)
    result = sfn.run(short_bounds_machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationTimedOut")
    (task_arn,) = fake.tasks
    (stop,) = fake.calls_of("StopTask")
    assert stop.params["task"] == task_arn and stop.at - fake.calls_of("RunTask")[0].at == pytest.approx(120, abs=15)
    assert fake.tasks[task_arn]["stopped"]
    assert "did not finish within 120 s" in result.cause and "the release stopped the migrate task " + task_arn in result.cause
    migration = record(fake)["migration"]
    assert (migration["outcome"], migration["stoppedByRelease"]) == ("timed-out", True)
    assert_no_service_touched(fake)
    assert_lease_free(fake)


def test_a_migration_the_release_could_not_stop_is_not_called_stopped(sfn: Interpreter, short_bounds_machine: str, fake: FakeAws) -> None:
    fake.migration = MigrationPlan(never_stops=True)
    fake.fail("StopTask", "ThrottlingException", times=6)
    result = sfn.run(short_bounds_machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationTimedOut")
    assert "the release stopped" not in result.cause and "may still be running" in result.cause
    assert record(fake)["migration"]["stoppedByRelease"] is False


# ---- deployments ------------------------------------------------------------------------------------
def test_a_partial_deploy_says_and_records_what_it_deployed(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    # The three roll out concurrently: admin's failure stops no rollout already started
    # (test_release_parallel.py has the services a failure keeps from starting).
    api, admin, landing = BY_KEY["api"], BY_KEY["admin"], BY_KEY["landing"]
    fake.rollouts[admin.service] = RolloutPlan(outcome="FAILED", rollout_seconds=90, reason="tasks failed to start")
    result = sfn.run(machine, {"imageTag": TAG, "services": ["api", "admin", "landing"], "migrate": False})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    api_revision = fake.latest(api.family)["taskDefinitionArn"]
    assert result.cause.startswith(f"service {admin.service} (admin) was not deployed: rollout FAILED")
    assert "tasks failed to start" in result.cause and "rolled the service back" in result.cause
    landing_revision = fake.latest(landing.family)["taskDefinitionArn"]
    assert f"already deployed: api ({api_revision}), landing ({landing_revision}); not touched: none" in result.cause
    assert sorted(c.params["service"] for c in fake.calls_of("UpdateService")) == sorted([api.service, admin.service, landing.service])
    services = record(fake)["services"]
    assert services["api"] == {
        "outcome": "deployed",
        "taskDefinition": api_revision,
        "deploymentId": services["api"]["deploymentId"],
        "reason": None,
    }
    assert services["api"]["deploymentId"].startswith("ecs-svc/")
    assert services["admin"]["outcome"] == "failed" and "tasks failed to start" in services["admin"]["reason"]
    assert services["admin"]["taskDefinition"] == fake.latest(admin.family)["taskDefinitionArn"]
    assert services["landing"]["outcome"] == "deployed"
    assert (record(fake)["phase"], record(fake)["status"]) == ("deploy", "FAILED")
    untouched_services(fake, except_=("api", "admin", "landing"))
    assert_lease_released(fake, result)


def test_a_deployment_that_disappears_is_a_deployment_failure(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.rollouts[BY_KEY["api"].service] = RolloutPlan(outcome="GONE", rollout_seconds=30)
    result = sfn.run(machine, {"imageTag": TAG, "migrate": False})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    assert "no longer listed" in result.cause and "another deployment replaced it" in result.cause
    assert "rolled the service back to its previous task definition" not in result.cause


def test_a_rollout_slower_than_the_timeout_is_a_deployment_failure(sfn: Interpreter, short_bounds_machine: str, fake: FakeAws) -> None:
    fake.rollouts[BY_KEY["api"].service] = RolloutPlan(rollout_seconds=3 * 3600)
    result = sfn.run(short_bounds_machine, {"imageTag": TAG, "migrate": False})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    assert "did not finish within 120 s" in result.cause
    # One poll every 10 s, the last at the rollout bound; three states per poll.
    polls = fake.calls_of("DescribeServices")[2:]
    assert len(polls) == 12 and polls[-1].at - fake.calls_of("UpdateService")[0].at == pytest.approx(120, abs=1)
    entered = result.states_entered
    assert [entered.count(s) for s in ("RolloutPollDelay", "WaitForRollout", "RolloutProgress")] == [12] * 3


def test_a_service_deleted_before_its_turn_fails_the_release_naming_it(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    api, admin = BY_KEY["api"], BY_KEY["admin"]

    def delete_admin_after_the_pre_flight_check(f: FakeAws, attempts: int) -> None:
        f.services.pop(admin.service, None)

    fake.on_put_item = delete_admin_after_the_pre_flight_check
    result = sfn.run(machine, {"imageTag": TAG, "services": ["api", "admin"], "migrate": False})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    assert f"service {admin.service} (admin) was not deployed: not found" in result.cause
    # api and admin start together: admin's failure closes the deploy gate, so api rolls out only
    # if its lease check came first (either way the cause says which).
    updated = [c.params["service"] for c in fake.calls_of("UpdateService")]
    assert updated in ([], [api.service])
    assert ("already deployed: api" if updated else "not touched: api") in result.cause


# ---- what an aborted or timed-out execution leaves behind --------------------------------------------
def test_cleanup_stops_a_migration_left_running_frees_the_lease_and_completes_the_record(
    sfn: Interpreter, machine: str, cleanup: str, fake: FakeAws
) -> None:
    # An execution that ended while its migration ran (ABORTED by StopExecution, or TIMED_OUT):
    # here a release whose migration never stops, stopped from outside mid-run.
    fake.migration = MigrationPlan(never_stops=True)
    execution = sfn.start(machine, {"imageTag": TAG})
    deadline = time.monotonic() + 60
    # Stopped once the record names the task (RecordMigrationStarted); test_event_chain.py stops
    # one before that, when the cleanup falls back to ListTasks.
    while not (fake.tasks and fake.history and record(fake).get("migration", {}).get("taskArn")) and time.monotonic() < deadline:
        time.sleep(0.01)
    sfn.sfn.stop_execution(executionArn=execution)
    stopped = sfn.wait(execution)
    assert stopped.status == "ABORTED"
    (task_arn,) = fake.tasks
    assert record(fake)["status"] == "RUNNING" and not fake.tasks[task_arn]["stopped"]

    result = sfn.run(cleanup, ended(stopped, "ABORTED", fake))
    assert result.status == "SUCCEEDED" and result.output == {
        "execution": stopped.arn,
        "released": True,
        "stoppedTask": task_arn,
        "recordFound": True,
    }
    # Found by the task ARN the record holds (RecordMigrationStarted), so no ListTasks lookup.
    assert fake.tasks[task_arn]["stopped"] and not fake.calls_of("ListTasks")
    assert_lease_free(fake)
    completed = record(fake)
    assert completed["status"] == "ABORTED" and completed["endedAt"] and completed["leaseReleased"] is True
    assert completed["migration"]["stoppedByRelease"] is True and "ended ABORTED" in completed["migration"]["reason"]
    assert fake.history[next(iter(fake.history))]["Status"] == {"S": "ABORTED"}
    assert not MUTATING - {"StopTask", "RegisterTaskDefinition", "RunTask"} & set(fake.operations())
    assert len(APPS) == 5


# ---- AWS as it really behaves (issue 14) -------------------------------------------------------------
# "<Service>.SdkClientException": the SDK inside Step Functions lost the connection mid-request.
SDK_CLIENT_CALLS = ["DescribeServices", "DescribeImages", "RunTask", "DescribeTasks", "UpdateService", "PutParameter", "PutItem"]


aws_sdk_task: Any = importlib.import_module(
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk"
)


@pytest.fixture
def sdk_client_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Step Functions names the SDK's client-side failure "<Service>.SdkClientException"; botocore
    raises an unmodelled code as a plain ClientError, which the engine would name
    "<Service>.<Service>Exception". The fake's "SdkClientException" code gets AWS's name."""
    cls = aws_sdk_task.StateTaskServiceAwsSdk
    original = cls._normalise_exception_name

    def named(norm_service_name: str, ex: Exception) -> str:
        response = getattr(ex, "response", {})
        if response.get("Error", {}).get("Code") == "SdkClientException":
            return f"{norm_service_name}.SdkClientException"
        return str(original(norm_service_name, ex))

    monkeypatch.setattr(cls, "_normalise_exception_name", staticmethod(named))


@pytest.mark.usefixtures("sdk_client_names")
def test_a_connection_closed_mid_request_is_retried(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    # Every call at once, in one release (independent: each Task state retries its own API).
    for operation in SDK_CLIENT_CALLS:
        fake.fail(operation, "SdkClientException", times=2)
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    for operation in SDK_CLIENT_CALLS:
        assert [c.error for c in fake.calls_of(operation)][:2] == ["SdkClientException"] * 2, operation
    assert len(fake.tasks) == 1
    assert_lease_free(fake)


def test_a_task_ecs_no_longer_returns_is_a_failure_with_its_reason(
    sfn: Interpreter, machine: str, fake: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(tasks: list[str], cluster: str | None = None, **_: Any) -> dict[str, Any]:
        return {"tasks": [], "failures": [{"arn": arn, "reason": "MISSING"} for arn in tasks]}

    fake.migration = MigrationPlan(never_stops=True)
    monkeypatch.setattr(fake, "_ecs_DescribeTasks", missing)
    result = sfn.run(machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationFailed")
    assert "ECS no longer returns the migrate task (DescribeTasks: MISSING)" in result.cause
    # At the first poll, not after the 15-minute bound; nothing to stop.
    assert len(fake.calls_of("DescribeTasks")) == 1 and not fake.calls_of("StopTask")
    migration = record(fake)["migration"]
    assert (migration["outcome"], migration["reason"]) == ("failed", "DescribeTasks: MISSING")
    assert_no_service_touched(fake)
    assert_lease_free(fake)


def _stops_after(fake: FakeAws, seconds: float | None) -> Any:
    """StopTask as ECS does it: SIGTERM now, the task STOPPED only `seconds` later (never: None)."""

    def stop(task: str, cluster: str | None = None, reason: str = "", **_: Any) -> dict[str, Any]:
        entry = fake.tasks[task]
        entry["description"]["desiredStatus"] = "STOPPED"
        if seconds is not None:
            entry["plan"] = MigrationPlan(
                exit_code=143,
                duration=CLOCK.now() - entry["startedAt"] + seconds,
                stop_code="UserInitiated",
                stopped_reason=reason,
            )
        return {"task": fake._describe_task(task)}

    return stop


def test_the_lease_is_freed_only_once_the_stopped_migration_is_stopped(
    sfn: Interpreter, short_bounds_machine: str, fake: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.migration = MigrationPlan(never_stops=True)
    monkeypatch.setattr(fake, "_ecs_StopTask", _stops_after(fake, 25))
    result = sfn.run(short_bounds_machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationTimedOut")
    (task_arn,) = fake.tasks
    (stop,) = fake.calls_of("StopTask")
    after_stop = [c for c in fake.calls_of("DescribeTasks") if c.at > stop.at]
    assert len(after_stop) >= 5  # polled every 5 s until STOPPED (25 s)
    (delete,) = [c for c in fake.calls_of("DeleteItem") if c.params["TableName"].endswith("-lease")]
    assert delete.at >= stop.at + 25  # not before the task was STOPPED
    assert "the release stopped the migrate task " + task_arn + " (STOPPED, exit code 143)" in result.cause
    migration = record(fake)["migration"]
    assert (migration["stoppedByRelease"], migration["exitCode"], migration["outcome"]) == (True, 143, "timed-out")
    assert_lease_free(fake)


def test_a_migration_not_stopped_within_its_stop_timeout_keeps_the_lease(
    sfn: Interpreter, short_bounds_machine: str, fake: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.migration = MigrationPlan(never_stops=True)
    monkeypatch.setattr(fake, "_ecs_StopTask", _stops_after(fake, None))
    result = sfn.run(short_bounds_machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", "MigrationTimedOut")
    (stop,) = fake.calls_of("StopTask")
    # The stop timeout (ECS's default 30 s: the example sets none) + 30 s, polled every 5 s.
    assert len([c for c in fake.calls_of("DescribeTasks") if c.at > stop.at]) == limits.stop_polls(30) == 12
    assert "was RUNNING after 60 s (not STOPPED): it may still be running" in result.cause
    assert "the release stopped" not in result.cause
    assert fake.lease_items[contract.LEASE_ID]["Owner"]["S"] == result.arn  # kept: the cleanup or its expiry frees it
    assert not fake.calls_of("DeleteItem")
    summary = record(fake)
    assert summary["leaseReleased"] is False and summary["migration"]["stoppedByRelease"] is False


def test_a_task_that_ended_on_its_own_as_it_was_stopped_is_not_called_stopped_by_the_release(
    sfn: Interpreter, short_bounds_machine: str, fake: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.migration = MigrationPlan(never_stops=True)

    def ended_first(task: str, cluster: str | None = None, reason: str = "", **_: Any) -> dict[str, Any]:
        fake._stop(task, "EssentialContainerExited", "Essential container in task exited", 0, None)
        return {"task": fake._describe_task(task)}

    monkeypatch.setattr(fake, "_ecs_StopTask", ended_first)
    result = sfn.run(short_bounds_machine, {"imageTag": TAG})
    assert result.error == "MigrationTimedOut"
    assert "ended on its own before the stop took effect (STOPPED, exit code 0)" in result.cause
    migration = record(fake)["migration"]
    assert (migration["stoppedByRelease"], migration["exitCode"], migration["outcome"]) == (False, 0, "succeeded")
    assert_no_service_touched(fake)
    assert_lease_free(fake)


def test_services_with_100_verbose_events_each_are_checked_within_the_task_result_quota(
    sfn: Interpreter, machine: str, fake: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every service carries ECS's maximum of 100 events, each about 1 KiB: described together,
    # five would be about 0.5 MiB, past the 256 KiB task-result quota (States.DataLimitExceeded,
    # which no Catch handles, in a strict emulator and on AWS). One service per call stays under.
    original = fake._public_service

    def verbose(service: dict[str, Any]) -> dict[str, Any]:
        public = original(service)
        name = public.get("serviceName", "service")
        public["events"] = [
            {"id": f"{i:036d}", "createdAt": 1800000000.0 + i, "message": f"(service {name}) " + "x" * (900 - len(name))}
            for i in range(limits.SERVICE_EVENTS_MAX)
        ]
        return public

    monkeypatch.setattr(fake, "_public_service", verbose)
    for app in APPS:  # one rollout poll each is enough to see each result's size (the default is 12)
        fake.rollouts[app.service] = RolloutPlan(rollout_seconds=10)
    apps = [app.key for app in APPS]
    result = sfn.run(machine, {"imageTag": TAG, "services": apps, "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert all(len(c.params["services"]) == 1 for c in fake.calls_of("DescribeServices"))
    one = len(json.dumps(verbose(fake.services[APPS[0].service])))
    assert one * len(apps) > limits.TASK_RESULT_QUOTA_BYTES > 2 * one
