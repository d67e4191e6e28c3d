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


def session_configs() -> list[EnvironmentConfig]:
    return [load_config(name) for name in ENVIRONMENTS]


@dataclass(frozen=True)
class Synthesized:
    app: App
    outdir: Path
    environments: dict[str, EnvironmentStacks]
    templates: dict[str, dict[str, Any]]  # stack name -> template

    def template(self, env_name: str, unit: str) -> Template:
        stack = getattr(self.environments[env_name], unit)
        return Template.from_stack(stack)
