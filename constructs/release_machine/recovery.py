"""Migration recovery through the release path: an execution with `action` "status" or "resolve"
runs the migrate task with Prisma's `migrate status` / `migrate resolve` (the runner picks the
command from MIGRATE_ACTION and MIGRATE_RESOLVE, container-override environment of RunTask), under
the same lease, advisory lock and record as a release, and deploys no service.

What this module adds to the other phases: the input checks (appended to ValidateInput's list),
the variables (`$migrateAction`, `$migrateResolve`), the override environment, and the skip of the
"released" parameter (a recovery releases nothing: the parameter keeps naming the last release).
The pre-flight check of the services is a Map over them: with none requested it calls nothing.
"""

from __future__ import annotations

from constructs.release_machine.asl import DefinitionSettings, Phase, State, expr, js, rule_scoped_assigns
from release import contract

RELEASES_SOMETHING = "ReleasesSomething"
_IN = "$states.input"


def _text(field: str, default: str) -> str:
    return f"(($type({_IN}) = 'object' and $type({_IN}.{field}) = 'string') ? {_IN}.{field} : {js(default)})"


def variables() -> dict[str, str]:
    """Read from the input as it is (valid or not: ValidateInput assigns them either way)."""
    return {"migrateAction": expr(_text("action", contract.ACTION_DEPLOY)), "migrateResolve": expr(_text("resolve", ""))}


def kind(otherwise: str) -> str:
    """JSONata: the record's kind, "migrate-status"/"migrate-resolve" for a recovery, else `otherwise`."""
    action = _text("action", contract.ACTION_DEPLOY)
    return (
        f"({action} = {js(contract.ACTION_STATUS)} ? {js(contract.KIND_MIGRATE_STATUS)} : "
        f"{action} = {js(contract.ACTION_RESOLVE)} ? {js(contract.KIND_MIGRATE_RESOLVE)} : {otherwise})"
    )


def _name_problem(name: str) -> str:
    """JSONata: true when `name` is not a Prisma migration folder name. Character sets, no regular
    expression (engines differ on them; the same reason as the tag check)."""
    digits, rest = js("0123456789"), js(contract.MIGRATION_NAME_CHARACTERS)
    n = contract.MIGRATION_NAME_DIGITS
    return (
        f"($length({name}) < {n + 2} or $length({name}) > {contract.MIGRATION_NAME_MAX} "
        f"or $count($filter($split($substring({name}, 0, {n}), ''), function($c) {{ $not($contains({digits}, $c)) }})) > 0 "
        f"or $substring({name}, {n}, 1) != '_' "
        f"or $count($filter($split($substring({name}, {n + 1}), ''), function($c) {{ $not($contains({rest}, $c)) }})) > 0)"
    )


def input_problems() -> str:
    """JSONata: the recovery fields' problems as a list (empty when none); `$in` is the input object."""
    actions, kinds = js(list(contract.ACTIONS)), js(list(contract.RESOLVE_KINDS))
    return (
        "($a := $lookup($in, 'action'); $r := $lookup($in, 'resolve'); $s := $lookup($in, 'services'); "
        "$act := $exists($a) ? $a : " + js(contract.ACTION_DEPLOY) + "; "
        "$kind := $type($r) = 'string' ? $substringBefore($r, ':') : ''; "
        "$name := $type($r) = 'string' ? $substringAfter($r, ':') : ''; ["
        "$not($act in " + actions + ") ? 'action: must be one of ' & $join(" + actions + ", ', ') : (), "
        "($act in ['status', 'resolve'] and $not($type($s) = 'array' and $count($s) = 0)) "
        "? 'services: must be [] with action ' & $act & ' (it deploys no service)' : (), "
        "($act in ['status', 'resolve'] and $lookup($in, 'migrate') = false) ? 'migrate: must be true with action ' & $act : (), "
        "($act = 'resolve' and ($type($r) != 'string' or $not($kind in " + kinds + ") or $name = $r or " + _name_problem("$name") + ")) "
        "? 'resolve: must be rolled-back:NAME or applied:NAME, NAME a Prisma migration folder (<14 digits>_<name>)' : (), "
        "($act != 'resolve' and $exists($r)) ? 'resolve: only with action resolve' : ()])"
    )


def allows_no_services() -> str:
    """JSONata: whether this input may name no service (a recovery)."""
    return "($lookup($in, 'action') in ['status', 'resolve'])"


def container_environment() -> str:
    """JSONata (an array): the runner's MIGRATE_ACTION, and MIGRATE_RESOLVE for a resolve."""
    return (
        "[{'Name': " + js(contract.MIGRATE_ACTION_ENV) + ", 'Value': $migrateAction}, "
        "$migrateAction = "
        + js(contract.ACTION_RESOLVE)
        + " ? {'Name': "
        + js(contract.MIGRATE_RESOLVE_ENV)
        + ", 'Value': $migrateResolve} : ()]"
    )


def recovery_phase(s: DefinitionSettings, *, record_release: str, skip_record: str) -> Phase:
    states: dict[str, State] = {
        RELEASES_SOMETHING: {
            "Type": "Choice",
            "Comment": "A recovery releases nothing: the released parameter keeps naming the last release.",
            "Choices": [{"Condition": "{% $migrateAction = " + js(contract.ACTION_DEPLOY) + " %}", "Next": record_release}],
            "Default": skip_record,
            "Assign": {"phase": "record"},
        },
    }
    return Phase(rule_scoped_assigns(states), [])
