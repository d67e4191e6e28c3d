"""What a release runs and how: the migrate task and the release state machine.

Changes with the release process itself, so it deploys independently of the data and images.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ecr as ecr

from config import EnvironmentConfig
from constructs import Construct
from constructs.migrate_task import MigrateTask
from constructs.retention import retention
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
