"""Execution names and local validation, and starting when another client wins the race."""

from __future__ import annotations

import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from release import contract
from release.errors import ExitCode, ReleaseError
from release.naming import execution_arn, execution_input, execution_name, validate_services, validate_tag
from release.starting import identity, start_or_attach

MACHINE = "arn:aws:states:ap-southeast-5:123456789012:stateMachine:cashsouk-prod-release"


@pytest.mark.parametrize("tag", ["3f9c2a7d1e4b8c6a0f5d2e9b7a1c4d8e6f0a2b3c", "v1.2.3", "_x", "a" * 128, "release-2026.11.24"])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a" * 129, "a b", "a/b", "a:b", "ä"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(ReleaseError) as caught:
        validate_tag(tag)
    assert caught.value.code == ExitCode.USAGE


@pytest.mark.parametrize("tag", ["a" * 128, "v1.2.3", "x"])
@pytest.mark.parametrize("services", [None, ["api"], ["api", "admin", "investor", "issuer", "landing"]])
@pytest.mark.parametrize("migrate", [True, False])
def test_execution_names_are_valid_and_deterministic(tag: str, services: list[str] | None, migrate: bool) -> None:
    payload = execution_input(tag, services, migrate)
    for attempt in (1, 2, 50):
        name = execution_name(payload, attempt)
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,80}", name), name
        assert name == execution_name(dict(payload), attempt)


def test_names_differ_by_request() -> None:
    names = {
        execution_name(execution_input("v1.2", None, True)),
        execution_name(execution_input("v1-2", None, True)),  # same after sanitising, other hash
        execution_name(execution_input("v1.2", None, False)),
        execution_name(execution_input("v1.2", ["api"], True)),
        execution_name(execution_input("v1.2", ["admin"], True)),
    }
    assert len(names) == 5


def test_execution_arn() -> None:
    assert execution_arn(MACHINE, "n") == "arn:aws:states:ap-southeast-5:123456789012:execution:cashsouk-prod-release:n"


def test_services_in_config_order() -> None:
    known = ["api", "admin", "landing"]
    assert validate_services(None, known) is None
    assert validate_services(["landing", "api", "landing"], known) == ["api", "landing"]


class _RacingStepFunctions:
    """DescribeExecution says nothing exists, then StartExecution loses a race to another client,
    whose execution of that name has `other_status` by the time it is described again."""

    def __init__(self, other_status: str) -> None:
        self.described: list[str | None] = []
        self.other_status = other_status
        self.started: list[str] = []

    def describe_execution(self, executionArn: str, includedData: str | None = None) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        self.described.append(includedData)
        if len(self.described) == 1 or "-2" in executionArn:
            raise ClientError({"Error": {"Code": "ExecutionDoesNotExist", "Message": "no"}}, "DescribeExecution")
        return {"status": self.other_status}  # metadata only: no input

    def start_execution(self, stateMachineArn: str, name: str, input: str) -> dict[str, Any]:  # noqa: N803
        if not self.started and "-2" not in name:
            self.started.append("lost")
            raise ClientError({"Error": {"Code": "ExecutionAlreadyExists", "Message": "exists"}}, "StartExecution")
        self.started.append(name)
        return {"executionArn": execution_arn(stateMachineArn, name)}


def test_losing_the_race_to_the_same_running_release_attaches() -> None:
    """The name is a hash of the request: a running execution of that name is the same request,
    so the input need not be read (CI cannot decrypt it)."""
    payload = execution_input("abc", None, True) | {"startedBy": "bob"}
    sfn = _RacingStepFunctions(other_status="RUNNING")
    started = start_or_attach(sfn, MACHINE, payload)
    assert started.attached and started.name == execution_name(execution_input("abc", None, True))
    assert set(sfn.described) == {"METADATA_ONLY"}


def test_losing_the_race_to_a_finished_one_starts_a_suffixed_one() -> None:
    payload = execution_input("abc", None, True)
    sfn = _RacingStepFunctions(other_status="SUCCEEDED")
    started = start_or_attach(sfn, MACHINE, payload)
    assert not started.attached and started.name == execution_name(payload, 2)


def test_who_and_why_do_not_change_the_name() -> None:
    plain = execution_input("abc", ["api"], False)
    assert execution_name(identity(plain | {"startedBy": "alice", "note": "x"})) == execution_name(plain)
    assert execution_name(identity(plain | {"rollbackOf": "abc-all-mig-1"})) != execution_name(plain)


def test_a_release_without_services_is_named_for_the_apps_it_deploys() -> None:
    """The machine's default is the apps that use the schema: the name counts them, not "all"."""
    plain = execution_input("v1", None, True)
    assert execution_name(plain, default_services=1).startswith("v1-1svc-mig-")
    assert execution_name(plain, default_services=1) != execution_name(execution_input("v1", ["api"], True), default_services=1)


def test_recoveries_are_named_for_what_they_do() -> None:
    status = {"imageTag": "v1", "action": "status", "migrate": True, "services": []}
    resolve = status | {"action": "resolve", "resolve": "applied:20261120093000_x"}
    assert execution_name(status).startswith("v1-status-") and execution_name(resolve).startswith("v1-resolve-")
    longest = execution_name(resolve | {"imageTag": "a" * 128}, 50)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", longest) and len(longest) <= contract.MAX_EXECUTION_NAME
