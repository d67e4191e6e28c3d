"""What a release runs and how: the migrate task and the release state machine.

Changes with the release process itself, so it deploys independently of the data and images.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_ecr as ecr

from config import EnvironmentConfig
from constructs import Construct
from constructs.migrate_task import MigrateTask
from constructs.release_state_machine import ReleaseSettings, ReleaseStateMachine, ServiceTarget
from constructs.retention import retention
from release import contract
from stacks.data_stack import DataStack
from stacks.outputs import export


class ReleaseStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        data: DataStack,
        repositories: dict[str, ecr.Repository],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.migrate = MigrateTask(
            self,
            "Migrate",
            config=config.migrate,
            repository=repositories["migrate"],
            database_host=data.database.instance.db_instance_endpoint_address,
            database_port=data.database.port,
            database_name=data.database.database_name,
            owner_secret=data.database.owner_secret,
            log_retention=retention(config.log_retention_days),
        )

        export(self, "ClusterName", config.cluster_name, "ECS cluster the services and the migrate task run in")
        export(self, "MigrateTaskFamily", config.migrate.family, "Task definition family of the migrate task")
        export(self, "MigrateLogGroupName", self.migrate.log_group.log_group_name, "Log group of the migrate task")

        # One execution = one release: migrate, then deploy the services that depend on the schema.
        self.release = ReleaseStateMachine(
            self,
            "Release",
            settings=ReleaseSettings(
                name_prefix=config.name_prefix,
                env_name=config.env_name,
                cluster_name=config.cluster_name,
                subnet_ids=data.private_subnet_ids,
                migrate_security_group_id=data.access.migrate_security_group.security_group_id,
                migrate_task_family=config.migrate.family,
                migrate_repository=repositories["migrate"],
                migrate_task_role=self.migrate.task_role,
                migrate_execution_role=self.migrate.execution_role,
                migrate_timeout=Duration.minutes(config.migrate.timeout_minutes),
                services=[
                    ServiceTarget(
                        app=app.name,
                        service_name=app.service,
                        container_name=app.container,
                        repository=repositories[app.name],
                        uses_schema=app.uses_schema,
                        task_role_arn=app.task_role_arn,
                        execution_role_arn=app.execution_role_arn,
                        after=tuple(app.after),
                    )
                    for app in config.apps
                ],
                lease_wait=Duration.minutes(config.release.lease_wait_minutes),
                rollout_timeout=Duration.minutes(config.release.rollout_timeout_minutes),
                max_parallel_rollouts=config.release.max_parallel_rollouts,
                database_instance=data.database.instance,
                snapshot_timeout=Duration.minutes(config.release.snapshot_timeout_minutes),
                notify_email=config.notifications.email,
                log_retention=retention(config.log_retention_days),
            ),
        )
        export(
            self, "StateMachineArn", self.release.state_machine.state_machine_arn, "The release state machine: one execution = one release"
        )
        export(self, "LeaseTableName", self.release.lease_table.table_name, "DynamoDB table holding the release lease")
        export(
            self,
            contract.OUTPUT_RELEASE_HISTORY_TABLE_NAME,
            self.release.history_table.table_name,
            "DynamoDB table with one record per release (newest first: Query Pk=release, ScanIndexForward=false)",
        )
        export(
            self,
            "ReleasedParameterName",
            self.release.released_parameter.parameter_name,
            "SSM parameter with the last released tag and digests",
        )
        if self.release.failure_topic is not None:
            export(
                self, "FailureTopicArn", self.release.failure_topic.topic_arn, "SNS topic told about failed, timed-out and aborted releases"
            )
