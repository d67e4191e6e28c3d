"""`hold`: freeze releases of the environment (an incident, a freeze window), naming who and why.

The state machine refuses every release that starts while the hold is on (ReleaseHeld, exit 16),
before it takes the lease or changes anything; `start` refuses at once. A release already running
goes on: this command names it, and `stop` stops it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from release import contract
from release.commands.common import Context, emit_json, release_outputs, started_by
from release.commands.watch import running_executions
from release.errors import ExitCode, ReleaseError
from release.hold import put_hold
from release.report import make_console

NAME = "hold"
HELP = "Freeze releases (the state machine refuses to start one) until `unhold`; says who and why."


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument("--reason", required=True, metavar="TEXT", help="why (shown to whoever tries to release; at most 256 characters)")


def run(args: argparse.Namespace, ctx: Context) -> int:
    reason = " ".join(args.reason.split())
    if not reason:
        raise ReleaseError("--reason must say why releases are held", ExitCode.USAGE)
    aws = ctx.aws
    aws.check_account()
    outputs = release_outputs(aws, contract.OUTPUT_LEASE_TABLE_NAME)
    hold, replaced = put_hold(aws, outputs[contract.OUTPUT_LEASE_TABLE_NAME], reason[: contract.MAX_TEXT_FIELD], started_by(aws))
    running = [e["name"] for e in running_executions(ctx, outputs[contract.OUTPUT_STATE_MACHINE_ARN])]
    env = ctx.env.env_name
    if emit_json(args, {"held": True, "hold": hold.as_json(), "replaced": replaced.as_json() if replaced else None, "running": running}):
        return int(ExitCode.OK)
    console = make_console()
    console.print(f"Releases of {env} are held: {hold.reason} ({hold.held_by}, {hold.held_at}).", markup=False)
    if replaced is not None:
        console.print(f"It replaces the earlier hold: {replaced.line()}.", markup=False)
    for name in running:
        console.print(
            f"Release {name} started before the hold and goes on; stop it: python -m release stop --env {env} --execution {name}",
            markup=False,
        )
    console.print(f"Lift it: python -m release unhold --env {env}", markup=False)
    return int(ExitCode.OK)
