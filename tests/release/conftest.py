"""Fixtures of the release state machine tests: the synthesized definition and one interpreter.

The definition is the one the app synthesizes (tests/conftest.py, fixture `templates`): the suite
synthesizes once per session. The "wait-loop" rollout poll mode is a copy of the example
environment with only that mode changed, synthesized in the same app.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from constructs.release_definition import ROLLOUT_POLL_MODES
from tests.release.driver import Interpreter, interpreter_session, resolve_definition, state_machines
from tests.support import WAIT_LOOP_ENV

ROOT = Path(__file__).resolve().parents[2]
MACHINE = "cashsouk-example-release"
CLEANUP = "cashsouk-example-release-lease-cleanup"
WAIT_LOOP_MACHINE = f"cashsouk-{WAIT_LOOP_ENV}-release"


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
def wait_loop_definition(release_templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The example environment's definition with rollout_poll="wait-loop", from the same synthesis.

    The variant needs its own environment name to sit in the same app; mapping that name back to
    "example" gives it the example's resource names, so the same fakes answer both modes.
    """
    renamed = json.dumps(resolve_definition(release_templates, WAIT_LOOP_MACHINE)).replace(WAIT_LOOP_ENV, "example")
    definition: dict[str, Any] = json.loads(renamed)
    return definition


@dataclass(frozen=True)
class Rollout:
    """One rollout poll mode and its state machine in the interpreter."""

    poll: str  # "retry" | "wait-loop"
    definition: dict[str, Any]
    machine: str


@pytest.fixture(params=ROLLOUT_POLL_MODES)
def rollout(request: pytest.FixtureRequest, sfn: Interpreter, definition: dict[str, Any]) -> Rollout:
    """Each test using it runs in both rollout poll modes."""
    poll = str(request.param)
    chosen = definition if poll == "retry" else request.getfixturevalue("wait_loop_definition")
    return Rollout(poll=poll, definition=chosen, machine=sfn.machine(chosen, "release" if poll == "retry" else "release-wait-loop"))
