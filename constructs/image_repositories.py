"""One ECR repository per app plus the migrate image's.

Tags are immutable, so a commit's tag names one set of bytes forever; images are scanned on push
and encrypted at rest (AES-256, ECR's own keys: a customer key would add a key policy to maintain
and a cost, and protects nothing more here since the images hold no secrets). Repositories outlive
the stack (RETAIN) because deleting one deletes every image a running service may need.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecr as ecr

from constructs import Construct


class ImageRepositories(Construct):
    """`repositories` maps a logical name (an app's name, or "migrate") to its repository."""

    def __init__(self, scope: Construct, construct_id: str, *, names: Mapping[str, str], keep_images: int) -> None:
        super().__init__(scope, construct_id)
        self.repositories: dict[str, ecr.Repository] = {}
        for key, repository_name in names.items():
            repository = ecr.Repository(
                self,
                key.capitalize(),
                repository_name=repository_name,
                image_tag_mutability=ecr.TagMutability.IMMUTABLE,
                image_scan_on_push=True,
                removal_policy=RemovalPolicy.RETAIN,
                lifecycle_rules=[
                    ecr.LifecycleRule(
                        rule_priority=1,
                        description="Untagged layers left by re-pushes: gone after a day",
                        tag_status=ecr.TagStatus.UNTAGGED,
                        max_image_age=Duration.days(1),
                    ),
                    ecr.LifecycleRule(
                        rule_priority=2,
                        description=f"Keep the last {keep_images} releases for rollback",
                        tag_status=ecr.TagStatus.ANY,
                        max_image_count=keep_images,
                    ),
                ],
            )
            # CDK leaves the default (AES-256) implicit; declare it so the template says so.
            cfn_repository = repository.node.default_child
            assert isinstance(cfn_repository, ecr.CfnRepository)
            cfn_repository.add_property_override("EncryptionConfiguration", {"EncryptionType": "AES256"})
            self.repositories[key] = repository
