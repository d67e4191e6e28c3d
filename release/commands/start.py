"""`start`: start a release of an image tag (or attach to the same one running) and optionally follow it.

Before starting it says what will happen: a hold refuses at once (exit 16, as the state machine
would), and another release holding the lease is named with what this one will do (wait, then fail).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from botocore.exceptions import ClientError

from release import contract
from release.aws import Aws, error_code
from release.commands.common import (
    Context,
    add_follow_arguments,
    emit_json,
    follow,
    input_json,
    records_of,
    release_outputs,
    started_by,
    wants_json,
)
from release.commands.status import owner_status, read_lease
from release.errors import ExitCode, ReleaseError
from release.hold import read_hold
from release.naming import execution_input, validate_services, validate_tag
from release.report import ConsoleReporter, make_console
from release.starting import Started, start_or_attach

NAME = "start"
HELP = "Start a release of an image tag (every app's image and the migrate image)."
DEFAULT_POLL_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument("--image-tag", required=True, metavar="TAG", help="the tag every image of the release has (CI: the commit SHA)")
    parser.add_argument("--services", nargs="+", metavar="APP", help="deploy only these apps (default: the apps that use the schema)")
    parser.add_argument("--no-migrate", action="store_true", help="skip the migration (default: always migrate)")
    parser.add_argument("--snapshot", action="store_true", help="take a manual database snapshot before migrating, and wait for it")
    parser.add_argument("--note", metavar="TEXT", help="why (kept in the release record, at most 256 characters)")
    add_follow_arguments(parser, poll_interval, DEFAULT_POLL_SECONDS)


def _refuse_when_held(aws: Aws, outputs: dict[str, str]) -> None:
    table = outputs.get(contract.OUTPUT_LEASE_TABLE_NAME)
    if not table:
        return
    try:
        hold = read_hold(aws, table)
    except ReleaseError:  # not readable with these credentials: the state machine checks anyway
        return
    if hold is not None:
        raise ReleaseError(
            f"{hold.line()}: not starting (lift it: python -m release unhold --env {aws.env.env_name})", ExitCode.RELEASE_HELD
        )


def _other_release(ctx: Context, outputs: dict[str, str], started: Started) -> str | None:
    """A line naming the release that holds the lease, when it is another running one."""
    aws = ctx.aws
    try:
        lease = read_lease(aws, outputs)
        owner = str((lease or {}).get("Owner", {}).get("S", ""))
        if not owner or owner == started.arn or owner_status(aws, owner) != "RUNNING":
            return None
        record = records_of(aws, outputs).find(owner)
    except (ReleaseError, ClientError) as exc:  # informative only
        if isinstance(exc, ClientError) and error_code(exc) not in ("AccessDeniedException",):
            raise
        return None
    name = owner.rsplit(":", 1)[-1]
    about = (
        f"tag {record.image_tag}, started by {record.started_by} at {record.data.get('startedAt')}, phase {record.phase}"
        if record
        else "no record yet"
    )
    return (
        f"Another release is running: {name} ({about}). This one waits for the lease up to "
        f"{ctx.env.lease_wait_minutes} min (release.lease_wait_minutes), then fails ReleaseInProgress (exit 12). "
        f"Watch the other: python -m release watch --env {ctx.env.env_name} --execution {name}"
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    env = ctx.env
    services = validate_services(args.services, env.app_names)
    payload = execution_input(validate_tag(args.image_tag), services, migrate=not args.no_migrate)
    aws = ctx.aws
    aws.check_account()
    if args.snapshot:
        payload["snapshot"] = True
    payload["startedBy"] = started_by(aws)
    if args.note:
        payload["note"] = args.note[:256]
    outputs = release_outputs(aws)
    _refuse_when_held(aws, outputs)
    schema_apps = sum(1 for app in env.apps if app.uses_schema) or len(env.apps)
    started = start_or_attach(aws.client("stepfunctions"), outputs["StateMachineArn"], payload, None if services else schema_apps)
    other = None if started.attached else _other_release(ctx, outputs, started)
    if not args.wait and emit_json(
        args, {"name": started.name, "execution": started.arn, "attached": started.attached, "input": payload, "waitsFor": other}
    ):
        return int(ExitCode.OK)
    # With --format json the progress goes to stderr and stdout holds only the outcome's document.
    reporter = ConsoleReporter(make_console(stderr=wants_json(args)))
    verb = "Attached to running release" if started.attached else "Started release"
    reporter.info(f"{verb} {started.name} in {env.env_name} ({env.account}/{env.region})")
    reporter.info(f"execution: {started.arn}")
    reporter.info(f"input: {input_json(payload)}")
    if other:
        reporter.info(other)
    if not args.wait:
        reporter.info(f"follow it: python -m release watch --env {env.env_name} --execution {started.name}")
        return int(ExitCode.OK)
    return follow(ctx, args, outputs, started, reporter)
