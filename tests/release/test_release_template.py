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

from constructs.release_machine import asl
from constructs.release_state_machine import ReleaseSettings, ReleaseStateMachine, ServiceTarget
from emulation.resolve import Resolver, state_machines
from emulation.world import APPS
from release import limits
from tests.release.conftest import MACHINE
from tests.support import Synthesized

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
    assert statements["TakeLease"]["Resource"] == "arn:aws:dynamodb:ap-southeast-5:123456789012:table/cashsouk-example-release-lease"
    assert (
        statements["RecordReleaseHistory"]["Resource"]
        == "arn:aws:dynamodb:ap-southeast-5:123456789012:table/cashsouk-example-release-history"
    )
    assert statements["RecordReleasedParameter"]["Action"] == "ssm:PutParameter"


def test_logging_all_with_tracing_and_bounded_time(release_stack_template: dict[str, Any]) -> None:
    template = Template.from_json(release_stack_template)
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineName": "cashsouk-example-release",
            "StateMachineType": "STANDARD",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": False}),
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
    # Lease wait, snapshot, migration, and the five rollouts at once (one round: test_release_parallel.py).
    assert definition["TimeoutSeconds"] >= 1200 + 3600 + 900 + 1800
    assert definition["TimeoutSeconds"] < 1200 + 3600 + 900 + 2 * 1800
    assert definition["States"]["RunMigration"]["Resource"] == "arn:aws:states:::aws-sdk:ecs:runTask"
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
    # The release history (docs/release.md): Pk/Sk, on demand, AWS-managed encryption, PITR, no TTL, kept.
    history = template.find_resources("AWS::DynamoDB::Table", {"Properties": {"TableName": "cashsouk-example-release-history"}})
    ((_, table),) = history.items()
    assert table["Properties"]["KeySchema"] == [{"AttributeName": "Pk", "KeyType": "HASH"}, {"AttributeName": "Sk", "KeyType": "RANGE"}]
    assert table["Properties"]["BillingMode"] == "PAY_PER_REQUEST" and table["Properties"]["SSESpecification"] == {"SSEEnabled": True}
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert "TimeToLiveSpecification" not in table["Properties"] and table["DeletionPolicy"] == "Retain"
    assert (
        release_stack_template["Outputs"]["ReleaseHistoryTableName"]["Export"]["Name"] == "cashsouk-example-release-ReleaseHistoryTableName"
    )
    template.has_resource_properties("AWS::SSM::Parameter", {"Name": "/cashsouk/example/release/current", "Type": "String"})
    ended = {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"status": ["FAILED", "TIMED_OUT", "ABORTED"], "stateMachineArn": Match.any_value()},
    }
    assert len(template.find_resources("AWS::Events::Rule", {"Properties": {"EventPattern": ended}})) == 1  # the failure topic
    every_end = {**ended, "detail": {"status": ["FAILED", "TIMED_OUT", "ABORTED", "SUCCEEDED"], "stateMachineArn": Match.any_value()}}
    assert len(template.find_resources("AWS::Events::Rule", {"Properties": {"EventPattern": every_end}})) == 1  # the cleanup
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def _build_in_a_bare_stack(*, app_count: int = 1, **overrides: Any) -> ReleaseStateMachine:
    """Construct a ReleaseStateMachine outside the app, to see what it refuses."""
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
        "migrate_repository": repository,
        "migrate_task_role": role,
        "migrate_execution_role": role,
        "migrate_timeout": Duration.minutes(15),
        "services": [ServiceTarget(f"app{i}", f"svc{i}", "Main", repository, True) for i in range(app_count)],
        "lease_wait": Duration.minutes(20),
        "rollout_timeout": Duration.minutes(30),
    }
    return ReleaseStateMachine(stack, "Release", settings=ReleaseSettings(**(arguments | overrides)))


def test_more_services_than_one_describe_services_call_takes_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 10"):
        _build_in_a_bare_stack(app_count=limits.MAX_SERVICES + 1)


def test_settings_whose_history_could_pass_25000_events_are_refused() -> None:
    with pytest.raises(ValueError, match="more than Step Functions' 25000"):
        _build_in_a_bare_stack(app_count=5, rollout_timeout=Duration.minutes(90))


