"""`unhold`: lift the hold `hold` put on the environment's releases."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from release import contract
from release.commands.common import Context, emit_json, release_outputs
from release.errors import ExitCode
from release.hold import delete_hold
from release.report import make_console

NAME = "unhold"
HELP = "Lift the hold: releases may start again."


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    pass


def run(args: argparse.Namespace, ctx: Context) -> int:
    aws = ctx.aws
    aws.check_account()
    outputs = release_outputs(aws, contract.OUTPUT_LEASE_TABLE_NAME)
    lifted = delete_hold(aws, outputs[contract.OUTPUT_LEASE_TABLE_NAME])
    if emit_json(args, {"held": False, "lifted": lifted.as_json() if lifted else None}):
        return int(ExitCode.OK)
    console = make_console()
    if lifted is None:
        console.print(f"Releases of {ctx.env.env_name} were not held: nothing to lift.", markup=False)
    else:
        console.print(f"Lifted the hold ({lifted.line()}): releases of {ctx.env.env_name} may start again.", markup=False)
    return int(ExitCode.OK)
