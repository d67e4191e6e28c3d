"""Phase "deploy": the services roll out concurrently, in waves the config's `after:` lists define
(a wave starts when the one before it has ended), at most `max_parallel_rollouts` at a time (a Map's
MaxConcurrency).

Each service, in its own Map iteration: re-check the lease (and the deploy gate, below), read the
task definition the service runs now (under the lease, so a change someone deployed meanwhile is
not reverted), render and register a revision with the new digest, UpdateService, write that
deployment's id to the record at once, and wait on *that* deployment with a documented poll
(Wait + DescribeServices for this one service + Choice). An iteration never fails: it ends with
its service's outcome, so the ones already rolling finish and are recorded.

A failure starts no new service: the failing iteration closes the deploy gate (the lease item's
`Gate`, set to this attempt's lease holder when the phase starts), and every iteration's lease check is
conditional on the gate, so a service whose turn comes later stays untouched, and no later wave
starts. DeploymentFailed's cause names each service's outcome.
"""

from __future__ import annotations

from constructs.release_machine.asl import (
    CAUSE,
    CONDITIONAL_CHECK_FAILED,
    DYNAMODB_TRANSIENT,
    ECS_TRANSIENT,
    ECS_UPDATE_SERVICE_TRANSIENT,
    ERROR,
    FAIL_RELEASE,
    STATES_ALL,
    DefinitionSettings,
    Grant,
    Phase,
    State,
    catch_all,
    expr,
    js,
    retry_transient,
    rule_scoped_assigns,
)
from constructs.release_machine.lease import HOLDER, HOLDER_IS_ME
from constructs.release_machine.migrate import render
from constructs.release_machine.record import progress_record
from release import contract, limits

OPEN_DEPLOY_GATE = "OpenDeployGate"
NEXT_WAVE = "NextWave"
DEPLOY_WAVE = "DeployWave"
RECORD_WAVE = "RecordWave"
DEPLOY_OUTCOME = "DeployOutcome"
# Inside each iteration of DeployWave:
START_SERVICE = "StartService"
CHECK_LEASE_BEFORE_DEPLOY = "CheckLeaseBeforeDeploy"
READ_DEPLOY_GATE = "ReadDeployGate"
DESCRIBE_SERVICE = "DescribeService"
SERVICE_FOUND = "ServiceFound"
DESCRIBE_SERVICE_TD = "DescribeServiceTaskDefinition"
SERVICE_CONTAINER_FOUND = "ServiceContainerFound"
REGISTER_SERVICE_TD = "RegisterServiceTaskDefinition"
UPDATE_SERVICE = "UpdateService"
RECORD_DEPLOYMENT = "RecordDeployment"
ROLLOUT_POLL_DELAY = "RolloutPollDelay"
WAIT_FOR_ROLLOUT = "WaitForRollout"
ROLLOUT_PROGRESS = "RolloutProgress"
SERVICE_FAILED = "ServiceFailed"
SERVICE_DONE = "ServiceDone"

# An iteration's own variables (names distinct from the outer scope's: an iteration reads the
# outer variables but cannot assign them).
GATE_CLOSED_REASON = "not started: another service of this release failed first"
LEASE_LOST_REASON = (
    "not started: this execution no longer holds the release lease (it expired, the lease cleanup freed it after the "
    "execution failed, or another release took it); start a new release"
)
# JSONata: a service's entry in the record, from an iteration's output `$r`.
RESULT_ENTRY = "{'outcome': $r.outcome, 'taskDefinition': $r.taskDefinition, 'deploymentId': $r.deploymentId, 'reason': $r.reason}"


def _failed(reason: str, error_name: str = js(contract.DEPLOYMENT_FAILED), outcome: str = "failed") -> dict[str, str]:
    """Assign for an iteration whose service was not deployed; bodies are JSONata."""
    return {
        "svcOutcome": outcome,
        "svcReason": expr("$substring(" + reason + ", 0, " + str(limits.MAX_REASON_CHARS) + ")"),
        "svcError": expr(error_name),
    }


def _catch(reason_prefix: str, error_name: str = ERROR) -> State:
    return {
        "ErrorEquals": [STATES_ALL],
        "Assign": _failed(js(reason_prefix + ": ") + " & " + ERROR + " & ': ' & " + CAUSE, error_name),
        "Next": SERVICE_FAILED,
    }


