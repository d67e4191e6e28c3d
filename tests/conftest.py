"""One synthesis per test session: every environment in one app, shared by all template tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App

from stacks import EnvironmentStacks, add_environments
from tests.support import Synthesized, session_configs


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = App(outdir=str(outdir))
    environments = add_environments(app, session_configs())
    assembly = app.synth()
    templates = {stack.stack_name: json.loads(Path(stack.template_full_path).read_text()) for stack in assembly.stacks}
    yield Synthesized(app=app, outdir=outdir, environments=environments, templates=templates)


@pytest.fixture(scope="session")
def templates(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """Stack name -> synthesized CloudFormation template (as written to cdk.out)."""
    return synthesized.templates


@pytest.fixture(scope="session")
def example(synthesized: Synthesized) -> EnvironmentStacks:
    return synthesized.environments["example"]
