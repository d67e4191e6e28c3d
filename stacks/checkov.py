"""Checkov's findings on the synthesized templates that are accepted, each with its reason.

Checkov reads a resource's `Metadata.checkov.skip` (id + comment). Each rule below names the check,
the resource type and which resources (by construct path), so that a new resource of the same type
is still reported. Counts before and after: docs/ci.md, "Checkov".
"""

from __future__ import annotations

from dataclasses import dataclass

import jsii
from aws_cdk import CfnResource, IAspect

from constructs import IConstruct


@dataclass(frozen=True)
class Accepted:
    check: str
    resource_type: str
    path_suffixes: tuple[str, ...]  # construct paths ending so; () = every resource of the type
    reason: str


ACCEPTED: tuple[Accepted, ...] = (
    Accepted(
        "CKV_AWS_136",
        "AWS::ECR::Repository",
        (),
        "ECR encrypts images at rest (AES256). A KMS key here would be one more grant for every execution role that pulls, and "
        "the setting cannot change on an existing repository (it would be replaced, images lost); access is IAM on the repository.",
    ),
    Accepted(
        "CKV_AWS_119",
        "AWS::DynamoDB::Table",
        ("/Release/LeaseTable/Resource", "/Release/HistoryTable/Resource"),
        "Encrypted with the AWS managed DynamoDB key. The lease holds an execution ARN and an expiry, the record what CI reads "
        "(state, cause, digests: no secret); who reads is decided by IAM on the table, which a customer key would not narrow.",
    ),
    Accepted(
        "CKV_AWS_27",
        "AWS::SQS::Queue",
        ("/Release/EventDeadLetters/Resource",),
        "Encrypted at rest with SQS-managed keys (SqsManagedSseEnabled; checkov only counts KmsMasterKeyId). It holds "
        "EventBridge event envelopes of failed deliveries (execution ARN and status), no secret.",
    ),
    Accepted(
        "CKV_AWS_158",
        "AWS::Logs::LogGroup",
        ("/Migrate/Logs/Resource", "/MigrateLogs/Resource", "/Network/FlowLogs/Resource"),
        "The migrate log group holds the runner's lines and the command's output with the password redacted, and CI follows "
        "it (FilterLogEvents, Live Tail); the flow-log group holds network metadata. CloudWatch Logs encrypts both at rest; "
        "execution data, the sensitive part, is kept out of every log (docs/release.md, 'Execution data').",
    ),
    Accepted(
        "CKV_AWS_149",
        "AWS::SecretsManager::Secret",
        (),
        "Encrypted with the AWS managed Secrets Manager key: the ECS execution roles that inject these secrets exist outside "
        "this app and would each need a grant on a customer key; access is IAM on each secret.",
    ),
    Accepted(
        "CKV_AWS_118",
        "AWS::RDS::DBInstance",
        (),
        "Sandbox instance: CloudWatch's standard RDS metrics suffice; enhanced monitoring would add an IAM role with an AWS "
        "managed policy for OS-level metrics nobody here reads.",
    ),
    *(
        Accepted(
            check,
            "AWS::Lambda::Function",
            ("/Custom::VpcRestrictDefaultSGCustomResourceProvider/Handler",),
            f"CDK's own provider that empties the new VPC's default security group once, at deploy time ({what}).",
        )
        for check, what in (
            ("CKV_AWS_115", "no concurrency to reserve"),
            ("CKV_AWS_116", "CloudFormation retries and reports its failures; no dead-letter queue"),
            ("CKV_AWS_117", "it calls the EC2 API only, no VPC resource"),
        )
    ),
)


@jsii.implements(IAspect)
class CheckovAcceptance:
    """Adds `Metadata.checkov.skip` with the reason to the resources each rule names."""

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CfnResource):
            return
        path = node.node.path
        skips = [
            {"id": rule.check, "comment": rule.reason}
            for rule in ACCEPTED
            if node.cfn_resource_type == rule.resource_type and (not rule.path_suffixes or path.endswith(rule.path_suffixes))
        ]
        if skips:
            node.add_metadata("checkov", {"skip": skips})
