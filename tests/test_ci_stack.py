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

from config import ConfigError, EnvironmentConfig, load_config
from constructs.ci_access import ECR_PUSH_PULL_ACTIONS, github_deploy_subject, github_review_subject, github_subject_for_environment
from release.environment import load_environment
from tests.support import ROOT, Synthesized

REVIEW_ACTIONS = {"cloudformation:DescribeStacks", "cloudformation:GetTemplate"}
DEPLOY_ACTIONS = {
    *ECR_PUSH_PULL_ACTIONS,
    "states:StartExecution",
    "states:ListExecutions",
    "states:DescribeExecution",
    "states:StopExecution",
    "dynamodb:Query",
    "dynamodb:GetItem",
    "logs:FilterLogEvents",
    "logs:StartLiveTail",
    "ecs:DescribeServices",
    "ecs:DescribeTasks",  # watching a rollout: stopped tasks' reasons (tests/test_ci_watch_grants.py)
    "ecs:ListTasks",
    "dynamodb:PutItem",  # the hold item only (tests/test_ci_watch_grants.py)
    "dynamodb:DeleteItem",
    "kms:GenerateDataKey",
    "kms:Decrypt",
    "cloudformation:DescribeStacks",
    "ssm:GetParameter",
}
# Each of these would let CI read what a task definition holds (issue 9.6), or act on ECS.
FORBIDDEN_ACTIONS = {
    "states:GetExecutionHistory",
    "states:DescribeStateMachine",
    "states:DescribeStateMachineForExecution",
    "ecs:DescribeTaskDefinition",
    "ecs:UpdateService",
    "ecs:RunTask",
    "sts:AssumeRole",
}


@pytest.fixture(scope="module")
def example() -> EnvironmentConfig:
    return load_config("example")


@pytest.fixture(scope="module")
def ci(synthesized: Synthesized) -> Template:
    """The example environment's ci stack, read from the session-wide synthesis (tests/conftest.py)
    without building the constructs again."""
    return synthesized.template("example", "ci")


def _roles(template: Template) -> dict[str, dict[str, Any]]:
    return {key: dict(value) for key, value in template.find_resources("AWS::IAM::Role").items()}


def _role(template: Template, suffix: str) -> dict[str, Any]:
    (role,) = [r for r in _roles(template).values() if r["Properties"]["RoleName"].endswith(suffix)]
    return role