# ---- documented behaviour only -----------------------------------------------------------------------
def all_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, those of Map item processors included."""
    for name, state in states.items():
        yield name, state
        if "ItemProcessor" in state:
            yield from all_states(state["ItemProcessor"]["States"])


def evaluated_after_the_call(state: dict[str, Any]) -> list[Any]:
    """A state's Assign, Output and Arguments, its Choice rules' and its Catchers' included."""
    blocks = [state.get("Assign"), state.get("Output"), state.get("Arguments")]
    for nested in (*state.get("Choices", []), *state.get("Catch", [])):
        blocks += [nested.get("Assign"), nested.get("Output")]
    return [b for b in blocks if b is not None]


@pytest.mark.parametrize("which", ["definition", "cleanup_definition"])
def test_no_control_flow_rests_on_an_error_the_definition_raises_itself(which: str, request: pytest.FixtureRequest) -> None:
    # Nothing depends on how Step Functions treats an error raised while evaluating a state's own
    # Arguments, Assign or Output (docs/release.md, "What the definition relies on").
    definition = request.getfixturevalue(which)
    for name, state in all_states(definition["States"]):
        for block in evaluated_after_the_call(state):
            assert "$error(" not in json.dumps(block), name
        for handler in (*state.get("Retry", []), *state.get("Catch", [])):
            assert "States.QueryEvaluationError" not in handler["ErrorEquals"], name


def test_the_rollout_is_polled_with_wait_describe_and_choice(definition: dict[str, Any]) -> None:
    states = definition["States"]["DeployWave"]["ItemProcessor"]["States"]
    assert states["UpdateService"]["Next"] == "RecordDeployment" and states["RecordDeployment"]["Next"] == "RolloutPollDelay"
    assert states["RolloutPollDelay"] == {"Type": "Wait", "Seconds": 10, "Next": "WaitForRollout"}
    assert states["WaitForRollout"]["Next"] == "RolloutProgress"
    assert [rule["Next"] for rule in states["RolloutProgress"]["Choices"]] == ["ServiceDone", "RolloutPollDelay", "ServiceFailed"]
    assert "$polls < 180" in states["RolloutProgress"]["Choices"][1]["Condition"]
    assert definition["States"]["MigrationPollDelay"] == {"Type": "Wait", "Seconds": 10, "Next": "DescribeMigration"}


@pytest.mark.parametrize("which", ["definition", "cleanup_definition"])
def test_every_aws_call_retries_throttling_and_5xx_with_full_jitter(which: str, request: pytest.FixtureRequest) -> None:
    definition = request.getfixturevalue(which)
    tasks = [(name, state) for name, state in all_states(definition["States"]) if state["Type"] == "Task"]
    assert len(tasks) >= (20 if which == "definition" else 5)
    for name, state in tasks:
        service = state["Resource"].split(":::", 1)[1].split(":")[-2]
        transient = [r for r in state.get("Retry", []) if r.get("JitterStrategy") == "FULL"]
        assert transient, f"{name}: no retrier with full jitter"
        (retrier,) = transient
        assert retrier["MaxAttempts"] >= 4 and retrier["BackoffRate"] > 1, name
        names = " ".join(retrier["ErrorEquals"])
        expected = {"dynamodb": "DynamoDB.ThrottlingException", "ecs": "Ecs.ThrottlingException", "ecr": "Ecr.ThrottlingException"}
        expected |= {"ssm": "Ssm.ThrottlingException", "rds": "Rds.Throttling"}
        assert expected[service] in names and ("ServerException" in names or "InternalServerError" in names), name
        # A connection closed mid-request (the SDK's client-side error) is transient too.
        assert expected[service].replace("ThrottlingException", "SdkClientException") in names, name
        # ClientException is also ECS's name for real client errors: only UpdateService (ELB
        # throttling) may retry it, through asl.ECS_UPDATE_SERVICE_TRANSIENT.
        assert "ClientException" not in retrier["ErrorEquals"] or name == "UpdateService", name
        assert "States.ALL" not in retrier["ErrorEquals"] and "States.TaskFailed" not in retrier["ErrorEquals"], name


def test_only_ecr_not_found_errors_become_image_not_found(definition: dict[str, Any]) -> None:
    describe = definition["States"]["ResolveImages"]["ItemProcessor"]["States"]["DescribeImage"]
    (catcher,) = describe["Catch"]
    assert set(catcher["ErrorEquals"]) == {
        "Ecr.ImageNotFoundException",
        "ECR.ImageNotFoundException",
        "Ecr.RepositoryNotFoundException",
        "ECR.RepositoryNotFoundException",
    }


