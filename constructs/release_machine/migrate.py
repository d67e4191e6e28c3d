"""Phase "migrate": render a migrate task definition revision pinned to the image digest, run it
(RunTask with startedBy = execution name and an idempotency token), and wait for it with a
documented poll (Wait + DescribeTasks + Choice). The release stops the task itself at its time
limit, waits until ECS reports it STOPPED (bounded by the container's stop timeout), and says
"stopped" only then; until then the lease is kept.

RunTask is a request-response call here, not `.sync`: the task ARN is known from its response,
RunTask `failures` are read from the response (not an `AmazonECS.Unknown` error), and the stop
code, stop reason, exit code and container reason are read from DescribeTasks, all documented.
"""

from __future__ import annotations

from constructs.release_machine import recovery
from constructs.release_machine.asl import (
    CAUSE,
    ECS_TRANSIENT,
    ERROR,
    EXECUTION_NAME,
    FAIL_RELEASE,
    READ_ONLY_TASK_DEFINITION_FIELDS,
    STATES_ALL,
    DefinitionSettings,
    Grant,
    Phase,
    State,
    catch_all,
    expr,
    fail_with,
    js,
    retry_transient,
    rule_scoped_assigns,
)
from constructs.release_machine.lease import check_lease
from constructs.release_machine.record import progress_record
from release import contract, limits

SHOULD_MIGRATE = "ShouldMigrate"
CHECK_LEASE_BEFORE_MIGRATION = "CheckLeaseBeforeMigration"
DESCRIBE_MIGRATE_TD = "DescribeMigrateTaskDefinition"
MIGRATE_CONTAINER_FOUND = "MigrateContainerFound"
REGISTER_MIGRATE_TD = "RegisterMigrateTaskDefinition"
RUN_MIGRATION = "RunMigration"
MIGRATION_STARTED = "MigrationStarted"
RECORD_MIGRATION_STARTED = "RecordMigrationStarted"
MIGRATION_POLL_DELAY = "MigrationPollDelay"
DESCRIBE_MIGRATION = "DescribeMigration"
MIGRATION_PROGRESS = "MigrationProgress"
STOP_MIGRATION = "StopMigration"
STOP_POLL_DELAY = "MigrationStopPollDelay"
DESCRIBE_STOPPING_MIGRATION = "DescribeStoppingMigration"
MIGRATION_STOP_PROGRESS = "MigrationStopProgress"


def render(task_definition: str, container: str, image: str, tags: str) -> str:
    """RegisterTaskDefinition's arguments: the description less read-only fields, one image pinned.
    The container is known to exist (a Choice checked it before)."""
    return (
        "($td := " + task_definition + "; $c := " + container + "; $img := " + image + "; "
        # Tags are copied, except those with the reserved aws: prefix (in any case).
        "$tags := [$filter(" + tags + ", function($t) { $lowercase($substring($t.Key, 0, 4)) != 'aws:' })]; "
        "$merge(["
        "$sift($td, function($v, $k) { $not($k in " + js(list(READ_ONLY_TASK_DEFINITION_FIELDS)) + ") }), "
        "{'ContainerDefinitions': [$map($td.ContainerDefinitions, function($d) { $merge([$d, $d.Name = $c ? {'Image': $img} : {}]) })]}, "
        "$count($tags) > 0 ? {'Tags': $tags} : {}"
        "]))"
    )


def _where() -> str:
    """JSONata: ' (task T, task definition D, log group G, stream S)' of the migrate task."""
    return (
        "' (task ' & $migration.taskArn & ', task definition ' & $migration.taskDefinition & "
        "', log group ' & ($migration.logGroup ? $migration.logGroup : '?') & "
        "', stream ' & ($migration.logStream ? $migration.logStream : '?') & ')'"
    )