def deploy_phase(s: DefinitionSettings, next_state: str) -> Phase:
    waves = limits.rollout_waves({a.app: list(a.after) for a in s.apps})
    wave_count = max(waves.values(), default=0) + 1
    items = (
        "[$map($filter($services, function($v) { $lookup(" + js(waves) + ", $v.app) = $waveIndex }), function($v) "
        "{ {'target': $merge([$v, {'image': $lookup($images, $v.app)}]), 'recordKey': $recordKey} })]"
    )
    lost = "$deployErrors[svcError = " + js(contract.RELEASE_IN_PROGRESS) + "]"
    states: dict[str, State] = {
        OPEN_DEPLOY_GATE: {
            "Type": "Task",
            "Comment": "Still this attempt's lease? Then open the deploy gate to it (a failed service closes it).",
            "Resource": "arn:aws:states:::dynamodb:updateItem",
            "Arguments": {
                "TableName": s.lease_table_name,
                "Key": {"LeaseId": {"S": contract.LEASE_ID}},
                "UpdateExpression": f"SET {contract.LEASE_GATE} = :holder",
                "ConditionExpression": "Holder = :holder",
                "ExpressionAttributeValues": HOLDER_IS_ME,
            },
            "Output": "{% $states.input %}",
            "Assign": {"waveIndex": 0, "deployErrors": expr("[]"), "phase": "deploy"},
            "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
            "Catch": [
                {
                    "ErrorEquals": [CONDITIONAL_CHECK_FAILED],
                    "Assign": {
                        "errorName": contract.RELEASE_IN_PROGRESS,
                        "phase": "deploy",
                        "leaseReleased": True,  # not ours: the failure path must not delete another's lease
                        "errorCause": expr(js(LEASE_LOST_REASON.replace("not started", "no service was updated"))),
                    },
                    "Next": FAIL_RELEASE,
                },
                catch_all("checking the release lease before the services", "deploy"),
            ],
            "Next": NEXT_WAVE,
        },
        NEXT_WAVE: {
            "Type": "Choice",
            "Choices": [
                {
                    "Condition": "{% $waveIndex < " + str(wave_count) + " and $count($deployErrors) = 0 %}",
                    "Next": DEPLOY_WAVE,
                }
            ],
            "Default": DEPLOY_OUTCOME,
        },
        DEPLOY_WAVE: {
            "Type": "Map",
            "Comment": "This wave's services, concurrently; each iteration ends with its service's outcome.",
            "Items": expr(items),
            "MaxConcurrency": s.max_parallel_rollouts,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": START_SERVICE,
                "States": rule_scoped_assigns(_service_states(s)),
            },
            "Assign": {
                "serviceResults": expr(
                    "$merge($append([$serviceResults], $map($states.result, function($r) { {$r.app: " + RESULT_ENTRY + "} })))"
                ),
                "deployErrors": expr("[$append($deployErrors, [$states.result[$exists(svcError) and svcError != null]])]"),
                "waveIndex": "{% $waveIndex + 1 %}",
            },
            "Catch": [catch_all("deploying the services", "deploy")],
            "Next": RECORD_WAVE,
        },
        RECORD_WAVE: progress_record(s, NEXT_WAVE),
        DEPLOY_OUTCOME: {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $count($deployErrors) = 0 %}", "Assign": {"phase": "deploy"}, "Next": next_state}],
            "Default": FAIL_RELEASE,
            "Assign": {
                "errorName": expr("$exists(" + lost + ") ? " + js(contract.RELEASE_IN_PROGRESS) + " : $deployErrors[0].svcError"),
                "errorCause": expr(_failure_cause()),
                "leaseReleased": expr("$exists(" + lost + ") ? true : $leaseReleased"),
                "phase": "deploy",
            },
        },
    }
    grants = [
        Grant("DeployServices", ("ecs:DescribeServices", "ecs:UpdateService"), tuple(a.service_arn for a in s.apps)),
        # Each service's deployment id, written to its release record as soon as UpdateService returns.
        Grant("RecordDeployments", ("dynamodb:UpdateItem",), (s.history_table_arn,)),
    ]
    return Phase(rule_scoped_assigns(states), grants)