def test_run_task_is_idempotent_and_names_the_execution(definition: dict[str, Any]) -> None:
    arguments = definition["States"]["RunMigration"]["Arguments"]
    assert arguments["StartedBy"] == "{% $states.context.Execution.Name %}"
    # ValidateInput refuses names ECS would refuse, so both carry the name as it is.
    assert arguments["ClientToken"] == "{% $states.context.Execution.Name %}"
    assert arguments["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"


def test_the_lease_owner_is_checked_right_before_the_migration_and_every_update(definition: dict[str, Any]) -> None:
    states = definition["States"]
    # The migration's check is the state right before RunTask (a redrive can resume into no
    # unchecked Task but RunTask itself); nothing else leads to RunTask.
    assert states["RegisterMigrateTaskDefinition"]["Next"] == "CheckLeaseBeforeMigration"
    assert states["CheckLeaseBeforeMigration"]["Next"] == "RunMigration"
    assert [n for n, st in states.items() if st.get("Next") == "RunMigration" or "RunMigration" in json.dumps(st.get("Catch", []))] == [
        "CheckLeaseBeforeMigration"
    ]
    holder = "{% $states.context.Execution.Id & '#' & $string(($r := $states.context.Execution.RedriveCount; $exists($r) ? $r : 0)) %}"
    for name in ("CheckLeaseBeforeMigration", "OpenDeployGate"):
        assert states[name]["Arguments"]["ConditionExpression"] == "Holder = :holder"
        assert states[name]["Arguments"]["ExpressionAttributeValues"][":holder"] == {"S": holder}
        assert states[name]["Catch"][0]["ErrorEquals"] == ["DynamoDB.ConditionalCheckFailedException"]
        assert states[name]["Catch"][0]["Assign"]["errorName"] == "ReleaseInProgress"
    # Each service's iteration: the gate holds this attempt's holder only while it holds the lease
    # (test_release_parallel.py runs both ways it closes); a redriven attempt never passes it.
    service = states["DeployWave"]["ItemProcessor"]["States"]
    assert service["StartService"]["Next"] == "CheckLeaseBeforeDeploy"
    assert service["CheckLeaseBeforeDeploy"]["Arguments"]["ConditionExpression"] == "#gate = :holder"
    assert service["CheckLeaseBeforeDeploy"]["Arguments"]["ExpressionAttributeValues"][":holder"] == {"S": holder}
    assert states["OpenDeployGate"]["Arguments"]["UpdateExpression"] == "SET Gate = :holder"
    assert service["CheckLeaseBeforeDeploy"]["Catch"][0] == {
        "ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"],
        "Next": "ReadDeployGate",
    }


def test_no_setting_of_the_construct_is_lost_in_synthesis(synthesized: Synthesized, definition: dict[str, Any]) -> None:
    # CDK drops keys whose value is None when it writes a definition: none may be in it.
    def nones(node: Any, path: str = "") -> list[str]:
        if node is None:
            return [path]
        if isinstance(node, dict):
            return [p for k, v in node.items() for p in nones(v, f"{path}.{k}")]
        if isinstance(node, list):
            return [p for i, v in enumerate(node) for p in nones(v, f"{path}[{i}]")]
        return []

    built = synthesized.construct_definitions["example"]  # as the construct built them (tests/support.py)
    assert nones(built["definition"]) == [] and nones(built["cleanup"]) == []
    assert list(built["definition"]["States"]) == list(definition["States"])


# ---- IAM: every API a state calls is allowed, by the statements that came with it ---------------------
TASK_ACTIONS = {
    "arn:aws:states:::dynamodb:putItem": "dynamodb:PutItem",
    "arn:aws:states:::dynamodb:getItem": "dynamodb:GetItem",
    "arn:aws:states:::dynamodb:updateItem": "dynamodb:UpdateItem",
    "arn:aws:states:::dynamodb:deleteItem": "dynamodb:DeleteItem",
}


