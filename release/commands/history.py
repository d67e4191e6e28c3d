"""`history`: the recorded releases, newest first (when, tag, outcome per service, duration, who)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.table import Table

from release.commands.common import Context, records_of, release_outputs
from release.dora import commit_time_from_git, compute
from release.errors import ExitCode, ReleaseError
from release.report import history_table, make_console

NAME = "history"
HELP = "The recorded releases, newest first: when, tag, outcome per service, migration, duration, who."


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="how many releases (default 20)")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or the records as JSON")
    parser.add_argument("--stats", action="store_true", help="DORA figures over --days instead of the list")
    parser.add_argument("--days", type=int, default=30, metavar="N", help="the --stats window in days (default 30)")
    parser.add_argument(
        "--repo-root",
        type=Path,
        metavar="PATH",
        help="a clone of the app repository: with --stats, lead time from each released commit's time",
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.limit < 1:
        raise ReleaseError("--limit must be at least 1", ExitCode.USAGE)
    if args.stats:
        return _stats(args, ctx)
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


# How far back --stats reads: a restore may end after the window's last failure.
_STATS_RECORDS = 2000


def _stats(args: argparse.Namespace, ctx: Context) -> int:
    if not 1 <= args.days <= 366:
        raise ReleaseError("--days must be between 1 and 366", ExitCode.USAGE)
    aws = ctx.aws
    aws.check_account()
    now = datetime.now(UTC)
    since = now - timedelta(days=args.days)
    records = []
    for record in records_of(aws, release_outputs(aws)).newest(_STATS_RECORDS):
        records.append(record)
        if record.started_at and record.started_at < since - timedelta(days=1):
            break  # newest first: older ones cannot be in the window (a day kept for restores)
    stats = compute(records, now, args.days, commit_time_from_git(args.repo_root) if args.repo_root else None)
    if args.format == "json":
        print(json.dumps(stats.as_json(), indent=2, sort_keys=True))
        return int(ExitCode.OK)
    table = Table(title=f"DORA figures, {ctx.env.env_name}, last {args.days} days (since {stats.since})", title_justify="left")
    table.add_column("figure")
    table.add_column("value")
    table.add_row("deployment frequency", f"{stats.per_day}/day ({stats.successful} successful of {stats.deployments} deployments)")
    rate = f"{stats.change_failure_rate:.0%}" if stats.change_failure_rate is not None else "-"
    table.add_row(
        "change failure rate",
        f"{rate} ({stats.failed_releases} failed, {stats.rolled_back_releases} rolled back, of {stats.releases} releases)",
    )
    restore = (
        f"median {stats.time_to_restore_median_minutes} min, max {stats.time_to_restore_max_minutes} min ({stats.restores} restores)"
        if stats.restores
        else "-"
    )
    table.add_row("time to restore", restore)
    lead = (
        f"median {stats.lead_time_median_hours} h ({stats.lead_time_known} releases with a known commit)"
        if stats.lead_time_known
        else "unknown (pass --repo-root <app clone> when tags are commits)"
    )
    table.add_row("lead time for changes", lead)
    make_console().print(table)
    return int(ExitCode.OK)