def migrate_phase(s: DefinitionSettings, skip_to: str, next_state: str) -> Phase:
    container = js(s.migrate_container)
    phase = Phase(
        {
            SHOULD_MIGRATE: {
                "Type": "Choice",
                "Choices": [{"Condition": "{% $migrate %}", "Next": DESCRIBE_MIGRATE_TD}],
                "Default": skip_to,
                "Assign": {"migration": expr("$merge([$migration, {'outcome': 'skipped'}])"), "phase": "deploy"},
            },
            # Right before RunTask: the only Task a redrive could resume into unchecked is RunTask itself.
            CHECK_LEASE_BEFORE_MIGRATION: check_lease(
                s,
                "migrating",
                "migrate",
                RUN_MIGRATION,
                # The runner's absolute deadline, fixed once here so that a retried RunTask sends the
                # same parameters (same clientToken + other parameters would be ConflictException).
                assign={
                    "migrateDeadlineAt": expr("$floor($millis() / 1000) + " + str(limits.runner_deadline_offset(s.migrate_timeout_seconds)))
                },
            ),
            DESCRIBE_MIGRATE_TD: {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:ecs:describeTaskDefinition",
                "Arguments": {"TaskDefinition": s.migrate_family, "Include": ["TAGS"]},
                "Retry": [retry_transient(ECS_TRANSIENT)],
                "Catch": [catch_all("describing task definition family " + s.migrate_family, "migrate")],
                "Next": MIGRATE_CONTAINER_FOUND,
            },
            MIGRATE_CONTAINER_FOUND: {
                "Type": "Choice",
                "Choices": [
                    {
                        "Condition": expr("$count($states.input.TaskDefinition.ContainerDefinitions[Name = " + container + "]) = 1"),
                        "Next": REGISTER_MIGRATE_TD,
                    }
                ],
                "Default": FAIL_RELEASE,
                "Assign": fail_with(
                    contract.MIGRATION_FAILED,
                    js(f"task definition family {s.migrate_family} has no container named {s.migrate_container}"),
                    "migrate",
                ),
            },
            REGISTER_MIGRATE_TD: {
                "Type": "Task",
                "Comment": "A new revision of the migrate family with the image pinned by digest.",
                "Resource": "arn:aws:states:::aws-sdk:ecs:registerTaskDefinition",
                "Arguments": expr(
                    render(
                        "$states.input.TaskDefinition",
                        container,
                        "$lookup($images, " + js(contract.MIGRATE_APP) + ")",
                        "$states.input.Tags",
                    )
                ),
                "Assign": {
                    "migrateTaskDefinitionArn": "{% $states.result.TaskDefinition.TaskDefinitionArn %}",
                    "migrateLogOptions": expr(
                        "($o := $states.result.TaskDefinition.ContainerDefinitions[Name = " + container + "].LogConfiguration.Options; "
                        "$exists($o) ? $o : {})"
                    ),
                    # DescribeTasks polls after StopTask: the container's stop timeout (ECS's 30 s
                    # default; Fargate allows at most 120 s) plus a margin, every few seconds.
                    "migrateStopPolls": expr(
                        "($t := $states.result.TaskDefinition.ContainerDefinitions[Name = " + container + "].StopTimeout; "
                        f"$timeout := $exists($t) ? $min([$t, {limits.STOP_TIMEOUT_MAX_SECONDS}]) : {limits.STOP_TIMEOUT_DEFAULT_SECONDS}; "
                        f"$ceil(($timeout + {limits.STOP_MARGIN_SECONDS}) / {limits.STOP_POLL_SECONDS}))"
                    ),
                },
                "Retry": [retry_transient(ECS_TRANSIENT)],
                "Catch": [catch_all("registering the migrate task definition", "migrate")],
                "Next": CHECK_LEASE_BEFORE_MIGRATION,
            },
            **_run_and_wait(s, next_state),
        },
        _migrate_grants(s),
    )
    rule_scoped_assigns(phase.states)
    return phase


def _run_and_wait(s: DefinitionSettings, next_state: str) -> dict[str, State]:
    return {**_run(s), **_poll(s, next_state), **_stop(s)}