def _failure_cause() -> str:
    """Every failed service with its reason, then the deployed ones (with their revision) and the
    untouched ones, from $serviceResults and $deployErrors."""

    def named(outcome: str) -> str:
        return "[$filter($keys($serviceResults), function($k) { $lookup($serviceResults, $k).outcome = " + js(outcome) + " })]"

    return (
        "$join($map($deployErrors, function($e) { 'service ' & $e.service & ' (' & $e.app & ') was not deployed: ' & $e.reason }), '; ') & "
        "($d := " + named("deployed") + "; "
        "'; already deployed: ' & ($count($d) > 0 ? $join($map($d, function($k) { $k & ' (' & $lookup($serviceResults, $k).taskDefinition & ')' }), ', ') : 'none')) & "
        "($u := " + named("untouched") + "; '; not touched: ' & ($count($u) > 0 ? $join($u, ', ') : 'none'))"
    )


def _service_states(s: DefinitionSettings) -> dict[str, State]:
    owner_is_me = "$exists($states.result.Item.Holder.S) and $states.result.Item.Holder.S = " + HOLDER
    deployment = (
        "$string({'app': $svc.app, 'service': $svc.service, 'deploymentId': $deploymentId, "
        "'taskDefinition': $newTaskDefinition, 'state': 'IN_PROGRESS', 'at': $now()})"
    )
    return {
        START_SERVICE: {
            "Type": "Pass",
            "Assign": {
                "svc": "{% $states.input.target %}",
                "svcRecordKey": "{% $states.input.recordKey %}",
                "svcOutcome": "untouched",
                # JSON null as JSONata: a literal null is dropped on the way (validate.py does the same).
                "svcReason": "{% null %}",
                "svcError": "{% null %}",
                "newTaskDefinition": "{% null %}",
                "deploymentId": "{% null %}",
            },
            "Next": CHECK_LEASE_BEFORE_DEPLOY,
        },
        CHECK_LEASE_BEFORE_DEPLOY: {
            "Type": "Task",
            "Comment": "Still the lease owner, and no service of this release failed? Checked right before each service.",
            "Resource": "arn:aws:states:::dynamodb:updateItem",
            "Arguments": {
                "TableName": s.lease_table_name,
                "Key": {"LeaseId": {"S": contract.LEASE_ID}},
                "UpdateExpression": "SET CheckedAt = :now",
                # The gate holds this attempt's holder (execution ARN and redrive count) only while
                # it holds the lease (a new holder's PutItem replaces the item) and until a service
                # fails: a redriven attempt never passes it.
                "ConditionExpression": "#gate = :holder",
                "ExpressionAttributeNames": {"#gate": contract.LEASE_GATE},
                "ExpressionAttributeValues": {":now": {"S": "{% $now() %}"}, **HOLDER_IS_ME},
            },
            "Output": "{% $states.input %}",
            "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
            "Catch": [
                {"ErrorEquals": [CONDITIONAL_CHECK_FAILED], "Next": READ_DEPLOY_GATE},
                {
                    "ErrorEquals": [STATES_ALL],
                    "Assign": _failed(
                        "'not started: checking the release lease failed: ' & " + ERROR + " & ': ' & " + CAUSE, ERROR, "untouched"
                    ),
                    "Next": SERVICE_DONE,
                },
            ],
            "Next": DESCRIBE_SERVICE,
        },
        READ_DEPLOY_GATE: {
            "Type": "Task",
            "Comment": "Closed gate or lost lease? Either way this service is not touched; a lost lease is ReleaseInProgress.",
            "Resource": "arn:aws:states:::dynamodb:getItem",
            "Arguments": {"TableName": s.lease_table_name, "Key": {"LeaseId": {"S": contract.LEASE_ID}}, "ConsistentRead": True},
            "Assign": {
                "svcReason": expr("(" + owner_is_me + ") ? " + js(GATE_CLOSED_REASON) + " : " + js(LEASE_LOST_REASON)),
                "svcError": expr("(" + owner_is_me + ") ? null : " + js(contract.RELEASE_IN_PROGRESS)),
            },
            "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
            "Catch": [
                {
                    "ErrorEquals": [STATES_ALL],
                    "Assign": _failed(
                        "'not started: reading the release lease failed: ' & " + CAUSE, js(contract.RELEASE_IN_PROGRESS), "untouched"
                    ),
                    "Next": SERVICE_DONE,
                }
            ],
            "Next": SERVICE_DONE,
        },
        **_render_states(s),
        UPDATE_SERVICE: {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:ecs:updateService",
            "Arguments": {"Cluster": s.cluster_name, "Service": "{% $svc.service %}", "TaskDefinition": "{% $newTaskDefinition %}"},
            "Assign": {
                # The deployment UpdateService started, by id (after a rollback the PRIMARY
                # deployment is the rollback's, and reads COMPLETED).
                "deploymentId": expr(
                    "($d := $states.result.Service.Deployments[Status = 'PRIMARY' and TaskDefinition = $newTaskDefinition]; "
                    "$exists($d) ? $d[0].Id : 'none')"
                ),
                "polls": 0,
            },
            # ECS reports ELB throttling during UpdateService as ClientException; a retry with the same
            # task definition starts no second deployment (docs/release.md, "ClientException").
            "Retry": [retry_transient(ECS_UPDATE_SERVICE_TRANSIENT)],
            "Catch": [_catch("UpdateService failed")],
            "Next": RECORD_DEPLOYMENT,
        },
        RECORD_DEPLOYMENT: {
            "Type": "Task",
            "Comment": "The deployment id in the record now: if the execution is aborted, the cleanup names it.",
            "Resource": "arn:aws:states:::dynamodb:updateItem",
            "Arguments": {
                "TableName": s.history_table_name,
                "Key": {contract.RECORD_PK: {"S": contract.RECORD_PARTITION}, contract.RECORD_SK: {"S": "{% $svcRecordKey %}"}},
                "UpdateExpression": expr("'SET " + contract.RECORD_DEPLOYMENT_PREFIX + "' & $svc.app & ' = :d'"),
                "ExpressionAttributeValues": {":d": {"S": expr(deployment)}},
            },
            "Output": "{% $states.input %}",
            "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
            # Best effort: the rollout goes on, and the record's next write carries the same id.
            "Catch": [{"ErrorEquals": [STATES_ALL], "Next": ROLLOUT_POLL_DELAY}],
            "Next": ROLLOUT_POLL_DELAY,
        },
        **_rollout_states(s),
        SERVICE_FAILED: {
            "Type": "Task",
            "Comment": "Close the deploy gate: no service of this release starts after a failure.",
            "Resource": "arn:aws:states:::dynamodb:updateItem",
            "Arguments": {
                "TableName": s.lease_table_name,
                "Key": {"LeaseId": {"S": contract.LEASE_ID}},
                "UpdateExpression": f"SET {contract.LEASE_GATE} = :closed",
                "ConditionExpression": "Holder = :holder",
                "ExpressionAttributeValues": {":closed": {"S": "{% 'closed: ' & $svc.app & ' failed' %}"}, **HOLDER_IS_ME},
            },
            "Output": "{% $states.input %}",
            "Retry": [retry_transient(DYNAMODB_TRANSIENT)],
            # Not the owner any more: the gate is closed to this execution anyway.
            "Catch": [{"ErrorEquals": [STATES_ALL], "Next": SERVICE_DONE}],
            "Next": SERVICE_DONE,
        },
        SERVICE_DONE: {
            "Type": "Pass",
            "Output": {
                "app": "{% $svc.app %}",
                "service": "{% $svc.service %}",
                "outcome": "{% $svcOutcome %}",
                "taskDefinition": "{% $newTaskDefinition %}",
                "deploymentId": "{% $deploymentId %}",
                "reason": "{% $svcReason %}",
                "svcError": "{% $svcError %}",
            },
            "End": True,
        },
    }


