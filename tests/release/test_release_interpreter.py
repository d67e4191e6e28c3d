"""Each patch of the interpreter (emulation/interpreter.py), proved on a tiny definition."""

from __future__ import annotations

import json
import pickle
import threading
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.program_state import ProgramError, ProgramRunning, ProgramStopped

from emulation import interpreter
from emulation.driver import Interpreter
from emulation.fakes import ACCOUNT
from emulation.world import MIGRATE_FAMILY, build_world


def machine(states: dict[str, Any], start: str) -> dict[str, Any]:
    return {"QueryLanguage": "JSONata", "StartAt": start, "States": states}


def test_jsonata_is_evaluated(sfn: Interpreter) -> None:
    sfn.reset()
    definition = machine(
        {"P": {"Type": "Pass", "Output": "{% {'n': $count($states.input.xs), 'm': $contains('a-b', /^[a-z-]+$/)} %}", "End": True}}, "P"
    )
    result = sfn.run(sfn.machine(definition, "t"), {"xs": [1, 2, 3]})
    assert result.output == {"n": 3, "m": True}


def test_a_jsonata_error_is_a_retriable_and_catchable_query_evaluation_error(sfn: Interpreter) -> None:
    fake = build_world(sfn.reset())
    definition = machine(
        {
            "T": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
                "Arguments": {"Cluster": "default", "Services": ["api-cashsouk-09ff"]},
                "Assign": {"x": "{% $error('not yet') %}"},
                "Retry": [{"ErrorEquals": ["States.QueryEvaluationError"], "IntervalSeconds": 5, "MaxAttempts": 3, "BackoffRate": 1.0}],
                "Catch": [{"ErrorEquals": ["States.QueryEvaluationError"], "Next": "C", "Output": "{% $states.errorOutput %}"}],
                "End": True,
            },
            "C": {"Type": "Pass", "End": True},
        },
        "T",
    )
    result = sfn.run(sfn.machine(definition, "t"), {})
    assert result.status == "SUCCEEDED"
    assert result.output["Error"] == "States.QueryEvaluationError" and "not yet" in result.output["Cause"]
    assert len(fake.calls_of("DescribeServices")) == 4  # the first try and three retries
    assert result.transitions == 2 + 3


def test_a_wait_state_waits_on_the_virtual_clock(sfn: Interpreter) -> None:
    sfn.reset()
    definition = machine(
        {
            "W": {"Type": "Wait", "Seconds": 3600, "Next": "P"},
            "P": {"Type": "Pass", "Output": "{% $states.input %}", "End": True},
        },
        "W",
    )
    result = sfn.wait(sfn.start(sfn.machine(definition, "t"), {"a": 1}), timeout=5.0)
    assert (result.status, result.output) == ("SUCCEEDED", {"a": 1})
    assert interpreter.CLOCK.now() >= 3600
    assert result.states_entered == ["W", "P"]


def test_string_variables_survive_quotes_and_backslashes(sfn: Interpreter) -> None:
    sfn.reset()
    definition = machine(
        {
            "A": {"Type": "Pass", "Assign": {"s": "{% $states.input.s %}"}, "Next": "B"},
            "B": {"Type": "Pass", "Output": "{% {'s': $s} %}", "End": True},
        },
        "A",
    )
    text = 'say "hi" \\ bye'
    assert sfn.run(sfn.machine(definition, "t"), {"s": text}).output == {"s": text}


def test_aws_sdk_arguments_and_results_are_pascal_case(sfn: Interpreter) -> None:
    fake = build_world(sfn.reset())
    definition = machine(
        {
            "T": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:ecs:describeTaskDefinition",
                "Arguments": {"TaskDefinition": MIGRATE_FAMILY, "Include": ["TAGS"]},
                "Output": "{% {'family': $states.result.TaskDefinition.Family, 'tag': $states.result.Tags[0].Key, 'group': $lookup($states.result.TaskDefinition.ContainerDefinitions[0].LogConfiguration.Options, 'awslogs-group')} %}",
                "End": True,
            }
        },
        "T",
    )
    result = sfn.run(sfn.machine(definition, "t"), {})
    assert result.output == {"family": MIGRATE_FAMILY, "tag": "project", "group": "/ecs/cashsouk-migrate"}
    assert fake.calls[-1].params == {"taskDefinition": MIGRATE_FAMILY, "include": ["TAGS"]}


def test_aws_sdk_errors_are_named_with_the_pascal_case_service(sfn: Interpreter) -> None:
    fake = build_world(sfn.reset())
    fake.fail("DescribeImages", "ImageNotFoundException", times=1, message="no such image")
    fake.fail("DescribeServices", "ThrottlingException", times=1)
    definition = machine(
        {
            "I": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:ecr:describeImages",
                "Arguments": {"RepositoryName": "api-cashsouk", "ImageIds": [{"ImageTag": "x"}]},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Assign": {"image": "{% $states.errorOutput.Error %}"}, "Next": "S"}],
                "Next": "S",
            },
            "S": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
                "Arguments": {"Cluster": "default", "Services": ["api-cashsouk-09ff"]},
                "Catch": [
                    {"ErrorEquals": ["States.ALL"], "Output": "{% {'image': $image, 'service': $states.errorOutput.Error} %}", "Next": "P"}
                ],
                "Next": "P",
            },
            "P": {"Type": "Pass", "End": True},
        },
        "I",
    )
    # ImageNotFoundException is modelled by ECR's API; ECS models no ThrottlingException, so it
    # arrives as the service's base exception (as on AWS).
    assert sfn.run(sfn.machine(definition, "t"), {}).output == {"image": "Ecr.ImageNotFoundException", "service": "Ecs.EcsException"}


