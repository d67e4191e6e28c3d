"""What the tests share: the repository root, the environments synthesized per session, and the
synthesized app's shape. A plain module, so it is imported once (conftest.py is pytest's)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# jsii runs on the pinned Node 22 that `npm ci` puts in node_modules/.bin.
os.environ["PATH"] = f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}"

from aws_cdk import App  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from config import EnvironmentConfig, load_config  # noqa: E402
from stacks import EnvironmentStacks  # noqa: E402

ENVIRONMENTS = ("example", "sandbox")
# The example environment again with the other rollout poll mode (docs/release.md), in the same
# app, so the suite still synthesizes once.
WAIT_LOOP_ENV = "example-wait-loop"


def session_configs() -> list[EnvironmentConfig]:
    configs = [load_config(name) for name in ENVIRONMENTS]
    example = configs[0]
    wait_loop = example.model_copy(
        update={"env_name": WAIT_LOOP_ENV, "release": example.release.model_copy(update={"rollout_poll": "wait-loop"})}
    )
    return [*configs, wait_loop]


@dataclass(frozen=True)
class Synthesized:
    app: App
    outdir: Path
    environments: dict[str, EnvironmentStacks]
    templates: dict[str, dict[str, Any]]  # stack name -> template

    def template(self, env_name: str, unit: str) -> Template:
        stack = getattr(self.environments[env_name], unit)
        return Template.from_stack(stack)
