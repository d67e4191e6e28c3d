"""GitHub Actions' access to one environment: OIDC federation and two least-privilege roles.

- The deploy role is for pushes to the deploy branch (`repo:<owner/name>:ref:refs/heads/<branch>`):
  push and re-tag images in the project's repositories, start and follow the release state
  machine, read the migrate task's logs and the environment's stack outputs. No ECS, no IAM
  writes: the state machine does the releasing with its own role.
- The review role is for pull requests (`repo:<owner/name>:pull_request`): read-only, enough for
  `cdk diff` (the CDK bootstrap lookup role, DescribeStacks, GetTemplate).

No long-lived keys: GitHub's OIDC token is exchanged for short-lived credentials, and each trust
policy pins the token's audience and subject exactly (StringEquals, no wildcards).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo

from constructs import Construct

GITHUB_OIDC_ISSUER = "token.actions.githubusercontent.com"
GITHUB_OIDC_AUDIENCE = "sts.amazonaws.com"
# The CDK bootstrap's default qualifier: `cdk bootstrap` names its roles with it.
CDK_QUALIFIER = "hnb659fds"

# Push (layers and manifests), pull (re-tagging reads the existing manifest) and DescribeImages
# (CI skips work for a tag that already exists: tags are immutable).
ECR_PUSH_PULL_ACTIONS = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImages",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
]


def github_subject_for_branch(repository: str, branch: str) -> str:
    return f"repo:{repository}:ref:refs/heads/{branch}"


def github_subject_for_pull_requests(repository: str) -> str:
    return f"repo:{repository}:pull_request"


class CiAccess(Construct):
    """The OIDC provider (created, or referenced by ARN) and the deploy and review roles."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deploy_role_name: str,
        review_role_name: str,
        github_repository: str,
        deploy_branch: str,
        oidc_provider_arn: str | None,
        state_machine_arn: str,
        repositories: Sequence[ecr.IRepository],
        migrate_log_group_name: str,
        stack_names: Sequence[str],
        lease_table_arn: str | None = None,
        released_parameter_arn: str | None = None,
        # The release job follows one execution to its end with one session: it must outlast the
        # state machine's execution timeout (225 min for the example's five apps).
        max_session_hours: int = 4,
    ) -> None:
        super().__init__(scope, construct_id)
        if not repositories:
            raise ValueError("CiAccess needs the repositories CI pushes to")
        stack = Stack.of(self)

        if oidc_provider_arn is None:
            # One provider per issuer per account. Outlives the stack: other stacks or teams may
            # trust it by then. No thumbprints: IAM verifies GitHub's certificate chain itself.
            provider = iam.OidcProviderNative(
                self,
                "GithubOidc",
                url=f"https://{GITHUB_OIDC_ISSUER}",
                client_ids=[GITHUB_OIDC_AUDIENCE],
                removal_policy=RemovalPolicy.RETAIN,
            )
            self.oidc_provider_arn = provider.oidc_provider_arn
        else:
            self.oidc_provider_arn = oidc_provider_arn

        self.deploy_subject = github_subject_for_branch(github_repository, deploy_branch)
        self.review_subject = github_subject_for_pull_requests(github_repository)

        # ---- deploy role ------------------------------------------------------------------------
        machine_name = stack.split_arn(state_machine_arn, ArnFormat.COLON_RESOURCE_NAME).resource_name
        executions = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        log_group = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{migrate_log_group_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        stacks = [stack.format_arn(service="cloudformation", resource="stack", resource_name=f"{name}/*") for name in stack_names]
        deploy_statements = [
            iam.PolicyStatement(
                sid="EcrLogin",
                actions=["ecr:GetAuthorizationToken"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="PushAndRetagImages",
                actions=ECR_PUSH_PULL_ACTIONS,
                resources=[repository.repository_arn for repository in repositories],
            ),
            iam.PolicyStatement(
                sid="StartRelease",
                actions=["states:StartExecution", "states:ListExecutions"],
                resources=[state_machine_arn],
            ),
            iam.PolicyStatement(
                sid="FollowRelease",
                actions=["states:DescribeExecution", "states:GetExecutionHistory"],
                resources=[executions],
            ),
            iam.PolicyStatement(
                sid="ReadMigrateLogs",
                actions=["logs:FilterLogEvents", "logs:GetLogEvents"],
                resources=[log_group],
            ),
            iam.PolicyStatement(
                sid="ReadStackOutputs",
                actions=["cloudformation:DescribeStacks"],
                resources=stacks,
            ),
        ]
        if lease_table_arn is not None:
            deploy_statements.append(iam.PolicyStatement(sid="ReadLease", actions=["dynamodb:GetItem"], resources=[lease_table_arn]))
        if released_parameter_arn is not None:
            deploy_statements.append(
                iam.PolicyStatement(sid="ReadReleased", actions=["ssm:GetParameter"], resources=[released_parameter_arn])
            )
        self.deploy_role = iam.Role(
            self,
            "DeployRole",
            role_name=deploy_role_name,
            description=f"GitHub Actions, {self.deploy_subject}: push images, start and follow releases",
            assumed_by=self._github_principal(self.deploy_subject),
            max_session_duration=Duration.hours(max_session_hours),
            inline_policies={"release": iam.PolicyDocument(statements=deploy_statements)},
        )

        # ---- review role ------------------------------------------------------------------------
        lookup_role = stack.format_arn(
            service="iam",
            region="",
            resource="role",
            resource_name=f"cdk-{CDK_QUALIFIER}-lookup-role-{stack.account}-{stack.region}",
        )
        self.review_role = iam.Role(
            self,
            "ReviewRole",
            role_name=review_role_name,
            description=f"GitHub Actions, {self.review_subject}: read-only, for cdk diff",
            assumed_by=self._github_principal(self.review_subject),
            max_session_duration=Duration.hours(1),
            inline_policies={
                "diff": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(sid="CdkLookupRole", actions=["sts:AssumeRole"], resources=[lookup_role]),
                        iam.PolicyStatement(
                            sid="ReadDeployedTemplates",
                            actions=["cloudformation:DescribeStacks", "cloudformation:GetTemplate"],
                            resources=stacks,
                        ),
                    ]
                )
            },
        )
        self._suppress(stack_names)

    def _github_principal(self, subject: str) -> iam.IPrincipal:
        return iam.WebIdentityPrincipal(
            self.oidc_provider_arn,
            conditions={
                "StringEquals": {
                    f"{GITHUB_OIDC_ISSUER}:aud": GITHUB_OIDC_AUDIENCE,
                    f"{GITHUB_OIDC_ISSUER}:sub": subject,
                }
            },
        )

    def _suppress(self, stack_names: Sequence[str]) -> None:
        NagSuppressions.add_resource_suppressions(
            self.deploy_role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason=(
                        "ecr:GetAuthorizationToken supports no resource-level permissions (AWS documents resource '*'); "
                        "it only returns a docker login token, every push or pull is still checked against the "
                        "repository statements."
                    ),
                    applies_to=["Resource::*"],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason=(
                        "Execution ARNs end in the execution's name, which is chosen at start: the wildcard is "
                        "limited to executions of the release state machine (Describe/GetExecutionHistory only)."
                    ),
                    applies_to=[RegexAppliesTo(regex=r"/^Resource::arn:<AWS::Partition>:states:.*:execution:.*:\*$/")],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason=(
                        "Log stream names end in the migrate task's id, known only once it runs: the wildcard is "
                        "limited to streams of the migrate log group (read-only)."
                    ),
                    applies_to=[RegexAppliesTo(regex=r"/^Resource::arn:<AWS::Partition>:logs:.*:log-group:.*:\*$/")],
                ),
                _stack_id_suppression(stack_names),
            ],
        )
        NagSuppressions.add_resource_suppressions(self.review_role, [_stack_id_suppression(stack_names)])


def _stack_id_suppression(stack_names: Sequence[str]) -> NagPackSuppression:
    names = "|".join(re.escape(name) for name in stack_names)
    return NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason=(
            "A stack ARN ends in a unique id CloudFormation assigns at creation: the wildcard stands for that id "
            "only, each statement names the environment's stacks one by one (read-only actions)."
        ),
        applies_to=[RegexAppliesTo(regex=rf"/^Resource::arn:<AWS::Partition>:cloudformation:[^:]+:[^:]+:stack/({names})/\*$/")],
    )
