"""`status`: the latest release as recorded, what is released, and the release lease."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from release import contract
from release.aws import Aws, aws_errors, error_code
from release.commands.common import Context, emit_json, records_of, release_outputs
from release.errors import ExitCode
from release.hold import read_hold
from release.migration_logs import log_commands
from release.report import make_console, record_table

NAME = "status"
HELP = "The latest release (tag, digests, migration, services, who, when), what is released, and the lease."


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    pass


def released_line(value: str | None) -> str:
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


def _parsed(value: str | None) -> Any:
    try:
        return json.loads(value) if value else None
    except ValueError:
        return value


def read_released(aws: Aws, outputs: dict[str, str]) -> str | None:
    name = outputs.get(contract.OUTPUT_RELEASED_PARAMETER_NAME)
    if not name:
        return None
    with aws_errors("reading the released tag"):
        try:
            return str(aws.client("ssm").get_parameter(Name=name)["Parameter"]["Value"])
        except ClientError as exc:
            if error_code(exc) != "ParameterNotFound":
                raise
    return None


def read_lease(aws: Aws, outputs: dict[str, str]) -> dict[str, Any] | None:
    table = outputs.get(contract.OUTPUT_LEASE_TABLE_NAME)
    if not table:
        return None
    with aws_errors("reading the release lease"):
        item = aws.client("dynamodb").get_item(TableName=table, Key={"LeaseId": {"S": contract.LEASE_ID}}, ConsistentRead=True).get("Item")
    return dict(item) if item else None


def owner_status(aws: Aws, owner: str) -> str | None:
    if not owner:
        return None
    with aws_errors("reading the lease owner's execution"):
        try:
            answer = aws.client("stepfunctions").describe_execution(executionArn=owner, includedData="METADATA_ONLY")
            return str(answer["status"])
        except ClientError as exc:
            if error_code(exc) not in ("ExecutionDoesNotExist", "InvalidArn"):
                raise
    return None


def lease_line(item: dict[str, Any], status_of_owner: str | None) -> str:
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
    stale = f" — owner is {status_of_owner}: the lease is stale" if status_of_owner and status_of_owner != "RUNNING" else ""
    return (
        f"Lease: held by {owner.rsplit(':', 1)[-1] or '?'} for image {text('ImageTag') or '?'} "
        f"since {text('AcquiredAt') or '?'}, expires {expiry or '?'}{stale}\n  owner: {owner}"
    )


def restore_point_lines(point: Any) -> list[str]:
    """The restore point the release took before migrating (constructs/release_machine/restore_point.py)."""
    if not isinstance(point, dict):
        return []
    lines = [
        f"Restore point: {point.get('instance')} at {point.get('restoreTime')} (latest restorable then: {point.get('latestRestorableTime')})"
    ]
    if point.get("command"):
        lines.append(f"  restore: {point['command']}")
    if point.get("note"):
        lines.append(f"  note: {point['note']}")
    if point.get("snapshotId"):
        lines.append(f"  snapshot: {point['snapshotId']} ({point.get('snapshotStatus')})")
    if point.get("snapshotCommand"):
        lines.append(f"  from the snapshot: {point['snapshotCommand']}")
    return lines


def run(args: argparse.Namespace, ctx: Context) -> int:
    aws = ctx.aws
    aws.check_account()
    outputs = release_outputs(aws, contract.OUTPUT_LEASE_TABLE_NAME)
    latest = records_of(aws, outputs).latest(1)
    released = read_released(aws, outputs)
    lease = read_lease(aws, outputs)

    hold = read_hold(aws, outputs[contract.OUTPUT_LEASE_TABLE_NAME])
    log_group = outputs.get(contract.OUTPUT_MIGRATE_LOG_GROUP_NAME)
    owner = str((lease or {}).get("Owner", {}).get("S", ""))
    owner_state = owner_status(aws, owner) if lease else None
    if emit_json(
        args,
        {
            "environment": aws.env.env_name,
            "released": _parsed(released),
            "lease": {key: next(iter(value.values())) for key, value in lease.items()} | {"ownerStatus": owner_state} if lease else None,
            "hold": hold.as_json() if hold else None,
            "latest": latest[0].data if latest else None,
            "migrationLog": log_commands(aws.env.env_name, log_group, latest[0]) if latest and log_group else [],
        },
    ):
        return int(ExitCode.OK)
    console = make_console()
    console.print(f"Environment {aws.env.env_name} ({aws.env.account}/{aws.env.region})", markup=False)
    console.print(f"Released: {released_line(released)}", markup=False)
    if lease:
        console.print(lease_line(lease, owner_state), markup=False)
    else:
        console.print("Lease: free (no release running)", markup=False)
    if hold:
        console.print(f"Hold: {hold.line()} (lift it: python -m release unhold --env {aws.env.env_name})", markup=False)
    if latest:
        console.print(record_table(latest[0], aws.env.env_name))
        for app, digest in sorted(latest[0].digests.items()):
            console.print(f"  digest {app}: {digest}", markup=False)
        if log_group and latest[0].migration.get("taskArn"):
            for command in log_commands(aws.env.env_name, log_group, latest[0]):
                console.print(f"migration log: {command}", markup=False, soft_wrap=True)
        for line in restore_point_lines(latest[0].data.get("restorePoint")):
            console.print(line, markup=False)
    else:
        console.print("No releases yet.", markup=False)
    return int(ExitCode.OK)
