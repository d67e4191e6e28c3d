"""The migrate task: its log group, its task definition and the two roles it runs with.

The task definition CDK registers is a template. A release never runs it as is: it copies the
latest revision, pins the migrate image by digest and registers a new revision (RunTask overrides
cannot change an image). The placeholder tag below therefore need not exist.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import NagPackSuppression, NagSuppressions

from config import MigrateConfig
from constructs import Construct
from release import contract

TEMPLATE_IMAGE_TAG = "release-renders-this"
#: Where migrate/Dockerfile puts Amazon RDS's global CA bundle (tests check both agree).
RDS_CA_BUNDLE_PATH = "/opt/runner/rds-global-bundle.pem"
#: How long before the state machine's migration bound the runner stops the command itself, so
#: that it exits with its own code (6) and releases the lock before Step Functions gives up.
DEADLINE_MARGIN_SECONDS = 60


def runner_deadline_seconds(timeout_minutes: int) -> int:
    """MIGRATE_DEADLINE_SECONDS for a state machine bound of ``timeout_minutes`` (config
    migrate.timeout_minutes, the same value the state machine's migration timeout is built from):
    the bound minus a minute, and never less than half the bound."""
    bound = timeout_minutes * 60
    return max(bound - DEADLINE_MARGIN_SECONDS, bound // 2)


class MigrateTask(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: MigrateConfig,
        repository: ecr.IRepository,
        database_host: str,
        database_port: int,
        database_name: str,
        owner_secret: secretsmanager.ISecret,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        # AWS-managed encryption at rest (CloudWatch Logs always encrypts): the runner never logs
        # a secret, so a customer key would add a key policy to keep and nothing to protect.
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/ecs/{config.family}",
            retention=log_retention,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.execution_role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=_ecs_tasks_principal(self),
            description=f"{config.family}: pull the migrate image, read the database secret, write logs",
        )
        # Migrations call no AWS API: the task role holds no permissions at all.
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=_ecs_tasks_principal(self),
            description=f"{config.family}: no AWS permissions, migrations only talk to PostgreSQL",
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            family=config.family,
            cpu=config.cpu,
            memory_limit_mib=config.memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.of(config.architecture),
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
            execution_role=self.execution_role,
            task_role=self.task_role,
        )
        if config.owner_secret_arn:
            # The migration owner: owns the schema, is not the master user (docs/migrations.md).
            owner_secret = secretsmanager.Secret.from_secret_complete_arn(self, "MigrationOwnerSecret", config.owner_secret_arn)
        if config.database_url_secret_arn:
            url_secret = secretsmanager.Secret.from_secret_complete_arn(self, "DatabaseUrlSecret", config.database_url_secret_arn)
            secrets = {"DATABASE_URL": ecs.Secret.from_secrets_manager(url_secret)}
        else:
            # Single JSON keys of the owner's secret: the value never appears in the task definition.
            secrets = {
                "DB_USER": ecs.Secret.from_secrets_manager(owner_secret, "username"),
                "DB_PASSWORD": ecs.Secret.from_secrets_manager(owner_secret, "password"),
            }
        self.container = self.task_definition.add_container(
            "Migrate",
            container_name=contract.MIGRATE_CONTAINER_NAME,
            image=ecs.ContainerImage.from_ecr_repository(repository, TEMPLATE_IMAGE_TAG),
            essential=True,
            readonly_root_filesystem=False,
            logging=ecs.LogDriver.aws_logs(stream_prefix=contract.MIGRATE_LOG_STREAM_PREFIX, log_group=self.log_group),
            environment={
                # Not secrets: where to connect and what to run. Credentials come from `secrets`.
                "DB_HOST": database_host,
                "DB_PORT": str(database_port),
                "DB_NAME": database_name,
                "DB_SSLMODE": config.ssl_mode,
                "DB_SSLROOTCERT": RDS_CA_BUNDLE_PATH,
                "MIGRATE_URL_TLS": config.url_tls,
                "MIGRATE_COMMAND": config.command,
                "MIGRATE_LOCK_WAIT_SECONDS": str(config.lock_wait_seconds),
                "MIGRATE_CONNECT_WAIT_SECONDS": str(config.connect_wait_seconds),
                "MIGRATE_DEADLINE_SECONDS": str(runner_deadline_seconds(config.timeout_minutes)),
            },
            secrets=secrets,
            stop_timeout=None,
        )
        NagSuppressions.add_resource_suppressions(
            self.task_definition,
            [
                NagPackSuppression(
                    id="AwsSolutions-ECS2",
                    reason="Only non-secret settings (host, port, database name, TLS mode and CA path, command, waits, deadline) are plain environment; the credentials are injected from Secrets Manager.",
                )
            ],
        )
        NagSuppressions.add_resource_suppressions(
            self.execution_role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="ecr:GetAuthorizationToken has no resource-level permissions; every other statement names the repository, log group and secret.",
                    applies_to=["Resource::*"],
                )
            ],
            apply_to_children=True,
        )


def _ecs_tasks_principal(scope: Construct) -> iam.ServicePrincipal:
    """ECS tasks of this account and region only (confused-deputy guard).

    The IfExists forms: where ECS sends aws:SourceAccount/aws:SourceArn when it assumes a task or
    execution role the conditions hold, and where it does not (AWS documents no such example for
    the execution role) the role still works.
    """
    stack = Stack.of(scope)
    return iam.ServicePrincipal(
        "ecs-tasks.amazonaws.com",
        conditions={
            "StringEqualsIfExists": {"aws:SourceAccount": stack.account},
            "ArnLikeIfExists": {"aws:SourceArn": stack.format_arn(service="ecs", resource="*", arn_format=ArnFormat.NO_RESOURCE_NAME)},
        },
    )
