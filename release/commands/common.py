"""What several subcommands share: the context they run in, the release stack's outputs, who starts."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from release import contract
from release.aws import Aws, SessionFactory
from release.environment import ReleaseEnvironment
from release.errors import ExitCode, ReleaseError, exit_code_for
from release.follow import ExecutionFollower, describe
from release.migration_logs import MigrationLogs, log_commands
from release.progress import ServiceProgress
from release.record import Record, RecordTable
from release.report import ConsoleReporter, markdown_summary, record_table
from release.starting import Started

MAX_STARTED_BY = contract.MAX_TEXT_FIELD


@dataclass
class Context:
    env: ReleaseEnvironment
    session_factory: SessionFactory
    sleep: Callable[[float], None]
    confirm: Callable[[str], bool | None]  # the answer, or None when nobody can be asked (no tty)
    _aws: Aws | None = field(default=None, init=False)

    @property
    def aws(self) -> Aws:
        if self._aws is None:
            self._aws = Aws(self.env, self.session_factory(self.env.region))
        return self._aws


def ask_on_terminal(question: str) -> bool | None:
    if not sys.stdin.isatty():
        return None
    answer = input(f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def confirmed(ctx: Context, yes: bool, question: str) -> None:
    """Go on only with --yes or a "yes" on the terminal; no terminal and no --yes: exit 2."""
    if yes:
        return
    answer = ctx.confirm(question)
    if answer is None:
        raise ReleaseError("no terminal to confirm on: pass --yes to confirm", ExitCode.USAGE)
    if not answer:
        raise ReleaseError("not confirmed: nothing was changed", ExitCode.USAGE)


def release_outputs(aws: Aws, *keys: str) -> dict[str, str]:
    return aws.require_outputs("release", contract.OUTPUT_STATE_MACHINE_ARN, contract.OUTPUT_RELEASE_HISTORY_TABLE_NAME, *keys)


def records_of(aws: Aws, outputs: dict[str, str]) -> RecordTable:
    return RecordTable(aws.client("dynamodb"), outputs[contract.OUTPUT_RELEASE_HISTORY_TABLE_NAME])


def started_by(aws: Aws) -> str:
    """CI: the GitHub actor and run; a person: the caller identity (else the login name)."""
    if os.environ.get("GITHUB_ACTIONS") == "true" and os.environ.get("GITHUB_ACTOR"):
        who = f"{os.environ['GITHUB_ACTOR']} (GitHub Actions run {os.environ.get('GITHUB_RUN_ID', '?')})"
    elif aws.caller_arn:
        who = aws.caller_arn
    else:
        try:
            who = os.environ.get("USER") or getpass.getuser()
        except OSError:
            who = "unknown"
    return who[:MAX_STARTED_BY]


def add_follow_arguments(
    parser: argparse.ArgumentParser, poll_interval: Callable[[str], float], default_poll: float, *, wait: bool = True
) -> None:
    if wait:
        parser.add_argument("--wait", action="store_true", help="follow the release to its end; the exit code tells the outcome")
    parser.add_argument(
        "--poll-interval",
        type=poll_interval,
        # A string default goes through `type`, so a bad RELEASE_POLL_INTERVAL is a usage error.
        default=os.environ.get("RELEASE_POLL_INTERVAL") or str(default_poll),
        metavar="SECONDS",
        help=f"seconds between polls while following (default {default_poll:g}; env RELEASE_POLL_INTERVAL)",
    )
    parser.add_argument("--summary-file", type=Path, metavar="PATH", help="append a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)")
    parser.add_argument("--no-live-tail", action="store_true", help="poll the migration's logs instead of CloudWatch Logs Live Tail")


def log_group_arn(aws: Aws, name: str) -> str:
    return f"arn:aws:logs:{aws.env.region}:{aws.env.account}:log-group:{name}"


def follow(ctx: Context, args: argparse.Namespace, outputs: dict[str, str], started: Started, reporter: ConsoleReporter) -> int:
    """Follow a started release to its end and turn its outcome into the exit code."""
    aws = ctx.aws
    sfn = aws.client("stepfunctions")
    log_group = outputs.get(contract.OUTPUT_MIGRATE_LOG_GROUP_NAME)
    first = describe(sfn, started.arn)
    logs = None
    if log_group:
        since = int(first["startDate"].timestamp() * 1000)
        logs = MigrationLogs(aws.client("logs"), log_group, log_group_arn(aws, log_group), since, live=not args.no_live_tail)
    services = ServiceProgress(
        aws.client("ecs"),
        outputs.get(contract.OUTPUT_CLUSTER_NAME) or aws.env.cluster_name,
        {app.name: app.service for app in aws.env.apps},
        reporter,
    )
    follower = ExecutionFollower(sfn, records_of(aws, outputs), logs, started.arn, reporter, ctx.sleep, args.poll_interval, services)
    reporter.open()
    try:
        description, record = follower.run()
    except KeyboardInterrupt:
        reporter.close()
        print(
            f"release: stopped following; the release goes on (stop it: python -m release stop --env {aws.env.env_name})", file=sys.stderr
        )
        return int(ExitCode.INTERRUPTED)
    except ReleaseError as exc:
        reporter.close()
        raise ReleaseError(f"{exc.message} (stopped following; the release goes on: {started.arn})", exc.code) from None
    reporter.close()
    status = str(description.get("status"))
    watched = list(services.states.values())
    code = _outcome_code(status, record, description)
    emit_json(
        args,
        {
            "name": started.name,
            "execution": started.arn,
            "status": status,
            "exitCode": int(code),
            "record": record.data if record else None,
            "services": [state.as_json() for state in watched],
        },
    )
    if args.summary_file:
        try:
            with args.summary_file.open("a", encoding="utf-8") as handle:
                handle.write(markdown_summary(started.name, started.arn, status, record, watched))
        except OSError as exc:  # the release's outcome (below) matters more than its summary
            print(f"release: warning: cannot write the summary to {args.summary_file}: {exc.strerror or exc}", file=sys.stderr)
    if status == "SUCCEEDED":
        reporter.succeeded(record, started.name)
        return int(ExitCode.OK)
    error = (record.error if record else None) or description.get("error")
    cause = (record.cause if record else None) or description.get("cause")
    if record is not None:
        reporter.console.print(record_table(record, aws.env.env_name))
        print_migration_log_commands(reporter, aws.env.env_name, log_group, record)
    reporter.failed(started.name, status, error, cause, int(code))
    return int(code)


def _outcome_code(status: str, record: Record | None, description: dict[str, Any]) -> ExitCode:
    if status == "SUCCEEDED":
        return ExitCode.OK
    # The record names the error; DescribeExecution's (metadata) is the fallback.
    error = (record.error if record else None) or description.get("error")
    return exit_code_for(error) if status == "FAILED" else ExitCode.RELEASE_FAILED


def print_migration_log_commands(reporter: ConsoleReporter, env_name: str, log_group: str | None, record: Record) -> None:
    """After a failed migration: where its whole log is, as commands to paste."""
    if not log_group or record.migration.get("outcome") not in ("failed", "timed-out"):
        return
    for command in log_commands(env_name, log_group, record):
        reporter.info(f"migration log: {command}")


def wants_json(args: argparse.Namespace) -> bool:
    return getattr(args, "format", None) == "json"


def emit_json(args: argparse.Namespace, payload: Any) -> bool:
    """With --format json: print the payload as one JSON document on stdout and say so."""
    if not wants_json(args):
        return False
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))
    return True


def input_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True)
