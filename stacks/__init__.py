"""Stacks are deployment units, split by lifecycle; `add_environments` puts environments into the app."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import App, Aspects, Environment, Tags
from cdk_nag import AwsSolutionsChecks

from config import EnvironmentConfig
from stacks.checkov import CheckovAcceptance
from stacks.ci_stack import CiStack
from stacks.data_stack import DataStack
from stacks.images_stack import ImagesStack
from stacks.release_stack import ReleaseStack

# CDK marks these taggable, CloudFormation rejects Tags on them.
_UNTAGGABLE = ["AWS::RDS::DBProxyTargetGroup"]


@dataclass(frozen=True)
class EnvironmentStacks:
    data: DataStack
    images: ImagesStack
    release: ReleaseStack
    ci: CiStack

    @property
    def all(self) -> tuple[DataStack, ImagesStack, ReleaseStack, CiStack]:
        return (self.data, self.images, self.release, self.ci)


def add_environment(app: App, config: EnvironmentConfig) -> EnvironmentStacks:
    env = Environment(account=config.account, region=config.region)
    data = DataStack(
        app,
        config.stack_name("data"),
        config=config,
        env=env,
        description=f"{config.env_name}: network, database, RDS Proxy and security groups",
    )
    images = ImagesStack(
        app,
        config.stack_name("images"),
        config=config,
        env=env,
        description=f"{config.env_name}: ECR repositories of the apps and the migrate image",
    )
    release = ReleaseStack(
        app,
        config.stack_name("release"),
        config=config,
        data=data,
        repositories=images.repositories,
        env=env,
        description=f"{config.env_name}: migrate task and the release state machine",
    )
    ci = CiStack(
        app,
        config.stack_name("ci"),
        config=config,
        state_machine_arn=release.release.state_machine.state_machine_arn,
        history_table_arn=release.release.history_table.table_arn,
        data_key_arn=release.release.data_key.key_arn,
        service_arns=[app.service_arn for app in release.release.definition_settings.apps],
        repositories=list(images.repositories.values()),
        migrate_log_group_name=release.migrate.log_group.log_group_name,
        lease_table_arn=release.release.lease_table.table_arn,
        released_parameter_arn=release.release.released_parameter.parameter_arn,
        env=env,
        description=f"{config.env_name}: GitHub Actions OIDC provider and the deploy and review roles",
    )
    stacks = EnvironmentStacks(data=data, images=images, release=release, ci=ci)
    for stack in stacks.all:
        # Every environment's stacks hold or reference data that outlives a mistake (the database,
        # the release history, the images): deleting one takes a deliberate switch first (docs/ci.md).
        stack.termination_protection = True
        Tags.of(stack).add("project", config.name_prefix, exclude_resource_types=_UNTAGGABLE)
        Tags.of(stack).add("environment", config.env_name, exclude_resource_types=_UNTAGGABLE)
    return stacks


def add_environments(app: App, configs: Sequence[EnvironmentConfig]) -> dict[str, EnvironmentStacks]:
    """Each environment's stacks in `app`, all checked by cdk-nag on every synth."""
    environments = {config.env_name: add_environment(app, config) for config in configs}
    Aspects.of(app).add(CheckovAcceptance())
    add_cdk_nag(app)
    return environments


def add_cdk_nag(app: App) -> None:
    """cdk-nag's AwsSolutions checks on every stack of `app`, run when it synthesizes."""
    # An unsuppressed AwsSolutions finding becomes an error annotation: `cdk synth` fails on it.
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
