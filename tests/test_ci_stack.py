"""The CI access stack: what GitHub Actions may do, checked on the synthesized template.

The stack comes from the session-wide synthesis of the whole app, so its references to the
repositories, state machine, lease table, parameter and log group are real cross-stack imports.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from aws_cdk.assertions import Template

from config import EnvironmentConfig, load_config
from constructs.ci_access import ECR_PUSH_PULL_ACTIONS
from release.environment import load_environment
from stacks.ci_stack import CiStack
from tests.support import ROOT, Synthesized

READ_ONLY_REVIEW_ACTIONS = {"sts:AssumeRole", "cloudformation:DescribeStacks", "cloudformation:GetTemplate"}
DEPLOY_ACTIONS = {
    "ecr:GetAuthorizationToken",
    *ECR_PUSH_PULL_ACTIONS,
    "states:StartExecution",
    "states:ListExecutions",
    "states:DescribeExecution",
    "states:GetExecutionHistory",
    "logs:GetLogEvents",
    "logs:FilterLogEvents",
    "cloudformation:DescribeStacks",
    "dynamodb:GetItem",
    "ssm:GetParameter",
}


@pytest.fixture(scope="module")
def example() -> EnvironmentConfig:
    return load_config("example")


@pytest.fixture(scope="module")
def ci(synthesized: Synthesized) -> tuple[CiStack, Template]:
    """The example environment's ci stack from the session-wide synthesis (tests/conftest.py)."""
    stack = synthesized.environments["example"].ci
    return stack, Template.from_stack(stack)


def _roles(template: Template) -> dict[str, dict[str, Any]]:
    return {key: dict(value) for key, value in template.find_resources("AWS::IAM::Role").items()}


def _role(template: Template, suffix: str) -> dict[str, Any]:
    (role,) = [r for r in _roles(template).values() if r["Properties"]["RoleName"].endswith(suffix)]
    return role


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role["Properties"].get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _resources(statement: dict[str, Any]) -> list[Any]:
    resources = statement["Resource"]
    return resources if isinstance(resources, list) else [resources]


def test_only_two_roles_and_no_managed_policies(ci: tuple[CiStack, Template]) -> None:
    _, template = ci
    roles = _roles(template)
    assert sorted(r["Properties"]["RoleName"] for r in roles.values()) == [
        "cashsouk-example-github-deploy",
        "cashsouk-example-github-review",
    ]
    assert all("ManagedPolicyArns" not in r["Properties"] for r in roles.values())
    template.resource_count_is("AWS::IAM::Policy", 0)
    template.resource_count_is("AWS::IAM::ManagedPolicy", 0)


def test_deploy_role_has_no_ecs_no_iam_and_no_wildcard_actions(ci: tuple[CiStack, Template]) -> None:
    _, template = ci
    statements = _statements(_role(template, "-github-deploy"))
    actions = [action for s in statements for action in _actions(s)]
    assert all(s["Effect"] == "Allow" for s in statements)
    assert not [a for a in actions if a.lower().startswith(("ecs:", "iam:"))]
    assert not [a for a in actions if "*" in a]
    assert set(actions) == DEPLOY_ACTIONS


def test_no_wildcard_action_anywhere(ci: tuple[CiStack, Template]) -> None:
    _, template = ci
    for role in _roles(template).values():
        for statement in _statements(role):
            assert not [a for a in _actions(statement) if "*" in a], statement
            assert "NotAction" not in statement and "NotResource" not in statement


def test_only_the_ecr_login_has_resource_star(ci: tuple[CiStack, Template]) -> None:
    _, template = ci
    for role in _roles(template).values():
        for statement in _statements(role):
            if "*" in _resources(statement):
                assert _actions(statement) == ["ecr:GetAuthorizationToken"] and _resources(statement) == ["*"]


def test_images_go_only_to_the_projects_repositories(ci: tuple[CiStack, Template], example: EnvironmentConfig) -> None:
    _, template = ci
    (push,) = [s for s in _statements(_role(template, "-github-deploy")) if s.get("Sid") == "PushAndRetagImages"]
    imports = json.dumps(_resources(push))
    assert len(_resources(push)) == len(example.apps) + 1
    assert imports.count("Fn::ImportValue") == len(example.apps) + 1