def _role_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role["Properties"].get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def _statements(template: Template, role_key: str) -> list[dict[str, Any]]:
    """Every statement the role gets: its inline policies and the AWS::IAM::Policy resources attached to it."""
    role = template.to_json()["Resources"][role_key]
    attached = [
        s
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_key} in policy["Properties"]["Roles"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    return _role_statements(role) + attached


def _role_key(template: Template, suffix: str) -> str:
    (key,) = [k for k, r in _roles(template).items() if r["Properties"]["RoleName"].endswith(suffix)]
    return key


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _resources(statement: dict[str, Any]) -> list[Any]:
    resources = statement["Resource"]
    return resources if isinstance(resources, list) else [resources]


def _all_statements(template: Template) -> list[dict[str, Any]]:
    return [s for key in _roles(template) for s in _statements(template, key)]


def test_only_two_roles_no_managed_policies_and_one_policy_for_the_ecr_login(ci: Template) -> None:
    template = ci
    roles = _roles(template)
    assert sorted(r["Properties"]["RoleName"] for r in roles.values()) == [
        "cashsouk-example-github-deploy",
        "cashsouk-example-github-review",
    ]
    assert all("ManagedPolicyArns" not in r["Properties"] for r in roles.values())
    template.resource_count_is("AWS::IAM::ManagedPolicy", 0)
    policies = template.find_resources("AWS::IAM::Policy").values()
    assert len(policies) == 2  # the other: ecs:ListTasks (tests/test_ci_watch_grants.py)
    (login,) = [p for p in policies if p["Properties"]["PolicyDocument"]["Statement"][0]["Sid"] == "EcrLogin"]
    assert login["Properties"]["Roles"] == [{"Ref": _role_key(template, "-github-deploy")}]
    assert login["Properties"]["PolicyDocument"]["Statement"] == [
        {"Sid": "EcrLogin", "Action": "ecr:GetAuthorizationToken", "Effect": "Allow", "Resource": "*"}
    ]


def test_deploy_role_has_exactly_the_release_actions(ci: Template) -> None:
    template = ci
    statements = _statements(template, _role_key(template, "-github-deploy"))
    actions = [action for s in statements for action in _actions(s)]
    assert all(s["Effect"] == "Allow" for s in statements)
    assert not [a for a in actions if a.lower().startswith("iam:")]
    assert sorted(a for a in actions if a.startswith("ecs:")) == ["ecs:DescribeServices", "ecs:DescribeTasks", "ecs:ListTasks"]
    assert set(actions) == DEPLOY_ACTIONS | {"ecr:GetAuthorizationToken"}


def test_deploy_role_uses_the_machines_key_only_through_step_functions(ci: Template) -> None:
    """kms: only on the release machine's data key and only via Step Functions, whose APIs this role
    may call return no history or intermediate state (docs/ci.md, "What CI may read")."""
    template = ci
    kms = [s for s in _all_statements(template) if any(a.startswith("kms:") for a in _actions(s))]
    (statement,) = kms
    assert sorted(_actions(statement)) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert statement["Condition"] == {"StringEquals": {"kms:ViaService": "states.ap-southeast-5.amazonaws.com"}}
    (key,) = _resources(statement)
    assert "Fn::ImportValue" in json.dumps(key) and "DataKey" in json.dumps(key)


def test_plan_describes_only_the_configured_services(ci: Template, example: EnvironmentConfig) -> None:
    template = ci
    by_sid = {s["Sid"]: s for s in _statements(template, _role_key(template, "-github-deploy"))}
    services = json.dumps(_resources(by_sid["PlanServices"]))
    assert len(_resources(by_sid["PlanServices"])) == len(example.apps)
    for app in example.apps:
        assert f":service/default/{app.service}" in services


@pytest.mark.parametrize("action", sorted(FORBIDDEN_ACTIONS))
def test_no_ci_principal_can_read_task_definitions_or_the_machines_data(ci: Template, action: str) -> None:
    """Issue 9.6: no history, no decryption of the machine's data, no task definitions, no bootstrap roles."""
    template = ci
    service = action.split(":", maxsplit=1)[0]
    for statement in _all_statements(template):
        for granted in _actions(statement):
            assert granted not in (action, f"{service}:*"), statement


def test_no_ci_principal_reads_the_state_machines_logs(ci: Template, synthesized: Synthesized) -> None:
    template = ci
    release = synthesized.template("example", "release")
    machine_logs = [
        key
        for key, group in release.find_resources("AWS::Logs::LogGroup").items()
        if str(group["Properties"].get("LogGroupName", "")).startswith("/aws/vendedlogs/states/")
    ]
    assert len(machine_logs) == 2  # the release machine's and the lease cleanup's
    for statement in _all_statements(template):
        if any(a.startswith("logs:") for a in _actions(statement)):
            for resource in _resources(statement):
                text = json.dumps(resource)
                assert "vendedlogs" not in text and not any(key in text for key in machine_logs)
                assert text.count("Fn::ImportValue") == 1 and "MigrateLogs" in text


def test_no_wildcard_action_anywhere(ci: Template) -> None:
    template = ci
    for statement in _all_statements(template):
        assert not [a for a in _actions(statement) if "*" in a], statement
        assert "NotAction" not in statement and "NotResource" not in statement


def test_only_the_ecr_login_has_resource_star(ci: Template) -> None:
    template = ci
    for statement in _all_statements(template):
        if "*" in _resources(statement):
            assert _actions(statement) in (["ecr:GetAuthorizationToken"], ["ecs:ListTasks"]) and _resources(statement) == ["*"]


def test_images_go_only_to_the_projects_repositories(ci: Template, example: EnvironmentConfig) -> None:
    template = ci
    (push,) = [s for s in _statements(template, _role_key(template, "-github-deploy")) if s.get("Sid") == "PushAndRetagImages"]
    imports = json.dumps(_resources(push))
    assert len(_resources(push)) == len(example.apps) + 1
    assert imports.count("Fn::ImportValue") == len(example.apps) + 1


def test_release_access_is_scoped(ci: Template) -> None:
    template = ci
    by_sid = {s["Sid"]: s for s in _statements(template, _role_key(template, "-github-deploy"))}
    assert "Fn::ImportValue" in json.dumps(by_sid["StartRelease"]["Resource"])  # the machine itself, nothing else
    assert set(_actions(by_sid["StartRelease"])) == {"states:StartExecution", "states:ListExecutions"}
    follow = json.dumps(by_sid["FollowAndStopRelease"]["Resource"])
    assert ":execution:" in follow and "Fn::Split" in follow
    assert set(_actions(by_sid["FollowAndStopRelease"])) == {"states:DescribeExecution", "states:StopExecution"}
    logs = sorted(json.dumps(r) for r in by_sid["ReadMigrateLogs"]["Resource"])
    assert all(":log-group:" in arn and "MigrateLogs" in arn for arn in logs)
    # The group itself (StartLiveTail names it) and its streams (FilterLogEvents).
    assert sorted(arn.endswith('":*"]]}') for arn in logs) == [False, True]
    stacks = json.dumps(by_sid["ReadStackOutputs"]["Resource"])
    for unit in ("data", "images", "release", "ci"):
        assert f":stack/cashsouk-example-{unit}/*" in stacks
    assert stacks.count(":stack/") == 4


def test_release_record_is_read_from_its_table_only(ci: Template) -> None:
    """docs/release.md: the CLI reads state, error and cause from the release record's table."""
    template = ci
    by_sid = {s["Sid"]: s for s in _statements(template, _role_key(template, "-github-deploy"))}
    history = by_sid["ReadReleaseHistory"]
    assert sorted(_actions(history)) == ["dynamodb:GetItem", "dynamodb:Query"]
    (resource,) = _resources(history)
    assert "Fn::ImportValue" in json.dumps(resource) and "HistoryTable" in json.dumps(resource)
    assert "/index/" not in json.dumps(resource)


@pytest.mark.parametrize(
    ("suffix", "subject"),
    [
        (
            "-github-deploy",
            "repo:Malcan-Technologies/shoraka:environment:production"
            ":job_workflow_ref:Malcan-Technologies/shoraka/.github/workflows/deploy.yml@refs/heads/main",
        ),
        (
            "-github-review",
            "repo:Malcan-Technologies/shoraka:ref:refs/heads/main"
            ":job_workflow_ref:Malcan-Technologies/shoraka/.github/workflows/pr-diff.yml@refs/heads/main",
        ),
    ],
)
def test_trust_is_exactly_one_oidc_subject(ci: Template, suffix: str, subject: str) -> None:
    """StringEquals on aud and sub, nothing else: no StringLike, no wildcard admitting another
    workflow, branch or event. The subjects are the repository's customized ones (docs/ci.md): the
    deploy role admits only deploy.yml on main in the `production` environment, the review role only
    pr-diff.yml on main (workflow_run: base-branch tooling, never a pull request's code)."""
    template = ci
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
    assert "*" not in json.dumps(statement["Condition"]) and "?" not in json.dumps(statement["Condition"])


def test_deploy_subject_follows_the_configured_environment(example: EnvironmentConfig) -> None:
    assert example.github.deploy_environment == "production"
    assert github_subject_for_environment("o/r", "staging") == "repo:o/r:environment:staging"
    deploy = github_deploy_subject("o/r", "staging", "main")
    assert deploy == "repo:o/r:environment:staging:job_workflow_ref:o/r/.github/workflows/deploy.yml@refs/heads/main"
    # The default (uncustomized) subjects of an environment, a branch and a pull request are other strings.
    assert deploy not in {"repo:o/r:environment:staging", "repo:o/r:ref:refs/heads/main", "repo:o/r:pull_request"}
    assert github_review_subject("o/r", "main") != github_deploy_subject("o/r", "main", "main")


def test_each_environment_has_its_own_deploy_subject(synthesized: Synthesized) -> None:
    subjects = set()
    for env in ("example", "sandbox"):
        role = _role(synthesized.template(env, "ci"), "-github-deploy")
        (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        subjects.add(statement["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"])
    assert len(subjects) == 2


@pytest.mark.parametrize(
    ("other", "refused"),
    [
        ({}, True),  # the default environment, production, like the example's
        ({"deploy_environment": "PRODUCTION"}, True),  # GitHub environment names ignore case
        ({"deploy_environment": "staging"}, False),
        ({"deploy_branch": "release"}, False),
        ({"repository": "other/repo"}, False),
    ],
)
def test_config_refuses_two_environments_sharing_one_deploy_subject(tmp_path: Any, other: dict[str, str], refused: bool) -> None:
    example = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    (tmp_path / "prod.yaml").write_text(yaml.safe_dump(example))
    staging = dict(example)
    staging["github"] = {k: v for k, v in example["github"].items() if k != "deploy_environment"} | other
    (tmp_path / "staging.yaml").write_text(yaml.safe_dump(staging))
    if not refused:
        assert load_config("staging", tmp_path).github.repository
        return
    with pytest.raises(ConfigError) as caught:
        load_config("staging", tmp_path)
    (line,) = str(caught.value).splitlines()
    assert "github.deploy_environment" in line and "prod.yaml" in line


def test_review_role_reads_the_four_templates_and_nothing_else(ci: Template) -> None:
    template = ci
    statements = _statements(template, _role_key(template, "-github-review"))
    (statement,) = statements
    assert set(_actions(statement)) == REVIEW_ACTIONS
    stacks = json.dumps(statement["Resource"])
    assert stacks.count(":stack/") == 4 and "sts" not in stacks and "role/" not in stacks


def test_oidc_provider_is_created_and_kept(ci: Template) -> None:
    template = ci
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


def test_role_arns_are_exported(ci: Template) -> None:
    template = ci
    outputs = template.find_outputs("*")
    assert outputs["DeployRoleArn"]["Export"] == {"Name": "cashsouk-example-ci-DeployRoleArn"}
    assert outputs["ReviewRoleArn"]["Export"] == {"Name": "cashsouk-example-ci-ReviewRoleArn"}


def test_workflows_derive_the_same_role_arns_from_the_config(ci: Template) -> None:
    """deploy.yml/pull-request.yml assume `python -m release env`'s role ARNs: they must be these roles."""
    template = ci
    environment = load_environment("example")
    for kind in ("deploy", "review"):
        name = _role(template, f"-github-{kind}")["Properties"]["RoleName"]
        assert environment.role_arn(kind) == f"arn:aws:iam::123456789012:role/{name}"


def test_the_release_job_and_its_credentials_outlast_a_release(ci: Template, synthesized: Synthesized) -> None:
    """deploy.yml follows one execution to its end with one session of the deploy role: the job's
    timeout and the session must both outlast the state machine's own bound, or the job stops
    following (expired credentials, exit 3) while the release goes on."""
    template = ci
    execution = synthesized.construct_definitions["example"]["definition"]["TimeoutSeconds"]
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    job = workflow["jobs"]["release"]
    (assume,) = [s for s in job["steps"] if "configure-aws-credentials" in s.get("uses", "")]
    duration = int(assume["with"]["role-duration-seconds"])
    max_session = int(_role(template, "-github-deploy")["Properties"]["MaxSessionDuration"])
    assert job["timeout-minutes"] * 60 >= execution
    assert execution <= duration <= max_session
