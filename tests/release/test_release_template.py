"""The release construct's CloudFormation: IAM least privilege, logging, tracing, timeouts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aws_cdk import App, Duration, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Match, Template
from tests.release.driver import Resolver, state_machines
from tests.release.world import APPS

from constructs.release_state_machine import MAX_SERVICES, ReleaseStateMachine, ServiceTarget
from tests.release.conftest import MACHINE

SERVICES = [a.service for a in APPS]


def policy_statements(template: dict[str, Any], resolver: Resolver) -> dict[str, dict[str, Any]]:
    """Sid -> resolved statement of the release machine's own policy."""
    found: dict[str, dict[str, Any]] = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            if "Sid" in statement:
                found[statement["Sid"]] = resolver.value(statement)
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_policy_grants_a_wildcard_action(release_stack_template: dict[str, Any]) -> None:
    for resource in release_stack_template["Resources"].values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::Role"):
            text = json.dumps(resource["Properties"])
            for statement in json.loads(text).get("PolicyDocument", {}).get("Statement", []):
                for action in as_list(statement["Action"]):
                    assert "*" not in action, statement


def test_run_task_only_on_migrate_revisions_in_the_cluster(
    release_templates: dict[str, dict[str, Any]], release_stack_template: dict[str, Any]
) -> None:
    stack_name, _ = state_machines(release_templates)[MACHINE]
    statements = policy_statements(release_stack_template, Resolver(release_templates, stack_name))
    run = statements["RunMigrateTaskRevisions"]
    assert run["Action"] == "ecs:RunTask"
    assert run["Resource"].endswith(":task-definition/cashsouk-migrate:*")
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": "arn:aws:ecs:ap-southeast-5:123456789012:cluster/default"}}
    assert statements["WatchAndStopMigrateTask"]["Resource"].endswith(":task/default/*")
    assert statements["EcsSyncManagedRule"]["Resource"].endswith(":rule/StepFunctionsGetEventsForECSTaskRule")


def test_services_and_roles_are_exactly_the_configured_ones(
    release_templates: dict[str, dict[str, Any]], release_stack_template: dict[str, Any]
) -> None:
    stack_name, _ = state_machines(release_templates)[MACHINE]
    statements = policy_statements(release_stack_template, Resolver(release_templates, stack_name))
    deploy = statements["DeployServices"]
    assert sorted(as_list(deploy["Action"])) == ["ecs:DescribeServices", "ecs:UpdateService"]
    assert sorted(as_list(deploy["Resource"])) == sorted(f"arn:aws:ecs:ap-southeast-5:123456789012:service/default/{s}" for s in SERVICES)
    passing = statements["PassTaskRoles"]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    roles = as_list(passing["Resource"])
    assert "*" not in json.dumps(roles)
    assert "arn:aws:iam::123456789012:role/cashsouk-api-task" in roles
    images = statements["ResolveDigests"]
    assert images["Action"] == "ecr:DescribeImages"
    assert len(as_list(images["Resource"])) == len(APPS) + 1
    assert all(":repository/" in r for r in as_list(images["Resource"]))
    # The only resource-level wildcard: the ECS APIs that have no resource-level permissions.
    assert statements["RenderTaskDefinitions"]["Resource"] == "*"
    assert sorted(as_list(statements["RenderTaskDefinitions"]["Action"])) == ["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"]
    assert statements["Lease"]["Resource"].endswith(":table/cashsouk-example-release-lease") or "Lease" in json.dumps(
        statements["Lease"]["Resource"]
    )
    assert statements["RecordRelease"]["Action"] == "ssm:PutParameter"


def test_logging_all_with_tracing_and_bounded_time(release_stack_template: dict[str, Any]) -> None:
    template = Template.from_json(release_stack_template)
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineName": "cashsouk-example-release",
            "StateMachineType": "STANDARD",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": True}),
        },
    )
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineName": "cashsouk-example-release-lease-cleanup",
            "StateMachineType": "EXPRESS",
            "TracingConfiguration": {"Enabled": True},
        },
    )
    template.has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": "/aws/vendedlogs/states/cashsouk-example-release", "RetentionInDays": Match.any_value()}
    )


