"""`unlock`: free a release lease whose owner has ended (the cleanup machine did not), after checking.

The lease is deleted only when its owner execution is not running (DescribeExecution) and only if
it still names that owner (a conditional DeleteItem), so a release that took the lease meanwhile
keeps it. Needs dynamodb:DeleteItem on the lease table: a person's credentials, not the deploy
role's (CI never frees another's lease).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from botocore.exceptions import ClientError

from release import contract
from release.aws import aws_errors, error_code
from release.commands.common import Context, confirmed, emit_json, release_outputs
from release.commands.status import owner_status, read_lease
from release.errors import ExitCode, ReleaseError
from release.report import make_console

NAME = "unlock"
HELP = "Free a stale release lease (its owner execution has ended), after checking the owner."


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")


def run(args: argparse.Namespace, ctx: Context) -> int:
    aws = ctx.aws
    aws.check_account()
    outputs = release_outputs(aws, contract.OUTPUT_LEASE_TABLE_NAME)
    table = outputs[contract.OUTPUT_LEASE_TABLE_NAME]
    env = ctx.env.env_name
    lease = read_lease(aws, outputs)
    console = make_console()
    if not lease:
        if not emit_json(args, {"unlocked": False, "lease": None}):
            console.print(f"The release lease of {env} is free: nothing to unlock.", markup=False)
        return int(ExitCode.OK)
    owner = str(lease.get("Owner", {}).get("S", ""))
    name = owner.rsplit(":", 1)[-1] or "?"
    status = owner_status(aws, owner)
    if status in ("RUNNING", "PENDING_REDRIVE"):
        raise ReleaseError(
            f"the lease belongs to release {name}, which is {status}: it is not stale "
            f"(stop that release instead: python -m release stop --env {env} --execution {name})",
            ExitCode.RELEASE_IN_PROGRESS,
        )
    confirmed(ctx, args.yes, f"Free the lease of release {name} ({status or 'execution not found'})?")
    with aws_errors("freeing the release lease"):
        try:
            aws.client("dynamodb").delete_item(
                TableName=table,
                Key={"LeaseId": {"S": contract.LEASE_ID}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "Owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            raise ReleaseError(
                f"the lease changed hands while checking (another release took it): nothing was freed; see python -m release status --env {env}",
                ExitCode.RELEASE_IN_PROGRESS,
            ) from None
    if not emit_json(args, {"unlocked": True, "owner": owner, "ownerStatus": status}):
        console.print(f"Freed the lease of release {name} ({status or 'execution not found'}): a new release can start.", markup=False)
    return int(ExitCode.OK)
