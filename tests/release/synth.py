"""The example environment's release definition, synthesized with a given `rollout_poll` mode.

The example environment's config with only `release.rollout_poll` changed, synthesized through the
app's stacks: everything else in the definition (names, ARNs, timeouts) is the example's. Used by
bench/release_bench.py (the tests take both modes from the session's one synthesis).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# jsii runs on the pinned Node 22 from node_modules/.bin.
os.environ["PATH"] = f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}"

from aws_cdk import App  # noqa: E402

from config import load_config  # noqa: E402
from constructs.release_definition import RolloutPoll  # noqa: E402
from stacks import add_environments  # noqa: E402
from tests.release.driver import resolve_definition  # noqa: E402

MACHINE = "cashsouk-example-release"


def example_definition(rollout_poll: RolloutPoll) -> dict[str, Any]:
    """The release definition of the example environment, from a fresh synthesis, in that mode."""
    example = load_config("example")
    config = example.model_copy(update={"release": example.release.model_copy(update={"rollout_poll": rollout_poll})})
    with tempfile.TemporaryDirectory() as outdir:
        app = App(outdir=outdir)
        add_environments(app, [config])
        assembly = app.synth()
        templates = {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    return resolve_definition(templates, MACHINE)
