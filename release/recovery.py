"""What `migrate-status` and `resolve` share: which migrate image runs Prisma, the request, the run.

A recovery is one execution of the release state machine with `action` status or resolve
(constructs/release_machine/recovery.py): the migrate task runs `prisma migrate status` or
`prisma migrate resolve` under the same lease, advisory lock and record as a release, and no
service is touched. Its log is followed to the end like a release's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from release import contract
from release.commands.common import Context, follow, records_of, release_outputs, started_by, wants_json
from release.commands.status import read_released
from release.errors import ExitCode, ReleaseError
from release.naming import validate_tag
from release.report import ConsoleReporter, make_console
from release.starting import start_or_attach


def add_recovery_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument(
        "--image-tag",
        metavar="TAG",
        help="the migrate image to run Prisma from (default: the released tag, whose migrations folder the database knows)",
    )
    parser.add_argument("--poll-interval", type=poll_interval, default="5", metavar="SECONDS", help="seconds between polls (default 5)")
    parser.add_argument("--no-live-tail", action="store_true", help="poll the log instead of CloudWatch Logs Live Tail")


def migration_name(name: str) -> str:
    """A Prisma migration folder name, checked as the state machine and the runner check it."""
    n = contract.MIGRATION_NAME_DIGITS
    ok = (
        n + 2 <= len(name) <= contract.MIGRATION_NAME_MAX
        and name[:n].isascii()
        and name[:n].isdigit()
        and name[n] == "_"
        and all(c in contract.MIGRATION_NAME_CHARACTERS for c in name[n + 1 :])
    )
    if not ok:
        raise ReleaseError(
            f"not a Prisma migration folder name: {name!r} (expected <14-digit timestamp>_<name>, as under prisma/migrations/)",
            ExitCode.USAGE,
        )
    return name


def released_tag(ctx: Context, outputs: dict[str, str]) -> str:
    """The tag of the last release (the released parameter, else the newest successful record)."""
    value = read_released(ctx.aws, outputs)
    try:
        parameter = json.loads(value or "{}")
    except ValueError:
        parameter = {"imageTag": value}
    if isinstance(parameter, dict) and parameter.get("imageTag"):
        return str(parameter["imageTag"])
    for record in records_of(ctx.aws, outputs).newest(50):
        if record.status == contract.STATUS_SUCCEEDED and record.kind == contract.KIND_RELEASE and record.image_tag:
            return record.image_tag
    raise ReleaseError(f"nothing has been released in {ctx.env.env_name} yet: name the migrate image with --image-tag", ExitCode.USAGE)


def run_recovery(ctx: Context, args: argparse.Namespace, action: str, resolve: str | None, note: str) -> int:
    aws = ctx.aws
    aws.check_account()
    outputs = release_outputs(aws)
    tag = validate_tag(args.image_tag) if args.image_tag else released_tag(ctx, outputs)
    payload: dict[str, object] = {"imageTag": tag, "action": action, "migrate": True, "services": []}
    if resolve:
        payload["resolve"] = resolve
    payload["startedBy"] = started_by(aws)
    payload["note"] = note[: contract.MAX_TEXT_FIELD]
    started = start_or_attach(aws.client("stepfunctions"), outputs[contract.OUTPUT_STATE_MACHINE_ARN], payload)
    reporter = ConsoleReporter(make_console(stderr=wants_json(args)))
    verb = "Attached to running" if started.attached else "Started"
    reporter.info(f"{verb} {note} in {ctx.env.env_name} with migrate image {tag}: {started.name}")
    args.summary_file = None  # follow() reads these release options
    return follow(ctx, args, outputs, started, reporter)