def _render_states(s: DefinitionSettings) -> dict[str, State]:
    found = "$states.result.Services[ServiceName = $svc.service and Status = 'ACTIVE']"
    return {
        DESCRIBE_SERVICE: {
            "Type": "Task",
            "Comment": "The task definition the service runs now, read under the lease.",
            "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
            "Arguments": {"Cluster": s.cluster_name, "Services": ["{% $svc.service %}"]},
            "Assign": {"currentTaskDefinition": expr("($f := " + found + "; $exists($f.TaskDefinition) ? $f[0].TaskDefinition : null)")},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": [_catch("reading the service before deploying it")],
            "Next": SERVICE_FOUND,
        },
        SERVICE_FOUND: {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $currentTaskDefinition != null %}", "Next": DESCRIBE_SERVICE_TD}],
            "Default": SERVICE_FAILED,
            "Assign": _failed("'not found (or not ACTIVE) in cluster ' & " + js(s.cluster_name)),
        },
        DESCRIBE_SERVICE_TD: {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:ecs:describeTaskDefinition",
            "Arguments": {"TaskDefinition": "{% $currentTaskDefinition %}", "Include": ["TAGS"]},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": [_catch("describing the service's task definition")],
            "Next": SERVICE_CONTAINER_FOUND,
        },
        SERVICE_CONTAINER_FOUND: {
            "Type": "Choice",
            "Choices": [
                {
                    "Condition": "{% $count($states.input.TaskDefinition.ContainerDefinitions[Name = $svc.container]) = 1 %}",
                    "Next": REGISTER_SERVICE_TD,
                }
            ],
            "Default": SERVICE_FAILED,
            "Assign": _failed("'its task definition ' & $currentTaskDefinition & ' has no container named ' & $svc.container"),
        },
        REGISTER_SERVICE_TD: {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:ecs:registerTaskDefinition",
            "Arguments": expr(render("$states.input.TaskDefinition", "$svc.container", "$svc.image", "$states.input.Tags")),
            "Assign": {"newTaskDefinition": "{% $states.result.TaskDefinition.TaskDefinitionArn %}"},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": [_catch("registering the service's new task definition")],
            "Next": UPDATE_SERVICE,
        },
    }


