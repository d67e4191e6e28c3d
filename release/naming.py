"""Local validation of a release request and the execution name derived from it."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from release import contract
from release.errors import ExitCode, ReleaseError

# A Docker image tag: what ECR accepts and what the state machine checks again.
TAG_PATTERN = re.compile(contract.TAG_PATTERN)
# Execution names follow contract.EXECUTION_NAME_PATTERN (the state machine refuses others).
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
NAME_PATTERN = re.compile(contract.EXECUTION_NAME_PATTERN)
MAX_NAME = contract.MAX_EXECUTION_NAME
# "-10svc-nomig-<8 hex>-<attempt>" takes at most 24 of the 64 characters (release/starting.py
# tries at most 50 attempts: 2 digits), so a full 40-character git SHA is kept whole.
_TAG_PART = MAX_NAME - 24


def validate_tag(tag: str) -> str:
    if not TAG_PATTERN.fullmatch(tag):
        raise ReleaseError(
            f"invalid image tag {tag!r}: use 1-128 of A-Z a-z 0-9 _ . - not starting with . or -",
            ExitCode.USAGE,
        )
    return tag


def validate_services(requested: Sequence[str] | None, known: Sequence[str]) -> list[str] | None:
    """The requested apps in config order without duplicates; None when none were named (all)."""
    if requested is None:
        return None
    unknown = sorted({name for name in requested if name not in known})
    if unknown:
        raise ReleaseError(
            f"unknown service {', '.join(unknown)}: this environment has {', '.join(known)}",
            ExitCode.USAGE,
        )
    if not requested:
        raise ReleaseError("--services needs at least one app name", ExitCode.USAGE)
    return [name for name in known if name in set(requested)]


def execution_input(tag: str, services: list[str] | None, migrate: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {"imageTag": tag, "migrate": migrate}
    if services is not None:
        payload["services"] = services
    return payload


def canonical_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def execution_name(payload: dict[str, Any], attempt: int = 1, default_services: int | None = None) -> str:
    """`<tag>-<scope>-<mig|nomig>-<hash of the input>[-<attempt>]` (a recovery:
    `<tag>-status|resolve-<hash>[-<attempt>]`), at most 64 characters.

    The same request always gets the same name, so starting it again while it runs attaches to
    it; the hash keeps two requests whose tags differ only in '.' vs '-' apart.
    """
    tag = _NAME_UNSAFE.sub("-", str(payload["imageTag"]))[:_TAG_PART]
    digest = hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:8]
    action = payload.get("action")
    if action in (contract.ACTION_STATUS, contract.ACTION_RESOLVE):  # a recovery: deploys nothing, always migrates
        name = f"{tag}-{action}-{digest}"
    else:
        services = payload.get("services")
        # Without `services` the machine deploys the apps that use the schema: named by their number
        # when the caller knows it ("all" only when it does not).
        count = len(services) if services is not None else default_services
        scope = "all" if count is None else f"{count}svc"
        migrate = "mig" if payload.get("migrate", True) else "nomig"
        name = f"{tag}-{scope}-{migrate}-{digest}"
    if attempt > 1:
        name = f"{name}-{attempt}"
    assert NAME_PATTERN.fullmatch(name), name
    return name


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN an execution of this state machine with this name has (or will have)."""
    prefix, sep, machine = state_machine_arn.partition(":stateMachine:")
    if not sep:
        raise ReleaseError(f"not a state machine ARN: {state_machine_arn}", ExitCode.AWS)
    return f"{prefix}:execution:{machine.split(':')[0]}:{name}"
