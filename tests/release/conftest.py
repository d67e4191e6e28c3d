"""Fixtures of the release state machine tests: the synthesized definitions and one interpreter.

The definitions are the ones the app synthesizes (tests/conftest.py, fixture `templates`): the
suite synthesizes once per session. The interpreter is strict (emulation/strict.py): the
synthesized machines' calls are authorized against the example environment's templates and every
call's parameters are validated, so a test fails where AWS would refuse.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from emulation.driver import Interpreter, interpreter_session
from emulation.resolve import resolve_definition, state_machines
from emulation.strict import EventChain, Strict

MACHINE = "cashsouk-example-release"
CLEANUP = "cashsouk-example-release-lease-cleanup"


@pytest.fixture(scope="session")
def release_templates(templates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The session-wide synthesis of the whole app (tests/conftest.py)."""
    return templates


@pytest.fixture(scope="session")
def release_stack_template(release_templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    stack_name, _ = state_machines(release_templates)[MACHINE]
    return release_templates[stack_name]


@pytest.fixture(scope="session")
def definition(release_templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return resolve_definition(release_templates, MACHINE)


@pytest.fixture(scope="session")
def cleanup_definition(release_templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return resolve_definition(release_templates, CLEANUP)


@pytest.fixture(scope="session")
def strict(release_templates: dict[str, dict[str, Any]]) -> Strict:
    """Authorization and validation against the example environment's stacks (the sandbox's share
    logical ids, so its roles would collide)."""
    stack_name, _ = state_machines(release_templates)[MACHINE]
    prefix = stack_name.rsplit("-", 1)[0] + "-"
    return Strict({name: t for name, t in release_templates.items() if name.startswith(prefix)})


@pytest.fixture(scope="session")
def sfn(strict: Strict) -> Iterator[Interpreter]:
    # The engine logs every caught error at WARNING with a stack of its own: too loud for tests.
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
    with interpreter_session() as session:
        session.clients.checks[:] = [strict.authorize, strict.validate]
        session.on_start = strict.execution_start
        task_role, execution_role = strict.account.task_definition_roles["cashsouk-migrate"]
        session.migrate_roles = (task_role, execution_role)
        yield session


@pytest.fixture
def revoke(strict: Strict) -> Iterator[Any]:
    """revoke(machine name or role ARN, Sid): that statement is left out of the role's policies for
    this test (the template is untouched)."""

    def _revoke(principal: str, sid: str) -> None:
        role = strict.account.machine(principal).role_arn if ":" not in principal else principal
        strict.authorizer.revoked.setdefault(role, set()).add(sid)

    yield _revoke
    strict.authorizer.revoked.clear()


@pytest.fixture(scope="session")
def event_chain(strict: Strict, sfn: Interpreter, cleanup: str) -> EventChain:
    return EventChain(strict, sfn)


def synthesized_machine(sfn: Interpreter, strict: Strict, definition: dict[str, Any], name: str, template_name: str) -> str:
    machine = strict.account.machine(template_name)
    return sfn.machine(definition, name, as_machine=machine.arn, role_arn=machine.role_arn)


@pytest.fixture(scope="session")
def machine(sfn: Interpreter, strict: Strict, definition: dict[str, Any]) -> str:
    return synthesized_machine(sfn, strict, definition, "release", MACHINE)


@pytest.fixture(scope="session")
def cleanup(sfn: Interpreter, strict: Strict, cleanup_definition: dict[str, Any]) -> str:
    return synthesized_machine(sfn, strict, cleanup_definition, "cleanup", CLEANUP)


# The example's bounds (30-minute rollouts, a 15-minute migration) and shorter ones, so the tests
# of the bounds run 12 polls instead of 180 (the definition is otherwise the synthesized one).
EXAMPLE_BOUNDS = {
    "$polls < 180": "$polls < 12",
    "$migrationPolls < 90": "$migrationPolls < 12",
    "within 1800 s": "within 120 s",
    "within 900 s": "within 120 s",
}


@pytest.fixture(scope="session")
def short_bounds_machine(sfn: Interpreter, strict: Strict, definition: dict[str, Any]) -> str:
    """The synthesized definition with 2-minute rollout and migration bounds."""
    text = json.dumps(definition)
    for example, short in EXAMPLE_BOUNDS.items():
        assert example in text, f"the example's definition has no {example!r} any more"
        text = text.replace(example, short)
    return synthesized_machine(sfn, strict, json.loads(text), "release-short-bounds", MACHINE)
