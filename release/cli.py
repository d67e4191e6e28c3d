"""`python -m release`: start and follow a release, show status, print stack outputs.

Exit codes (docs/ci.md): 0 success; 2 usage or config error; 3 AWS error or missing stack/output;
10 InvalidInput, 11 ImageNotFound, 12 ReleaseInProgress, 13 MigrationFailed, 14 MigrationTimedOut,
15 DeploymentFailed, 20 any other failure, timeout or abort; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from release.aws import Aws, SessionFactory, aws_errors, default_session, error_code
from release.environment import ReleaseEnvironment, load_environment
from release.errors import ExitCode, ReleaseError, exit_code_for
from release.follow import ExecutionFollower
from release.naming import execution_input, validate_services, validate_tag
from release.outputs import as_github, as_json
from release.report import (
    ConsoleReporter,
    executions_table,
    make_console,
    markdown_summary,
)
from release.starting import start_or_attach

PROG = "python -m release"
DEFAULT_POLL_SECONDS = 5.0
LEASE_ID = "release"


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise ReleaseError(f"{message} (see {self.prog} --help)", ExitCode.USAGE)


def _poll_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


def build_parser() -> _Parser:
    parser = _Parser(prog=PROG, description="Start and follow releases of one environment.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--env", required=True, metavar="NAME", help="environment: config/NAME.yaml")
        sub.add_argument(
            "--config-dir",
            type=Path,
            default=os.environ.get("RELEASE_CONFIG_DIR"),
            help="folder of the environment files (default: the project's config/; env RELEASE_CONFIG_DIR)",
        )
        return sub

    start = add("start", "Start a release of an image tag (every app's image and the migrate image).")
    start.add_argument("--image-tag", required=True, metavar="TAG", help="the tag every image of the release has (CI: the commit SHA)")
    start.add_argument("--services", nargs="+", metavar="APP", help="deploy only these apps (default: as the state machine decides)")
    start.add_argument("--no-migrate", action="store_true", help="skip the migration (default: always migrate)")
    start.add_argument("--wait", action="store_true", help="follow the release to its end; the exit code tells the outcome")
    start.add_argument(
        "--poll-interval",
        type=_poll_interval,
        # A string default goes through `type` when parsing, so a bad RELEASE_POLL_INTERVAL is a
        # usage error (one line, exit 2) rather than a traceback while building the parser.
        default=os.environ.get("RELEASE_POLL_INTERVAL") or str(DEFAULT_POLL_SECONDS),
        metavar="SECONDS",
        help=f"seconds between polls while following (default {DEFAULT_POLL_SECONDS:g}; env RELEASE_POLL_INTERVAL)",
    )
    start.add_argument("--summary-file", type=Path, metavar="PATH", help="append a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)")

    status = add("status", "Recent releases and the release lease.")
    status.add_argument("--limit", type=int, default=10, metavar="N", help="how many recent executions (default 10)")

    outputs = add("outputs", "Every stack output of the environment.")
    outputs.add_argument(
        "--format", choices=("json", "github"), default="json", help="json (default) or KEY=value lines for $GITHUB_OUTPUT"
    )

    describe = add("env", "The environment's settings from its config file (no AWS access), for scripts and CI.")
    describe.add_argument("--format", choices=("json", "github"), default="json")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    session_factory: SessionFactory = default_session,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    try:
        args = build_parser().parse_args(argv)
        return _dispatch(args, session_factory, sleep)
    except ReleaseError as exc:
        print(f"release: {exc.message}", file=sys.stderr)
        return int(exc.code)
    except (BotoCoreError, ClientError) as exc:  # outside an aws_errors block, e.g. an unknown AWS_PROFILE
        print(f"release: AWS: {exc}", file=sys.stderr)
        return int(ExitCode.AWS)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("release: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


def _dispatch(args: argparse.Namespace, session_factory: SessionFactory, sleep: Callable[[float], None]) -> int:
    env = load_environment(args.env, args.config_dir)
    if args.command == "env":
        return cmd_env(env, args.format)
    aws = Aws(env, session_factory(env.region))
    if args.command == "start":
        return cmd_start(aws, args, sleep)
    if args.command == "status":
        return cmd_status(aws, args.limit)
    return cmd_outputs(aws, args.format)


def cmd_start(aws: Aws, args: argparse.Namespace, sleep: Callable[[float], None]) -> int:
    env = aws.env
    payload = execution_input(
        validate_tag(args.image_tag),
        validate_services(args.services, env.app_names),
        migrate=not args.no_migrate,
    )
    aws.check_account()
    outputs = aws.require_outputs("release", "StateMachineArn")
    log_group = outputs.get("MigrateLogGroupName")
    sfn = aws.client("stepfunctions")
    started = start_or_attach(sfn, outputs["StateMachineArn"], payload)

    console = make_console()
    reporter = ConsoleReporter(console)
    verb = "Attached to running release" if started.attached else "Started release"
    reporter.info(f"{verb} {started.name} in {env.env_name} ({env.account}/{env.region})")
    reporter.info(f"execution: {started.arn}")
    reporter.info(f"input: {json.dumps(payload, sort_keys=True)}")
    if not args.wait:
        return int(ExitCode.OK)

    follower = ExecutionFollower(
        sfn=sfn,
        logs=aws.client("logs"),
        execution_arn=started.arn,
        log_group=log_group,
        reporter=reporter,
        sleep=sleep,
        interval=args.poll_interval,
    )
    try:
        description = follower.run()
    except KeyboardInterrupt:
        print(f"release: stopped following; the release goes on: {started.arn}", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except ReleaseError as exc:
        # E.g. the credentials expired or calls were throttled while following: the execution
        # itself is not affected, say where to find it.
        raise ReleaseError(f"{exc.message} (stopped following; the release goes on: {started.arn})", exc.code) from None

    if args.summary_file:
        try:
            with args.summary_file.open("a", encoding="utf-8") as handle:
                handle.write(markdown_summary(started.name, started.arn, description))
        except OSError as exc:  # the release's outcome (below) matters more than its summary
            print(f"release: warning: cannot write the summary to {args.summary_file}: {exc.strerror or exc}", file=sys.stderr)

    status = str(description.get("status"))
    if status == "SUCCEEDED":
        try:
            output = json.loads(description.get("output") or "{}")
        except ValueError:
            output = {}
        reporter.succeeded(started.name, output if isinstance(output, dict) else {})
        return int(ExitCode.OK)
    error = description.get("error")
    code = exit_code_for(error) if status == "FAILED" else ExitCode.RELEASE_FAILED
    cause = description.get("cause")
    if follower.task is not None and log_group and error in ("MigrationFailed", "MigrationTimedOut"):
        cause = f"{cause or ''} (logs: {log_group} {follower.task.log_stream})".strip()
    reporter.failed(started.name, status, error, cause, int(code))
    return int(code)


def _released_line(value: str | None) -> str:
    """The released parameter holds JSON (imageTag, digests, execution, releasedAt) or a bare tag."""
    if not value:
        return "nothing yet"
    try:
        record = json.loads(value)
    except ValueError:
        return value
    if not isinstance(record, dict):
        return value
    if not record.get("imageTag"):
        return "nothing yet"
    line = str(record["imageTag"])
    if record.get("releasedAt"):
        line += f" at {record['releasedAt']}"
    if record.get("execution"):
        line += f" by {str(record['execution']).rsplit(':', 1)[-1]}"
    return line


def _lease_line(item: dict[str, Any], owner_status: str | None) -> str:
    def text(key: str) -> str:
        value = item.get(key, {})
        return str(value.get("S") or value.get("N") or "")

    owner = text("Owner")
    expires = text("ExpiresAt")
    expiry = ""
    if expires:
        try:
            at = datetime.fromtimestamp(int(float(expires)), UTC)
            expiry = at.strftime("%Y-%m-%d %H:%M:%SZ") + (" (expired)" if at < datetime.now(UTC) else "")
        except ValueError:
            expiry = expires
    stale = f" — owner is {owner_status}: the lease is stale" if owner_status and owner_status != "RUNNING" else ""
    return (
        f"Lease: held by {owner.rsplit(':', 1)[-1] or '?'} for image {text('ImageTag') or '?'} "
        f"since {text('AcquiredAt') or '?'}, expires {expiry or '?'}{stale}\n  owner: {owner}"
    )


def recent_executions(sfn: Any, state_machine_arn: str, limit: int) -> list[dict[str, Any]]:
    """The `limit` most recent executions, newest first.

    ListExecutions takes at most 1000 a call and may return fewer than asked with a nextToken.
    """
    executions: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"stateMachineArn": state_machine_arn}
    while len(executions) < limit:
        kwargs["maxResults"] = min(limit - len(executions), 1000)
        page = sfn.list_executions(**kwargs)
        executions += page.get("executions", [])
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    return executions[:limit]


def cmd_status(aws: Aws, limit: int) -> int:
    if limit < 1:
        raise ReleaseError("--limit must be at least 1", ExitCode.USAGE)
    aws.check_account()
    outputs = aws.require_outputs("release", "StateMachineArn", "LeaseTableName")
    sfn = aws.client("stepfunctions")
    with aws_errors("listing executions"):
        executions = recent_executions(sfn, outputs["StateMachineArn"], limit)
    with aws_errors("reading the release lease"):
        item = (
            aws.client("dynamodb")
            .get_item(TableName=outputs["LeaseTableName"], Key={"LeaseId": {"S": LEASE_ID}}, ConsistentRead=True)
            .get("Item")
        )
    released = None
    if outputs.get("ReleasedParameterName"):
        with aws_errors("reading the released tag"):
            try:
                released = aws.client("ssm").get_parameter(Name=outputs["ReleasedParameterName"])["Parameter"]["Value"]
            except ClientError as exc:
                if error_code(exc) != "ParameterNotFound":
                    raise

    console = make_console()
    console.print(f"Environment {aws.env.env_name} ({aws.env.account}/{aws.env.region})", markup=False)
    console.print(f"Released: {_released_line(released)}", markup=False)
    if item:
        owner = str(item.get("Owner", {}).get("S", ""))
        owner_status = None
        if owner:
            with aws_errors("reading the lease owner's execution"):
                try:
                    owner_status = str(sfn.describe_execution(executionArn=owner)["status"])
                except ClientError as exc:
                    if error_code(exc) not in ("ExecutionDoesNotExist", "InvalidArn"):
                        raise
        console.print(_lease_line(item, owner_status), markup=False)
    else:
        console.print("Lease: free (no release running)", markup=False)
    if executions:
        console.print(executions_table(executions))
    else:
        console.print("No releases yet.", markup=False)
    return int(ExitCode.OK)


def cmd_outputs(aws: Aws, fmt: str) -> int:
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
            f"deploy first (cdk deploy -c env={aws.env.env_name} --all)",
            ExitCode.AWS,
        )
    if fmt == "json":
        print(as_json(collected))
        return int(ExitCode.OK)
    lines, warnings = as_github(collected, aws.env.stacks)
    for warning in warnings:
        print(f"release: warning: {warning}", file=sys.stderr)
    print("\n".join(lines))
    return int(ExitCode.OK)


def env_settings(env: ReleaseEnvironment) -> dict[str, str]:
    settings = {
        "env_name": env.env_name,
        "account": env.account,
        "region": env.region,
        "apps": " ".join(env.app_names),
        # The apps a release deploys when it names none (uses_schema): CI always deploys them.
        "schema_apps": " ".join(app.name for app in env.apps if app.uses_schema),
        "migrate_repository": env.migrate_repository,
        "migrate_architecture": env.migrate_architecture,
        "github_repository": env.github_repository,
        "deploy_branch": env.deploy_branch,
        "deploy_role_arn": env.role_arn("deploy"),
        "review_role_arn": env.role_arn("review"),
    }
    settings |= {f"stack_{unit}": name for unit, name in env.stacks.items()}
    settings |= {f"repository_{app.name}": app.repository for app in env.apps}
    return settings


def cmd_env(env: ReleaseEnvironment, fmt: str) -> int:
    settings = env_settings(env)
    if fmt == "json":
        print(json.dumps(settings, indent=2))
    else:
        print("\n".join(f"{key}={value}" for key, value in settings.items()))
    return int(ExitCode.OK)
