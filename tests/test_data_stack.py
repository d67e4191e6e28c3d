"""The data stack: existing VPC and database referenced (never recreated), the two paths into the
database, RDS Proxy with TLS, and the outputs that replace CI's VPC secrets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

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


def test_proxy_role_trusts_only_rds_for_this_accounts_proxies(synthesized: Synthesized) -> None:
    for env_name in ("example", "sandbox"):
        template = synthesized.template(env_name, "data")
        roles = template.find_resources(
            "AWS::IAM::Role",
            {
                "Properties": {
                    "AssumeRolePolicyDocument": {"Statement": [Match.object_like({"Principal": {"Service": "rds.amazonaws.com"}})]}
                }
            },
        )
        (role,) = roles.values()
        (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Condition"]["StringEqualsIfExists"] == {"aws:SourceAccount": "123456789012"}
        (source_arn,) = statement["Condition"]["ArnLikeIfExists"].values()
        assert json.dumps(source_arn).endswith(':rds:ap-southeast-5:123456789012:db-proxy:*"]]}')
        template.has_resource_properties("AWS::RDS::DBProxy", {"RoleArn": {"Fn::GetAtt": [next(iter(roles)), "Arn"]}})


def _by_type(template: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {key: r for key, r in template["Resources"].items() if r["Type"] == resource_type}


def test_sandbox_rotation_reaches_secrets_manager_through_its_own_endpoint(synthesized: Synthesized) -> None:
    """The rotation functions run in the isolated subnets (no route out): an interface endpoint there,
    private DNS off, admitted only from the two rotation functions, its policy limited to rotating
    the two database secrets; each function is told the endpoint's own DNS name."""
    template = synthesized.template("sandbox", "data").to_json()
    (endpoint_key, endpoint), *others = _by_type(template, "AWS::EC2::VPCEndpoint").items()
    assert not others
    properties = endpoint["Properties"]
    assert properties["VpcEndpointType"] == "Interface" and properties["PrivateDnsEnabled"] is False
    assert properties["ServiceName"] == "com.amazonaws.ap-southeast-5.secretsmanager"
    isolated = sorted(k for k in _by_type(template, "AWS::EC2::Subnet") if k.startswith("NetworkVpcdatabaseSubnet"))
    assert sorted(subnet["Ref"] for subnet in properties["SubnetIds"]) == isolated
    routes = _by_type(template, "AWS::EC2::Route").values()
    assert not [r for r in routes if "databaseSubnet" in json.dumps(r["Properties"]["RouteTableId"])]  # isolated indeed

    rotation, general = properties["PolicyDocument"]["Statement"]
    assert rotation["Action"] == [
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
    ]
    assert sorted(r["Ref"] for r in rotation["Resource"]) == sorted(_by_type(template, "AWS::SecretsManager::SecretTargetAttachment"))
    assert general["Action"] == "secretsmanager:GetRandomPassword" and general["Resource"] == "*"
    for statement in (rotation, general):
        assert statement["Condition"] == {"StringEquals": {"aws:PrincipalAccount": "123456789012"}}

    (endpoint_group,) = [g["Fn::GetAtt"][0] for g in properties["SecurityGroupIds"]]
    ingress = [r["Properties"] for r in _by_type(template, "AWS::EC2::SecurityGroupIngress").values()]
    into_endpoint = [r for r in ingress if r["GroupId"] == {"Fn::GetAtt": [endpoint_group, "GroupId"]}]
    rotation_groups = sorted(r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in into_endpoint)
    assert len(rotation_groups) == 2 and all("RotationSecurityGroup" in g for g in rotation_groups)
    assert all((r["FromPort"], r["ToPort"]) == (443, 443) for r in into_endpoint)

    applications = _by_type(template, "AWS::Serverless::Application").values()
    assert len(applications) == 2
    for application in applications:
        parameters = application["Properties"]["Parameters"]
        assert "DnsEntries" in json.dumps(parameters["endpoint"]) and endpoint_key in json.dumps(parameters["endpoint"])
        assert parameters["vpcSubnetIds"]["Fn::Join"][1] == [{"Ref": isolated[0]}, ",", {"Ref": isolated[1]}]
        (group,) = [parameters["vpcSecurityGroupIds"]["Fn::GetAtt"][0]]
        assert group in rotation_groups
        # No way out but PostgreSQL and the endpoint.
        assert "SecurityGroupEgress" not in template["Resources"][group]["Properties"]
        egress = [
            r["Properties"]
            for r in _by_type(template, "AWS::EC2::SecurityGroupEgress").values()
            if r["Properties"]["GroupId"]["Fn::GetAtt"][0] == group
        ]
        assert sorted(e["DestinationSecurityGroupId"]["Fn::GetAtt"][0] for e in egress) == sorted(
            [endpoint_group, "DatabaseSecurityGroup5C91FDCB"]
        )


def test_existing_database_needs_no_endpoint(synthesized: Synthesized) -> None:
    synthesized.template("example", "data").resource_count_is("AWS::EC2::VPCEndpoint", 0)
