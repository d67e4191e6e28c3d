"""`rollback [--to TAG]`: redeploy an earlier successful release's recorded digests, without migrating.

Through the same state machine and lease as any release (input `migrate: false` with `rollbackOf`).
The schema stays as it is: a rollback never runs a migration, up or down. Before starting, every
image of the tag must still resolve to the digest the record holds (ecr:DescribeImages); ECR tags
are immutable in this app, so a mismatch means something is wrong and the CLI refuses.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from release import contract
from release.commands.common import (
    Context,
    add_follow_arguments,
    confirmed,
    emit_json,
    follow,
    input_json,
    records_of,
    release_outputs,
    started_by,
    wants_json,
)
from release.commands.plan import image_digest
from release.errors import ExitCode, ReleaseError
from release.naming import validate_services, validate_tag
from release.record import Record, RecordTable
from release.report import ConsoleReporter, make_console, short_digest
from release.starting import start_or_attach

NAME = "rollback"
HELP = "Redeploy an earlier successful release's images (no migration: the schema stays as it is)."
DEFAULT_POLL_SECONDS = 5.0
_RECORDS_SEARCHED = 200


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument("--to", metavar="TAG", help="the tag of the successful release to go back to (default: the one before the latest)")
    parser.add_argument("--services", nargs="+", metavar="APP", help="only these apps (default: every app that release deployed)")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation (CI)")
    add_follow_arguments(parser, poll_interval, DEFAULT_POLL_SECONDS)


def choose_target(records: RecordTable, to: str | None) -> tuple[Record, Record | None]:
    """(the successful release to go back to, the latest successful one it replaces)."""
    succeeded = [r for r in records.newest(_RECORDS_SEARCHED) if r.status == contract.STATUS_SUCCEEDED and r.deployed_apps]
    if not succeeded:
        raise ReleaseError("no successful release is recorded: nothing to roll back to", ExitCode.USAGE)
    latest = succeeded[0]
    if to is not None:
        target = next((r for r in succeeded if r.image_tag == to), None)
        if target is None:
            tags = ", ".join(dict.fromkeys(r.image_tag for r in succeeded[:10]))
            raise ReleaseError(f"no successful release of tag {to} is recorded (recent ones: {tags})", ExitCode.USAGE)
    else:
        target = next((r for r in succeeded if r.image_tag != latest.image_tag), None)
        if target is None:
            raise ReleaseError(f"only tag {latest.image_tag} was released successfully: nothing earlier to roll back to", ExitCode.USAGE)
    return target, (latest if latest is not target else None)


def check_digests(ctx: Context, target: Record, apps: list[str]) -> None:
    """Each app's image under the tag must still be the recorded digest."""
    repositories = {app.name: app.repository for app in ctx.env.apps}
    for app in apps:
        recorded = target.digests.get(app)
        if not recorded:
            raise ReleaseError(f"release {target.name} recorded no digest for {app}: cannot roll it back", ExitCode.USAGE)
        current = image_digest(ctx.aws, repositories[app], target.image_tag)
        if current is None:
            raise ReleaseError(
                f"{app}: image {repositories[app]}:{target.image_tag} no longer exists (expired by the lifecycle rule?)",
                ExitCode.IMAGE_NOT_FOUND,
            )
        if current != recorded:
            raise ReleaseError(
                f"{app}: {repositories[app]}:{target.image_tag} is now {short_digest(current)}, but release {target.name} "
                f"deployed {short_digest(recorded)}: refusing to roll back to other bytes",
                ExitCode.IMAGE_NOT_FOUND,
            )


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.to is not None:
        validate_tag(args.to)
    requested = validate_services(args.services, ctx.env.app_names)
    aws = ctx.aws
    aws.check_account()
    outputs = release_outputs(aws)
    target, replaced = choose_target(records_of(aws, outputs), args.to)
    apps = [app for app in target.deployed_apps if requested is None or app in requested]
    if not apps:
        raise ReleaseError(f"release {target.name} deployed none of {', '.join(requested or [])}", ExitCode.USAGE)
    check_digests(ctx, target, apps)

    reporter = ConsoleReporter(make_console(stderr=wants_json(args)))
    reporter.info(f"Rollback to {target.image_tag} (release {target.name}, {target.started_at:%Y-%m-%d %H:%M}Z) in {ctx.env.env_name}:")
    for app in apps:
        reporter.info(f"  {app}: {target.digests[app]}")
    reporter.info("The database schema stays as it is: a rollback runs no migration (the old code must work with the current schema).")
    confirmed(ctx, args.yes, f"Roll back {', '.join(apps)} to {target.image_tag}?")
    payload = {
        "imageTag": target.image_tag,
        "migrate": False,
        "services": [app for app in ctx.env.app_names if app in apps],
        "rollbackOf": (replaced or target).name,
        "note": f"rollback to {target.image_tag}",
        "startedBy": started_by(aws),
    }
    started = start_or_attach(aws.client("stepfunctions"), outputs[contract.OUTPUT_STATE_MACHINE_ARN], payload)
    reporter.info(f"{'Attached to running' if started.attached else 'Started'} rollback {started.name}")
    reporter.info(f"input: {input_json(payload)}")
    if not args.wait:
        emit_json(args, {"name": started.name, "execution": started.arn, "attached": started.attached, "input": payload})
        return int(ExitCode.OK)
    return follow(ctx, args, outputs, started, reporter)
