"""GitHub Actions' access to one environment: OIDC federation and two least-privilege roles.

- The deploy role serves the deploy workflow alone: its trust names the GitHub environment the
  deploy jobs declare, the workflow file and the deploy branch (GitHub's customized subject
  `repo:<o/r>:environment:<env>:job_workflow_ref:<o/r>/.github/workflows/deploy.yml@refs/heads/<branch>`,
  a one-time repository setting, docs/ci.md), so IAM, not a GitHub setting alone, decides. It may push and
  re-tag images in the project's repositories, start, follow and stop releases, read the release
  record and the lease, the migrate task's logs and the environment's stack outputs. No ECS, no
  IAM, no KMS, no execution history: nothing a task definition holds reaches CI.
- The review role is for the pull-request diff workflow (pr-diff.yml, started by workflow_run on
  the default branch: it runs the base branch's tooling on the pull request's uploaded assembly, never
  the pull request's code): it reads the four stacks' templates and nothing else. `cdk diff` tries the CDK bootstrap roles, is refused, and
  goes on with this role's own credentials (docs/ci.md, "cdk diff without the bootstrap roles").

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
from release import contract

GITHUB_OIDC_ISSUER = "token.actions.githubusercontent.com"
GITHUB_OIDC_AUDIENCE = "sts.amazonaws.com"

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
# What `cdk diff --method=template` calls with the review role's own credentials (the pinned CLI
# reads each stack with DescribeStacks, then GetTemplate; tests/test_ci_diff.py records the calls).
REVIEW_ACTIONS = ["cloudformation:DescribeStacks", "cloudformation:GetTemplate"]


DEPLOY_WORKFLOW = ".github/workflows/deploy.yml"
REVIEW_WORKFLOW = ".github/workflows/pr-diff.yml"
#: The repository's subject template (docs/ci.md): the default claim keys, then the job's workflow.
SUBJECT_CLAIM_KEYS = ("repo", "context", "job_workflow_ref")


def github_subject_for_environment(repository: str, environment: str) -> str:
    """GitHub's default OIDC `sub` of a job that declares `environment: <environment>`."""
    return f"repo:{repository}:environment:{environment}"


def _job_workflow_ref(repository: str, workflow: str, branch: str) -> str:
    return f"{repository}/{workflow}@refs/heads/{branch}"


def github_deploy_subject(repository: str, environment: str, branch: str) -> str:
    """The customized `sub` of a deploy.yml job on `branch` that declares `environment: <environment>`."""
    return f"{github_subject_for_environment(repository, environment)}:job_workflow_ref:{_job_workflow_ref(repository, DEPLOY_WORKFLOW, branch)}"


