"""AWS access for the CLI: one session per environment, stack outputs, and errors as one line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
)

from release.environment import ReleaseEnvironment
from release.errors import ExitCode, ReleaseError

# CDK's own cross-stack exports: plumbing between stacks, not something CI or a person reads.
_CDK_INTERNAL_OUTPUT_PREFIX = "ExportsOutput"

SessionFactory = Callable[[str], Any]


def default_session(region: str) -> Any:
    return boto3.Session(region_name=region)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn boto errors into a ReleaseError line (exit 3) naming what was being done."""
    try:
        yield
    except ReleaseError:
        raise
    except NoCredentialsError:
        raise ReleaseError(f"{action}: no AWS credentials found (configure a profile or assume a role)", ExitCode.AWS) from None
    except NoRegionError:
        raise ReleaseError(f"{action}: no AWS region", ExitCode.AWS) from None
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        raise ReleaseError(f"{action}: {error_code(exc)}: {message}", ExitCode.AWS) from None
    except BotoCoreError as exc:
        raise ReleaseError(f"{action}: {exc}", ExitCode.AWS) from None


@dataclass
class Aws:
    """The clients of one environment's account and region."""

    env: ReleaseEnvironment
    session: Any

    def __post_init__(self) -> None:
        self._config = Config(retries={"mode": "standard", "max_attempts": 8})
        self._clients: dict[str, Any] = {}
        self.caller_arn: str | None = None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.env.region, config=self._config)
        return self._clients[service]

    def check_account(self) -> None:
        """Refuse to act on another account than the environment's (a wrong profile is common)."""
        with aws_errors("checking the AWS account"):
            identity = self.client("sts").get_caller_identity()
        account = str(identity["Account"])
        self.caller_arn = str(identity.get("Arn") or "") or None
        if account != self.env.account:
            raise ReleaseError(
                f"the AWS credentials are for account {account}, but environment {self.env.env_name} is account {self.env.account}",
                ExitCode.AWS,
            )

    def stack_outputs(self, stack_name: str) -> dict[str, str] | None:
        """The stack's outputs (CDK-internal exports left out); None when the stack does not exist."""
        cfn = self.client("cloudformation")
        with aws_errors(f"reading stack {stack_name}"):
            try:
                stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
            except ClientError as exc:
                if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                    return None
                raise
        if not stacks:
            return None
        outputs = stacks[0].get("Outputs") or []
        return {
            str(o["OutputKey"]): str(o.get("OutputValue", ""))
            for o in outputs
            if not str(o["OutputKey"]).startswith(_CDK_INTERNAL_OUTPUT_PREFIX)
        }

    def require_outputs(self, unit: str, *keys: str) -> dict[str, str]:
        stack_name = self.env.stack(unit)
        outputs = self.stack_outputs(stack_name)
        if outputs is None:
            raise ReleaseError(
                f"stack {stack_name} does not exist in account {self.env.account} region "
                f"{self.env.region}: deploy it first (make deploy ENV={self.env.env_name})",
                ExitCode.AWS,
            )
        missing = [key for key in keys if not outputs.get(key)]
        if missing:
            raise ReleaseError(
                f"stack {stack_name} has no output {', '.join(missing)}: deploy the current version of it",
                ExitCode.AWS,
            )
        return outputs
