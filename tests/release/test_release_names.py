"""Execution names: one rule (release/contract.py) that ECS's startedBy and clientToken accept, and
every name the CLI generates (release/naming.py) follows it."""

from __future__ import annotations

import itertools
import re

import pytest

from release import contract
from release.naming import execution_input, execution_name
from release.starting import MAX_ATTEMPTS

# ECS RunTask: startedBy "Up to 128 letters (uppercase and lowercase), numbers, hyphens (-), forward
# slash (/), and underscores (_) are allowed"; clientToken "up to 64 ASCII characters in the range
# of 33-126 (inclusive)". Step Functions execution names: 1-80 characters.
STARTED_BY = re.compile(r"[A-Za-z0-9/_-]{1,128}")
CLIENT_TOKEN = re.compile(r"[\x21-\x7e]{1,64}")


def test_the_rule_satisfies_both_of_ecs_rules_and_step_functions() -> None:
    rule = re.compile(contract.EXECUTION_NAME_PATTERN)
    longest = "a" * contract.MAX_EXECUTION_NAME
    assert rule.fullmatch(longest) and STARTED_BY.fullmatch(longest) and CLIENT_TOKEN.fullmatch(longest)
    assert contract.MAX_EXECUTION_NAME == contract.MAX_CLIENT_TOKEN == 64  # Step Functions allows 80
    assert not rule.fullmatch("a" * 65) and not rule.fullmatch("v1.2.3") and not rule.fullmatch("")


TAGS = ["a" * 128, "v1.2.3", "x", "0" * 40, "Release_2026.12.03-rc.1"]
SCOPES: list[list[str] | None] = [None, ["api"], ["api", "admin", "investor", "issuer", "landing"], [f"app{i}" for i in range(10)]]


@pytest.mark.parametrize(("tag", "services", "migrate"), list(itertools.product(TAGS, SCOPES, [True, False])))
def test_every_name_the_cli_generates_follows_the_rule(tag: str, services: list[str] | None, migrate: bool) -> None:
    payload = execution_input(tag, services, migrate)
    for attempt in (1, 2, 9, 10, MAX_ATTEMPTS):
        name = execution_name(payload, attempt)
        assert re.fullmatch(contract.EXECUTION_NAME_PATTERN, name), name
        assert STARTED_BY.fullmatch(name) and CLIENT_TOKEN.fullmatch(name)


def test_a_full_git_sha_is_kept_whole_in_the_name() -> None:
    sha = "3f9c2ab" + "0" * 33
    assert execution_name(execution_input(sha, None, True)).startswith(sha + "-all-mig-")