# Reads of the described migrate task ($migrationTask).
_TASK_CONTAINER = "$migrationTask.Containers[Name = %s]"
_STOPPED = "$migrationTask.LastStatus = 'STOPPED'"


def _meaning(exit_code: str) -> str:
    """JSONata: ' (what the runner says that exit code means)', or nothing for a code it does not use."""
    meanings = js({str(code): text for code, text in contract.RUNNER_EXIT_MEANINGS.items()})
    return "($m := $lookup(" + meanings + ", $string(" + exit_code + ")); $exists($m) ? ' (' & $m & ')' : '')"


def _task_reason(container: str) -> str:
    """JSONata: ECS's reasons for the stop: the container's, the stop code, the task's."""
    return (
        "($t := $migrationTask; $c := " + _TASK_CONTAINER % container + "; "
        "$join([($exists($c.Reason) ? 'container: ' & $c.Reason : ()), "
        "($exists($t.StopCode) ? 'stop code ' & $t.StopCode : ()), "
        "($exists($t.StoppedReason) ? 'task: ' & $t.StoppedReason : ())], '; '))"
    )


def _failures(result: str) -> str:
    """JSONata: ECS's `failures` of a RunTask or DescribeTasks result, as one line."""
    return (
        "($f := " + result + ".Failures; $exists($f) and $count($f) > 0 ? "
        "$join($f.(Reason & ($exists(Detail) ? ' (' & Detail & ')' : '')), '; ') : 'no task and no failure reason')"
    )


# The described migrate task, or a stand-in when DescribeTasks answered with `failures` instead
# (e.g. MISSING): such a task is a failure with ECS's reason, not "still running".
_DESCRIBED_TASK = (
    "($t := $states.result.Tasks[0]; $exists($t) ? $t : {'LastStatus': 'MISSING', 'Reason': " + _failures("$states.result") + "})"
)
_MISSING = "$migrationTask.LastStatus = 'MISSING'"


def _run(s: DefinitionSettings) -> dict[str, State]:
    """RunTask, and whether it started a task or answered with failures."""
    log_stream = (
        "($p := $lookup($migrateLogOptions, 'awslogs-stream-prefix'); $exists($p) and $t ? $p & '/' & "
        + js(s.migrate_container)
        + " & '/' & $split($t, '/')[-1] : null)"
    )
    log_group = "($g := $lookup($migrateLogOptions, 'awslogs-group'); $exists($g) ? $g : null)"
    return {
        RUN_MIGRATION: {
            "Type": "Task",
            "Comment": "Private subnets, no public IP; startedBy = clientToken = the execution name (idempotent retry).",
            "Resource": "arn:aws:states:::aws-sdk:ecs:runTask",
            "Arguments": {
                "Cluster": s.cluster_name,
                "TaskDefinition": "{% $migrateTaskDefinitionArn %}",
                "LaunchType": "FARGATE",
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {
                        "Subnets": list(s.subnet_ids),
                        "SecurityGroups": list(s.security_group_ids),
                        "AssignPublicIp": "DISABLED",
                    }
                },
                "Overrides": {
                    "ContainerOverrides": [
                        {
                            "Name": s.migrate_container,
                            # The runner's deadline, and what it runs: deploy, or a recovery's
                            # status/resolve (constructs/release_machine/recovery.py).
                            "Environment": (
                                "{% $append([{'Name': "
                                + js(contract.MIGRATE_DEADLINE_AT_ENV)
                                + ", 'Value': $string($migrateDeadlineAt)}], "
                                + recovery.container_environment()
                                + ") %}"
                            ),
                        }
                    ]
                },
                "PropagateTags": "TASK_DEFINITION",
                # ValidateInput refused any name outside contract.EXECUTION_NAME_PATTERN, which
                # both of ECS's rules accept as it is.
                "StartedBy": expr(EXECUTION_NAME),
                "ClientToken": expr(EXECUTION_NAME),
            },
            "Assign": {
                # What the record names as soon as the task exists (the cleanup reads taskArn).
                "migration": expr(
                    "($t := $count($states.result.Tasks) > 0 ? $states.result.Tasks[0].TaskArn : null; "
                    "$merge([$migration, {'taskArn': $t, 'taskDefinition': $migrateTaskDefinitionArn, "
                    "'logGroup': " + log_group + ", 'logStream': " + log_stream + ", 'deadlineAt': $migrateDeadlineAt}]))"
                ),
                "runFailures": expr(_failures("$states.result")),
                "migrationPolls": 0,
            },
            # RunTask with the same clientToken and parameters returns the first call's task
            # instead of starting another: retrying it is safe. (A throttle has also been reported
            # as InvalidParameterException for RunTask; retrying a real one only delays the failure.)
            "Retry": [retry_transient([*ECS_TRANSIENT, "Ecs.InvalidParameterException", "ECS.InvalidParameterException"])],
            "Catch": [
                catch_all(
                    "starting the migrate task",
                    "migrate",
                    migration="$merge([$migration, {'outcome': 'failed', 'reason': 'RunTask failed: ' & " + ERROR + "}])",
                )
            ],
            "Next": MIGRATION_STARTED,
        },
        MIGRATION_STARTED: {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $migration.taskArn != null %}", "Next": RECORD_MIGRATION_STARTED}],
            "Default": FAIL_RELEASE,
            "Assign": fail_with(
                contract.MIGRATION_FAILED,
                "'ECS did not start the migrate task: ' & $runFailures",
                "migrate",
                migration="$merge([$migration, {'outcome': 'failed', 'reason': $runFailures}])",
            ),
        },
        # The task ARN, revision and log stream in the record before the first poll.
        RECORD_MIGRATION_STARTED: progress_record(s, MIGRATION_POLL_DELAY),
    }