def _rollout_states(s: DefinitionSettings) -> dict[str, State]:
    deployment = "$states.result.Services[0].Deployments[Id = $deploymentId]"
    gone = "{'state': 'GONE', 'reason': 'deployment ' & $deploymentId & ' is no longer listed'}"
    reported = "{'state': $d.RolloutState, 'reason': $exists($d.RolloutStateReason) ? $d.RolloutStateReason : ''}"
    rollout_state = "($d := " + deployment + "; $not($exists($d.RolloutState)) ? " + gone + " : " + reported + ")"
    reason = "($rollout.reason != '' ? ': ' & $rollout.reason : '')"
    polls = s.bounds.rollout_polls
    ended = (
        "($rollout.state = 'IN_PROGRESS' ? 'rollout of deployment ' & $deploymentId & ' did not finish within "
        + str(s.rollout_timeout_seconds)
        + " s (still IN_PROGRESS' & "
        + reason
        + " & '); the deployment circuit breaker rolls it back if it fails' : "
        "'rollout ' & $rollout.state & ' of deployment ' & $deploymentId & " + reason + " & ($rollout.state = 'GONE' "
        "? ' (another deployment replaced it, or the circuit breaker rolled it back: see the service events)' "
        ": ' (the deployment circuit breaker rolled the service back to its previous task definition)'))"
    )
    return {
        ROLLOUT_POLL_DELAY: {"Type": "Wait", "Seconds": limits.POLL_SECONDS, "Next": WAIT_FOR_ROLLOUT},
        WAIT_FOR_ROLLOUT: {
            "Type": "Task",
            # One service per call: DescribeServices returns up to 100 events per service, so the
            # result stays far below the 256 KiB task-result quota (release/limits.py).
            "Comment": "One poll: the rollout state of the deployment UpdateService started.",
            "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
            "Arguments": {"Cluster": s.cluster_name, "Services": ["{% $svc.service %}"]},
            "Assign": {"rollout": expr(rollout_state), "polls": "{% $polls + 1 %}"},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": [_catch("watching its rollout failed")],
            "Next": ROLLOUT_PROGRESS,
        },
        ROLLOUT_PROGRESS: {
            "Type": "Choice",
            "Choices": [
                {"Condition": "{% $rollout.state = 'COMPLETED' %}", "Assign": {"svcOutcome": "deployed"}, "Next": SERVICE_DONE},
                {"Condition": "{% $rollout.state = 'IN_PROGRESS' and $polls < " + str(polls) + " %}", "Next": ROLLOUT_POLL_DELAY},
            ],
            "Default": SERVICE_FAILED,
            "Assign": _failed(ended),
        },
    }
