"""Phase "validate": the input (before any AWS call), the first record, and the pre-flight check of
every service (exists, ACTIVE, ECS rolling deployments with circuit breaker and rollback, no
Classic Load Balancer): a service that could not be deployed safely stops the release with
nothing changed."""

from __future__ import annotations

from constructs.release_machine import recovery
from constructs.release_machine.asl import (
    ECS_TRANSIENT,
    EXECUTION_ARN,
    EXECUTION_NAME,
    FAIL_RELEASE,
    RECORD_FAILURE,
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
from constructs.release_machine.record import put_record
from release import contract, limits

VALIDATE_INPUT = "ValidateInput"
RECORD_START = "RecordStart"
CHECK_SERVICES = "CheckServices"
DESCRIBE_ONE_SERVICE = "DescribeOneService"
SERVICES_READY = "ServicesReady"
TEXT = contract.MAX_TEXT_FIELD
# JSON null as an expression: CDK's Stack.to_json_string drops keys whose value is None.
NULL = "{% null %}"


def tag_problem(tag: str) -> str:
    """JSONata: a problem with `tag`, or nothing. Engine-independent: a length check and an explicit
    character-set test per character (no regular expression, whose `$` and newline handling differ
    between JSONata engines)."""
    first, rest = js(contract.TAG_FIRST_CHARACTERS), js(contract.TAG_CHARACTERS)
    return (
        f"($type({tag}) != 'string' or $length({tag}) < 1 or $length({tag}) > {contract.TAG_MAX_LENGTH} "
        f"or $not($contains({first}, $substring({tag}, 0, 1))) "
        f"or $count($filter($split({tag}, ''), function($c) {{ $not($contains({rest}, $c)) }})) > 0) "
        "? 'imageTag: must be a string of 1-128 characters: A-Z a-z 0-9 _ . - (not starting with . or -)' : ()"
    )


def name_problem() -> str:
    """JSONata: the execution name's problem, or nothing (contract.EXECUTION_NAME_PATTERN, checked
    character by character like the tag)."""
    allowed = js(contract.EXECUTION_NAME_CHARACTERS)
    return (
        "($n := " + EXECUTION_NAME + "; ($length($n) < 1 or $length($n) > " + str(contract.MAX_EXECUTION_NAME) + " "
        "or $count($filter($split($n, ''), function($c) { $not($contains(" + allowed + ", $c)) })) > 0) "
        "? " + js(contract.EXECUTION_NAME_RULE + "; start it with python -m release start, or name it so") + " : ())"
    )


def input_problems(s: DefinitionSettings, default_services: list[str]) -> str:
    known = js([a.app for a in s.apps])
    allowed = js(list(contract.INPUT_FIELDS) + list(contract.RECOVERY_INPUT_FIELDS))
    text_field = (
        "($v := $lookup($in, %s); $exists($v) and $v != null and ($type($v) != 'string' or $length($v) > " + str(TEXT) + ")) ? %s : ()"
    )
    return (
        "($in := $states.input; $known := " + known + "; $isObject := $type($in) = 'object'; "
        "$unknown := $isObject ? [$filter([$keys($in)], function($k) { $not($k in " + allowed + ") })] : []; "
        "$tag := $isObject ? $lookup($in, 'imageTag'); $svc := $isObject ? $lookup($in, 'services'); "
        "$badApps := $type($svc) = 'array' ? [$filter($svc, function($v) { $type($v) != 'string' or $not($v in $known) })] : []; "
        "$nameProblem := " + name_problem() + "; "
        '$not($isObject) ? [$nameProblem, \'input: must be a JSON object such as {"imageTag": "<tag>"}\'] : [$nameProblem, '
        "$count($unknown) > 0 ? 'input: unknown field ' & $join($unknown, ', ') & ' (allowed: ' & $join(" + allowed + ", ', ') & ')' : (), "
        "$not($exists($tag)) ? 'imageTag: required' : " + tag_problem("$tag") + ", "
        "$not($exists($svc)) ? () : "
        "$type($svc) != 'array' ? 'services: must be a non-empty array of app names (' & $join($known, ', ') & ')' : "
        "$count($svc) = 0 ? ("
        + recovery.allows_no_services()
        + " ? () : 'services: must not be empty (omit it to deploy ' & $join("
        + js(default_services)
        + ", ', ') & ')') : "
        "$count($badApps) > 0 ? 'services: unknown app ' & $join($map($badApps, function($v) { $string($v) }), ', ') & ' (known: ' & $join($known, ', ') & ')' : "
        "$count($distinct($svc)) != $count($svc) ? 'services: duplicate app names' : (), "
        "($exists($lookup($in, 'migrate')) and $type($lookup($in, 'migrate')) != 'boolean') ? 'migrate: must be true or false' : (), "
        "($exists($lookup($in, 'snapshot')) and $type($lookup($in, 'snapshot')) != 'boolean') ? 'snapshot: must be true or false' : (), "
        + (text_field % ("'startedBy'", "'startedBy: must be a string of at most " + str(TEXT) + " characters'"))
        + ", "
        + (text_field % ("'note'", "'note: must be a string of at most " + str(TEXT) + " characters'"))
        + ", "
        + (text_field % ("'rollbackOf'", "'rollbackOf: must be an execution name'"))
        + ", "
        + recovery.input_problems()
        + "])"
    )


def initial_variables(s: DefinitionSettings, default_services: list[str]) -> dict[str, str | int | bool]:
    """Every variable the record reads, from the input as it is (valid or not)."""
    apps = js({a.app: {"app": a.app, "service": a.service_name, "container": a.container_name} for a in s.apps})
    text = "($v := $type($states.input) = 'object' ? $lookup($states.input, '%s'); $type($v) = 'string' ? $substring($v, 0, %d) : %s)"
    requested = (
        "($type($states.input) = 'object' and $type($states.input.services) = 'array' ? $states.input.services : "
        + js(default_services)
        + ")"
    )
    services = (
        "($apps := "
        + apps
        + "; [$filter($map("
        + requested
        + ", function($a) { $type($a) = 'string' ? $lookup($apps, $a) }), function($v) { $exists($v) })])"
    )
    return {
        "record": expr(
            "{'execution': " + EXECUTION_ARN + ", 'name': " + EXECUTION_NAME + ", "
            "'kind': "
            + recovery.kind(
                "($type($states.input) = 'object' and $type($states.input.rollbackOf) = 'string' ? "
                + js(contract.KIND_ROLLBACK)
                + " : "
                + js(contract.KIND_RELEASE)
                + ")"
            )
            + ", "
            "'imageTag': " + (text % ("imageTag", 128, "''")) + ", "
            "'startedBy': " + (text % ("startedBy", TEXT, "'unknown'")) + ", "
            "'note': " + (text % ("note", TEXT, "null")) + ", "
            "'startedAt': $states.context.Execution.StartTime}"
        ),
        # Sort key: start time (normalised through epoch milliseconds, so the lease cleanup, which
        # only has the event's startDate in milliseconds, computes the same key) and name.
        "recordKey": expr("$fromMillis($toMillis($states.context.Execution.StartTime)) & '#' & " + EXECUTION_NAME),
        "phase": "validate",
        "errorName": NULL,
        "errorCause": NULL,
        "digests": expr("{}"),
        "migration": expr(
            "{'outcome': 'not-run', 'exitCode': null, 'reason': null, 'taskArn': null, 'taskDefinition': null, "
            "'logGroup': null, 'logStream': null, 'deadlineAt': null, 'stoppedByRelease': false}"
        ),
        "migrationMayRun": False,
        "services": expr(services),
        "serviceResults": expr(
            "$merge([{}, " + services + ".{app: {'outcome': 'untouched', 'taskDefinition': null, 'deploymentId': null, 'reason': null}}])"
        ),
        "serviceIndex": 0,
        "endedAt": NULL,
        "leaseReleased": True,  # "this execution does not hold the lease": true until it takes it
        "imageTag": expr(text % ("imageTag", 128, "''")),
        "migrate": expr("($type($states.input) = 'object' and $type($states.input.migrate) = 'boolean') ? $states.input.migrate : true"),
        **recovery.variables(),
        # A manual snapshot before migrating (restore_point.py); the restore point itself is always taken.
        "snapshot": expr(
            "($type($states.input) = 'object' and $type($states.input.snapshot) = 'boolean') ? $states.input.snapshot : false"
        ),
        "restorePoint": NULL,
    }


def validate_phase(s: DefinitionSettings, next_state: str) -> Phase:
    default_services = [a.app for a in s.apps if a.uses_schema] or [a.app for a in s.apps]
    problems = input_problems(s, default_services)
    variables = initial_variables(s, default_services)
    states: dict[str, State] = {
        VALIDATE_INPUT: {
            "Type": "Choice",
            "Comment": "Unknown fields or bad values fail here, before any AWS call (recorded as FAILED).",
            "Choices": [
                {
                    "Condition": expr("$count(" + problems + ") > 0"),
                    "Assign": {
                        **variables,
                        "errorName": contract.INVALID_INPUT,
                        "endedAt": "{% $now() %}",
                        "errorCause": expr("$join(" + problems + ", '; ')"),
                    },
                    "Next": RECORD_FAILURE,
                }
            ],
            "Default": RECORD_START,
            "Assign": variables,
        },
        RECORD_START: {**put_record(s, js(contract.STATUS_RUNNING), ended=False), "Next": CHECK_SERVICES},
        **_check_services(s, next_state),
    }
    grants = [Grant("CheckAndDeployServices", ("ecs:DescribeServices",), tuple(a.service_arn for a in s.apps))]
    return Phase(rule_scoped_assigns(states), grants)


def _check_services(s: DefinitionSettings, next_state: str) -> dict[str, State]:
    # rolloutState (what a rollout is waited on) is reported only for the rolling update (ECS)
    # deployment type, and not behind a Classic Load Balancer (ECS API reference, Deployment).
    problem = (
        "($name := $states.input.service; $found := $states.result.Services[ServiceName = $name]; "
        "$cb := $found.DeploymentConfiguration.DeploymentCircuitBreaker; "
        "$p := $not($exists($found)) ? 'service ' & $name & ' not found in cluster ' & " + js(s.cluster_name) + " : "
        "$found.Status != 'ACTIVE' ? 'service ' & $name & ' is ' & $found.Status : "
        "($exists($found.DeploymentController.Type) and $found.DeploymentController.Type != 'ECS') "
        "? 'service ' & $name & ' uses the ' & $found.DeploymentController.Type & ' deployment controller: a release needs ECS rolling deployments' : "
        "($exists($found.DeploymentConfiguration.Strategy) and $found.DeploymentConfiguration.Strategy != 'ROLLING') "
        "? 'service ' & $name & ' uses the ' & $found.DeploymentConfiguration.Strategy & ' deployment strategy: a release needs ROLLING' : "
        "$count($found.LoadBalancers[$exists(LoadBalancerName)]) > 0 "
        "? 'service ' & $name & ' is behind a Classic Load Balancer, for which ECS reports no rollout state: move it to a target group' : "
        "($cb.Enable = true and $cb.Rollback = true) ? () "
        ": 'service ' & $name & ' has no deployment circuit breaker with rollback (enable both on the service)'; "
        "$exists($p) ? $p : null)"
    )
    describe_one: State = {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
        "Arguments": {"Cluster": s.cluster_name, "Services": ["{% $states.input.service %}"]},
        # Only the problem (or null) leaves the iteration: the Map's result stays small.
        "Output": expr(problem),
        "Retry": [retry_transient(ECS_TRANSIENT)],
        "End": True,
    }
    return {
        CHECK_SERVICES: {
            "Type": "Map",
            "Comment": (
                f"Pre-flight: DescribeServices for {limits.DESCRIBE_SERVICES_BATCH} service per call (up to 100 events each: "
                "one call's result stays far below the 256 KiB task-result quota, release/limits.py)."
            ),
            "Items": "{% $services %}",
            "MaxConcurrency": 5,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": DESCRIBE_ONE_SERVICE,
                "States": {DESCRIBE_ONE_SERVICE: describe_one},
            },
            "Assign": {"serviceProblems": "{% [$filter($states.result, function($p) { $type($p) = 'string' })] %}"},
            "Catch": [catch_all("checking the services", "validate")],
            "Next": SERVICES_READY,
        },
        SERVICES_READY: {
            "Type": "Choice",
            "Choices": [
                {
                    "Condition": "{% $count($serviceProblems) > 0 %}",
                    "Assign": {
                        "errorName": contract.DEPLOYMENT_FAILED,
                        "errorCause": "{% 'not deploying, nothing was changed: ' & $join($serviceProblems, '; ') %}",
                    },
                    "Next": FAIL_RELEASE,
                }
            ],
            "Default": next_state,
            "Assign": {"phase": "images"},
        },
    }
