"""Each patch of the interpreter (tests/release/interpreter.py), proved on a tiny definition."""

from __future__ import annotations

from typing import Any

from tests.release.driver import Interpreter
from tests.release.fakes import FakeAws, MigrationPlan
from tests.release.world import MIGRATE_FAMILY, build_world

from tests.release import interpreter


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


def run_task_definition() -> dict[str, Any]:
    return machine(
        {
            "T": {
                "Type": "Task",
                "Resource": "arn:aws:states:::ecs:runTask.sync",
                "Arguments": {
                    "Cluster": "default",
                    "TaskDefinition": MIGRATE_FAMILY,
                    "LaunchType": "FARGATE",
                    "NetworkConfiguration": {"AwsvpcConfiguration": {"Subnets": ["subnet-1"], "AssignPublicIp": "DISABLED"}},
                },
                "Output": "{% $states.result.Containers[0].ExitCode %}",
                "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "C", "Output": "{% $states.errorOutput %}"}],
                "End": True,
            },
            "C": {"Type": "Pass", "End": True},
        },
        "T",
    )


def test_run_task_sync_succeeds_on_exit_0_and_fails_on_exit_1(sfn: Interpreter) -> None:
    fake: FakeAws = build_world(sfn.reset())
    arn = sfn.machine(run_task_definition(), "t")
    assert sfn.run(arn, {}).output == 0
    fake.migration = MigrationPlan(exit_code=1)
    failed = sfn.run(arn, {})
    assert failed.output["Error"] == "States.TaskFailed"
    assert '"ExitCode":1' in failed.output["Cause"]
