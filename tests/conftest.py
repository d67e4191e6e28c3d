"""One synthesis per test session, shared by the pytest workers: every environment in one app."""

from __future__ import annotations

from typing import Any

import pytest

from stacks import EnvironmentStacks
from tests.support import Synthesized


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return Synthesized.shared(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def templates(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """Stack name -> synthesized CloudFormation template (as written to the cloud assembly)."""
    return synthesized.templates


@pytest.fixture(scope="session")
def example(synthesized: Synthesized) -> EnvironmentStacks:
    return synthesized.environments["example"]
