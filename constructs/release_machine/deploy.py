"""Phase "deploy": one service at a time, in the order given. For each: re-check the lease, read
the task definition the service runs now (under the lease, so a change someone deployed meanwhile
is not reverted), render and register a revision with the new digest, UpdateService, and wait on
*that* deployment with a documented poll (Wait + DescribeServices + Choice). A failure stops the
rest; the cause names the failed service, the ones already deployed and the ones left untouched.
"""

from __future__ import annotations

from constructs.release_machine.asl import (
    CAUSE,
    ECS_TRANSIENT,
    ERROR,
    FAIL_RELEASE,
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
)
from constructs.release_machine.lease import check_lease
from constructs.release_machine.migrate import render
from constructs.release_machine.record import progress_record
from release import contract, limits

NEXT_SERVICE = "NextService"
CHECK_LEASE_BEFORE_DEPLOY = "CheckLeaseBeforeDeploy"
DESCRIBE_SERVICE = "DescribeService"
SERVICE_FOUND = "ServiceFound"
DESCRIBE_SERVICE_TD = "DescribeServiceTaskDefinition"
SERVICE_CONTAINER_FOUND = "ServiceContainerFound"
REGISTER_SERVICE_TD = "RegisterServiceTaskDefinition"
UPDATE_SERVICE = "UpdateService"
ROLLOUT_POLL_DELAY = "RolloutPollDelay"
WAIT_FOR_ROLLOUT = "WaitForRollout"
ROLLOUT_PROGRESS = "RolloutProgress"
RECORD_SERVICE_OUTCOME = "RecordServiceOutcome"


def outcome(result: str, task_definition: str, reason: str) -> str:
    """JSONata: $serviceResults with the current service's entry replaced."""
    return (
        "$merge([$serviceResults, {$target.app: {'outcome': "
        + js(result)
        + ", 'taskDefinition': "
        + task_definition
        + ", 'reason': "
        + reason
        + "}}])"
    )


def deployment_failed(
    s: DefinitionSettings, reason: str, task_definition: str = "null", error_name: str = contract.DEPLOYMENT_FAILED
) -> State:
    """Assign for a failed service: DeploymentFailed (or the AWS error's own name, after its
    retries), naming the service, what was deployed and what was not touched."""

    def others(outcome_value: str) -> str:
        return (
            "[$filter($keys($serviceResults), function($k) { $k != $target.app and $lookup($serviceResults, $k).outcome = "
            + js(outcome_value)
            + " })]"
        )

    cause = (
        "'service ' & $target.service & ' (' & $target.app & ') was not deployed: ' & " + reason + " & "
        "($d := " + others("deployed") + "; "
        "'; already deployed: ' & ($count($d) > 0 ? $join($map($d, function($k) { $k & ' (' & $lookup($serviceResults, $k).taskDefinition & ')' }), ', ') : 'none')) & "
        "($u := " + others("untouched") + "; '; not touched: ' & ($count($u) > 0 ? $join($u, ', ') : 'none'))"
    )
    return fail_with(error_name, cause, "deploy", serviceResults=outcome("failed", task_definition, reason))


def deploy_phase(s: DefinitionSettings, next_state: str) -> Phase:
    states: dict[str, State] = {
        NEXT_SERVICE: {
            "Type": "Choice",
            "Choices": [
                {
                    "Condition": "{% $serviceIndex < $count($services) %}",
                    "Assign": {
                        "target": "{% $merge([$services[$serviceIndex], {'image': $lookup($images, $services[$serviceIndex].app)}]) %}"
                    },
                    "Next": CHECK_LEASE_BEFORE_DEPLOY,
                }
            ],
            "Default": next_state,
        },
        CHECK_LEASE_BEFORE_DEPLOY: check_lease(s, "updating the next service", "deploy", DESCRIBE_SERVICE),
        **_render_states(s),
        UPDATE_SERVICE: {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:ecs:updateService",
            "Arguments": {"Cluster": s.cluster_name, "Service": "{% $target.service %}", "TaskDefinition": "{% $newTaskDefinition %}"},
            "Assign": {
                # The deployment UpdateService started, by id (after a rollback the PRIMARY
                # deployment is the rollback's, and reads COMPLETED).
                "deploymentId": expr(
                    "($d := $states.result.Service.Deployments[Status = 'PRIMARY' and TaskDefinition = $newTaskDefinition]; "
                    "$exists($d) ? $d[0].Id : 'none')"
                ),
                "polls": 0,
            },
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": [
                {
                    "ErrorEquals": [STATES_ALL],
                    "Assign": deployment_failed(s, "'UpdateService failed: ' & " + ERROR + " & ': ' & " + CAUSE, error_name=ERROR),
                    "Next": FAIL_RELEASE,
                }
            ],
            "Next": ROLLOUT_POLL_DELAY,
        },
        **_rollout_states(s),
        RECORD_SERVICE_OUTCOME: progress_record(s, NEXT_SERVICE),
    }
    grants = [Grant("DeployServices", ("ecs:DescribeServices", "ecs:UpdateService"), tuple(a.service_arn for a in s.apps))]
    return Phase(states, grants)