def test_definition_is_jsonata_bounded_and_carries_no_secret(definition: dict[str, Any]) -> None:
    assert definition["QueryLanguage"] == "JSONata"
    assert definition["TimeoutSeconds"] > 900 + 1200 + 1800
    assert definition["States"]["RunMigration"]["TimeoutSeconds"] == 900
    assert definition["States"]["RunMigration"]["Resource"] == "arn:aws:states:::ecs:runTask.sync"
    text = json.dumps(definition).lower()
    for word in ("password", "secretsmanager", "valuefrom", "database_url"):
        assert word not in text


def test_lease_table_parameter_and_rules(release_stack_template: dict[str, Any]) -> None:
    template = Template.from_json(release_stack_template)
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "LeaseId", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "TimeToLiveSpecification": {"AttributeName": "ExpiresAt", "Enabled": True},
            "SSESpecification": {"SSEEnabled": True},
        },
    )
    template.has_resource_properties("AWS::SSM::Parameter", {"Name": "/cashsouk/example/release/current", "Type": "String"})
    ended = {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"status": ["FAILED", "TIMED_OUT", "ABORTED"], "stateMachineArn": Match.any_value()},
    }
    rules = template.find_resources("AWS::Events::Rule", {"Properties": {"EventPattern": ended}})
    assert len(rules) == 2  # the lease cleanup and the failure notification
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def _build_in_a_bare_stack(*, app_count: int = 1, **overrides: Any) -> None:
    """Construct a ReleaseStateMachine outside the app, to see what its constructor refuses."""
    stack = Stack(App(), "Bare")
    repository = ecr.Repository.from_repository_name(stack, "Repo", "repo")
    role = iam.Role.from_role_arn(stack, "Role", "arn:aws:iam::123456789012:role/r")
    arguments: dict[str, Any] = {
        "name_prefix": "p",
        "env_name": "e",
        "cluster_name": "default",
        "subnet_ids": ["subnet-1"],
        "migrate_security_group_id": "sg-1",
        "migrate_task_family": "migrate",
        "migrate_container_name": "migrate",
        "migrate_repository": repository,
        "migrate_task_role": role,
        "migrate_execution_role": role,
        "migrate_timeout": Duration.minutes(15),
        "services": [ServiceTarget(f"app{i}", f"svc{i}", "Main", repository, True) for i in range(app_count)],
        "lease_wait": Duration.minutes(20),
        "rollout_timeout": Duration.minutes(30),
        "notify_email": None,
    }
    ReleaseStateMachine(stack, "Release", **(arguments | overrides))


def test_more_services_than_one_describe_services_call_takes_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 10 services"):
        _build_in_a_bare_stack(app_count=MAX_SERVICES + 1)


# ---- rollout poll modes ----------------------------------------------------------------------------
def all_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, those of Map item processors included."""
    for name, state in states.items():
        yield name, state
        if "ItemProcessor" in state:
            yield from all_states(state["ItemProcessor"]["States"])


def evaluated_after_the_call(state: dict[str, Any]) -> list[Any]:
    """A state's Assign and Output, its Choice rules' and its Catchers' included."""
    blocks = [state.get("Assign"), state.get("Output")]
    for nested in (*state.get("Choices", []), *state.get("Catch", [])):
        blocks += [nested.get("Assign"), nested.get("Output")]
    return [b for b in blocks if b is not None]


