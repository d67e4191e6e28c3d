"""`stop`: stop the running release after confirmation, and say where it stopped.

StopExecution without error or cause (so the caller needs no KMS rights on the state machine's
data). The execution ends ABORTED; the lease-cleanup machine then frees the lease, stops a migrate
task still running (found by `startedBy` = the execution name) and completes the record. The CLI
waits a bounded time for the record to say so.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from botocore.exceptions import ClientError

from release import contract
from release.aws import aws_errors, error_code
from release.commands.common import Context, confirmed, emit_json, records_of, release_outputs, wants_json
from release.errors import ExitCode, ReleaseError
from release.record import Record, RecordTable
from release.report import make_console, record_table

NAME = "stop"
HELP = "Stop the running release (its migration task and lease included) after confirmation."
# Polls of the record after StopExecution, waiting for the cleanup to record the lease's release.
CLEANUP_POLLS = 30
CLEANUP_POLL_SECONDS = 2.0


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation (CI)")
    parser.add_argument("--execution", metavar="NAME", help="which release, when several are running")


def _running(ctx: Context, machine: str, wanted: str | None) -> dict[str, str] | None:
    with aws_errors("listing running releases"):
        running = ctx.aws.client("stepfunctions").list_executions(stateMachineArn=machine, statusFilter="RUNNING", maxResults=100)[
            "executions"
        ]
    if wanted:
        running = [e for e in running if e["name"] == wanted]
        if not running:
            raise ReleaseError(f"no running release is named {wanted}", ExitCode.USAGE)
    if len(running) > 1:
        names = ", ".join(e["name"] for e in running)
        raise ReleaseError(f"{len(running)} releases are running ({names}): name one with --execution", ExitCode.USAGE)
    return dict(running[0]) if running else None


def run(args: argparse.Namespace, ctx: Context) -> int:
    aws = ctx.aws
    aws.check_account()
    outputs = release_outputs(aws)
    execution = _running(ctx, outputs[contract.OUTPUT_STATE_MACHINE_ARN], args.execution)
    console = make_console(stderr=wants_json(args))
    if execution is None:
        if not emit_json(args, {"stopped": None}):
            console.print("No release is running: nothing to stop.", markup=False)
        return int(ExitCode.OK)
    records = records_of(aws, outputs)
    record = records.find(execution["executionArn"])
    where = f"tag {record.image_tag}, phase {record.phase or '?'}, started by {record.started_by}" if record else "no record yet"
    confirmed(ctx, args.yes, f"Stop release {execution['name']} ({where})?")
    with aws_errors("stopping the release"):
        try:
            aws.client("stepfunctions").stop_execution(executionArn=execution["executionArn"])
        except ClientError as exc:
            if error_code(exc) != "ExecutionDoesNotExist":
                raise
    console.print(f"Stopped release {execution['name']}.", markup=False)
    final = _wait_for_cleanup(ctx, execution["executionArn"], records)
    if emit_json(args, {"stopped": execution["name"], "execution": execution["executionArn"], "record": final.data if final else None}):
        return int(ExitCode.OK)
    if final is None:
        console.print(f"Its record was not found: check python -m release status --env {ctx.env.env_name}", markup=False)
        return int(ExitCode.OK)
    console.print(f"It stopped in phase {final.phase or '?'}.", markup=False)
    console.print(record_table(final, ctx.env.env_name))
    if final.lease_released:
        console.print("The lease is released; a new release can start.", markup=False)
    else:
        console.print(
            f"The cleanup has not recorded the lease's release yet: check `python -m release status --env {ctx.env.env_name}` in a minute.",
            markup=False,
        )
    return int(ExitCode.OK)


def _wait_for_cleanup(ctx: Context, arn: str, records: RecordTable) -> Record | None:
    record = records.find(arn)
    for _ in range(CLEANUP_POLLS):
        if record is not None and record.status != contract.STATUS_RUNNING and record.lease_released:
            break
        ctx.sleep(CLEANUP_POLL_SECONDS)
        record = records.find(arn)
    return record
