"""`history`: the recorded releases, newest first (when, tag, outcome per service, duration, who)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from release.commands.common import Context, records_of, release_outputs
from release.errors import ExitCode, ReleaseError
from release.report import history_table, make_console

NAME = "history"
HELP = "The recorded releases, newest first: when, tag, outcome per service, migration, duration, who."


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="how many releases (default 20)")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or the records as JSON")


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.limit < 1:
        raise ReleaseError("--limit must be at least 1", ExitCode.USAGE)
    aws = ctx.aws
    aws.check_account()
    records = records_of(aws, release_outputs(aws)).latest(args.limit)
    if args.format == "json":
        print(json.dumps([record.data for record in records], indent=2, sort_keys=True))
        return int(ExitCode.OK)
    console = make_console()
    if records:
        console.print(history_table(records))
    else:
        console.print("No releases recorded yet.", markup=False)
    return int(ExitCode.OK)
