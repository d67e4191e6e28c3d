"""Stacks are deployment units, split by lifecycle; `add_environments` puts environments into the app."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import App, Aspects, Environment, Tags
from cdk_nag import AwsSolutionsChecks

from config import EnvironmentConfig
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

    @property
    def all(self) -> tuple[DataStack, ImagesStack, ReleaseStack]:
        return (self.data, self.images, self.release)


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
    stacks = EnvironmentStacks(data=data, images=images, release=release)
    for stack in stacks.all:
        Tags.of(stack).add("project", config.name_prefix, exclude_resource_types=_UNTAGGABLE)
        Tags.of(stack).add("environment", config.env_name, exclude_resource_types=_UNTAGGABLE)
    return stacks


def add_environments(app: App, configs: Sequence[EnvironmentConfig]) -> dict[str, EnvironmentStacks]:
    """Each environment's stacks in `app`, all checked by cdk-nag on every synth."""
    environments = {config.env_name: add_environment(app, config) for config in configs}
    # An unsuppressed AwsSolutions finding becomes an error annotation: `cdk synth` fails on it.
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return environments