def _poll(s: DefinitionSettings, next_state: str) -> dict[str, State]:
    """Every 10 s: DescribeTasks, then exit code 0, stopped otherwise, running within the bound, or stop it."""
    container = js(s.migrate_container)
    exit_code = "(" + _TASK_CONTAINER % container + ").ExitCode"
    reason = _task_reason(container)
    polls = s.bounds.migration_polls
    stopped = _STOPPED
    return {
        MIGRATION_POLL_DELAY: {"Type": "Wait", "Seconds": limits.POLL_SECONDS, "Next": DESCRIBE_MIGRATION},
        DESCRIBE_MIGRATION: {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:ecs:describeTasks",
            "Arguments": {"Cluster": s.cluster_name, "Tasks": ["{% $migration.taskArn %}"]},
            "Assign": {"migrationTask": expr(_DESCRIBED_TASK), "migrationPolls": "{% $migrationPolls + 1 %}"},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            # The task runs on: stop it before failing.
            "Catch": [
                {
                    **catch_all(
                        "watching the migrate task",
                        "migrate",
                        migration="$merge([$migration, {'outcome': 'failed', 'reason': 'DescribeTasks failed: ' & " + ERROR + "}])",
                    ),
                    "Next": STOP_MIGRATION,
                }
            ],
            "Next": MIGRATION_PROGRESS,
        },
        MIGRATION_PROGRESS: {
            "Type": "Choice",
            "Comment": "Exit code 0 of the migrate container, checked explicitly (a task that never started has none).",
            "Choices": [
                {
                    # ECS keeps a stopped task visible for at least an hour: one it no longer
                    # returns is gone for an unknown reason; its outcome is unknown.
                    "Condition": expr(_MISSING),
                    "Assign": fail_with(
                        contract.MIGRATION_FAILED,
                        "'ECS no longer returns the migrate task (DescribeTasks: ' & $migrationTask.Reason & "
                        "'): whether the migration ran is unknown; read its log stream and the database' & " + _where(),
                        "migrate",
                        migration="$merge([$migration, {'outcome': 'failed', 'reason': 'DescribeTasks: ' & $migrationTask.Reason}])",
                    ),
                    "Next": FAIL_RELEASE,
                },
                {
                    "Condition": expr(stopped + " and $exists(" + exit_code + ") and " + exit_code + " = 0"),
                    "Assign": {
                        "migration": expr("$merge([$migration, {'outcome': 'succeeded', 'exitCode': 0, 'reason': " + reason + "}])"),
                        "phase": "deploy",
                    },
                    "Next": next_state,
                },
                {
                    # The runner's own deadline (below this bound) stopped the command: a timeout.
                    "Condition": expr(
                        stopped + " and $exists(" + exit_code + ") and " + exit_code + " = " + str(contract.RUNNER_EXIT_DEADLINE)
                    ),
                    "Assign": fail_with(
                        contract.MIGRATION_TIMED_OUT,
                        "'migration exited with code ' & $string("
                        + exit_code
                        + ") & ' (' & "
                        + js(contract.RUNNER_EXIT_MEANINGS[contract.RUNNER_EXIT_DEADLINE])
                        + " & ')' & "
                        + _where(),
                        "migrate",
                        migration="$merge([$migration, {'outcome': 'timed-out', 'exitCode': " + exit_code + ", 'reason': " + reason + "}])",
                    ),
                    "Next": FAIL_RELEASE,
                },
                {
                    "Condition": expr(stopped),
                    "Assign": fail_with(
                        contract.MIGRATION_FAILED,
                        "($exists("
                        + exit_code
                        + ") ? 'migration exited with code ' & $string("
                        + exit_code
                        + ") & "
                        + _meaning(exit_code)
                        + " : "
                        "'migration task stopped without an exit code (it never started)') & ': ' & " + reason + " & " + _where(),
                        "migrate",
                        migration="$merge([$migration, {'outcome': 'failed', 'exitCode': $exists("
                        + exit_code
                        + ") ? "
                        + exit_code
                        + " : null, 'reason': "
                        + reason
                        + "}])",
                    ),
                    "Next": FAIL_RELEASE,
                },
                {"Condition": "{% $migrationPolls < " + str(polls) + " %}", "Next": MIGRATION_POLL_DELAY},
            ],
            "Default": STOP_MIGRATION,
            "Assign": fail_with(
                contract.MIGRATION_TIMED_OUT,
                "'the migration did not finish within " + str(s.migrate_timeout_seconds) + " s' & " + _where(),
                "migrate",
                migration="$merge([$migration, {'outcome': 'timed-out'}])",
            ),
        },
    }


