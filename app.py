#!/usr/bin/env python3
"""The one entry point: `cdk synth|diff|deploy -c env=NAME` (default: the example environment)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aws_cdk import App

from config import CONFIG_DIR, DEFAULT_ENV, ConfigError, load_config
from stacks import add_environments


def main() -> None:
    # CDK's built-in template validation runs cfn-lint's rules (same ids) in WebAssembly: most of a
    # synth's time, even for an empty stack. cfn-lint runs on every template in `make test` and on
    # every pull request, so synth skips it; CDK_VALIDATION=true brings it back for one run.
    app = App(builtin_cloud_formation_validation=os.environ.get("CDK_VALIDATION") == "true")
    env_name = app.node.try_get_context("env") or DEFAULT_ENV
    config_dir = Path(app.node.try_get_context("config_dir") or CONFIG_DIR)
    try:
        config = load_config(env_name, config_dir)
    except ConfigError as error:
        # One line, no traceback: the CLI shows it as the reason synth failed.
        print(f"config error: {error}", file=sys.stderr)
        sys.exit(1)
    add_environments(app, [config])
    app.synth()
    # The cloud assembly is complete on disk. Skip the orderly teardown of jsii's Node process and
    # of thousands of proxy objects: it is a third of a second of every synth, diff and deploy.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
