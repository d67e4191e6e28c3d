"""The release state machine: one execution = one release (contract in docs/release.md).

Besides the machine this construct owns what a release needs to be safe and visible: the lease
table (one release at a time), the release history table (one record per execution), the SSM
parameter with the last release, the customer-managed key that encrypts the machines' data, the
log groups, a second small machine that completes every ended release (stops a migrate task left
running, frees the lease, completes the record), and an SNS topic told about failed releases.

IAM: every statement of the release machine comes from the state that needs it
(constructs/release_machine/, `Grant`); statements on APIs without resource-level permissions
sit in a policy of their own, so a cdk-nag suppression of `Resource::*` covers exactly them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_cdk import Annotations, ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from aws_cdk import aws_stepfunctions as sfn
from cdk_nag import NagPackSuppression, NagSuppressions

from constructs import Construct
from constructs.release_machine.asl import AppTarget, DefinitionSettings, Grant
from constructs.release_machine.cleanup import build_cleanup, cleanup_grants
from constructs.release_machine.definition import build_release
from release import contract, limits

# Slack on top of every bounded wait for the API calls, retries and transitions around it.
SLACK_SECONDS = 900
PER_SERVICE_SLACK_SECONDS = 300


@dataclass(frozen=True)
class ServiceTarget:
    """An existing ECS service a release may deploy.

    `task_role_arn` / `execution_role_arn` are the roles of the service's task definition: the
    release registers a new revision with them, which needs iam:PassRole on exactly those roles.
    None means the task definition has no such role. A role it has but that is not listed here
    makes RegisterTaskDefinition fail for that service (after the migration, before the service
    is touched): list the roles in the environment's config.
    """

    app: str
    service_name: str
    container_name: str
    repository: ecr.IRepository
    uses_schema: bool
    task_role_arn: str | None = None
    execution_role_arn: str | None = None
    after: tuple[str, ...] = ()  # apps whose rollout completes before this one's starts


@dataclass(frozen=True)
class ReleaseSettings:
    """Everything the release construct needs, in one typed object.

    name_prefix, env_name: resources are named `<prefix>-<env>-release...`.
    cluster_name: the ECS cluster of the services and the migrate task.
    subnet_ids, migrate_security_group_id: where the migrate task runs (private, no public IP).
    migrate_task_family, migrate_repository, migrate_task_role, migrate_execution_role: the
        migrate task definition (a release registers a revision of it per release).
    services: the services a release may deploy (at most 10: one DescribeServices call).
    migrate_timeout, lease_wait, rollout_timeout: the bounds of each wait (config checks that the
        worst case stays inside Step Functions' 25,000 history events).
    notify_email: subscribed to the failure topic when set; failure_notifications: the topic itself.
    """

    name_prefix: str
    env_name: str
    cluster_name: str
    subnet_ids: Sequence[str]
    migrate_security_group_id: str
    migrate_task_family: str
    migrate_repository: ecr.IRepository
    migrate_task_role: iam.IRole
    migrate_execution_role: iam.IRole
    services: Sequence[ServiceTarget]
    migrate_timeout: Duration
    lease_wait: Duration
    rollout_timeout: Duration
    notify_email: str | None = None
    failure_notifications: bool = True
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH
    migrate_container_name: str = field(default=contract.MIGRATE_CONTAINER_NAME)
    max_parallel_rollouts: int = 5
    # The database a release migrates: its restore point (and optional snapshot) before migrating.
    database_instance: rds.IDatabaseInstance | None = None
    snapshot_timeout: Duration = field(default_factory=lambda: Duration.minutes(60))

    @property
    def name(self) -> str:
        return f"{self.name_prefix}-{self.env_name}-release"

    def bounds(self) -> limits.ReleaseBounds:
        return limits.ReleaseBounds(
            services=len(self.services),
            lease_wait_seconds=int(self.lease_wait.to_seconds()),
            migrate_timeout_seconds=int(self.migrate_timeout.to_seconds()),
            rollout_timeout_seconds=int(self.rollout_timeout.to_seconds()),
            snapshot_timeout_seconds=int(self.snapshot_timeout.to_seconds()) if self.database_instance else 0,
        )

    def check(self) -> None:
        if not self.services:
            raise ValueError("a release needs at least one service")
        apps = [s.app for s in self.services]
        if len(set(apps)) != len(apps):
            raise ValueError(f"duplicate app keys: {apps}")
        if contract.MIGRATE_APP in apps:
            raise ValueError(f"{contract.MIGRATE_APP!r} is reserved for the migrate image")
        problem = limits.release_limit_problem(self.bounds())
        if problem:
            raise ValueError(problem)

    def rollout_rounds(self) -> int:
        """Rollouts one after another in the worst case: per `after:` wave, its services
        max_parallel_rollouts at a time (deploy.py)."""
        waves = limits.rollout_waves({t.app: list(t.after) for t in self.services})
        sizes = [list(waves.values()).count(w) for w in set(waves.values())]
        return sum(math.ceil(n / self.max_parallel_rollouts) for n in sizes)

    def execution_timeout_seconds(self) -> int:
        """Bounds every path: lease wait + snapshot + migration + the rollouts that may run one
        after another, plus slack."""
        b = self.bounds()
        return (
            b.lease_wait_seconds
            + b.migrate_timeout_seconds
            + b.snapshot_timeout_seconds
            + self.rollout_rounds() * (b.rollout_timeout_seconds + PER_SERVICE_SLACK_SECONDS)
            + SLACK_SECONDS
        )


class ReleaseStateMachine(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: ReleaseSettings) -> None:
        super().__init__(scope, construct_id)
        settings.check()
        self.settings = settings
        stack = Stack.of(self)
        name = settings.name
        self.state_machine_arn_by_name = stack.format_arn(
            service="states", resource="stateMachine", resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        self.cleanup_arn_by_name = stack.format_arn(
            service="states", resource="stateMachine", resource_name=f"{name}-lease-cleanup", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        self._tables_and_parameter(settings)
        self.data_key = self._data_key(stack, name)
        self.definition_settings = self._definition_settings(stack, settings)
        self.execution_timeout = Duration.seconds(settings.execution_timeout_seconds())
        self._release_machine(stack, settings)
        self.dead_letters = sqs.Queue(
            self,
            "EventDeadLetters",
            queue_name=f"{name}-event-dead-letters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self._cleanup_machine(stack, settings)
        self.failure_topic: sns.Topic | None = self._failure_topic(stack, settings) if settings.failure_notifications else None
        self._bind_log_delivery_grant(stack)
        self._safety_net_alarms(stack, settings)
        self._suppress()

    # ---- state -------------------------------------------------------------------------------------
    def _tables_and_parameter(self, s: ReleaseSettings) -> None:
        # One item (LeaseId = "release") at most; TTL on ExpiresAt so an abandoned lease also
        # disappears on its own (the machine does not rely on the sweep: ExpiresAt alone frees it).
        self.lease_table = dynamodb.Table(
            self,
            "LeaseTable",
            table_name=f"{s.name}-lease",
            partition_key=dynamodb.Attribute(name="LeaseId", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute="ExpiresAt",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True),
            removal_policy=RemovalPolicy.DESTROY,
        )
        # One item per execution (docs/release.md, "Output and record"): Query(Pk="release", ScanIndexForward=False) lists
        # the newest first. No TTL: items are small and the history is kept.
        self.history_table = dynamodb.Table(
            self,
            "HistoryTable",
            table_name=f"{s.name}-history",
            partition_key=dynamodb.Attribute(name=contract.RECORD_PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=contract.RECORD_SK, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True),
            removal_policy=RemovalPolicy.RETAIN,
            deletion_protection=True,  # the releases' audit trail: DeleteTable is refused until a person turns this off
        )
        # CloudFormation writes the initial value once; releases overwrite it.
        self.released_parameter = ssm.StringParameter(
            self,
            "ReleasedParameter",
            parameter_name=f"/{s.name_prefix}/{s.env_name}/release/current",
            description=f"{s.env_name}: the last release (image tag, digests per app, execution, time); written by {s.name}",
            string_value=json.dumps({"imageTag": None, "digests": {}, "execution": None, "releasedAt": None}),
            tier=ssm.ParameterTier.STANDARD,
        )

    def _data_key(self, stack: Stack, name: str) -> kms.Key:
        """Encrypts both machines' definitions, execution data and history, and their log groups.
        CDK grants each machine's role its use (with the encryption context of its own ARN) and log
        delivery kms:Decrypt (bound below to this account's logs). The deploy role has kms:Decrypt
        and GenerateDataKey on it only through Step Functions (kms:ViaService), to start releases;
        it may call no Step Functions API that returns history or state (constructs/ci_access.py).
        CloudWatch Logs may use it only for the two machines' log groups (encryption context)."""
        key = kms.Key(
            self,
            "DataKey",
            description=f"{name}: encrypts the release state machines' data and logs",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        groups = [
            stack.format_arn(service="logs", resource="log-group", resource_name=group, arn_format=ArnFormat.COLON_RESOURCE_NAME)
            for group in (self._log_group_name(name), self._log_group_name(f"{name}-lease-cleanup"))
        ]
        # AWS's documented grant for a log group's KMS key, bound to these two groups by the
        # encryption context CloudWatch Logs sends (docs/release.md, "Execution data").
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsForTheMachinesLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:GenerateDataKey",
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:DescribeKey",
                ],
                resources=["*"],
                conditions={"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": groups}},
            )
        )
        return key

    @staticmethod
    def _log_group_name(machine_name: str) -> str:
        return f"/aws/vendedlogs/states/{machine_name}"

    def _bind_log_delivery_grant(self, stack: Stack) -> None:
        """CDK's key-policy grant to log delivery (added with the machines' logging) names no source:
        it becomes kms:Decrypt for this account's log deliveries only. The ...IfExists operators: AWS
        does not document whether delivery sends these keys on this call; present, they must match,
        absent, the grant is as before (so logging keeps working either way)."""
        cfn_key = self.data_key.node.default_child
        assert isinstance(cfn_key, kms.CfnKey)
        statements = stack.resolve(cfn_key.key_policy).get("Statement", [])
        (index,) = [i for i, st in enumerate(statements) if st.get("Principal", {}).get("Service") == "delivery.logs.amazonaws.com"]
        cfn_key.add_property_override(
            f"KeyPolicy.Statement.{index}",
            {
                "Sid": "LogDeliveryForThisAccount",
                "Effect": "Allow",
                "Principal": {"Service": "delivery.logs.amazonaws.com"},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {
                    "StringEqualsIfExists": {"aws:SourceAccount": stack.account},
                    "ArnLikeIfExists": {"aws:SourceArn": f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:*"},
                },
            },
        )

    def _definition_settings(self, stack: Stack, s: ReleaseSettings) -> DefinitionSettings:
        def arn(service: str, resource: str, resource_name: str) -> str:
            return stack.format_arn(service=service, resource=resource, resource_name=resource_name)

        pass_roles = [s.migrate_task_role.role_arn, s.migrate_execution_role.role_arn]
        for target in s.services:
            for role_arn in (target.task_role_arn, target.execution_role_arn):
                if role_arn and role_arn not in pass_roles:
                    pass_roles.append(role_arn)
        return DefinitionSettings(
            cluster_name=s.cluster_name,
            cluster_arn=arn("ecs", "cluster", s.cluster_name),
            subnet_ids=list(s.subnet_ids),
            security_group_ids=[s.migrate_security_group_id],
            migrate_family=s.migrate_task_family,
            migrate_task_definitions_arn=arn("ecs", "task-definition", f"{s.migrate_task_family}:*"),
            cluster_tasks_arn=arn("ecs", "task", f"{s.cluster_name}/*"),
            all_task_definitions_arn=arn("ecs", "task-definition", "*"),
            migrate_repository_name=s.migrate_repository.repository_name,
            migrate_repository_uri=s.migrate_repository.repository_uri,
            migrate_repository_arn=s.migrate_repository.repository_arn,
            pass_role_arns=pass_roles,
            apps=[
                AppTarget(
                    app=t.app,
                    service_name=t.service_name,
                    service_arn=arn("ecs", "service", f"{s.cluster_name}/{t.service_name}"),
                    container_name=t.container_name,
                    repository_name=t.repository.repository_name,
                    repository_uri=t.repository.repository_uri,
                    repository_arn=t.repository.repository_arn,
                    uses_schema=t.uses_schema,
                    after=tuple(t.after),
                )
                for t in s.services
            ],
            lease_table_name=self.lease_table.table_name,
            lease_table_arn=self.lease_table.table_arn,
            history_table_name=self.history_table.table_name,
            history_table_arn=self.history_table.table_arn,
            released_parameter_name=self.released_parameter.parameter_name,
            released_parameter_arn=self.released_parameter.parameter_arn,
            lease_wait_seconds=int(s.lease_wait.to_seconds()),
            migrate_timeout_seconds=int(s.migrate_timeout.to_seconds()),
            rollout_timeout_seconds=int(s.rollout_timeout.to_seconds()),
            execution_timeout_seconds=s.execution_timeout_seconds(),
            migrate_container=s.migrate_container_name,
            max_parallel_rollouts=s.max_parallel_rollouts,
            database_instance_identifier=s.database_instance.instance_identifier if s.database_instance else None,
            database_instance_arn=s.database_instance.instance_arn if s.database_instance else None,
            snapshot_prefix=s.name,
            snapshot_arn_prefix=stack.format_arn(
                service="rds", resource="snapshot", resource_name=f"{s.name}-", arn_format=ArnFormat.COLON_RESOURCE_NAME
            ),
            snapshot_timeout_seconds=int(s.snapshot_timeout.to_seconds()),
        )

    # ---- the release machine ------------------------------------------------------------------------
    def _machine_role(self, stack: Stack, construct_id: str, machine_arn: str, description: str) -> iam.Role:
        """A role only Step Functions may assume, and only for this machine of this account."""
        principal = iam.ServicePrincipal("states.amazonaws.com").with_conditions(
            {"StringEquals": {"aws:SourceAccount": stack.account}, "ArnLike": {"aws:SourceArn": machine_arn}}
        )
        return iam.Role(self, construct_id, assumed_by=principal, description=description)

    def _policies(self, construct_id: str, role: iam.Role, grants: Sequence[Grant]) -> tuple[iam.Policy, iam.Policy]:
        """Resource-scoped statements in one policy, those on APIs without resource-level
        permissions ("*") in another (the only one whose IAM5 suppression names Resource::*)."""
        scoped: list[iam.PolicyStatement] = []
        unscoped: list[iam.PolicyStatement] = []
        for grant in grants:
            statement = iam.PolicyStatement(
                sid=grant.sid, actions=list(grant.actions), resources=list(grant.resources), conditions=dict(grant.conditions or {}) or None
            )
            (unscoped if grant.resources == ("*",) else scoped).append(statement)
        return (
            iam.Policy(self, f"{construct_id}Policy", statements=scoped, roles=[role]),
            iam.Policy(self, f"{construct_id}UnscopedApis", statements=unscoped, roles=[role]),
        )

    def _log_group(self, construct_id: str, log_group_name: str, retention: logs.RetentionDays) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            construct_id,
            log_group_name=log_group_name,
            retention=retention,
            removal_policy=RemovalPolicy.RETAIN,
            encryption_key=self.data_key,
        )

    def _release_machine(self, stack: Stack, s: ReleaseSettings) -> None:
        definition, phase = build_release(self.definition_settings)
        self.definition = definition
        self.grants = phase.grants
        self.log_group = self._log_group("Logs", self._log_group_name(s.name), s.log_retention)
        self.role = self._machine_role(
            stack, "Role", self.state_machine_arn_by_name, f"{s.name}: resolve digests, hold the lease, migrate, deploy, record"
        )
        self.policy, self.unscoped_policy = self._policies("", self.role, phase.grants)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=s.name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(stack.to_json_string(definition)),
            role=self.role,
            # Every event, no execution data: the record holds what a person needs, and a service's
            # task definition (any plaintext value in it) never reaches a log (docs/release.md).
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
            encryption_configuration=sfn.CustomerManagedEncryptionConfiguration(self.data_key, Duration.minutes(5)),
            comment="One execution = one release. Input: {imageTag, services?, migrate?, startedBy?, note?, rollbackOf?}",
        )
        for policy in (self.policy, self.unscoped_policy):
            self.state_machine.node.add_dependency(policy)

    # ---- the cleanup machine, started by EventBridge when a release ends -----------------------------
    def _cleanup_machine(self, stack: Stack, s: ReleaseSettings) -> None:
        cluster_arn = self.definition_settings.cluster_arn
        self.cleanup_log_group = self._log_group("CleanupLogs", self._log_group_name(f"{s.name}-lease-cleanup"), s.log_retention)
        self.cleanup_role = self._machine_role(
            stack, "CleanupRole", self.cleanup_arn_by_name, f"{s.name}-lease-cleanup: complete a release that ended"
        )
        grants = cleanup_grants(
            lease_table_arn=self.lease_table.table_arn,
            history_table_arn=self.history_table.table_arn,
            cluster_arn=cluster_arn,
            cluster_tasks_arn=self.definition_settings.cluster_tasks_arn,
        )
        self.cleanup_grants = grants
        self.cleanup_policy, self.cleanup_unscoped_policy = self._policies("Cleanup", self.cleanup_role, grants)
        self.cleanup_definition = build_cleanup(
            lease_table_name=self.lease_table.table_name, history_table_name=self.history_table.table_name, cluster_name=s.cluster_name
        )
        self.lease_cleanup = sfn.StateMachine(
            self,
            "LeaseCleanup",
            state_machine_name=f"{s.name}-lease-cleanup",
            state_machine_type=sfn.StateMachineType.EXPRESS,
            definition_body=sfn.DefinitionBody.from_string(stack.to_json_string(self.cleanup_definition)),
            role=self.cleanup_role,
            logs=sfn.LogOptions(destination=self.cleanup_log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
            encryption_configuration=sfn.CustomerManagedEncryptionConfiguration(self.data_key, Duration.minutes(5)),
            comment=f"Completes a {s.name} execution that ended: stops its migrate task, frees its lease, completes its record",
        )
        for policy in (self.cleanup_policy, self.cleanup_unscoped_policy):
            self.lease_cleanup.node.add_dependency(policy)
        # Every end, SUCCEEDED included (a lease whose delete failed after a success is retried).
        # Status-change events are delivered best effort: the lease's ExpiresAt bounds it anyway.
        rule_name = f"{s.name}-ended"
        events_role = self._events_role(stack, "CleanupEventsRole", rule_name)
        events_role.add_to_policy(
            iam.PolicyStatement(sid="StartCleanup", actions=["states:StartExecution"], resources=[self.lease_cleanup.state_machine_arn])
        )
        self._grant_cleanup_data_key(stack, events_role)
        self.cleanup_rule = events.Rule(
            self,
            "ReleaseEndedRule",
            rule_name=rule_name,
            description=f"{s.name}: complete a release that ended (stop its migrate task, free its lease, complete its record)",
            event_pattern=self._ended([*contract.ENDED_BADLY, contract.STATUS_SUCCEEDED]),
            targets=[
                targets.SfnStateMachine(
                    self.lease_cleanup,
                    role=events_role,
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=8,
                    max_event_age=Duration.hours(2),
                )
            ],
        )

    def _events_role(self, stack: Stack, construct_id: str, rule_name: str) -> iam.Role:
        """A role only EventBridge may assume, and only for this rule of this account."""
        rule_arn = stack.format_arn(service="events", resource="rule", resource_name=rule_name)
        principal = iam.ServicePrincipal("events.amazonaws.com").with_conditions(
            {"StringEquals": {"aws:SourceAccount": stack.account}, "ArnEquals": {"aws:SourceArn": rule_arn}}
        )
        return iam.Role(self, construct_id, assumed_by=principal, description=f"{rule_name}: start the release cleanup machine")

    def _ended(self, statuses: Sequence[str]) -> events.EventPattern:
        return events.EventPattern(
            source=["aws.states"],
            detail_type=["Step Functions Execution Status Change"],
            detail={"status": list(statuses), "stateMachineArn": [self.state_machine.state_machine_arn]},
        )

    def _grant_cleanup_data_key(self, stack: Stack, events_role: iam.Role) -> None:
        """StartExecution of a machine encrypted with a customer-managed key: AWS documents
        KmsAccessDeniedException ("Either your KMS key policy or API caller does not have the
        required permissions") without naming the KMS calls it makes for the caller. With these the
        start works either way, and they open only what Step Functions does for this one machine
        (kms:ViaService, the machine's ARN as encryption context); docs/release.md, "KMS on the
        caller's behalf"."""
        events_role.add_to_policy(
            iam.PolicyStatement(
                sid="StartCleanupWithTheDataKey",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self.data_key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": f"states.{stack.region}.amazonaws.com",
                        "kms:EncryptionContext:aws:states:stateMachineArn": self.cleanup_arn_by_name,
                    }
                },
            )
        )

    # ---- the safety net's own alarms --------------------------------------------------------------------
    def _safety_net_alarms(self, stack: Stack, s: ReleaseSettings) -> None:
        """An end event EventBridge could not deliver (dead-letter queue) and a cleanup that failed or
        timed out are told to the failure topic: nothing of the safety net fails silently."""
        period = Duration.minutes(5)
        self.dead_letter_alarm = cloudwatch.Alarm(
            self,
            "EventDeadLettersAlarm",
            alarm_name=_alarm_names(s)[0],
            alarm_description=f"{s.name}: an end-of-release event could not be delivered (cleanup not started, or failure not told)",
            metric=self.dead_letters.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        failed = cloudwatch.MathExpression(
            expression="failed + timedOut",
            using_metrics={
                "failed": self.lease_cleanup.metric_failed(period=period, statistic="Sum"),
                "timedOut": self.lease_cleanup.metric_timed_out(period=period, statistic="Sum"),
            },
            period=period,
            label="cleanup executions failed or timed out",
        )
        self.cleanup_alarm = cloudwatch.Alarm(
            self,
            "CleanupFailedAlarm",
            alarm_name=_alarm_names(s)[1],
            alarm_description=f"{s.name}: the lease cleanup failed or timed out (lease, migrate task or record left as they were)",
            metric=failed,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if self.failure_topic is None:
            return
        for alarm in (self.dead_letter_alarm, self.cleanup_alarm):
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.failure_topic))

    # ---- the failure topic -------------------------------------------------------------------------------
    def _failure_topic(self, stack: Stack, s: ReleaseSettings) -> sns.Topic:
        """An encrypted SNS topic told about every release that ends (FAILED, TIMED_OUT, ABORTED, and
        SUCCEEDED), as a custom notification in the JSON schema Amazon Q Developer in chat
        applications renders (docs/operations.md, "Notifications"); an email subscriber gets the same
        JSON. Only the two rules may publish (aws:SourceArn), over TLS; the topic policy is written
        here in full, so no statement without conditions is added to it."""
        rule_arns = [
            stack.format_arn(service="events", resource="rule", resource_name=f"{s.name}-{end}") for end in ("failed", "succeeded")
        ]
        key = kms.Key(
            self,
            "FailureTopicKey",
            description=f"{s.name}: encrypts the release failure topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Who may publish, each only from its own resources: the two end-of-release rules, and the two
        # safety-net alarms (_safety_net_alarms). ARNs from the names: the resources' own ARN
        # attributes would make the key depend on what depends on the topic.
        alarm_arns = [
            stack.format_arn(service="cloudwatch", resource="alarm", resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME)
            for name in _alarm_names(s)
        ]
        publishers = (
            ("events.amazonaws.com", rule_arns, "EventBridgePublishes", "OnlyTheReleaseFailedRulePublishes"),
            ("cloudwatch.amazonaws.com", alarm_arns, "AlarmsPublish", "SafetyNetAlarmsPublish"),
        )

        def source(arns: list[str]) -> dict[str, Any]:
            return {"StringEquals": {"aws:SourceAccount": stack.account}, "ArnEquals": {"aws:SourceArn": arns}}

        for service, arns, key_sid, _ in publishers:
            key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=key_sid,
                    principals=[iam.ServicePrincipal(service)],
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=["*"],
                    conditions=source(arns),
                )
            )
        topic = sns.Topic(self, "FailureTopic", topic_name=f"{s.name}-failures", display_name=f"{s.name} failures", master_key=key)
        if s.notify_email:
            topic.add_subscription(subscriptions.EmailSubscription(s.notify_email))
        sns.CfnTopicPolicy(
            self,
            "FailureTopicPolicy",
            topics=[topic.topic_arn],
            policy_document={
                "Version": "2012-10-17",
                "Statement": [
                    *(
                        {
                            "Sid": topic_sid,
                            "Effect": "Allow",
                            "Principal": {"Service": service},
                            "Action": "sns:Publish",
                            "Resource": topic.topic_arn,
                            "Condition": source(arns),
                        }
                        for service, arns, _, topic_sid in publishers
                    ),
                    {
                        "Sid": "EnforceTls",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "sns:Publish",
                        "Resource": topic.topic_arn,
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    },
                ],
            },
        )
        # The targets publish through an imported handle of the topic, so CDK adds no statement
        # of its own (one without conditions) to the topic policy written above.
        published = sns.Topic.from_topic_arn(self, "FailureTopicForRule", topic.topic_arn)
        for construct_id, end, statuses in (
            ("ReleaseFailedRule", "failed", contract.ENDED_BADLY),
            ("ReleaseSucceededRule", "succeeded", (contract.STATUS_SUCCEEDED,)),
        ):
            rule = events.Rule(
                self,
                construct_id,
                rule_name=f"{s.name}-{end}",
                description=f"{s.name}: tell people when a release ends {' or '.join(statuses)}",
                event_pattern=self._ended(statuses),
                targets=[
                    targets.SnsTopic(
                        published,
                        dead_letter_queue=self.dead_letters,
                        retry_attempts=8,
                        max_event_age=Duration.hours(2),
                        message=_chat_notification(stack, s, failed=end == "failed"),
                    )
                ],
            )
            # That handle's ARN is a token, so CDK cannot see that rule and topic share this stack's
            # account and region, and warns of a possible cross-environment target. They do share them.
            Annotations.of(rule).acknowledge_warning(
                "@aws-cdk/aws-events:ruleUnresolvedEnvironment", "the topic is in this stack: same account and region as the rule"
            )
        return topic

    # ---- cdk-nag --------------------------------------------------------------------------------------
    def _suppress(self) -> None:
        for policy, grants in ((self.unscoped_policy, self.grants), (self.cleanup_unscoped_policy, self.cleanup_grants)):
            actions = sorted(a for g in grants if g.resources == ("*",) for a in g.actions)
            NagSuppressions.add_resource_suppressions(
                policy,
                [
                    NagPackSuppression(
                        id="AwsSolutions-IAM5",
                        reason=(
                            f"This policy holds only {', '.join(actions)}: AWS gives these no resource-level permissions "
                            "(ecs:ListTasks is held to the cluster by the ecs:cluster condition)."
                        ),
                        applies_to=["Resource::*"],
                    )
                ],
            )
        # Each policy's own reason: the cleanup machine runs no task and registers nothing.
        reasons = (
            (
                self.policy,
                self.grants,
                "ecs:RunTask is limited to revisions of the migrate family (each release registers a new one) and to "
                "the cluster by condition; DescribeTasks/StopTask to tasks in the cluster (ids are not known in advance); "
                "ecs:TagResource only while registering a task definition or running a task (ecs:CreateAction); "
                "rds:CreateDBSnapshot/DescribeDBSnapshots to snapshots named with this machine's prefix (each release "
                "names its own).",
            ),
            (
                self.cleanup_policy,
                self.cleanup_grants,
                "ecs:StopTask on tasks of the cluster (the left migrate task's id is known only at run time), "
                "with the cluster also pinned by the ecs:cluster condition.",
            ),
        )
        for policy, grants, reason in reasons:
            wildcards = sorted({r for g in grants if g.resources != ("*",) for r in g.resources if "*" in r})
            NagSuppressions.add_resource_suppressions(
                policy,
                [
                    NagPackSuppression(
                        id="AwsSolutions-IAM5",
                        reason=reason,
                        applies_to=[f"Resource::{_nag_form(Stack.of(self).resolve(r))}" for r in wildcards],
                    )
                ],
            )
        logging_reason = (
            "The role's default policy holds only what CDK adds for logging, X-Ray and the data key: the CloudWatch Logs "
            "log-delivery actions and X-Ray's trace actions support no resource-level permissions (AWS documents '*')."
        )
        for role in (self.role, self.cleanup_role):
            default_policy = role.node.try_find_child("DefaultPolicy")
            if default_policy is not None:
                NagSuppressions.add_resource_suppressions(
                    default_policy, [NagPackSuppression(id="AwsSolutions-IAM5", reason=logging_reason, applies_to=["Resource::*"])]
                )
        NagSuppressions.add_resource_suppressions(
            self.dead_letters,
            [NagPackSuppression(id="AwsSolutions-SQS3", reason="This queue is the dead-letter queue of the release rules' targets.")],
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


def _chat_notification(stack: Stack, s: ReleaseSettings, *, failed: bool) -> events.RuleTargetInput:
    """A release's end as an Amazon Q Developer custom notification ("version" 1.0, "source"
    custom, markdown content). Only the event's fields whose characters are known go in (name,
    status, error name, ARN): a cause may hold quotes or line breaks, and how EventBridge escapes
    them inside a JSON template is not something this relies on; `status` shows it."""
    name = events.EventField.from_path("$.detail.name")
    status = events.EventField.from_path("$.detail.status")
    arn = events.EventField.from_path("$.detail.executionArn")
    region = stack.region
    console = f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{arn}"
    env = s.env_name
    if failed:
        title = f":x: Release {name} of {env} ended {status}"
        description = (
            f"*{s.name}*: release `{name}` ended *{status}* (`{events.EventField.from_path('$.detail.error')}`). "
            f"The record has the cause, what was deployed and what was not. <{console}|Execution in the console>"
        )
        steps = [
            f"python -m release status --env {env}",
            f"python -m release logs --env {env} --release {name}",
            f"python -m release rollback --env {env}",
        ]
    else:
        title = f":white_check_mark: Release {name} of {env} succeeded"
        description = f"*{s.name}*: release `{name}` succeeded. <{console}|Execution in the console>"
        steps = [f"python -m release status --env {env}"]
    return events.RuleTargetInput.from_object(
        {
            "version": "1.0",
            "source": "custom",
            "content": {
                "textType": "client-markdown",
                "title": title,
                "description": description,
                "nextSteps": steps,
                "keywords": [env, status],
            },
            "metadata": {
                "threadId": f"{s.name}-{name}",
                "summary": f"Release {name} of {env}: {status}",
                "eventType": "ReleaseEnded",
                "relatedResources": [arn],
                "additionalContext": {"execution": arn, "status": status},
            },
        }
    )


def _alarm_names(s: ReleaseSettings) -> tuple[str, str]:
    """The safety-net alarms: an undelivered end event (dead-letter queue), a failed cleanup."""
    return f"{s.name}-event-dead-letters", f"{s.name}-cleanup-failed"
