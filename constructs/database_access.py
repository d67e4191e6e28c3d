"""Who may reach the database, and how.

Two paths, on purpose. Migrations connect to the instance directly from their own security group:
Prisma's advisory lock and prepared statements would pin every proxy session, so the proxy gives a
migration nothing. The services connect through RDS Proxy, which pools their connections, requires
TLS and signs in with the application user's secret from Secrets Manager.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_rds as rds

from constructs import Construct
from constructs.database import Database

_HTTPS = ec2.Port.tcp(443)


class DatabaseAccess(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        private_subnets: ec2.SubnetSelection,
        database: Database,
        client_security_group_ids: Sequence[str],
        proxy_name: str,
        iam_auth: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        db_port = ec2.Port.tcp(database.port)

        # The migrate task: PostgreSQL to the instance, HTTPS for ECR, Secrets Manager and Logs.
        self.migrate_security_group = ec2.SecurityGroup(
            self,
            "MigrateSecurityGroup",
            vpc=vpc,
            description="Migrate task: direct to PostgreSQL, HTTPS to AWS APIs",
            allow_all_outbound=False,
        )
        self.migrate_security_group.add_egress_rule(ec2.Peer.any_ipv4(), _HTTPS, "ECR image pull, Secrets Manager, CloudWatch Logs")
        self.migrate_security_group.add_egress_rule(database.security_group, db_port, "PostgreSQL instance, direct (no proxy)")
        database.security_group.add_ingress_rule(self.migrate_security_group, db_port, "Migrate task (schema owner)")

        self.proxy_security_group = ec2.SecurityGroup(
            self, "ProxySecurityGroup", vpc=vpc, description="RDS Proxy: from the services, to PostgreSQL", allow_all_outbound=False
        )
        self.proxy_security_group.add_egress_rule(database.security_group, db_port, "PostgreSQL instance")
        database.security_group.add_ingress_rule(self.proxy_security_group, db_port, "RDS Proxy (application user)")
        for index, group_id in enumerate(client_security_group_ids):
            client = ec2.SecurityGroup.from_security_group_id(self, f"Client{index}", group_id, mutable=False)
            self.proxy_security_group.add_ingress_rule(client, db_port, f"Service tasks {group_id}")

        self.proxy = rds.DatabaseProxy(
            self,
            "Proxy",
            role=self._proxy_role(),
            db_proxy_name=proxy_name,
            proxy_target=rds.ProxyTarget.from_instance(database.instance),
            secrets=[database.app_secret],
            vpc=vpc,
            vpc_subnets=private_subnets,
            security_groups=[self.proxy_security_group],
            require_tls=True,
            # For PostgreSQL proxies IAM auth is REQUIRED or DISABLED: config turns it on when the
            # apps sign in with IAM tokens instead of the app user's password.
            iam_auth=iam_auth,
            idle_client_timeout=Duration.minutes(30),
            debug_logging=False,
        )

    def _proxy_role(self) -> iam.Role:
        """The role RDS Proxy assumes to read the app user's secret (DatabaseProxy grants the read).

        Only RDS acting for a proxy of this account may assume it. The proxy's ARN ends in an id RDS
        assigns (`db-proxy:prx-…`), so the source ARN is matched up to that id. The `IfExists` forms:
        AWS recommends both keys for RDS but does not say that RDS Proxy sends them when it assumes
        its role; if it does, they hold, and if it does not, the proxy still works.
        """
        stack = Stack.of(self)
        proxies = stack.format_arn(service="rds", resource="db-proxy", resource_name="*", arn_format=ArnFormat.COLON_RESOURCE_NAME)
        return iam.Role(
            self,
            "ProxyRole",
            description="RDS Proxy: reads the application user's secret",
            assumed_by=iam.ServicePrincipal(
                "rds.amazonaws.com",
                conditions={
                    "StringEqualsIfExists": {"aws:SourceAccount": stack.account},
                    "ArnLikeIfExists": {"aws:SourceArn": proxies},
                },
            ),
        )