def github_review_subject(repository: str, branch: str) -> str:
    """The customized `sub` of the pr-diff.yml job: workflow_run runs on the default branch (`branch`)."""
    return f"repo:{repository}:ref:refs/heads/{branch}:job_workflow_ref:{_job_workflow_ref(repository, REVIEW_WORKFLOW, branch)}"


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
        deploy_environment: str,
        deploy_branch: str,
        oidc_provider_arn: str | None,
        state_machine_arn: str,
        history_table_arn: str,
        data_key_arn: str,
        service_arns: Sequence[str],
        repositories: Sequence[ecr.IRepository],
        migrate_log_group_name: str,
        stack_names: Sequence[str],
        lease_table_arn: str | None = None,
        released_parameter_arn: str | None = None,
        cluster_name: str | None = None,
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

        self.deploy_subject = github_deploy_subject(github_repository, deploy_environment, deploy_branch)
        self.review_subject = github_review_subject(github_repository, deploy_branch)
        stacks = [stack.format_arn(service="cloudformation", resource="stack", resource_name=f"{name}/*") for name in stack_names]

        self.deploy_role = iam.Role(
            self,
            "DeployRole",
            role_name=deploy_role_name,
            description=f"GitHub Actions, {deploy_environment} jobs of {DEPLOY_WORKFLOW} on {deploy_branch}: push images, start, follow and stop releases",
            assumed_by=self._github_principal(self.deploy_subject),
            max_session_duration=Duration.hours(max_session_hours),
            inline_policies={
                "release": iam.PolicyDocument(
                    statements=self._deploy_statements(
                        stack,
                        state_machine_arn=state_machine_arn,
                        history_table_arn=history_table_arn,
                        data_key_arn=data_key_arn,
                        service_arns=service_arns,
                        repositories=repositories,
                        migrate_log_group_name=migrate_log_group_name,
                        stacks=stacks,
                        lease_table_arn=lease_table_arn,
                        released_parameter_arn=released_parameter_arn,
                        cluster_name=cluster_name,
                    )
                )
            },
        )
        if cluster_name is not None:
            self._watch_tasks(stack, cluster_name)
        # ecr:GetAuthorizationToken has no resource level: it sits in a policy of its own, so the
        # `Resource::*` suppression below covers exactly this one statement and a wildcard added
        # to the release policy later would still be reported.
        self.ecr_login_policy = iam.Policy(
            self,
            "EcrLogin",
            roles=[self.deploy_role],
            statements=[iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"])],
        )

        self.review_role = iam.Role(
            self,
            "ReviewRole",
            role_name=review_role_name,
            description=f"GitHub Actions, {REVIEW_WORKFLOW} on {deploy_branch}: reads the environment's templates, for cdk diff",
            assumed_by=self._github_principal(self.review_subject),
            max_session_duration=Duration.hours(1),
            inline_policies={
                "diff": iam.PolicyDocument(
                    statements=[iam.PolicyStatement(sid="ReadDeployedTemplates", actions=REVIEW_ACTIONS, resources=stacks)]
                )
            },
        )
        self._suppress(stack_names)

    @staticmethod
    def _deploy_statements(
        stack: Stack,
        *,
        state_machine_arn: str,
        history_table_arn: str,
        data_key_arn: str,
        service_arns: Sequence[str],
        repositories: Sequence[ecr.IRepository],
        migrate_log_group_name: str,
        stacks: Sequence[str],
        lease_table_arn: str | None,
        released_parameter_arn: str | None,
        cluster_name: str | None,
    ) -> list[iam.PolicyStatement]:
        machine_name = stack.split_arn(state_machine_arn, ArnFormat.COLON_RESOURCE_NAME).resource_name
        executions = stack.format_arn(
            service="states", resource="execution", resource_name=f"{machine_name}:*", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        migrate_group = stack.format_arn(
            service="logs", resource="log-group", resource_name=migrate_log_group_name, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        migrate_streams = f"{migrate_group}:*"
        statements = [
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
            # Status only: the CLI asks DescribeExecution for METADATA_ONLY and reads error, cause
            # and outcomes from the release record; no history (GetExecutionHistory) at all.
            iam.PolicyStatement(
                sid="FollowAndStopRelease",
                actions=["states:DescribeExecution", "states:StopExecution"],
                resources=[executions],
            ),
            # The machine's data key, only through Step Functions (kms:ViaService): this role does
            # hold kms:Decrypt on it. AWS documents StartExecution's KmsAccessDeniedException for a
            # caller without the key (docs/ci.md, "What CI may read"), and what it can decrypt stays
            # small: it may call no Step Functions API that returns history or intermediate state,
            # and the machines log no execution data.
            iam.PolicyStatement(
                sid="StartWithTheReleaseDataKey",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[data_key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"states.{stack.region}.amazonaws.com"}},
            ),
            # The release record (docs/release.md): state, phase, error and cause of every execution.
            iam.PolicyStatement(
                sid="ReadReleaseHistory",
                actions=["dynamodb:GetItem", "dynamodb:Query"],
                resources=[history_table_arn],
            ),
            # `release plan`: circuit breaker, deployment controller, running task definition ARN.
            # DescribeServices returns no task definition contents.
            iam.PolicyStatement(sid="PlanServices", actions=["ecs:DescribeServices"], resources=list(service_arns)),
            # `release start --wait` follows the migration's log lines (Live Tail, else polling).
            iam.PolicyStatement(
                sid="ReadMigrateLogs",
                actions=["logs:FilterLogEvents", "logs:StartLiveTail"],
                resources=[migrate_group, migrate_streams],
            ),
            iam.PolicyStatement(sid="ReadStackOutputs", actions=["cloudformation:DescribeStacks"], resources=list(stacks)),
        ]
        if lease_table_arn is not None:
            statements.append(iam.PolicyStatement(sid="ReadLease", actions=["dynamodb:GetItem"], resources=[lease_table_arn]))
            # `release hold`/`unhold`: the hold item only (its key), never the lease itself.
            statements.append(
                iam.PolicyStatement(
                    sid="HoldReleases",
                    actions=["dynamodb:PutItem", "dynamodb:DeleteItem"],
                    resources=[lease_table_arn],
                    conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [contract.HOLD_ID]}},
                )
            )
        if cluster_name is not None:
            # `start --wait`, `watch`: why a failed rollout's tasks stopped (stop reasons and exit
            # codes; DescribeTasks returns no task definition contents), in the environment's cluster only.
            statements.append(
                iam.PolicyStatement(
                    sid="WatchServiceTasks",
                    actions=["ecs:DescribeTasks"],
                    resources=[stack.format_arn(service="ecs", resource="task", resource_name=f"{cluster_name}/*")],
                    conditions={
                        "ArnEquals": {"ecs:cluster": stack.format_arn(service="ecs", resource="cluster", resource_name=cluster_name)}
                    },
                )
            )
        if released_parameter_arn is not None:
            statements.append(iam.PolicyStatement(sid="ReadReleased", actions=["ssm:GetParameter"], resources=[released_parameter_arn]))
        return statements

    def _watch_tasks(self, stack: Stack, cluster_name: str) -> None:
        """ListTasks for `start --wait` and `watch` (DescribeTasks is in the release policy)."""
        cluster_arn = stack.format_arn(service="ecs", resource="cluster", resource_name=cluster_name)
        on_cluster = {"ArnEquals": {"ecs:cluster": cluster_arn}}
        # ListTasks has no resource level on tasks (as for ecr:GetAuthorizationToken: a policy of its
        # own, so the `Resource::*` suppression covers this one statement); the condition keeps it to the cluster.
        self.list_tasks_policy = iam.Policy(
            self,
            "ListClusterTasks",
            roles=[self.deploy_role],
            statements=[iam.PolicyStatement(sid="ListClusterTasks", actions=["ecs:ListTasks"], resources=["*"], conditions=on_cluster)],
        )
        NagSuppressions.add_resource_suppressions(
            self.list_tasks_policy,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="ecs:ListTasks has no resource-level permission on tasks; the ecs:cluster condition holds it to the environment's cluster (list only).",
                    applies_to=["Resource::*"],
                )
            ],
        )
        NagSuppressions.add_resource_suppressions(
            self.deploy_role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Task ids are known only once ECS starts a task: DescribeTasks (read-only) on tasks of the environment's cluster, by ARN and by condition.",
                    applies_to=[
                        RegexAppliesTo(regex=rf"/^Resource::arn:<AWS::Partition>:ecs:[^:]+:[^:]+:task/{re.escape(cluster_name)}/\*$/")
                    ],
                )
            ],
            apply_to_children=True,
        )

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
            self.ecr_login_policy,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason=(
                        "ecr:GetAuthorizationToken supports no resource-level permissions (AWS documents resource '*'); "
                        "it only returns a docker login token, every push or pull is still checked against the "
                        "repository statements. This policy holds that one statement and nothing else."
                    ),
                    applies_to=["Resource::*"],
                )
            ],
        )
        NagSuppressions.add_resource_suppressions(
            self.deploy_role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason=(
                        "Execution ARNs end in the execution's name, which is chosen at start: the wildcard is "
                        "limited to executions of the release state machine (DescribeExecution, StopExecution)."
                    ),
                    applies_to=[
                        RegexAppliesTo(
                            regex=(
                                r'/^Resource::arn:<AWS::Partition>:states:[^:]+:[^:]+:execution:\{"Fn::Select":\[6,'
                                rf'\{{"Fn::Split":\[":",\{{{_RELEASE_MACHINE}\}}\]\}}\]\}}:\*$/'
                            )
                        )
                    ],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason=(
                        "Log stream names end in the migrate task's id, known only once it runs: the wildcard is "
                        "limited to streams of the migrate log group (read-only)."
                    ),
                    applies_to=[
                        RegexAppliesTo(regex=rf"/^Resource::arn:<AWS::Partition>:logs:[^:]+:[^:]+:log-group:{_MIGRATE_LOG_GROUP}:\*$/")
                    ],
                ),
                _stack_id_suppression(stack_names),
            ],
        )
        NagSuppressions.add_resource_suppressions(self.review_role, [_stack_id_suppression(stack_names)])


# How cdk-nag shows the release stack's state machine and migrate log group in a finding: as the
# reference (while the aspect runs before references are resolved) or as its import.
_RELEASE_MACHINE = (
    r'("Ref":"ReleaseStateMachine[0-9A-F]{8}"|"Fn::ImportValue":"[A-Za-z0-9-]+:ExportsOutputRefReleaseStateMachine[0-9A-F]{16}")'
)
_MIGRATE_LOG_GROUP = r"(<MigrateLogs[0-9A-F]{8}>|[A-Za-z0-9-]+:ExportsOutputRefMigrateLogs[0-9A-F]{16})"


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
