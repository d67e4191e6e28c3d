"""The data stack: existing VPC and database referenced (never recreated), the two paths into the
database, RDS Proxy with TLS, and the outputs that replace CI's VPC secrets."""

from __future__ import annotations

from aws_cdk.assertions import Match

from tests.support import Synthesized

DB_SG = "sg-0a1b2c3d4e5f60003"
SUBNETS = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]


def test_existing_resources_are_referenced_not_created(synthesized: Synthesized) -> None:
    template = synthesized.template("example", "data")
    for resource_type in ("AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::RDS::DBInstance", "AWS::SecretsManager::Secret", "AWS::ECS::Cluster"):
        template.resource_count_is(resource_type, 0)


def test_database_admits_only_the_migrate_task_and_the_proxy(synthesized: Synthesized) -> None:
    template = synthesized.template("example", "data")
    ingress = template.find_resources("AWS::EC2::SecurityGroupIngress", {"Properties": {"GroupId": DB_SG}})
    sources = sorted(rule["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][0] for rule in ingress.values())
    assert [source.split("SecurityGroup")[0] for source in sources] == ["AccessMigrate", "AccessProxy"]
    assert all(rule["Properties"]["FromPort"] == rule["Properties"]["ToPort"] == 5432 for rule in ingress.values())


def test_migrate_task_egress_is_postgres_direct_and_https_only(synthesized: Synthesized) -> None:
    template = synthesized.template("example", "data")
    groups = template.find_resources(
        "AWS::EC2::SecurityGroup", {"Properties": {"GroupDescription": Match.string_like_regexp("^Migrate task")}}
    )
    (group,) = groups.values()
    (egress,) = group["Properties"]["SecurityGroupEgress"]
    assert (egress["CidrIp"], egress["FromPort"], egress["ToPort"]) == ("0.0.0.0/0", 443, 443)
    template.has_resource_properties(
        "AWS::EC2::SecurityGroupEgress",
        {
            "DestinationSecurityGroupId": DB_SG,
            "FromPort": 5432,
            "ToPort": 5432,
            "GroupId": {"Fn::GetAtt": [Match.string_like_regexp("^AccessMigrate"), "GroupId"]},
        },
    )


def test_proxy_requires_tls_and_signs_in_with_the_app_secret(synthesized: Synthesized) -> None:
    template = synthesized.template("example", "data")
    template.has_resource_properties(
        "AWS::RDS::DBProxy",
        {
            "EngineFamily": "POSTGRESQL",
            "RequireTLS": True,
            "Auth": [{"AuthScheme": "SECRETS", "IAMAuth": "DISABLED", "SecretArn": Match.string_like_regexp(r":secret:cashsouk/app-db-")}],
            "VpcSubnetIds": SUBNETS,
            "VpcSecurityGroupIds": [{"Fn::GetAtt": [Match.string_like_regexp("^AccessProxySecurityGroup"), "GroupId"]}],
        },
    )
    template.has_resource_properties("AWS::RDS::DBProxyTargetGroup", {"DBInstanceIdentifiers": ["cashsouk-db"]})
    template.has_resource_properties("AWS::EC2::SecurityGroupIngress", {"SourceSecurityGroupId": "sg-0a1b2c3d4e5f60004", "FromPort": 5432})


def test_proxy_role_reads_only_the_app_secret(synthesized: Synthesized) -> None:
    template = synthesized.template("example", "data")
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": [
                    {
                        "Action": Match.array_with(["secretsmanager:GetSecretValue"]),
                        "Effect": "Allow",
                        "Resource": Match.string_like_regexp(r":secret:cashsouk/app-db-"),
                    }
                ],
                "Version": "2012-10-17",
            }
        },
    )


def test_outputs_replace_the_ci_vpc_secrets(synthesized: Synthesized) -> None:
    outputs = synthesized.template("example", "data").find_outputs("*")
    for key in (
        "VpcId",
        "PrivateSubnetIds",
        "MigrateSecurityGroupId",
        "ProxySecurityGroupId",
        "ProxyEndpoint",
        "DatabaseEndpoint",
        "DatabasePort",
    ):
        assert outputs[key]["Export"] == {"Name": f"cashsouk-example-data-{key}"}, key
    assert outputs["PrivateSubnetIds"]["Value"] == ",".join(SUBNETS)
    assert not any("secret" in str(output["Value"]).lower() for output in outputs.values())


def test_new_vpc_and_database_are_hardened(synthesized: Synthesized) -> None:
    template = synthesized.template("sandbox", "data")
    template.resource_count_is("AWS::EC2::VPC", 1)
    template.resource_count_is("AWS::EC2::FlowLog", 1)
    template.has_resource(
        "AWS::RDS::DBInstance",
        {
            "Properties": Match.object_like(
                {
                    "StorageEncrypted": True,
                    "MultiAZ": True,
                    "DeletionProtection": True,
                    "EnableIAMDatabaseAuthentication": True,
                    "BackupRetentionPeriod": 7,
                    "PubliclyAccessible": False,
                }
            ),
            "DeletionPolicy": "Snapshot",
        },
    )
    template.has_resource_properties("AWS::RDS::DBParameterGroup", {"Parameters": {"rds.force_ssl": "1"}})
    template.resource_count_is("AWS::SecretsManager::RotationSchedule", 2)
