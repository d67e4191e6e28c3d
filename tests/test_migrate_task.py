"""The migrate task definition: Fargate, sized from config, secrets injected by key, logs retained,
roles holding only what the task needs."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from config import load_config
from constructs.migrate_task import RDS_CA_BUNDLE_PATH, runner_deadline_seconds
from tests.support import Synthesized

#: config/example.yaml migrate.owner_secret_arn: the migration owner, not the RDS master user.
OWNER_SECRET = "arn:aws:secretsmanager:ap-southeast-5:123456789012:secret:cashsouk/migrate-owner-AbCdEf"
MASTER_SECRET = "arn:aws:secretsmanager:ap-southeast-5:123456789012:secret:rds!db-0example-AbCdEf"


def _container(synthesized: Synthesized) -> dict[str, Any]:
    (definition,) = synthesized.template("example", "release").find_resources("AWS::ECS::TaskDefinition").values()
    (container,) = definition["Properties"]["ContainerDefinitions"]
    assert isinstance(container, dict)
    return container


def test_task_definition_is_fargate_arm64_sized_from_config(synthesized: Synthesized) -> None:
    synthesized.template("example", "release").has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "Family": "cashsouk-migrate",
            "Cpu": "256",
            "Memory": "512",
            "NetworkMode": "awsvpc",
            "RequiresCompatibilities": ["FARGATE"],
            "RuntimePlatform": {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"},
        },
    )


def test_one_essential_container_with_credentials_from_secret_keys(synthesized: Synthesized) -> None:
    container = _container(synthesized)
    assert container["Name"] == "migrate"
    assert container["Essential"] is True
    assert container["Secrets"] == [
        {"Name": "DB_USER", "ValueFrom": f"{OWNER_SECRET}:username::"},
        {"Name": "DB_PASSWORD", "ValueFrom": f"{OWNER_SECRET}:password::"},
    ]
    environment = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert environment == {
        "DB_HOST": "cashsouk-db.c0example0.ap-southeast-5.rds.amazonaws.com",  # the instance, not the proxy
        "DB_PORT": "5432",
        "DB_NAME": "cashsouk",
        "DB_SSLMODE": "verify-full",
        "DB_SSLROOTCERT": RDS_CA_BUNDLE_PATH,  # where migrate/Dockerfile puts the RDS global bundle
        "MIGRATE_URL_TLS": "prisma",
        "MIGRATE_COMMAND": "npx prisma migrate deploy",
        "MIGRATE_LOCK_WAIT_SECONDS": "600",
        "MIGRATE_CONNECT_WAIT_SECONDS": "120",
        "MIGRATE_DEADLINE_SECONDS": "840",  # migrate.timeout_minutes 15 = 900 s, minus 60 s
    }


def test_image_comes_from_the_migrate_repository(synthesized: Synthesized) -> None:
    image = _container(synthesized)["Image"]["Fn::Join"][1]
    assert any("RepositoriesMigrate" in str(part) for part in image)


def test_logs_go_to_the_retained_log_group(synthesized: Synthesized) -> None:
    template = synthesized.template("example", "release")
    template.has_resource(
        "AWS::Logs::LogGroup", {"Properties": {"LogGroupName": "/ecs/cashsouk-migrate", "RetentionInDays": 30}, "DeletionPolicy": "Retain"}
    )
    options = _container(synthesized)["LogConfiguration"]
    assert options["LogDriver"] == "awslogs"
    assert options["Options"]["awslogs-stream-prefix"] == "migrate"


def test_execution_role_reads_only_the_owner_secret_and_its_repository(synthesized: Synthesized) -> None:
    template = synthesized.template("example", "release")
    policies = template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"PolicyName": Match.string_like_regexp("^MigrateExecutionRole")}}
    )
    (policy,) = policies.values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    by_action = {
        str(sorted(statement["Action"]) if isinstance(statement["Action"], list) else statement["Action"]): statement["Resource"]
        for statement in statements
    }
    assert by_action["['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue']"] == OWNER_SECRET
    assert by_action["ecr:GetAuthorizationToken"] == "*"  # the API has no resource level
    assert [s for s in statements if s["Resource"] == "*"] == [s for s in statements if s["Action"] == "ecr:GetAuthorizationToken"]
    assert not any("*" in str(statement["Action"]) for statement in statements)


def test_task_role_has_no_permissions(synthesized: Synthesized) -> None:
    template = synthesized.template("example", "release")
    policies = template.find_resources("AWS::IAM::Policy", {"Properties": {"PolicyName": Match.string_like_regexp("^MigrateTaskRole")}})
    assert policies == {}


def test_task_family_and_log_group_are_exported(synthesized: Synthesized) -> None:
    outputs = synthesized.template("example", "release").find_outputs("*")
    assert outputs["MigrateTaskFamily"]["Value"] == "cashsouk-migrate"
    assert outputs["MigrateTaskFamily"]["Export"] == {"Name": "cashsouk-example-release-MigrateTaskFamily"}
    assert outputs["MigrateLogGroupName"]["Export"] == {"Name": "cashsouk-example-release-MigrateLogGroupName"}
    assert outputs["ClusterName"]["Value"] == "default"


def test_the_master_secret_is_not_readable_by_the_migrate_task(synthesized: Synthesized) -> None:
    template = synthesized.template("example", "release")
    assert MASTER_SECRET not in json.dumps(template.to_json())


def test_deadline_sits_below_the_state_machine_bound_from_the_same_config_value(synthesized: Synthesized) -> None:
    config = load_config("example")
    bound = config.migrate.timeout_minutes * 60
    environment = {item["Name"]: item["Value"] for item in _container(synthesized)["Environment"]}
    assert int(environment["MIGRATE_DEADLINE_SECONDS"]) == runner_deadline_seconds(config.migrate.timeout_minutes) == bound - 60
    # The runner gives up waiting for the lock before its own deadline.
    assert config.migrate.lock_wait_seconds <= int(environment["MIGRATE_DEADLINE_SECONDS"])


def test_runner_deadline_for_short_and_long_bounds() -> None:
    assert runner_deadline_seconds(1) == 30  # never less than half the bound
    assert runner_deadline_seconds(2) == 60
    assert runner_deadline_seconds(120) == 7140


def test_task_roles_trust_only_ecs_tasks_of_this_account_and_region(synthesized: Synthesized) -> None:
    """Confused-deputy guard on both roles; the IfExists forms keep the roles working where ECS
    sends no source keys (docs/migrations.md)."""
    roles = synthesized.template("example", "release").find_resources(
        "AWS::IAM::Role",
        {"Properties": {"AssumeRolePolicyDocument": {"Statement": [{"Principal": {"Service": "ecs-tasks.amazonaws.com"}}]}}},
    )
    assert len(roles) == 2
    for role in roles.values():
        (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        condition = statement["Condition"]
        assert condition["StringEqualsIfExists"] == {"aws:SourceAccount": "123456789012"}
        source_arn = json.dumps(condition["ArnLikeIfExists"]["aws:SourceArn"])
        assert ":ecs:ap-southeast-5:123456789012:*" in source_arn
