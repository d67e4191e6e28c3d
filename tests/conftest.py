"""One synthesis per test session, shared by the pytest workers: every environment in one app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

# tests.support puts the pinned Node 22 on PATH before anything imports aws_cdk (jsii starts Node
# on that import; the machine's Node is end of life), so stacks is imported for its types only.
from tests.support import Synthesized

if TYPE_CHECKING:
    from stacks import EnvironmentStacks


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
