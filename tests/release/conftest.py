"""Fixtures of the release state machine tests: the synthesized definitions and one interpreter.

The definitions are the ones the app synthesizes (tests/conftest.py, fixture `templates`): the
suite synthesizes once per session.
"""

from __future__ import annotations

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
