"""The PostgreSQL database: an existing instance referenced by identifier, or a new one.

Either way it exposes the same things: the instance, its security group, and two secrets. The
owner's secret is what migrations use (ALTER needs ownership); the application user's secret is
what RDS Proxy signs in with for the services.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import NagPackSuppression, NagSuppressions

from config import DatabaseConfig
from constructs import Construct

_ENGINE_VERSIONS = {
    "15": rds.PostgresEngineVersion.VER_15,
    "16": rds.PostgresEngineVersion.VER_16,
    "17": rds.PostgresEngineVersion.VER_17,
}


class Database(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DatabaseConfig, vpc: ec2.IVpc, name_prefix: str) -> None:
        super().__init__(scope, construct_id)
        self.port = (config.existing or config.new).port  # type: ignore[union-attr]
        self.database_name = config.name
        if config.existing is not None:
            existing = config.existing
            self.security_group = ec2.SecurityGroup.from_security_group_id(self, "SecurityGroup", existing.security_group_id)
            self.instance: rds.IDatabaseInstance = rds.DatabaseInstance.from_database_instance_attributes(
                self,
                "Instance",
                instance_identifier=existing.instance_identifier,
                instance_endpoint_address=existing.endpoint,
                port=existing.port,
                security_groups=[self.security_group],
                engine=rds.DatabaseInstanceEngine.POSTGRES,
            )
            self.owner_secret: secretsmanager.ISecret = secretsmanager.Secret.from_secret_complete_arn(
                self, "OwnerSecret", existing.owner_secret_arn
            )
            self.app_secret: secretsmanager.ISecret = secretsmanager.Secret.from_secret_complete_arn(
                self, "AppSecret", existing.app_secret_arn
            )
            return

        new = config.new
        assert new is not None
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="PostgreSQL: reached only from the migrate task and the proxy",
            allow_all_outbound=False,
        )
        engine = rds.DatabaseInstanceEngine.postgres(version=_ENGINE_VERSIONS[new.postgres_major_version])
        parameters = rds.ParameterGroup(self, "Parameters", engine=engine, parameters={"rds.force_ssl": "1"})
        instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=engine,
            instance_type=ec2.InstanceType(new.instance_type),
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.security_group],
            port=new.port,
            database_name=config.name,
            credentials=rds.Credentials.from_generated_secret("postgres", secret_name=f"{name_prefix}/db-owner"),
            parameter_group=parameters,
            allocated_storage=new.allocated_storage_gib,
            storage_encrypted=True,
            multi_az=new.multi_az,
            iam_authentication=True,
            deletion_protection=True,
            backup_retention=Duration.days(7),
            auto_minor_version_upgrade=True,
            cloudwatch_logs_exports=["postgresql", "upgrade"],
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        assert instance.secret is not None
        self.instance = instance
        self.owner_secret = instance.secret
        self.app_secret = rds.DatabaseSecret(
            self, "AppSecret", username=new.app_username, secret_name=f"{name_prefix}/db-app", master_secret=instance.secret
        ).attach(instance)
        instance.add_rotation_single_user(automatically_after=Duration.days(30))
        instance.add_rotation_multi_user("AppUserRotation", secret=self.app_secret, automatically_after=Duration.days(30))
        if new.port == 5432:
            NagSuppressions.add_resource_suppressions(
                instance,
                [
                    NagPackSuppression(
                        id="AwsSolutions-RDS11",
                        reason="Prisma, psql and the apps expect PostgreSQL's port; access is limited by security groups, not by obscurity.",
                    )
                ],
            )