def test_wait_loop_relies_on_no_jsonata_error(wait_loop_definition: dict[str, Any]) -> None:
    # Nothing of "wait-loop" depends on how Step Functions treats an error raised while evaluating
    # a state's Assign or Output (docs/release.md, "How a rollout is polled").
    for name, state in all_states(wait_loop_definition["States"]):
        for block in evaluated_after_the_call(state):
            assert "$error(" not in json.dumps(block), name
        for handler in (*state.get("Retry", []), *state.get("Catch", [])):
            assert "States.QueryEvaluationError" not in handler["ErrorEquals"], name
    deploy = wait_loop_definition["States"]["DeployServices"]["ItemProcessor"]["States"]
    assert deploy["UpdateService"]["Next"] == "PollDelay"
    assert deploy["PollDelay"] == {**deploy["PollDelay"], "Type": "Wait", "Seconds": 10, "Next": "WaitForRollout"}
    assert deploy["WaitForRollout"]["Next"] == "RolloutProgress"
    progress = deploy["RolloutProgress"]
    assert [rule["Next"] for rule in progress["Choices"]] == ["ServiceDeployed", "PollDelay"]
    assert "$polls < 180" in progress["Choices"][1]["Condition"] and progress["Default"] == "RolloutFailed"


def test_retry_mode_polls_with_a_retrier_on_the_query_evaluation_error(definition: dict[str, Any]) -> None:
    deploy = definition["States"]["DeployServices"]["ItemProcessor"]["States"]
    assert "PollDelay" not in deploy and "RolloutProgress" not in deploy
    (poll, _) = deploy["WaitForRollout"]["Retry"]
    assert poll == {"ErrorEquals": ["States.QueryEvaluationError"], "IntervalSeconds": 10, "MaxAttempts": 180, "BackoffRate": 1.0}
    assert "$error(" in json.dumps(deploy["WaitForRollout"]["Assign"])


ROLLOUT_STATES = {"DescribeService", "ServiceFound", "UpdateService", "PollDelay", "WaitForRollout", "RolloutResult", "RolloutProgress"}


def test_the_modes_differ_only_in_how_the_deployment_is_waited_for(
    definition: dict[str, Any], wait_loop_definition: dict[str, Any]
) -> None:
    # The wait-loop definition comes from a synthesis of its own: everything else must be the
    # example environment's, the execution timeout (and so the lease's expiry) included.
    def outside(d: dict[str, Any]) -> dict[str, Any]:
        d = json.loads(json.dumps(d))
        states = d["States"]["DeployServices"]["ItemProcessor"]["States"]
        for name in ROLLOUT_STATES:
            states.pop(name, None)
        return d

    assert outside(wait_loop_definition) == outside(definition)
    retry_update = definition["States"]["DeployServices"]["ItemProcessor"]["States"]["UpdateService"]
    loop_update = wait_loop_definition["States"]["DeployServices"]["ItemProcessor"]["States"]["UpdateService"]
    assert {**loop_update, "Next": None, "Assign": None} == {**retry_update, "Next": None, "Assign": None}
    assert loop_update["Assign"] == {**retry_update["Assign"], "polls": 0}


@pytest.mark.parametrize("poll", ["retry", "wait-loop"])
def test_the_execution_timeout_bounds_every_wait_in_both_modes(
    poll: str, definition: dict[str, Any], wait_loop_definition: dict[str, Any]
) -> None:
    chosen = definition if poll == "retry" else wait_loop_definition
    lease = chosen["States"]["AcquireLease"]["Retry"][0]
    lease_wait = lease["IntervalSeconds"] * lease["MaxAttempts"]
    migration = chosen["States"]["RunMigration"]["TimeoutSeconds"]
    # Each of the five services: 180 polls 10 s apart, each allowed 1 s for its call and transitions.
    rollouts = len(APPS) * (1800 + 180 * 1)
    assert chosen["TimeoutSeconds"] >= lease_wait + migration + rollouts


def test_an_unknown_rollout_poll_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="rollout_poll must be one of retry, wait-loop"):
        _build_in_a_bare_stack(rollout_poll="wait_loop")
