"""A fresh synthesis of the app for the tools and the benchmark (the tests share one per session)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# jsii runs on the pinned Node 22 from node_modules/.bin.
os.environ["PATH"] = f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}"

from aws_cdk import App  # noqa: E402

from config import load_config  # noqa: E402
from stacks import add_environments  # noqa: E402

EXAMPLE_RELEASE = "cashsouk-example-release"
EXAMPLE_CLEANUP = "cashsouk-example-release-lease-cleanup"


def synthesized_templates(env_name: str = "example") -> dict[str, dict[str, Any]]:
    """Stack name -> template of one environment, synthesized into a temporary directory."""
    with tempfile.TemporaryDirectory() as outdir:
        app = App(outdir=outdir)
        add_environments(app, [load_config(env_name)])
        assembly = app.synth()
        return {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
