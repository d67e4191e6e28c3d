"""Step Functions' quotas in the strict emulator. The payload quota: a task result of 256 KiB or more is
States.DataLimitExceeded, which AWS calls "a terminal error that can't be caught by the States.ALL
error type". The history cap: 25,000 events. Each test inflates one response or one history."""

from __future__ import annotations

from typing import Any

import pytest

from emulation import interpreter
from emulation.driver import Interpreter
from emulation.fakes import FakeAws
from emulation.world import APPS, build_world

TAG = "abc1234"


def inflate_events(fake: FakeAws, per_event: int = 2800, count: int = 100) -> None:
    """ECS returns up to 100 events per service; verbose ones make one service's description ~270 KiB."""
    for app in APPS:
        fake.services[app.service]["events"] = [
            {"id": f"e{i}", "createdAt": 1700000000.0 + i, "message": f"(service {app.service}) " + "x" * per_event} for i in range(count)
        ]


def test_states_all_does_not_catch_a_result_over_the_quota(sfn: Interpreter) -> None:
    fake = build_world(sfn.reset())
    inflate_events(fake)
    definition: dict[str, Any] = {
        "QueryLanguage": "JSONata",
        "StartAt": "Describe",
        "States": {
            "Describe": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
                "Arguments": {"Cluster": "default", "Services": [APPS[0].service]},
                "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
    }
    result = sfn.run(sfn.machine(definition, "limits"), {})
    assert (result.status, result.error) == ("FAILED", "States.DataLimitExceeded")
    assert len(fake.calls_of("DescribeServices")) == 1  # not retried either


def test_a_small_description_passes(sfn: Interpreter) -> None:
    fake = build_world(sfn.reset())
    inflate_events(fake, per_event=100, count=100)
    definition: dict[str, Any] = {
        "QueryLanguage": "JSONata",
        "StartAt": "Describe",
        "States": {
            "Describe": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
                "Arguments": {"Cluster": "default", "Services": [APPS[0].service]},
                "Output": "{% $count($states.result.Services[0].Events) %}",
                "End": True,
            }
        },
    }
    result = sfn.run(sfn.machine(definition, "limits-small"), {})
    assert (result.status, result.output) == ("SUCCEEDED", 100)


def test_verbose_service_events_fail_the_release_with_the_uncatchable_error(sfn: Interpreter, machine: str) -> None:
    fake = build_world(sfn.reset())
    inflate_events(fake)
    result = sfn.run(machine, {"imageTag": TAG, "migrate": False})
    assert (result.status, result.error) == ("FAILED", "States.DataLimitExceeded"), (result.error, result.cause)
    # The definition's own failure path (States.ALL) never ran: no record says FAILED.
    assert all(r["status"] != "FAILED" for r in fake.records())


def test_an_execution_whose_history_passes_the_cap_fails(sfn: Interpreter, monkeypatch: pytest.MonkeyPatch) -> None:
    # AWS's cap is 25,000 events (interpreter.HISTORY_CAP); a small cap keeps the loop short.
    monkeypatch.setattr(interpreter, "HISTORY_CAP", 200)
    definition: dict[str, Any] = {
        "QueryLanguage": "JSONata",
        "StartAt": "Start",
        "States": {
            "Start": {"Type": "Pass", "Assign": {"n": 0}, "Next": "Count"},
            "Count": {"Type": "Pass", "Assign": {"n": "{% $n + 1 %}"}, "Next": "More"},
            "More": {"Type": "Choice", "Choices": [{"Condition": "{% $n < 1000 %}", "Next": "Count"}], "Default": "Done"},
            "Done": {"Type": "Succeed"},
        },
    }
    result = sfn.run(sfn.machine(definition, "history-cap"), {})
    assert (result.status, result.error) == ("FAILED", "States.Runtime")
    assert "cap of 200 events" in result.cause and len(result.history) == 200
