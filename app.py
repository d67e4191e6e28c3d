#!/usr/bin/env python3
"""The one entry point: `cdk synth|diff|deploy -c env=NAME` (default: the example environment)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from config import CONFIG_DIR, DEFAULT_ENV, ConfigError, EnvironmentConfig, load_config


def cli_context() -> dict[str, Any] | None:
    """The context the CDK CLI hands the app, read as aws-cdk-lib's App reads it (core/lib/app.js,
    `loadContext`): the JSON in CDK_CONTEXT_JSON, then, over it, the JSON file named by
    CONTEXT_OVERFLOW_LOCATION_ENV (where the CLI puts what does not fit in the environment).
    None when either cannot be read as an object: the App then reports it as it always has."""
    try:
        context = json.loads(os.environ.get("CDK_CONTEXT_JSON") or "{}")
        location = os.environ.get("CONTEXT_OVERFLOW_LOCATION_ENV")
        # utf-8-sig: fs-extra's readJSONSync, which the App uses, skips a byte-order mark.
        overflow = json.loads(Path(location).read_text(encoding="utf-8-sig")) if location else {}
    except (OSError, ValueError):
        return None
    if not isinstance(context, dict) or not isinstance(overflow, dict):
        return None
    return {**context, **overflow}


def config_or_exit(get_context: Callable[[str], Any]) -> EnvironmentConfig:
    """The environment that `-c env=NAME` (and `-c config_dir=…`) name, or one line and exit 1."""
    env_name = get_context("env") or DEFAULT_ENV
    config_dir = Path(get_context("config_dir") or CONFIG_DIR)
    try:
        return load_config(env_name, config_dir)
    except ConfigError as error:
        # One line, no traceback: the CLI shows it as the reason synth failed.
        print(f"config error: {error}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    # A broken config fails before aws_cdk is imported: starting jsii's Node and loading the CDK
    # is most of a second, and a mistyped setting needs none of it.
    context = cli_context()
    if context is not None:
        config_or_exit(context.get)
    from aws_cdk import App  # noqa: PLC0415 - after the config check (above)

    from stacks import add_environments  # noqa: PLC0415 - imports aws_cdk

    # CDK's built-in template validation runs cfn-lint's rules (same ids) in WebAssembly: most of a
    # synth's time, even for an empty stack. cfn-lint runs on every template in `make test` and on
    # every pull request, so synth skips it; CDK_VALIDATION=true brings it back for one run.
    app = App(builtin_cloud_formation_validation=os.environ.get("CDK_VALIDATION") == "true")
    # What the App itself read decides what is synthesized (the check above read the same sources).
    config = config_or_exit(app.node.try_get_context)
    add_environments(app, [config])
    app.synth()
    # The cloud assembly is complete on disk. Skip the orderly teardown of jsii's Node process and
    # of thousands of proxy objects: it is a third of a second of every synth, diff and deploy.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
