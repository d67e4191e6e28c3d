"""What the CLI needs from `config/<env>.yaml`, read through the project's `config` module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from config import CONFIG_DIR, STACK_UNITS, ConfigError, github_role_name, load_config
from release.errors import ExitCode, ReleaseError


@dataclass(frozen=True)
class App:
    name: str
    service: str
    repository: str
    uses_schema: bool


@dataclass(frozen=True)
class ReleaseEnvironment:
    env_name: str
    account: str
    region: str
    stacks: dict[str, str]  # unit ("data", "images", "release", "ci") -> stack name
    apps: tuple[App, ...]
    migrate_repository: str
    migrate_architecture: str
    github_repository: str
    deploy_branch: str
    name_prefix: str = ""
    cluster_name: str = ""
    migrations_path: str = ""
    squawk_excluded_rules: tuple[str, ...] = ()
    lease_wait_minutes: int = 20

    def role_arn(self, kind: str) -> str:
        return f"arn:aws:iam::{self.account}:role/{github_role_name(self.name_prefix, self.env_name, kind)}"

    @property
    def app_names(self) -> list[str]:
        return [app.name for app in self.apps]

    def stack(self, unit: str) -> str:
        return self.stacks[unit]


def load_environment(env_name: str, config_dir: Path | None = None) -> ReleaseEnvironment:
    """Load and validate the environment's config; a problem is one ReleaseError line (exit 2)."""
    try:
        cfg = load_config(env_name, config_dir or CONFIG_DIR)
    except ConfigError as exc:
        # Several problems: one line each (the first line heads them).
        raise ReleaseError("\nrelease: ".join(exc.problems), ExitCode.USAGE) from None
    return ReleaseEnvironment(
        env_name=cfg.env_name,
        account=cfg.account,
        region=cfg.region,
        stacks={unit: cfg.stack_name(unit) for unit in STACK_UNITS},
        apps=tuple(App(name=app.name, service=app.service, repository=app.repository, uses_schema=app.uses_schema) for app in cfg.apps),
        migrate_repository=cfg.migrate.repository,
        migrate_architecture=cfg.migrate.architecture,
        github_repository=cfg.github.repository,
        deploy_branch=cfg.github.deploy_branch,
        name_prefix=cfg.name_prefix,
        cluster_name=cfg.cluster_name,
        migrations_path=cfg.review.migrations_path,
        squawk_excluded_rules=tuple(cfg.review.squawk_excluded_rules),
        lease_wait_minutes=cfg.release.lease_wait_minutes,
    )
