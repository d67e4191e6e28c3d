"""Phase "images": resolve the tag to a digest in every repository involved, before anything
changes. Only ECR's own "not found" errors become ImageNotFound; a throttle is retried, and if it
persists the release fails with the throttle's own name."""

from __future__ import annotations

from constructs.release_machine.asl import (
    CAUSE,
    ECR_TRANSIENT,
    ERROR,
    IMAGE_MISSING_ERRORS,
    STATES_ALL,
    DefinitionSettings,
    Grant,
    Phase,
    State,
    catch_all,
    expr,
    js,
    retry_transient,
)
from release import contract

RESOLVE_IMAGES = "ResolveImages"
DESCRIBE_IMAGE = "DescribeImage"
IMAGE_MISSING = "ImageMissing"


def images_phase(s: DefinitionSettings, next_state: str) -> Phase:
    repositories = js(
        {
            **{a.app: {"app": a.app, "repositoryName": a.repository_name, "repositoryUri": a.repository_uri} for a in s.apps},
            contract.MIGRATE_APP: {
                "app": contract.MIGRATE_APP,
                "repositoryName": s.migrate_repository_name,
                "repositoryUri": s.migrate_repository_uri,
            },
        }
    )
    items = (
        "($repos := " + repositories + "; "
        "[$map([$services.app, $migrate ? " + js(contract.MIGRATE_APP) + " : ()], function($a) { ($r := $lookup($repos, $a); "
        "{'app': $r.app, 'repositoryName': $r.repositoryName, 'repositoryUri': $r.repositoryUri, 'imageTag': $imageTag}) })])"
    )
    describe_image: State = {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:ecr:describeImages",
        "Arguments": {
            "RepositoryName": "{% $states.input.repositoryName %}",
            "ImageIds": [{"ImageTag": "{% $states.input.imageTag %}"}],
        },
        "Output": {
            "app": "{% $states.input.app %}",
            "image": "{% $states.input.repositoryUri & '@' & $states.result.ImageDetails[0].ImageDigest %}",
            "digest": "{% $states.result.ImageDetails[0].ImageDigest %}",
        },
        "Retry": [retry_transient(ECR_TRANSIENT)],
        "Catch": [
            {
                "ErrorEquals": IMAGE_MISSING_ERRORS,
                "Output": {
                    "repositoryName": "{% $states.input.repositoryName %}",
                    "imageTag": "{% $states.input.imageTag %}",
                    "error": expr(ERROR),
                },
                "Next": IMAGE_MISSING,
            }
        ],
        "End": True,
    }
    image_missing: State = {
        "Type": "Fail",
        "Error": contract.IMAGE_NOT_FOUND,
        "Cause": expr(
            "'repository ' & $states.input.repositoryName & ' has no image tagged ' & $states.input.imageTag & ' (' & $states.input.error & ')'"
        ),
    }
    resolve_images: State = {
        "Type": "Map",
        "Comment": "Every repository of the release (and the migrate image when migrating), five at a time.",
        "Items": expr(items),
        "MaxConcurrency": 5,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"},
            "StartAt": DESCRIBE_IMAGE,
            "States": {DESCRIBE_IMAGE: describe_image, IMAGE_MISSING: image_missing},
        },
        "Assign": {
            "images": "{% $merge($states.result.{app: image}) %}",
            "digests": "{% $merge($states.result.{app: digest}) %}",
            "phase": "lease",
        },
        "Catch": [
            {
                "ErrorEquals": [contract.IMAGE_NOT_FOUND],
                "Assign": {"errorName": contract.IMAGE_NOT_FOUND, "errorCause": expr(CAUSE), "phase": "images"},
                "Next": "FailRelease",
            },
            {**catch_all("resolving image digests", "images"), "ErrorEquals": [STATES_ALL]},
        ],
        "Next": next_state,
    }
    repository_arns = (*(a.repository_arn for a in s.apps), s.migrate_repository_arn)
    return Phase({RESOLVE_IMAGES: resolve_images}, [Grant("ResolveDigests", ("ecr:DescribeImages",), repository_arns)])