def called_apis(definition: dict[str, Any]) -> set[str]:
    """The IAM action of every Task of a definition ("aws-sdk:ecs:describeServices" -> ecs:DescribeServices)."""
    actions = set()
    for _, state in all_states(definition["States"]):
        if state["Type"] != "Task":
            continue
        resource = state["Resource"]
        if resource in TASK_ACTIONS:
            actions.add(TASK_ACTIONS[resource])
            continue
        assert resource.startswith("arn:aws:states:::aws-sdk:"), resource
        service, api = resource.removeprefix("arn:aws:states:::aws-sdk:").split(":")
        actions.add(f"{service}:{api[0].upper()}{api[1:]}")
    return actions


def role_statements(template: dict[str, Any], resolver: Resolver, role_logical_id: str) -> list[dict[str, Any]]:
    found = []
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_logical_id} in resource["Properties"]["Roles"]:
            found += [resolver.value(s) for s in resource["Properties"]["PolicyDocument"]["Statement"]]
    return found


def not_allowed(apis: set[str], statements: list[dict[str, Any]]) -> set[str]:
    allowed = {a for s in statements if s["Effect"] == "Allow" for a in as_list(s["Action"])}
    return apis - allowed


def machine_role(template: dict[str, Any], name: str) -> str:
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::StepFunctions::StateMachine" and resource["Properties"]["StateMachineName"] == name:
            return str(resource["Properties"]["RoleArn"]["Fn::GetAtt"][0])
    raise KeyError(name)


@pytest.mark.parametrize(("machine_name", "which"), [(MACHINE, "definition"), (f"{MACHINE}-lease-cleanup", "cleanup_definition")])
def test_every_api_a_task_calls_is_allowed_by_the_machines_policies(
    release_templates: dict[str, dict[str, Any]],
    release_stack_template: dict[str, Any],
    machine_name: str,
    which: str,
    request: pytest.FixtureRequest,
) -> None:
    stack_name, _ = state_machines(release_templates)[MACHINE]
    statements = role_statements(
        release_stack_template, Resolver(release_templates, stack_name), machine_role(release_stack_template, machine_name)
    )
    apis = called_apis(request.getfixturevalue(which))
    assert not_allowed(apis, statements) == set()
    # The check catches a missing statement: without the one that allows UpdateService (or
    # ListTasks for the cleanup), it reports that API.
    sid = "DeployServices" if which == "definition" else "FindMigrateTask"
    missing = [s for s in statements if s.get("Sid") != sid]
    assert len(missing) == len(statements) - 1
    assert not_allowed(apis, missing) == ({"ecs:UpdateService"} if which == "definition" else {"ecs:ListTasks"})


def test_wildcard_resources_sit_only_in_the_unscoped_policies(release_stack_template: dict[str, Any]) -> None:
    unscoped = {
        logical_id: resource
        for logical_id, resource in release_stack_template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Policy" and "UnscopedApis" in logical_id
    }
    actions = sorted(a for r in unscoped.values() for s in r["Properties"]["PolicyDocument"]["Statement"] for a in as_list(s["Action"]))
    assert actions == ["ecs:DescribeTaskDefinition", "ecs:ListTasks", "ecs:RegisterTaskDefinition"]
    for logical_id, resource in release_stack_template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Policy" or logical_id in unscoped or "DefaultPolicy" in logical_id:
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            assert "*" not in as_list(statement["Resource"]), (logical_id, statement)


def test_default_policies_hold_only_logging_tracing_and_the_data_key(release_stack_template: dict[str, Any]) -> None:
    for logical_id, resource in release_stack_template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Policy" and logical_id.startswith("Release") and "RoleDefaultPolicy" in logical_id:
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                actions = as_list(statement["Action"])
                assert all(a.split(":")[0] in ("logs", "xray", "kms", "states") for a in actions), (logical_id, actions)


