"""`outputs`: every stack output of the environment, as JSON or KEY=value lines for $GITHUB_OUTPUT."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from release.commands.common import Context
from release.errors import ExitCode, ReleaseError
from release.outputs import as_github, as_json

NAME = "outputs"
HELP = "Every stack output of the environment."


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument("--format", choices=("json", "github"), default="json", help="json (default) or KEY=value lines for $GITHUB_OUTPUT")


def run(args: argparse.Namespace, ctx: Context) -> int:
    aws = ctx.aws
    aws.check_account()
    collected: dict[str, dict[str, str]] = {}
    missing: list[str] = []
    for stack_name in aws.env.stacks.values():
        outputs = aws.stack_outputs(stack_name)
        if outputs is None:
            missing.append(stack_name)
        else:
            collected[stack_name] = outputs
    if missing:
        raise ReleaseError(
            f"stack {', '.join(missing)} does not exist in account {aws.env.account} region {aws.env.region}: "
            f"deploy first (make deploy ENV={aws.env.env_name})",
            ExitCode.AWS,
        )
    if args.format == "json":
        print(as_json(collected))
        return int(ExitCode.OK)
    lines, warnings = as_github(collected, aws.env.stacks)
    for warning in warnings:
        print(f"release: warning: {warning}", file=sys.stderr)
    print("\n".join(lines))
    return int(ExitCode.OK)