def test_release_access_is_scoped(ci: tuple[CiStack, Template]) -> None:
    _, template = ci
    by_sid = {s["Sid"]: s for s in _statements(_role(template, "-github-deploy"))}
    assert "Fn::ImportValue" in json.dumps(by_sid["StartRelease"]["Resource"])  # the machine itself, nothing else
    follow = json.dumps(by_sid["FollowRelease"]["Resource"])
    assert ":execution:" in follow and "Fn::Split" in follow
    logs_resource = json.dumps(by_sid["ReadMigrateLogs"]["Resource"])
    assert ":log-group:" in logs_resource and logs_resource.endswith('":*"]]}')
    stacks = json.dumps(by_sid["ReadStackOutputs"]["Resource"])
    for unit in ("data", "images", "release", "ci"):
        assert f":stack/cashsouk-example-{unit}/*" in stacks
    assert stacks.count(":stack/") == 4


@pytest.mark.parametrize(
    ("suffix", "subject"),
    [
        ("-github-deploy", "repo:Malcan-Technologies/shoraka:ref:refs/heads/main"),
        ("-github-review", "repo:Malcan-Technologies/shoraka:pull_request"),
    ],
)
def test_trust_is_exactly_the_repository_and_ref(ci: tuple[CiStack, Template], suffix: str, subject: str) -> None:
    _, template = ci
    (statement,) = _role(template, suffix)["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Effect"] == "Allow"
    assert set(statement["Principal"]) == {"Federated"}
    assert statement["Condition"] == {
        "StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": subject,
        }
    }


def test_review_role_is_read_only(ci: tuple[CiStack, Template]) -> None:
    _, template = ci
    statements = _statements(_role(template, "-github-review"))
    assert {a for s in statements for a in _actions(s)} == READ_ONLY_REVIEW_ACTIONS
    (assume,) = [s for s in statements if _actions(s) == ["sts:AssumeRole"]]
    assert "role/cdk-hnb659fds-lookup-role-123456789012-ap-southeast-5" in json.dumps(assume["Resource"])


def test_oidc_provider_is_created_and_kept(ci: tuple[CiStack, Template]) -> None:
    _, template = ci
    template.has_resource(
        "AWS::IAM::OIDCProvider",
        {
            "Properties": {"Url": "https://token.actions.githubusercontent.com", "ClientIdList": ["sts.amazonaws.com"]},
            "DeletionPolicy": "Retain",
        },
    )
    provider = next(iter(template.find_resources("AWS::IAM::OIDCProvider")))
    for role in _roles(template).values():
        (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"]["Federated"] == {"Ref": provider}


def test_an_existing_oidc_provider_is_referenced(synthesized: Synthesized) -> None:
    # config/sandbox.yaml names the account's existing provider.
    arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    template = synthesized.template("sandbox", "ci")
    template.resource_count_is("AWS::IAM::OIDCProvider", 0)
    for role in _roles(template).values():
        assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Federated"] == arn


def test_role_arns_are_exported(ci: tuple[CiStack, Template]) -> None:
    _, template = ci
    outputs = template.find_outputs("*")
    assert outputs["DeployRoleArn"]["Export"] == {"Name": "cashsouk-example-ci-DeployRoleArn"}
    assert outputs["ReviewRoleArn"]["Export"] == {"Name": "cashsouk-example-ci-ReviewRoleArn"}


def test_workflows_derive_the_same_role_arns_from_the_config(ci: tuple[CiStack, Template]) -> None:
    """deploy.yml/pull-request.yml assume `python -m release env`'s role ARNs: they must be these roles."""
    _, template = ci
    environment = load_environment("example")
    for kind in ("deploy", "review"):
        name = _role(template, f"-github-{kind}")["Properties"]["RoleName"]
        assert environment.role_arn(kind) == f"arn:aws:iam::123456789012:role/{name}"


def test_the_release_job_and_its_credentials_outlast_a_release(ci: tuple[CiStack, Template], synthesized: Synthesized) -> None:
    """deploy.yml follows one execution to its end with one session of the deploy role: the job's
    timeout and the session must both outlast the state machine's own bound, or the job stops
    following (expired credentials, exit 3) while the release goes on."""
    _, template = ci
    execution = synthesized.environments["example"].release.release.execution_timeout.to_seconds()
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    job = workflow["jobs"]["release"]
    (assume,) = [s for s in job["steps"] if "configure-aws-credentials" in s.get("uses", "")]
    duration = int(assume["with"]["role-duration-seconds"])
    max_session = int(_role(template, "-github-deploy")["Properties"]["MaxSessionDuration"])
    assert job["timeout-minutes"] * 60 >= execution
    assert execution <= duration <= max_session
