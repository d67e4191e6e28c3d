"""Release -> status-change event -> the synthesized rules -> the cleanup machine, end to end in the
strict emulator (emulation/strict.py, EventChain): the rule's pattern decides, its target role is
authorized with the KMS calls Step Functions makes for it, a refused delivery is retried per the
target's retry policy and lands in the dead-letter queue."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from moto.events.models import EventPattern

from emulation.driver import Execution, Interpreter
from emulation.fakes import FakeAws, MigrationPlan
from emulation.strict import EventChain, Strict
from emulation.world import build_world
from release import contract

TAG = "abc1234"
ENDED_RULE = "cashsouk-example-release-ended"
FAILED_RULE = "cashsouk-example-release-failed"


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
    # The failure topic was told, in the rule's own words.
    told = deliveries[FAILED_RULE]
    assert told.error is None and "ended ABORTED" in told.message and stopped.arn in told.message
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
    assert [d.rule for d in deliveries] == [ENDED_RULE]
    cleaned = sfn.wait(deliveries[0].started or "")
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
