"""`watch`: attach to whatever release runs in the environment and follow it like `start --wait`.

Nothing to repeat from CI (tag, services): the running execution is found with ListExecutions,
and the one holding the lease wins when another waits for it. Exit codes as `start --wait`; with
nothing running, 0 and a line saying what ran last.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from release import contract
from release.aws import aws_errors
from release.commands.common import Context, add_follow_arguments, emit_json, follow, records_of, release_outputs, wants_json
from release.commands.status import read_lease
from release.errors import ExitCode, ReleaseError
from release.report import ConsoleReporter, make_console
from release.starting import Started

NAME = "watch"
HELP = "Follow the release running now (whoever started it): phases, services, events, migration log."
DEFAULT_POLL_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument("--execution", metavar="NAME", help="which release, when several are running (default: the lease holder)")
    add_follow_arguments(parser, poll_interval, DEFAULT_POLL_SECONDS, wait=False)


def running_executions(ctx: Context, machine: str) -> list[dict[str, Any]]:
    with aws_errors("listing running releases"):
        answer = ctx.aws.client("stepfunctions").list_executions(stateMachineArn=machine, statusFilter="RUNNING", maxResults=100)
    return [dict(e) for e in answer.get("executions", [])]


def pick(running: list[dict[str, Any]], wanted: str | None, lease_owner: str) -> dict[str, Any] | None:
    """The named one; else the lease holder; else the oldest (it is the next to take the lease)."""
    if wanted:
        return next((e for e in running if e["name"] == wanted), None)
    holder = next((e for e in running if e["executionArn"] == lease_owner), None)
    return holder or (min(running, key=lambda e: e["startDate"]) if running else None)


def run(args: argparse.Namespace, ctx: Context) -> int:
    aws = ctx.aws
    aws.check_account()
    outputs = release_outputs(aws)
    running = running_executions(ctx, outputs[contract.OUTPUT_STATE_MACHINE_ARN])
    lease = read_lease(aws, outputs) or {}
    execution = pick(running, args.execution, str(lease.get("Owner", {}).get("S", "")))
    reporter = ConsoleReporter(make_console(stderr=wants_json(args)))
    if execution is None:
        if args.execution:
            raise ReleaseError(f"no running release is named {args.execution}", ExitCode.USAGE)
        latest = records_of(aws, outputs).latest(1)
        if emit_json(args, {"running": None, "latest": latest[0].data if latest else None}):
            return int(ExitCode.OK)
        last = f"; the latest was {latest[0].name}: {latest[0].status}" if latest else ""
        reporter.info(f"No release is running in {ctx.env.env_name}{last}.")
        return int(ExitCode.OK)
    reporter.info(f"Watching release {execution['name']} in {ctx.env.env_name} ({ctx.env.account}/{ctx.env.region})")
    for other in running:
        if other is not execution:
            reporter.info(f"also running: {other['name']} (waits for the lease; watch it: --execution {other['name']})")
    return follow(ctx, args, outputs, Started(execution["name"], execution["executionArn"], attached=True), reporter)
