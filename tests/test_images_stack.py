"""ECR repositories: one per app plus migrate, immutable, scanned, encrypted, pruned, retained."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

from tests.support import Synthesized

NAMES = ["api-cashsouk", "admin-cashsouk", "investor-cashsouk", "issuer-cashsouk", "landing-cashsouk", "cashsouk-migrate"]


def test_one_repository_per_app_and_the_migrate_image(synthesized: Synthesized) -> None:
    repositories = synthesized.template("example", "images").find_resources("AWS::ECR::Repository")
    assert sorted(r["Properties"]["RepositoryName"] for r in repositories.values()) == sorted(NAMES)


def test_repositories_are_immutable_scanned_encrypted_and_retained(synthesized: Synthesized) -> None:
    template = synthesized.template("example", "images")
    for name in NAMES:
        template.has_resource(
            "AWS::ECR::Repository",
            {
                "Properties": Match.object_like(
                    {
                        "RepositoryName": name,
                        "ImageTagMutability": "IMMUTABLE",
                        "ImageScanningConfiguration": {"ScanOnPush": True},
                        "EncryptionConfiguration": {"EncryptionType": "AES256"},
                    }
                ),
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
            },
        )


def test_lifecycle_expires_untagged_and_keeps_the_last_releases(synthesized: Synthesized) -> None:
    repositories = synthesized.template("example", "images").find_resources("AWS::ECR::Repository")
    for repository in repositories.values():
        rules = json.loads(repository["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
        selections = {rule["selection"]["tagStatus"]: rule["selection"] for rule in rules}
        assert selections["untagged"]["countType"] == "sinceImagePushed"
        assert selections["untagged"]["countNumber"] == 1
        assert selections["any"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 30}


def test_repository_uris_are_exported(synthesized: Synthesized) -> None:
    outputs = synthesized.template("example", "images").find_outputs("*")
    for key in ("Api", "Admin", "Investor", "Issuer", "Landing", "Migrate"):
        assert outputs[f"RepositoryUri{key}"]["Export"] == {"Name": f"cashsouk-example-images-RepositoryUri{key}"}
