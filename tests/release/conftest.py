"""Fixtures of the release state machine tests: the synthesized definitions and one interpreter.

The definitions are the ones the app synthesizes (tests/conftest.py, fixture `templates`): the
suite synthesizes once per session.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from emulation.driver import Interpreter, interpreter_session
from emulation.resolve import resolve_definition, state_machines

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
def sfn() -> Iterator[Interpreter]:
    # The engine logs every caught error at WARNING with a stack of its own: too loud for tests.
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
    with interpreter_session() as session:
        yield session


@pytest.fixture(scope="session")
def machine(sfn: Interpreter, definition: dict[str, Any]) -> str:
    return sfn.machine(definition, "release")


@pytest.fixture(scope="session")
def cleanup(sfn: Interpreter, cleanup_definition: dict[str, Any]) -> str:
    return sfn.machine(cleanup_definition, "cleanup")


# The example's bounds (30-minute rollouts, a 15-minute migration) and shorter ones, so the tests
# of the bounds run 12 polls instead of 180 (the definition is otherwise the synthesized one).
EXAMPLE_BOUNDS = {
    "$polls < 180": "$polls < 12",
    "$migrationPolls < 90": "$migrationPolls < 12",
    "within 1800 s": "within 120 s",
    "within 900 s": "within 120 s",
}


@pytest.fixture(scope="session")
def short_bounds_machine(sfn: Interpreter, definition: dict[str, Any]) -> str:
    """The synthesized definition with 2-minute rollout and migration bounds."""
    text = json.dumps(definition)
    for example, short in EXAMPLE_BOUNDS.items():
        assert example in text, f"the example's definition has no {example!r} any more"
        text = text.replace(example, short)
    return sfn.machine(json.loads(text), "release-short-bounds")
