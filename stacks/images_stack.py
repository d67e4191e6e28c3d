"""The image repositories: outlive every other stack, since running services pull from them."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack

from config import EnvironmentConfig
from constructs import Construct
from constructs.image_repositories import ImageRepositories
from stacks.outputs import export

MIGRATE = "migrate"


class ImagesStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        names = {app.name: app.repository for app in config.apps} | {MIGRATE: config.migrate.repository}
        self.repositories = ImageRepositories(self, "Repositories", names=names, keep_images=config.release.keep_images).repositories
        for key, repository in self.repositories.items():
            export(self, f"RepositoryUri{key.capitalize()}", repository.repository_uri, f"ECR repository of {key}")
