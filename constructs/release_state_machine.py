"""The release state machine: one execution = one release (contract in docs/release.md).

Besides the machine this construct owns what a release needs to be safe and visible: the lease
table (one release at a time), the SSM parameter recording what was released, the log group,
a second tiny machine that frees the lease of an execution that ended without freeing it, and
(optionally) an SNS topic told about failed, timed-out and aborted releases.

IAM is written out statement by statement; every wildcard is either forced by AWS (no
resource-level permissions) or bounded by a condition, and each is justified to cdk-nag below.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_ssm as ssm
from aws_cdk import aws_stepfunctions as sfn
from cdk_nag import NagPackSuppression, NagSuppressions

from constructs import Construct
from constructs.release_definition import (
    ROLLOUT_POLL_MODES,
    AppTarget,
    DefinitionSettings,
    RolloutPoll,
    build_definition,
    build_lease_cleanup_definition,
)

# The rule Step Functions manages for ecs:runTask.sync (it watches the task's state changes).
ECS_SYNC_RULE = "StepFunctionsGetEventsForECSTaskRule"
ENDED_BADLY = ["FAILED", "TIMED_OUT", "ABORTED"]
# At most 10 s: the worst-case latency a rollout wait adds (one transition per poll with
# rollout_poll="retry", three with "wait-loop").
DEFAULT_POLL_INTERVAL = Duration.seconds(10)
DEFAULT_LEASE_RETRY_INTERVAL = Duration.seconds(15)
# ecs:DescribeServices takes at most 10 services per call.
MAX_SERVICES = 10


@dataclass(frozen=True)
class ServiceTarget:
    """An existing ECS service a release may deploy.

    `task_role_arn` / `execution_role_arn` are the roles of the service's task definition: the
    release registers a new revision with them, which needs iam:PassRole on exactly those roles.
    None means the task definition has no such role. If it does have one that is not listed here,
    RegisterTaskDefinition for that service is denied (the release fails with the AWS error, after
    the migration, before that service is touched): list the roles in the environment's config.
    """

    app: str
    service_name: str
    container_name: str
    repository: ecr.IRepository
    uses_schema: bool
    task_role_arn: str | None = None
    execution_role_arn: str | None = None


class ReleaseStateMachine(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        env_name: str,
        cluster_name: str,
        subnet_ids: Sequence[str],
        migrate_security_group_id: str,
        migrate_task_family: str,
        migrate_container_name: str,
        migrate_repository: ecr.IRepository,
        migrate_task_role: iam.IRole,
        migrate_execution_role: iam.IRole,
        migrate_timeout: Duration,
        services: Sequence[ServiceTarget],
        lease_wait: Duration,
        rollout_timeout: Duration,
        notify_email: str | None,
        failure_notifications: bool = True,
        poll_interval: Duration = DEFAULT_POLL_INTERVAL,
        rollout_poll: RolloutPoll = "retry",
        lease_retry_interval: Duration = DEFAULT_LEASE_RETRY_INTERVAL,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        if not services:
            raise ValueError("a release needs at least one service")
        apps = [s.app for s in services]
        if len(set(apps)) != len(apps):
            raise ValueError(f"duplicate app keys: {apps}")
        if "migrate" in apps:
            raise ValueError("'migrate' is reserved for the migrate image")
        if len(services) > MAX_SERVICES:
            # CheckServices describes every requested service in one DescribeServices call, which
            # takes at most 10 names (InvalidParameterException beyond that).
            raise ValueError(f"a release can deploy at most {MAX_SERVICES} services (one DescribeServices call), got {len(services)}")
        if not 1 <= poll_interval.to_seconds() <= 10:
            raise ValueError("poll_interval must be 1-10 s: it is the latency a rollout wait adds")
        if rollout_poll not in ROLLOUT_POLL_MODES:
            raise ValueError(f"rollout_poll must be one of {', '.join(ROLLOUT_POLL_MODES)}, got {rollout_poll!r}")
        stack = Stack.of(self)
        name = f"{name_prefix}-{env_name}-release"

        # ---- state ----------------------------------------------------------------------------
        # One item (LeaseId = "release") at most; AWS-managed encryption, on-demand, TTL on
        # ExpiresAt so an abandoned lease also disappears on its own (the machine does not rely on
        # the TTL sweep: an expired lease is free by its ExpiresAt alone).
        self.lease_table = dynamodb.Table(
            self,
            "LeaseTable",
            table_name=f"{name}-lease",
            partition_key=dynamodb.Attribute(name="LeaseId", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute="ExpiresAt",
            # Cheap for a one-item table and keeps cdk-nag's DDB3 satisfied without a suppression.
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True),
            removal_policy=RemovalPolicy.DESTROY,
        )
        # The released tag and digests. CloudFormation writes the initial value once; releases
        # overwrite it. Changing this resource's properties would reset it to the initial value.
        self.released_parameter = ssm.StringParameter(
            self,
            "ReleasedParameter",
            parameter_name=f"/{name_prefix}/{env_name}/release/current",
            description=f"{env_name}: the last release (image tag, digests per app, execution, time); written by {name}",
            string_value=json.dumps({"imageTag": None, "digests": {}, "execution": None, "releasedAt": None}),
            tier=ssm.ParameterTier.STANDARD,
        )
        # Logged with execution data: the definition names resources, never secrets; task
        # definitions carry secrets only as Secrets Manager references (valueFrom), never values.
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{name}",
            retention=log_retention,
            removal_policy=RemovalPolicy.RETAIN,
        )

        # ---- the definition -------------------------------------------------------------------
        lease_seconds = int(lease_wait.to_seconds())
        migrate_seconds = int(migrate_timeout.to_seconds())
        rollout_seconds = int(rollout_timeout.to_seconds())
        # Bounds every path: lease wait + migration + every service's rollout, plus slack for the
        # API calls. The lease expires with the execution, so a lost lease frees itself. A poll
        # takes its interval plus its own DescribeServices call (and, with "wait-loop", two more
        # transitions): each service's slack is 300 s, or 1 s per poll if that is more.
        rollout_slack = max(300, poll_budget(rollout_timeout, poll_interval))
        execution_timeout = lease_seconds + migrate_seconds + len(services) * (rollout_seconds + rollout_slack) + 900
        self.settings = DefinitionSettings(
            cluster_name=cluster_name,
            subnet_ids=list(subnet_ids),
            security_group_ids=[migrate_security_group_id],
            migrate_family=migrate_task_family,
            migrate_container=migrate_container_name,
            migrate_repository_name=migrate_repository.repository_name,
            migrate_repository_uri=migrate_repository.repository_uri,
            apps=[
                AppTarget(
                    app=s.app,
                    service_name=s.service_name,
                    container_name=s.container_name,
                    repository_name=s.repository.repository_name,
                    repository_uri=s.repository.repository_uri,
                    uses_schema=s.uses_schema,
                )
                for s in services
            ],
            lease_table_name=self.lease_table.table_name,
            released_parameter_name=self.released_parameter.parameter_name,
            lease_wait_seconds=lease_seconds,
            lease_retry_seconds=int(lease_retry_interval.to_seconds()),
            migrate_timeout_seconds=migrate_seconds,
            rollout_timeout_seconds=rollout_seconds,
            poll_seconds=int(poll_interval.to_seconds()),
            execution_timeout_seconds=execution_timeout,
            rollout_poll=rollout_poll,
        )
        self.execution_timeout = Duration.seconds(execution_timeout)

        # ---- IAM --------------------------------------------------------------------------------
        def arn(service: str, resource: str, resource_name: str | None = None) -> str:
            return stack.format_arn(service=service, resource=resource, resource_name=resource_name)

        cluster_arn = arn("ecs", "cluster", cluster_name)
        on_cluster = {"ArnEquals": {"ecs:cluster": cluster_arn}}
        migrate_task_definitions = arn("ecs", "task-definition", f"{migrate_task_family}:*")
        cluster_tasks = arn("ecs", "task", f"{cluster_name}/*")
        all_task_definitions = arn("ecs", "task-definition", "*")
        sync_rule = arn("events", "rule", ECS_SYNC_RULE)
        pass_roles = [migrate_task_role.role_arn, migrate_execution_role.role_arn]
        for s in services:
            for role_arn in (s.task_role_arn, s.execution_role_arn):
                if role_arn and role_arn not in pass_roles:
                    pass_roles.append(role_arn)
        repositories = [migrate_repository, *(s.repository for s in services)]

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"{name}: resolve digests, hold the lease, run the migration, deploy the services",
        )
        statements = [
            iam.PolicyStatement(
                sid="RunMigrateTaskRevisions",
                actions=["ecs:RunTask"],
                resources=[migrate_task_definitions],
                conditions=on_cluster,
            ),
            iam.PolicyStatement(
                sid="WatchAndStopMigrateTask",
                actions=["ecs:DescribeTasks", "ecs:StopTask"],
                resources=[cluster_tasks],
                conditions=on_cluster,
            ),
            iam.PolicyStatement(
                sid="EcsSyncManagedRule",
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[sync_rule],
            ),
            iam.PolicyStatement(
                sid="RenderTaskDefinitions",
                actions=["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="TagOnCreate",
                actions=["ecs:TagResource"],
                resources=[all_task_definitions, cluster_tasks],
                conditions={"StringEquals": {"ecs:CreateAction": ["RegisterTaskDefinition", "RunTask"]}},
            ),
            iam.PolicyStatement(
                sid="PassTaskRoles",
                actions=["iam:PassRole"],
                resources=pass_roles,
                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                sid="DeployServices",
                actions=["ecs:DescribeServices", "ecs:UpdateService"],
                resources=[arn("ecs", "service", f"{cluster_name}/{s.service_name}") for s in services],
            ),
            iam.PolicyStatement(
                sid="ResolveDigests",
                actions=["ecr:DescribeImages"],
                resources=[r.repository_arn for r in repositories],
            ),
            iam.PolicyStatement(
                sid="Lease",
                actions=["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:DeleteItem"],
                resources=[self.lease_table.table_arn],
            ),
            iam.PolicyStatement(
                sid="RecordRelease",
                actions=["ssm:PutParameter"],
                resources=[self.released_parameter.parameter_arn],
            ),
        ]
        self.policy = iam.Policy(self, "Policy", statements=statements, roles=[self.role])

        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(stack.to_json_string(build_definition(self.settings))),
            role=self.role,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            tracing_enabled=True,
            comment="One execution = one release. Input: {imageTag, services?, migrate?}",
        )
        self.state_machine.node.add_dependency(self.policy)

        ended_badly = events.EventPattern(
            source=["aws.states"],
            detail_type=["Step Functions Execution Status Change"],
            detail={"status": ENDED_BADLY, "stateMachineArn": [self.state_machine.state_machine_arn]},
        )
        self._lease_cleanup(name, ended_badly, log_retention)
        self.failure_topic: sns.Topic | None = (
            self._failure_topic(stack, name, ended_badly, notify_email) if failure_notifications else None
        )
        self._suppress(stack, migrate_task_definitions, cluster_tasks, all_task_definitions)

    def _lease_cleanup(self, name: str, ended_badly: events.EventPattern, log_retention: logs.RetentionDays) -> None:
        """The lease of an execution that ended badly is freed at once.

        The machine's own failure path already releases it; this covers ABORTED (StopExecution)
        and TIMED_OUT, where no state of the execution runs any more. The delete is conditional
        on Owner = that execution, so a lease another release took meanwhile is left alone.
        """
        self.cleanup_log_group = logs.LogGroup(
            self,
            "CleanupLogs",
            log_group_name=f"/aws/vendedlogs/states/{name}-lease-cleanup",
            retention=log_retention,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.cleanup_role = iam.Role(
            self,
            "CleanupRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"{name}-lease-cleanup: delete the lease of an execution that ended",
        )
        cleanup_policy = iam.Policy(
            self,
            "CleanupPolicy",
            roles=[self.cleanup_role],
            statements=[
                iam.PolicyStatement(sid="ReleaseEndedLease", actions=["dynamodb:DeleteItem"], resources=[self.lease_table.table_arn])
            ],
        )
        self.lease_cleanup = sfn.StateMachine(
            self,
            "LeaseCleanup",
            state_machine_name=f"{name}-lease-cleanup",
            state_machine_type=sfn.StateMachineType.EXPRESS,
            definition_body=sfn.DefinitionBody.from_string(
                Stack.of(self).to_json_string(build_lease_cleanup_definition(lease_table_name=self.lease_table.table_name))
            ),
            role=self.cleanup_role,
            logs=sfn.LogOptions(destination=self.cleanup_log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            tracing_enabled=True,
            comment=f"Frees the release lease of a {name} execution that ended FAILED, TIMED_OUT or ABORTED",
        )
        self.lease_cleanup.node.add_dependency(cleanup_policy)
        self.cleanup_rule = events.Rule(
            self,
            "ReleaseEndedRule",
            description=f"{name}: free the lease of an execution that ended FAILED, TIMED_OUT or ABORTED",
            event_pattern=ended_badly,
            targets=[targets.SfnStateMachine(self.lease_cleanup)],
        )

    def _failure_topic(self, stack: Stack, name: str, ended_badly: events.EventPattern, notify_email: str | None) -> sns.Topic:
        """An encrypted SNS topic told about every release that ends FAILED, TIMED_OUT or ABORTED."""
        key = kms.Key(
            self,
            "FailureTopicKey",
            description=f"{name}: encrypts the release failure topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # EventBridge publishes to the encrypted topic: it needs the key for that, nothing else.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgePublishes",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        topic = sns.Topic(
            self,
            "FailureTopic",
            topic_name=f"{name}-failures",
            display_name=f"{name} failures",
            master_key=key,
            enforce_ssl=True,
        )
        if notify_email:
            topic.add_subscription(subscriptions.EmailSubscription(notify_email))
        events.Rule(
            self,
            "ReleaseFailedRule",
            description=f"{name}: tell people when a release ends FAILED, TIMED_OUT or ABORTED",
            event_pattern=ended_badly,
            targets=[
                targets.SnsTopic(
                    topic,
                    message=events.RuleTargetInput.from_text(
                        f"Release {events.EventField.from_path('$.detail.name')} of {name} ended "
                        f"{events.EventField.from_path('$.detail.status')}: "
                        f"{events.EventField.from_path('$.detail.error')} - {events.EventField.from_path('$.detail.cause')}. "
                        f"Execution: {events.EventField.from_path('$.detail.executionArn')}"
                    ),
                )
            ],
        )
        return topic

    # ---- cdk-nag --------------------------------------------------------------------------------
    def _suppress(self, stack: Stack, *wildcard_arns: str) -> None:
        flat = {arn: _nag_form(stack.resolve(arn)) for arn in wildcard_arns}
        migrate_tds, tasks, all_tds = (flat[a] for a in wildcard_arns)
        NagSuppressions.add_resource_suppressions(
            self.policy,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason=(
                        "ecs:DescribeTaskDefinition and ecs:RegisterTaskDefinition support no resource-level permissions "
                        "(AWS: resource '*'); ecs:RunTask is limited to revisions of the migrate family (a release registers "
                        "a new revision each time, so the revision is a wildcard) and to the cluster by condition; "
                        "DescribeTasks/StopTask to tasks in the cluster (task ids are not known in advance); ecs:TagResource "
                        "only while creating a task definition or running a task (ecs:CreateAction condition)."
                    ),
                    applies_to=[f"Resource::{migrate_tds}", f"Resource::{tasks}", f"Resource::{all_tds}", "Resource::*"],
                )
            ],
        )
        logging_reason = (
            "Added by CDK for Step Functions logging and X-Ray: the CloudWatch Logs log-delivery actions "
            "(CreateLogDelivery, PutResourcePolicy, ...) and the X-Ray trace actions support no resource-level "
            "permissions, AWS documents resource '*' for them."
        )
        for role in (self.role, self.cleanup_role):
            NagSuppressions.add_resource_suppressions(
                role,
                [NagPackSuppression(id="AwsSolutions-IAM5", reason=logging_reason, applies_to=["Resource::*"])],
                apply_to_children=True,
            )


def _nag_form(resolved: Any) -> str:
    """An ARN as cdk-nag prints it in findings: Fn::Join flattened, Refs as <Name>."""
    if isinstance(resolved, str):
        return resolved
    if isinstance(resolved, dict):
        if "Ref" in resolved:
            return f"<{resolved['Ref']}>"
        if "Fn::GetAtt" in resolved:
            return f"<{resolved['Fn::GetAtt'][0]}.{resolved['Fn::GetAtt'][1]}>"
        if "Fn::Join" in resolved:
            separator, parts = resolved["Fn::Join"]
            return str(separator).join(_nag_form(p) for p in parts)
    raise ValueError(f"cannot flatten {resolved!r} for a cdk-nag suppression")


def poll_budget(rollout_timeout: Duration, poll_interval: Duration) -> int:
    """How many polls a rollout may take after the first ("retry": the Retrier's MaxAttempts) or in
    all ("wait-loop": each after a PollDelay); either way the last poll is at the rollout timeout."""
    return max(1, math.ceil(rollout_timeout.to_seconds() / poll_interval.to_seconds()))
