"""Release -> status-change event -> the synthesized rules -> the cleanup machine, end to end in the
strict emulator (emulation/strict.py, EventChain): the rule's pattern decides, its target role is
authorized with the KMS calls Step Functions makes for it, a refused delivery is retried per the
target's retry policy and lands in the dead-letter queue."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template
from moto.events.models import EventPattern

from emulation.driver import Execution, Interpreter
from emulation.fakes import FakeAws, MigrationPlan
from emulation.strict import EventChain, Strict
from emulation.world import build_world
from release import contract
from tests.release.conftest import MACHINE, synthesized_machine

TAG = "abc1234"
ENDED_RULE = "cashsouk-example-release-ended"
FAILED_RULE = "cashsouk-example-release-failed"
SUCCEEDED_RULE = "cashsouk-example-release-succeeded"


@pytest.fixture
def fake(sfn: Interpreter) -> FakeAws:
    return build_world(sfn.reset())


def stopped_mid_migration(sfn: Interpreter, machine: str, fake: FakeAws) -> Execution:
    fake.migration = MigrationPlan(never_stops=True)
    execution = sfn.start(machine, {"imageTag": TAG})
    deadline = time.monotonic() + 60
    while not fake.tasks and time.monotonic() < deadline:
        time.sleep(0.01)
    sfn.sfn.stop_execution(executionArn=execution)
    stopped = sfn.wait(execution)
    assert stopped.status == "ABORTED"
    return stopped


def test_a_release_stopped_mid_migration_is_completed_by_the_cleanup_the_rule_starts(
    sfn: Interpreter, machine: str, fake: FakeAws, event_chain: EventChain
) -> None:
    stopped = stopped_mid_migration(sfn, machine, fake)
    deliveries = {d.rule: d for d in event_chain.deliver(stopped)}
    assert set(deliveries) == {ENDED_RULE, FAILED_RULE}
    ended = deliveries[ENDED_RULE]
    assert ended.attempts == 1 and ended.error is None and ended.started
    cleaned = sfn.wait(ended.started)
    assert cleaned.status == "SUCCEEDED", (cleaned.error, cleaned.cause)
    (task_arn,) = fake.tasks
    assert fake.tasks[task_arn]["stopped"] and cleaned.output["stoppedTask"] == task_arn
    assert contract.LEASE_ID not in fake.lease_items
    (summary,) = fake.records()
    assert summary["status"] == "ABORTED" and summary["leaseReleased"] is True
    migration = summary["migration"]
    assert (migration["outcome"], migration["taskArn"], migration["stoppedByRelease"]) == ("stopped", task_arn, True)
    assert migration["schemaMayHaveChanged"] is True
    # The failure topic was told, as a chat notification (tests/test_release_notifications.py).
    told = deliveries[FAILED_RULE]
    text = json.dumps(told.message)
    assert told.error is None and "ended ABORTED" in text and stopped.arn in text and told.message["source"] == "custom"
    assert fake.dead_letters == [] and fake.refusals == []


def test_without_the_data_key_the_cleanup_never_starts_and_the_event_is_dead_lettered(
    sfn: Interpreter, machine: str, fake: FakeAws, event_chain: EventChain, revoke: Callable[[str, str], None]
) -> None:
    strict = event_chain.strict
    stopped = stopped_mid_migration(sfn, machine, fake)
    (rule,) = [r for r in strict.account.rules if r.name == ENDED_RULE]
    (target,) = rule.targets
    assert target.role_arn is not None
    revoke(target.role_arn, "StartCleanupWithTheDataKey")
    (ended,) = [d for d in event_chain.deliver(stopped) if d.rule == ENDED_RULE]
    assert ended.started is None and ended.dead_lettered
    assert ended.attempts == 1 + target.max_attempts and "KmsAccessDeniedException" in (ended.error or "")
    (letter,) = fake.dead_letters
    assert letter["rule"] == ENDED_RULE and letter["event"]["detail"]["executionArn"] == stopped.arn
    # What the issue feared: the lease and the record stay as the aborted release left them.
    assert fake.lease_items[contract.LEASE_ID]["Owner"]["S"] == stopped.arn
    assert fake.records()[0]["status"] == "RUNNING"


def test_a_release_that_succeeded_reaches_only_the_cleanup(sfn: Interpreter, machine: str, fake: FakeAws, event_chain: EventChain) -> None:
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED"
    deliveries = event_chain.deliver(result)
    assert sorted(d.rule for d in deliveries) == [ENDED_RULE, SUCCEEDED_RULE]  # the cleanup, and the success notification
    (ended,) = [d for d in deliveries if d.rule == ENDED_RULE]
    (told,) = [d for d in deliveries if d.rule == SUCCEEDED_RULE]
    assert told.error is None and "succeeded" in told.message["content"]["title"]
    cleaned = sfn.wait(ended.started or "")
    assert cleaned.status == "SUCCEEDED" and cleaned.output["released"] is False  # the release freed its own lease
    assert fake.records()[0]["status"] == "SUCCEEDED"


def test_the_rule_matches_only_its_own_machine(strict: Strict) -> None:
    (rule,) = [r for r in strict.account.rules if r.name == ENDED_RULE]
    event: dict[str, Any] = {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "detail": {"status": "ABORTED", "stateMachineArn": strict.account.machine("cashsouk-example-release").arn},
    }
    assert EventPattern(None, rule.pattern).matches_event(event)
    other = {**event, "detail": {**event["detail"], "stateMachineArn": event["detail"]["stateMachineArn"] + "-other"}}
    assert not EventPattern(None, rule.pattern).matches_event(other)


def test_a_release_past_its_machine_timeout_ends_timed_out_and_the_cleanup_completes_it(
    sfn: Interpreter, strict: Strict, definition: dict[str, Any], fake: FakeAws, event_chain: EventChain
) -> None:
    # The synthesized definition with its own TimeoutSeconds lowered, so the virtual clock reaches it
    # while the migration (which never stops) still runs inside its 15-minute bound.
    short = {**definition, "TimeoutSeconds": 300}
    machine = synthesized_machine(sfn, strict, short, "release-short-timeout", MACHINE)
    fake.migration = MigrationPlan(never_stops=True)
    timed_out = sfn.run(machine, {"imageTag": TAG})
    assert timed_out.status == "TIMED_OUT"
    (ended,) = [d for d in event_chain.deliver(timed_out) if d.rule == ENDED_RULE]
    cleaned = sfn.wait(ended.started or "")
    assert cleaned.status == "SUCCEEDED", (cleaned.error, cleaned.cause)
    (task_arn,) = fake.tasks
    assert fake.tasks[task_arn]["stopped"] and contract.LEASE_ID not in fake.lease_items
    assert fake.records()[0]["status"] == "TIMED_OUT"


# ---- the record completed from what really happened ---------------------------------------------------
STARTED_MS = 1767225600000  # 2026-01-01T00:00:00.000Z
NAME = "interrupted-release"
EXECUTION = f"arn:aws:states:ap-southeast-5:123456789012:execution:cashsouk-example-release:{NAME}"


def put_record(fake: FakeAws, summary: dict[str, Any]) -> None:
    key = "2026-01-01T00:00:00.000Z#" + NAME
    fake.history[key] = {
        "Pk": {"S": "release"},
        "Sk": {"S": key},
        "Status": {"S": "RUNNING"},
        "Summary": {"S": json.dumps({"execution": EXECUTION, "status": "RUNNING", "imageTag": TAG, "startedAt": key[:24], **summary})},
    }


def ended_event(status: str = "ABORTED") -> dict[str, Any]:
    return {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "detail": {"executionArn": EXECUTION, "name": NAME, "status": status, "startDate": STARTED_MS, "stopDate": STARTED_MS + 60000},
    }


def test_a_service_whose_update_ran_is_recorded_interrupted_with_its_deployment(sfn: Interpreter, cleanup: str, fake: FakeAws) -> None:
    put_record(
        fake,
        {
            "migration": {"outcome": "skipped"},
            "services": {
                "api": {"outcome": "deployed", "deploymentId": "ecs-svc/1", "taskDefinition": "api:2", "reason": None},
                "admin": {"outcome": "untouched", "deploymentId": "ecs-svc/2", "taskDefinition": None, "reason": None},
                "investor": {"outcome": "untouched", "taskDefinition": None, "reason": None},
            },
        },
    )
    result = sfn.run(cleanup, ended_event())
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    # No task ARN in the record: the lookup was ListTasks by startedBy alone.
    (lookup,) = fake.calls_of("ListTasks")
    assert lookup.params == {"cluster": "default", "startedBy": NAME}
    services = fake.records()[0]["services"]
    assert services["api"]["outcome"] == "deployed" and services["investor"]["outcome"] == "untouched"
    assert services["admin"]["outcome"] == "interrupted" and services["admin"]["deploymentId"] == "ecs-svc/2"
    assert "ecs-svc/2" in services["admin"]["reason"] and "ABORTED" in services["admin"]["reason"]


def test_a_migration_that_ended_on_its_own_is_read_from_its_task(sfn: Interpreter, cleanup: str, fake: FakeAws) -> None:
    fake.migration = MigrationPlan(exit_code=0, duration=0)
    network = {"awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "DISABLED"}}
    task_arn = fake.handle("ecs", "RunTask", {"cluster": "default", "taskDefinition": "cashsouk-migrate", "networkConfiguration": network})[
        "tasks"
    ][0]["taskArn"]
    put_record(fake, {"migration": {"outcome": None, "taskArn": task_arn}, "services": {}})
    result = sfn.run(cleanup, ended_event())
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert not fake.calls_of("ListTasks") and not fake.calls_of("StopTask")
    migration = fake.records()[0]["migration"]
    assert (migration["outcome"], migration["exitCode"], migration["schemaMayHaveChanged"]) == ("succeeded", 0, True)
    assert migration["stoppedByRelease"] is False and "ended on its own" in migration["reason"]


def test_a_failed_lookup_is_never_read_as_no_task(sfn: Interpreter, cleanup: str, fake: FakeAws) -> None:
    put_record(fake, {"migration": {"outcome": None}, "services": {}})
    fake.lease_items[contract.LEASE_ID] = {"LeaseId": {"S": contract.LEASE_ID}, "Owner": {"S": EXECUTION}}
    fake.fail("ListTasks", "AccessDeniedException", times=1)
    result = sfn.run(cleanup, ended_event())
    assert (result.status, result.error) == ("FAILED", "CleanupIncomplete")
    assert "ListTasks failed: Ecs.AccessDeniedException" in result.cause
    assert fake.lease_items[contract.LEASE_ID]["Owner"]["S"] == EXECUTION  # kept: a migration may still run
    assert "AccessDeniedException" in fake.records()[0]["cleanupError"]


# ---- the safety net in the template -------------------------------------------------------------------
def test_the_dead_letter_queue_and_cleanup_failures_alarm_to_the_failure_topic(release_stack_template: dict[str, Any]) -> None:
    template = Template.from_json(release_stack_template)
    topic = {"Ref": Match.string_like_regexp("ReleaseFailureTopic")}
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"MetricName": "ApproximateNumberOfMessagesVisible", "Namespace": "AWS/SQS", "Threshold": 1, "AlarmActions": [topic]},
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Metrics": Match.array_with([Match.object_like({"Expression": "failed + timedOut"})]),
            "AlarmActions": [topic],
        },
    )
    policies = template.find_resources("AWS::SNS::TopicPolicy")
    (policy,) = policies.values()
    sids = [s.get("Sid") for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    assert "SafetyNetAlarmsPublish" in sids