def test_null_variables_stay_null(sfn: Interpreter) -> None:
    sfn.reset()
    definition = machine(
        {
            "A": {"Type": "Pass", "Assign": {"n": "{% null %}"}, "Next": "B"},
            "B": {"Type": "Pass", "Output": "{% {'n': $n, 'type': $type($n), 'exists': $exists($n)} %}", "End": True},
        },
        "A",
    )
    assert sfn.run(sfn.machine(definition, "t"), {}).output == {"n": None, "type": "null", "exists": True}


def test_an_expression_that_returns_nothing_fails_the_state(sfn: Interpreter) -> None:
    sfn.reset()
    definition = machine({"A": {"Type": "Pass", "Output": "{% $states.input.missing %}", "End": True}}, "A")
    result = sfn.run(sfn.machine(definition, "t"), {})
    assert (result.status, result.error) == ("FAILED", "States.QueryEvaluationError")


def test_a_stopped_execution_stays_stopped_when_its_running_task_then_fails(sfn: Interpreter) -> None:
    """Patch 6: StopExecution ends an execution ABORTED, even if the Task it interrupted then raises."""

    class _Event:
        def set(self) -> None: ...
        def clear(self) -> None: ...

    # Environment's own state, without building a whole execution: what set_error reads and writes.
    env: Any = SimpleNamespace(_state_mutex=threading.RLock(), _frames=[], program_state_event=_Event())
    env._program_state = ProgramStopped(stop_date=datetime.now(UTC), cause=None, error=None)
    Environment.set_error(env, {"error": "States.TaskFailed", "cause": "interrupted"})
    assert isinstance(env._program_state, ProgramStopped)
    env._program_state = ProgramRunning()  # type: ignore[no-untyped-call]
    Environment.set_error(env, {"error": "States.TaskFailed", "cause": "a real failure"})
    assert isinstance(env._program_state, ProgramError)


def test_a_reserved_error_leaving_a_map_iteration_keeps_its_name(sfn: Interpreter) -> None:
    """Patch 11: unpatched, the Map's error is rebuilt as a custom name, which refuses `States.`."""
    sfn.reset()
    iteration = {"StartAt": "Bad", "States": {"Bad": {"Type": "Pass", "Output": "{% $error('boom') %}", "End": True}}}
    definition = machine(
        {
            "M": {
                "Type": "Map",
                "Items": "{% [1] %}",
                "ItemProcessor": iteration,
                "Catch": [{"ErrorEquals": ["States.QueryEvaluationError"], "Next": "C", "Output": "{% $states.errorOutput %}"}],
                "End": True,
            },
            "C": {"Type": "Pass", "End": True},
        },
        "M",
    )
    result = sfn.run(sfn.machine(definition, "t"), {})
    assert (result.status, result.output["Error"]) == ("SUCCEEDED", "States.QueryEvaluationError"), (result.error, result.cause)


def test_the_history_read_from_the_backend_is_the_one_the_api_returns(sfn: Interpreter, machine: str) -> None:
    # Interpreter.wait reads the history from moto's backend (the API round trip of a long history
    # costs more than the execution): every event, field and type must be what the API gives.
    build_world(sfn.reset())
    released = sfn.run(machine, {"imageTag": "abc1234", "startedBy": "test", "note": "history"})
    refused = sfn.run(machine, {"imageTag": "not a tag"})
    for execution in (released, refused):
        assert len(execution.history) > 3
        assert execution.history == sfn.api_history(execution.arn), execution.status
    assert released.status == "SUCCEEDED" and refused.status == "FAILED"


def test_a_definition_that_does_not_parse_is_refused_at_create_every_time(sfn: Interpreter) -> None:
    # CreateStateMachine's validation shares the interpreter's parse cache: a failed parse is not kept.
    broken = machine({"P": {"Type": "Pass", "Next": "Nowhere", "Unknown": 1}}, "P")
    for attempt in range(2):
        with pytest.raises(ClientError, match="ASLParserException"):
            sfn.sfn.create_state_machine(name=f"broken-{attempt}", definition=json.dumps(broken), roleArn=f"arn:aws:iam::{ACCOUNT}:role/t")


def test_a_parsed_program_is_kept_on_disk_and_a_damaged_entry_is_parsed_again(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interpreter, "ASL_CACHE", tmp_path)
    body = json.dumps(machine({"P": {"Type": "Pass", "End": True}}, "P"))
    parsed = pickle.loads(interpreter._load_or_parse(body))  # noqa: S301 - the interpreter's own
    (entry,) = tmp_path.glob("*.pickle")
    loaded = pickle.loads(interpreter._load_or_parse(body))  # noqa: S301
    assert type(loaded) is type(parsed) and loaded is not parsed
    assert loaded.start_at.start_at_name == parsed.start_at.start_at_name == "P"
    entry.write_bytes(b"half a pickle")  # a process that died mid-write, or any unreadable entry
    assert pickle.loads(interpreter._load_or_parse(body)).start_at.start_at_name == "P"  # noqa: S301
    assert entry.read_bytes() != b"half a pickle"  # written again


def test_each_execution_gets_its_own_copy_of_the_program() -> None:
    # States keep per-evaluation fields: two executions must never share one parsed program.
    body = json.dumps(machine({"P": {"Type": "Pass", "End": True}}, "P"))
    first, second = interpreter._parsed(body), interpreter._parsed(body)
    assert first is not second and first.start_at is not second.start_at
    assert first.start_at.start_at_name == second.start_at.start_at_name == "P"
