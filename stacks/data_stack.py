"""Deployed once, changed rarely: the network, the database and the paths into it."""

from __future__ import annotations

from typing import Any

from aws_cdk import Fn, Stack

from config import EnvironmentConfig
from constructs import Construct
from constructs.database import Database
from constructs.database_access import DatabaseAccess
from constructs.network import Network
from constructs.retention import retention
from stacks.outputs import export


class DataStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, **kwargs: Any) -> None:
        vpc = config.vpc.existing or config.vpc.new
        assert vpc is not None
        self._zones = list(vpc.availability_zones)
        super().__init__(scope, construct_id, **kwargs)
        log_retention = retention(config.log_retention_days)
        self.network = Network(self, "Network", config=config.vpc, log_retention=log_retention)
        self.database = Database(
            self, "Database", config=config.database, vpc=self.network.vpc, name_prefix=f"{config.name_prefix}-{config.env_name}"
        )
        self.access = DatabaseAccess(
            self,
            "Access",
            vpc=self.network.vpc,
            private_subnets=self.network.private_subnets,
            database=self.database,
            client_security_group_ids=config.database.client_security_group_ids,
            proxy_name=f"{config.name_prefix}-{config.env_name}",
            iam_auth=config.database.proxy_iam_auth,
        )
        self.private_subnet_ids = [subnet.subnet_id for subnet in self.network.vpc.private_subnets]

        export(self, "VpcId", self.network.vpc.vpc_id, "VPC of the tasks and the proxy")
        export(self, "PrivateSubnetIds", Fn.join(",", self.private_subnet_ids), "Private subnets for the migrate task (comma-separated)")
        export(self, "MigrateSecurityGroupId", self.access.migrate_security_group.security_group_id, "Security group of the migrate task")
        export(self, "ProxySecurityGroupId", self.access.proxy_security_group.security_group_id, "Security group of RDS Proxy")
        export(self, "ProxyEndpoint", self.access.proxy.endpoint, "Database endpoint for the services (RDS Proxy, TLS required)")
        export(self, "DatabaseEndpoint", self.database.instance.db_instance_endpoint_address, "Instance endpoint, for migrations only")
        export(self, "DatabasePort", str(self.database.port), "PostgreSQL port")

    @property
    def availability_zones(self) -> list[str]:
        # The configured zones: without this override a new VPC makes synth ask AWS for them.
        return self._zones
