"""The PostgreSQL database: an existing instance referenced by identifier, or a new one.

Either way it exposes the same things: the instance, its security group, and two secrets. The
owner's secret is what migrations use (ALTER needs ownership); the application user's secret is
what RDS Proxy signs in with for the services.
"""

from __future__ import annotations

from aws_cdk import CfnResource, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import NagPackSuppression, NagSuppressions

from config import DatabaseConfig
from constructs import Construct

# What the single- and multi-user rotation functions call on a secret (AWS's rotation templates).
ROTATION_ACTIONS = [
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
]

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
        self._add_rotation(vpc, instance)
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

    def _add_rotation(self, vpc: ec2.IVpc, instance: rds.DatabaseInstance) -> None:
        """Rotate both secrets from the isolated subnets, through a Secrets Manager endpoint.

        The rotation functions run beside the instance, in subnets with no route out. They reach
        Secrets Manager through an interface endpoint there, by its own DNS name (private DNS off:
        nothing else in the VPC is redirected to it), admitted by security group only from the
        rotation functions, and its policy allows only the calls rotation makes, on these two
        secrets. Without it, rotation times out.
        """
        self.secrets_endpoint = self._secrets_endpoint(vpc)
        # `<hosted zone>:<name>`, the regional endpoint-specific name first (CloudFormation's DnsEntries).
        dns_name = Fn.select(1, Fn.split(":", Fn.select(0, self.secrets_endpoint.vpc_endpoint_dns_entries)))
        self.rotation_security_groups: list[ec2.SecurityGroup] = []
        for rotation_id, secret in (("OwnerRotation", None), ("AppUserRotation", self.app_secret)):
            group = ec2.SecurityGroup(
                self,
                f"{rotation_id}SecurityGroup",
                vpc=vpc,
                description=f"{rotation_id} function: PostgreSQL and Secrets Manager only",
                allow_all_outbound=False,
            )
            # Ingress on the endpoint and egress from the function, both ways by Connections (the
            # rotation adds the same for PostgreSQL).
            self.secrets_endpoint.connections.allow_default_port_from(group, f"{rotation_id} function")
            isolated = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
            every_30_days = Duration.days(30)
            if secret is None:
                rotation = instance.add_rotation_single_user(
                    automatically_after=every_30_days, endpoint=self.secrets_endpoint, security_group=group, vpc_subnets=isolated
                )
            else:
                rotation = instance.add_rotation_multi_user(
                    rotation_id,
                    secret=secret,
                    automatically_after=every_30_days,
                    endpoint=self.secrets_endpoint,
                    security_group=group,
                    vpc_subnets=isolated,
                )
            # CDK derives the URL from the endpoint's id (`https://vpce-….secretsmanager.<region>.<suffix>`),
            # not a name AWS documents: give the function the endpoint-specific DNS name AWS reports.
            application = rotation.node.default_child
            assert isinstance(application, CfnResource)
            application.add_property_override("Parameters.endpoint", Fn.join("", ["https://", dns_name]))
            self.rotation_security_groups.append(group)

    def _secrets_endpoint(self, vpc: ec2.IVpc) -> ec2.InterfaceVpcEndpoint:
        group = ec2.SecurityGroup(
            self,
            "SecretsManagerEndpointSecurityGroup",
            vpc=vpc,
            description="Secrets Manager endpoint: from the rotation functions",
            allow_all_outbound=False,
        )
        endpoint = ec2.InterfaceVpcEndpoint(
            self,
            "SecretsManagerEndpoint",
            vpc=vpc,
            service=ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
            subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            private_dns_enabled=False,
            open=False,
            security_groups=[group],
        )
        in_account = {"StringEquals": {"aws:PrincipalAccount": Stack.of(self).account}}
        endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="RotateTheDatabaseSecrets",
                principals=[iam.AnyPrincipal()],
                actions=ROTATION_ACTIONS,
                resources=[self.owner_secret.secret_arn, self.app_secret.secret_arn],
                conditions=in_account,
            )
        )
        # GetRandomPassword has no resource: the new password comes from it.
        endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="GeneratePasswords",
                principals=[iam.AnyPrincipal()],
                actions=["secretsmanager:GetRandomPassword"],
                resources=["*"],
                conditions=in_account,
            )
        )
        return endpoint
