"""`logs`: a release's migration log (the latest release's by default), printed or followed.

Finished release: the lines of its migrate task's stream (the record names the task). Running
release with `--follow`: the lines as they come (Live Tail, else polling) until the release ends.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from release import contract
from release.aws import aws_errors, error_code
from release.commands.common import Context, log_group_arn, records_of, release_outputs, wants_json
from release.errors import ExitCode, ReleaseError
from release.follow import RUNNING_STATUSES, describe
from release.migration_logs import MigrationLogs, log_commands, stream_of
from release.record import Record
from release.report import ConsoleReporter, make_console

NAME = "logs"
HELP = "A release's migration log (default: the latest release), or --follow it while it runs."
DEFAULT_POLL_SECONDS = 2.0
_SEARCHED = 200
_MAX_PAGES = 100


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument("--release", metavar="NAME", help="the release's execution name (history --format json: name)")
    parser.add_argument("--follow", action="store_true", help="keep printing new lines until the release ends")
    parser.add_argument(
        "--poll-interval",
        type=poll_interval,
        default=str(DEFAULT_POLL_SECONDS),
        metavar="SECONDS",
        help=f"seconds between polls with --follow (default {DEFAULT_POLL_SECONDS:g})",
    )
    parser.add_argument("--no-live-tail", action="store_true", help="poll instead of CloudWatch Logs Live Tail")


class JsonLines(ConsoleReporter):
    """--format json: one JSON object per line (JSON Lines), so that --follow can stream."""

    def __init__(self) -> None:
        super().__init__(make_console(stderr=True), live=False)

    def log_line(self, when: datetime | None, message: str) -> None:
        print(json.dumps({"timestamp": when.isoformat() if when else None, "message": message}), flush=True)


def _find(ctx: Context, outputs: dict[str, str], name: str | None) -> Record:
    records = records_of(ctx.aws, outputs)
    for record in records.newest(_SEARCHED):
        if name is None or record.name == name:
            return record
    if name:
        raise ReleaseError(
            f"no release named {name} among the latest {_SEARCHED} (see: python -m release history --env {ctx.env.env_name})",
            ExitCode.USAGE,
        )
    raise ReleaseError("no releases recorded yet", ExitCode.USAGE)


def _stream_lines(logs: Any, group: str, stream: str, since_ms: int) -> list[tuple[int, str]]:
    kwargs: dict[str, Any] = {"logGroupName": group, "logStreamNames": [stream], "startTime": since_ms}
    lines: list[tuple[int, str]] = []
    with aws_errors("reading the migration log"):
        for _ in range(_MAX_PAGES):
            try:
                page = logs.filter_log_events(**kwargs)
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return lines
                raise
            lines += [(int(e.get("timestamp", 0)), str(e.get("message", ""))) for e in page.get("events", [])]
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
    return lines


def run(args: argparse.Namespace, ctx: Context) -> int:
    aws = ctx.aws
    aws.check_account()
    outputs = release_outputs(aws, contract.OUTPUT_MIGRATE_LOG_GROUP_NAME)
    group = outputs[contract.OUTPUT_MIGRATE_LOG_GROUP_NAME]
    record = _find(ctx, outputs, args.release)
    reporter = JsonLines() if wants_json(args) else ConsoleReporter(make_console(), live=False)
    since = int(record.started_at.timestamp() * 1000) if record.started_at else 0
    task_arn = str(record.migration.get("taskArn") or "")
    running = record.status == contract.STATUS_RUNNING
    reporter.info(f"Migration log of release {record.name} ({record.status}, migration {record.migration.get('outcome') or 'not-run'})")
    if args.follow and running:
        return _follow(ctx, args, record, group=group, since=since, reporter=reporter)
    if not task_arn:
        reporter.info(
            "No migrate task ran (yet)" + (f": follow it with python -m release logs --env {ctx.env.env_name} --follow" if running else ".")
        )
        return int(ExitCode.OK)
    for timestamp, message in _stream_lines(aws.client("logs"), group, stream_of(task_arn), since):
        reporter.log_line(datetime.fromtimestamp(timestamp / 1000, UTC), message.rstrip("\n"))
    for command in log_commands(ctx.env.env_name, group, record)[1:]:
        reporter.info(f"the same with the AWS CLI: {command}")
    return int(ExitCode.OK)


def _follow(ctx: Context, args: argparse.Namespace, record: Record, *, group: str, since: int, reporter: ConsoleReporter) -> int:
    aws = ctx.aws
    logs = MigrationLogs(aws.client("logs"), group, log_group_arn(aws, group), since, live=not args.no_live_tail)
    sfn = aws.client("stepfunctions")
    logs.start()
    try:
        while True:
            status = str(describe(sfn, record.execution).get("status"))
            for line in logs.poll():
                reporter.log_line(datetime.fromtimestamp(line.timestamp / 1000, UTC), line.message.rstrip("\n"))
            if status not in RUNNING_STATUSES:
                reporter.info(f"Release {record.name} ended: {status}")
                return int(ExitCode.OK)
            ctx.sleep(args.poll_interval)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    finally:
        logs.close()
