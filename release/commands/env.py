"""`env`: the environment's settings from its config file (no AWS access), for scripts and CI."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from release.commands.common import Context
from release.environment import ReleaseEnvironment
from release.errors import ExitCode

NAME = "env"
HELP = "The environment's settings from its config file (no AWS access), for scripts and CI."


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument("--format", choices=("json", "github"), default="json")


def env_settings(env: ReleaseEnvironment) -> dict[str, str]:
    settings = {
        "env_name": env.env_name,
        "account": env.account,
        "region": env.region,
        "apps": " ".join(env.app_names),
        # The apps a release deploys when it names none (uses_schema): CI always deploys them.
        "schema_apps": " ".join(app.name for app in env.apps if app.uses_schema),
        "migrate_repository": env.migrate_repository,
        "migrate_architecture": env.migrate_architecture,
        "github_repository": env.github_repository,
        "deploy_branch": env.deploy_branch,
        "deploy_role_arn": env.role_arn("deploy"),
        "review_role_arn": env.role_arn("review"),
        "migrations_path": env.migrations_path,
        "squawk_excluded_rules": ",".join(env.squawk_excluded_rules),
    }
    settings |= {f"stack_{unit}": name for unit, name in env.stacks.items()}
    settings |= {f"repository_{app.name}": app.repository for app in env.apps}
    return settings


def run(args: argparse.Namespace, ctx: Context) -> int:
    settings = env_settings(ctx.env)
    if args.format == "json":
        print(json.dumps(settings, indent=2))
    else:
        print("\n".join(f"{key}={value}" for key, value in settings.items()))
    return int(ExitCode.OK)