def _stop(s: DefinitionSettings) -> dict[str, State]:
    """StopTask on the migrate task, then DescribeTasks until ECS reports it STOPPED, for at most
    the container's stop timeout plus a margin. The cause says "stopped" only once it is; until
    then `migrationMayRun` keeps the lease (the cleanup machine or the lease's expiry frees it)."""
    container = js(s.migrate_container)
    exit_code = "(" + _TASK_CONTAINER % container + ").ExitCode"
    reason = _task_reason(container)
    ended = (
        "($migrationTask.StopCode = 'UserInitiated' ? '; the release stopped the migrate task ' & $migration.taskArn : "
        "'; the migrate task ' & $migration.taskArn & ' ended on its own before the stop took effect') & "
        "' (STOPPED' & ($exists(" + exit_code + ") ? ', exit code ' & $string(" + exit_code + ") : '') & ')'"
    )
    may_run = (
        "' it may still be running: stop it with aws ecs stop-task; the release keeps the lease until the lease "
        "cleanup stops it or the lease expires'"
    )
    return {
        STOP_MIGRATION: {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:ecs:stopTask",
            "Arguments": {
                "Cluster": s.cluster_name,
                "Task": "{% $migration.taskArn %}",
                "Reason": expr("$substring('release ' & " + EXECUTION_NAME + " & ': ' & $errorName, 0, 255)"),
            },
            # ECS sends SIGTERM now and SIGKILL after the stop timeout: not stopped yet.
            "Assign": {"migrationMayRun": True, "stopPolls": 0},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": [
                {
                    "ErrorEquals": [STATES_ALL],
                    "Assign": {
                        "migrationMayRun": True,
                        "errorCause": expr(
                            "$errorCause & '; stopping the migrate task ' & $migration.taskArn & ' failed (' & "
                            + ERROR
                            + " & ': ' & "
                            + CAUSE
                            + " & '):' & "
                            + may_run
                        ),
                    },
                    "Next": FAIL_RELEASE,
                }
            ],
            "Next": STOP_POLL_DELAY,
        },
        STOP_POLL_DELAY: {"Type": "Wait", "Seconds": limits.STOP_POLL_SECONDS, "Next": DESCRIBE_STOPPING_MIGRATION},
        DESCRIBE_STOPPING_MIGRATION: {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:ecs:describeTasks",
            "Arguments": {"Cluster": s.cluster_name, "Tasks": ["{% $migration.taskArn %}"]},
            "Assign": {"migrationTask": expr(_DESCRIBED_TASK), "stopPolls": "{% $stopPolls + 1 %}"},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": [
                {
                    "ErrorEquals": [STATES_ALL],
                    "Assign": {
                        "errorCause": expr(
                            "$errorCause & '; StopTask was accepted but watching the migrate task ' & $migration.taskArn & ' failed (' & "
                            + ERROR
                            + " & '):' & "
                            + may_run
                        )
                    },
                    "Next": FAIL_RELEASE,
                }
            ],
            "Next": MIGRATION_STOP_PROGRESS,
        },
        MIGRATION_STOP_PROGRESS: {
            "Type": "Choice",
            "Choices": [
                {
                    "Condition": expr(_STOPPED),
                    "Assign": {
                        "migrationMayRun": False,
                        "errorCause": expr("$errorCause & " + ended),
                        "migration": expr(
                            "($mine := $migrationTask.StopCode = 'UserInitiated'; $code := $exists("
                            + exit_code
                            + ") ? "
                            + exit_code
                            + " : null; "
                            # Exited 0 on its own just as the release gave up: the migration completed.
                            "$merge([$migration, {'stoppedByRelease': $mine, 'exitCode': $code, 'reason': " + reason + "}, "
                            "($not($mine) and $code = 0) ? {'outcome': 'succeeded'} : {}]))"
                        ),
                    },
                    "Next": FAIL_RELEASE,
                },
                {
                    "Condition": expr("$not(" + _MISSING + ") and $stopPolls < $migrateStopPolls"),
                    "Next": STOP_POLL_DELAY,
                },
            ],
            "Default": FAIL_RELEASE,
            "Assign": {
                "errorCause": expr(
                    "$errorCause & '; StopTask was accepted but the migrate task ' & $migration.taskArn & ' was ' & "
                    "$migrationTask.LastStatus & ' after ' & $string($stopPolls * "
                    + str(limits.STOP_POLL_SECONDS)
                    + ") & ' s (' & ($exists($migrationTask.Reason) ? $migrationTask.Reason & '; ' : '') & 'not STOPPED):' & "
                    + may_run
                )
            },
        },
    }


def _migrate_grants(s: DefinitionSettings) -> list[Grant]:
    on_cluster = {"ArnEquals": {"ecs:cluster": s.cluster_arn}}
    return [
        Grant("RenderTaskDefinitions", ("ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"), ("*",)),
        Grant("RunMigrateTaskRevisions", ("ecs:RunTask",), (s.migrate_task_definitions_arn,), on_cluster),
        Grant("WatchAndStopMigrateTask", ("ecs:DescribeTasks", "ecs:StopTask"), (s.cluster_tasks_arn,), on_cluster),
        Grant(
            "TagOnCreate",
            ("ecs:TagResource",),
            (s.all_task_definitions_arn, s.cluster_tasks_arn),
            {"StringEquals": {"ecs:CreateAction": ["RegisterTaskDefinition", "RunTask"]}},
        ),
        Grant(
            "PassTaskRoles",
            ("iam:PassRole",),
            tuple(s.pass_role_arns),
            {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        ),
    ]