# ---- who may read and start what --------------------------------------------------------------------------
def test_machine_data_is_encrypted_with_a_customer_managed_key(release_stack_template: dict[str, Any]) -> None:
    machines = [r for r in release_stack_template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    assert len(machines) == 2
    for machine in machines:
        encryption = machine["Properties"]["EncryptionConfiguration"]
        assert encryption["Type"] == "CUSTOMER_MANAGED_KMS_KEY" and "DataKey" in encryption["KmsKeyId"]["Fn::GetAtt"][0]
    Template.from_json(release_stack_template).has_resource_properties(
        "AWS::KMS::Key", {"EnableKeyRotation": True, "Description": Match.string_like_regexp("state machines")}
    )


def test_service_principals_are_bound_to_this_account_and_resource(release_stack_template: dict[str, Any]) -> None:
    trusted = 0
    for resource in release_stack_template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for statement in resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            service = statement["Principal"].get("Service")
            if service in ("states.amazonaws.com", "events.amazonaws.com"):
                trusted += 1
                condition = statement["Condition"]
                assert condition["StringEquals"] == {"aws:SourceAccount": "123456789012"}
                assert "aws:SourceArn" in json.dumps(condition), statement
    assert trusted == 3  # the two machines' roles and the cleanup rule's
    for resource in release_stack_template["Resources"].values():
        if resource["Type"] in ("AWS::SNS::TopicPolicy", "AWS::KMS::Key"):
            document = resource["Properties"].get("PolicyDocument") or resource["Properties"]["KeyPolicy"]
            for statement in document["Statement"]:
                if statement.get("Principal") == {"Service": "events.amazonaws.com"}:
                    assert "aws:SourceArn" in json.dumps(statement["Condition"]), statement


def test_event_targets_have_a_dead_letter_queue_and_a_retry_policy(release_stack_template: dict[str, Any]) -> None:
    template = Template.from_json(release_stack_template)
    template.has_resource_properties("AWS::SQS::Queue", {"SqsManagedSseEnabled": True})
    rules = template.find_resources("AWS::Events::Rule")
    targets = [t for r in rules.values() for t in r["Properties"]["Targets"]]
    assert len(targets) == 3  # the cleanup machine, the failure and the success notification
    for target in targets:
        assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 8
    queue_policy = next(r for r in release_stack_template["Resources"].values() if r["Type"] == "AWS::SQS::QueuePolicy")
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in queue_policy["Properties"]["PolicyDocument"]["Statement"]
    )


def test_update_service_retry_names_cover_elb_throttling_reported_as_client_exception() -> None:
    assert {"Ecs.ClientException", "ECS.ClientException"} <= set(asl.ECS_UPDATE_SERVICE_TRANSIENT)
    assert set(asl.ECS_TRANSIENT) < set(asl.ECS_UPDATE_SERVICE_TRANSIENT)
    assert not {n for n in asl.ECS_TRANSIENT if n.endswith(".ClientException")}


def test_check_services_describes_one_service_per_call(definition: dict[str, Any]) -> None:
    check = definition["States"]["CheckServices"]
    assert check["Type"] == "Map" and check["Items"] == "{% $services %}"
    (inner,) = check["ItemProcessor"]["States"].values()
    assert inner["Resource"] == "arn:aws:states:::aws-sdk:ecs:describeServices"
    assert inner["Arguments"]["Services"] == ["{% $states.input.service %}"] and limits.DESCRIBE_SERVICES_BATCH == 1
    # Only the problem leaves an iteration (the events never reach the Map's result).
    assert "$states.result.Services" in inner["Output"]
    assert any(c["ErrorEquals"] == ["States.ALL"] for c in check["Catch"])


MY_CHOICES = ["ValidateInput", "ServicesReady", "ShouldMigrate", "MigrateContainerFound", "MigrationStarted", "MigrationProgress"]
MY_CHOICES += ["MigrationStopProgress", "FailRelease", "NextWave", "DeployOutcome"]
SERVICE_CHOICES = ["ServiceFound", "ServiceContainerFound", "RolloutProgress"]


@pytest.mark.parametrize("name", MY_CHOICES + SERVICE_CHOICES)
def test_a_choice_assigns_the_same_under_either_reading_of_assign_precedence(definition: dict[str, Any], name: str) -> None:
    # The States Language spec: a chosen rule's Assign replaces the state-level Assign; AWS's guide:
    # the state-level block "applies regardless of which choice rule matches". No state-level
    # Assign: every path assigns only what its own rule says, under either reading.
    states = definition["States"]
    state = states[name] if name in states else states["DeployWave"]["ItemProcessor"]["States"][name]
    assert state["Type"] == "Choice" and "Assign" not in state
    last = state["Choices"][-1]
    if last["Condition"] == "{% true %}":  # the default's assignments, as a rule
        assert last["Next"] == state["Default"] and last.get("Assign")