def _render_states(s: DefinitionSettings) -> dict[str, State]:
    found = "$states.result.Services[ServiceName = $target.service and Status = 'ACTIVE']"
    return {
        DESCRIBE_SERVICE: {
            "Type": "Task",
            "Comment": "The task definition the service runs now, read under the lease.",
            "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
            "Arguments": {"Cluster": s.cluster_name, "Services": ["{% $target.service %}"]},
            "Assign": {"currentTaskDefinition": expr("($f := " + found + "; $exists($f.TaskDefinition) ? $f[0].TaskDefinition : null)")},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": [catch_all("reading the service before deploying it", "deploy")],
            "Next": SERVICE_FOUND,
        },
        SERVICE_FOUND: {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $currentTaskDefinition != null %}", "Next": DESCRIBE_SERVICE_TD}],
            "Default": FAIL_RELEASE,
            "Assign": deployment_failed(s, "'not found (or not ACTIVE) in cluster ' & " + js(s.cluster_name)),
        },
        DESCRIBE_SERVICE_TD: {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:ecs:describeTaskDefinition",
            "Arguments": {"TaskDefinition": "{% $currentTaskDefinition %}", "Include": ["TAGS"]},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": [catch_all("describing the service's task definition", "deploy")],
            "Next": SERVICE_CONTAINER_FOUND,
        },
        SERVICE_CONTAINER_FOUND: {
            "Type": "Choice",
            "Choices": [
                {
                    "Condition": "{% $count($states.input.TaskDefinition.ContainerDefinitions[Name = $target.container]) = 1 %}",
                    "Next": REGISTER_SERVICE_TD,
                }
            ],
            "Default": FAIL_RELEASE,
            "Assign": deployment_failed(
                s, "'its task definition ' & $currentTaskDefinition & ' has no container named ' & $target.container"
            ),
        },
        REGISTER_SERVICE_TD: {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:ecs:registerTaskDefinition",
            "Arguments": expr(render("$states.input.TaskDefinition", "$target.container", "$target.image", "$states.input.Tags")),
            "Assign": {"newTaskDefinition": "{% $states.result.TaskDefinition.TaskDefinitionArn %}"},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": [catch_all("registering the service's new task definition", "deploy")],
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
            "Comment": "One poll: the rollout state of the deployment UpdateService started.",
            "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
            "Arguments": {"Cluster": s.cluster_name, "Services": ["{% $target.service %}"]},
            "Assign": {"rollout": expr(rollout_state), "polls": "{% $polls + 1 %}"},
            "Retry": [retry_transient(ECS_TRANSIENT)],
            "Catch": [
                {
                    "ErrorEquals": [STATES_ALL],
                    "Assign": deployment_failed(
                        s, "'watching its rollout failed: ' & " + ERROR + " & ': ' & " + CAUSE, "$newTaskDefinition", error_name=ERROR
                    ),
                    "Next": FAIL_RELEASE,
                }
            ],
            "Next": ROLLOUT_PROGRESS,
        },
        ROLLOUT_PROGRESS: {
            "Type": "Choice",
            "Choices": [
                {
                    "Condition": "{% $rollout.state = 'COMPLETED' %}",
                    "Assign": {
                        "serviceResults": expr(outcome("deployed", "$newTaskDefinition", "null")),
                        "serviceIndex": "{% $serviceIndex + 1 %}",
                    },
                    "Next": RECORD_SERVICE_OUTCOME,
                },
                {"Condition": "{% $rollout.state = 'IN_PROGRESS' and $polls < " + str(polls) + " %}", "Next": ROLLOUT_POLL_DELAY},
            ],
            "Default": FAIL_RELEASE,
            "Assign": deployment_failed(s, ended, "$newTaskDefinition"),
        },
    }
