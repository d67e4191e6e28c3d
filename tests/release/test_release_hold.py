"""The hold (`release hold`), executed: a held environment refuses a release before anything is
taken or changed, naming who and why; without the hold the release goes on as before."""

from __future__ import annotations

import pytest

from emulation.driver import Interpreter
from emulation.fakes import FakeAws
from emulation.world import build_world
from release import contract
from tests.release.test_release_machine import MUTATING, TAG, assert_lease_free, lease_puts, record


@pytest.fixture
def fake(sfn: Interpreter) -> FakeAws:
    return build_world(sfn.reset())


def test_a_held_environment_refuses_the_release_naming_who_and_why(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.lease_items[contract.HOLD_ID] = {
        "LeaseId": {"S": contract.HOLD_ID},
        "Reason": {"S": "INC-42: database failover in progress"},
        "HeldBy": {"S": "arn:aws:sts::123456789012:assumed-role/oncall/alice"},
        "HeldAt": {"S": "2026-12-03T02:00:00Z"},
    }
    result = sfn.run(machine, {"imageTag": TAG})
    assert (result.status, result.error) == ("FAILED", contract.RELEASE_HELD)
    assert "held by arn:aws:sts::123456789012:assumed-role/oncall/alice since 2026-12-03T02:00:00Z" in result.cause
    assert "INC-42: database failover in progress" in result.cause
    # Nothing taken, nothing changed, no image even looked up; the hold stays.
    assert not lease_puts(fake) and not fake.calls_of("DescribeImages")
    assert not MUTATING & set(fake.operations())
    assert_lease_free(fake)
    assert contract.HOLD_ID in fake.lease_items
    rec = record(fake)
    assert (rec["status"], rec["error"], rec["phase"]) == ("FAILED", contract.RELEASE_HELD, "validate")
    assert rec["leaseReleased"] is True


def test_the_hold_is_read_consistently_and_an_empty_table_lets_the_release_through(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    result = sfn.run(machine, {"imageTag": TAG})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    (read,) = [c for c in fake.calls_of("GetItem") if c.params["Key"] == {"LeaseId": {"S": contract.HOLD_ID}}]
    assert read.params["ConsistentRead"] is True
