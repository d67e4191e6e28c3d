"""`start`: start a release of an image tag (or attach to the same one running) and optionally follow it."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from release.commands.common import Context, add_follow_arguments, follow, input_json, release_outputs, started_by
from release.errors import ExitCode
from release.naming import execution_input, validate_services, validate_tag
from release.report import ConsoleReporter, make_console
from release.starting import start_or_attach

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


def run(args: argparse.Namespace, ctx: Context) -> int:
    env = ctx.env
    payload = execution_input(validate_tag(args.image_tag), validate_services(args.services, env.app_names), migrate=not args.no_migrate)
    aws = ctx.aws
    aws.check_account()
    if args.snapshot:
        payload["snapshot"] = True
    payload["startedBy"] = started_by(aws)
    if args.note:
        payload["note"] = args.note[:256]
    outputs = release_outputs(aws)
    started = start_or_attach(aws.client("stepfunctions"), outputs["StateMachineArn"], payload)
    reporter = ConsoleReporter(make_console())
    verb = "Attached to running release" if started.attached else "Started release"
    reporter.info(f"{verb} {started.name} in {env.env_name} ({env.account}/{env.region})")
    reporter.info(f"execution: {started.arn}")
    reporter.info(f"input: {input_json(payload)}")
    if not args.wait:
        return int(ExitCode.OK)
    return follow(ctx, args, outputs, started, reporter)
