"""Start a release, or attach to the same release when it is already running."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from release.aws import aws_errors, error_code
from release.errors import ExitCode, ReleaseError
from release.naming import canonical_json, execution_arn, execution_name

# Names stay unique for 90 days in Standard workflows: a finished release started again gets
# `<name>-2`, `<name>-3`, ...
MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class Started:
    name: str
    arn: str
    attached: bool  # True: the same release was already running and this call follows it


# Who started a release and why do not make it another release: the same request from two people
# gets the same name, so the second attaches to the first.
_NOT_IDENTITY = ("startedBy", "note")


def identity(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key not in _NOT_IDENTITY}


def _describe(sfn: Any, arn: str) -> dict[str, Any] | None:
    try:
        # Metadata only: CI cannot decrypt the input (issue 9.6). The name carries a hash of the
        # request's identity, so a running execution of this name is this request.
        return dict(sfn.describe_execution(executionArn=arn, includedData="METADATA_ONLY"))
    except ClientError as exc:
        if error_code(exc) == "ExecutionDoesNotExist":
            return None
        raise


def start_or_attach(sfn: Any, state_machine_arn: str, payload: dict[str, Any], default_services: int | None = None) -> Started:
    body = canonical_json(payload)
    with aws_errors("starting the release"):
        for attempt in range(1, MAX_ATTEMPTS + 1):
            name = execution_name(identity(payload), attempt, default_services)
            arn = execution_arn(state_machine_arn, name)
            existing = _describe(sfn, arn)
            if existing is None:
                try:
                    response = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=body)
                except ClientError as exc:
                    if error_code(exc) != "ExecutionAlreadyExists":
                        raise
                    existing = _describe(sfn, arn)  # started by someone else since we looked
                else:
                    return Started(name=name, arn=str(response["executionArn"]), attached=False)
            if existing is not None and existing.get("status") == "RUNNING":
                return Started(name=name, arn=arn, attached=True)
    raise ReleaseError(
        f"{MAX_ATTEMPTS} executions named {execution_name(identity(payload), 1, default_services)}[-N] already exist: start with another tag",
        ExitCode.RELEASE_FAILED,
    )
