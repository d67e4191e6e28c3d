"""The CLI's calls are authorized as the deploy role (tests/cli/iam.py): one statement removed, the
CLI fails with AWS's access error in one line; `unlock` needs the operator; no call goes unchecked."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from emulation.authorization import CLI_RULES, NO_AUTHORIZATION, DeniedError
from release import contract
from release.aws import Aws
from release.environment import load_environment
from release.errors import ExitCode
from tests.cli.conftest import Run
from tests.cli.fakes import ACCOUNT, ENV, LEASE_TABLE, REGION, STATE_MACHINE, ScriptedReleases, release_script, success_record
from tests.cli.iam import CliIam

SHA = "3f9c2a7d1e4b8c6a0f5d2e9b7a1c4d8e6f0a2b3c"
STALE_OWNER = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STATE_MACHINE}:v0-all-mig-00000000"


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_start_without_the_start_statement_fails_with_access_denied_and_starts_nothing(
    run: Run, releases: ScriptedReleases, cli_iam: CliIam, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_iam.authorizer.revoked[cli_iam.deploy_role] = {"StartRelease"}
    assert run("start", "--image-tag", SHA) == ExitCode.AWS
    line = _one_line(capsys.readouterr().err)
    assert "AccessDeniedException: User: arn:aws:iam::123456789012:role/cashsouk-example-github-deploy is not authorized" in line
    assert ":stateMachine:cashsouk-example-release" in line
    assert releases.executions == []
    refused = [call for call in cli_iam.calls if call.refused]
    assert [(c.service, c.refused) for c in refused] == [("stepfunctions", "AccessDeniedException")]


def test_start_without_the_data_key_fails_with_kms_access_denied(
    run: Run, releases: ScriptedReleases, cli_iam: CliIam, capsys: pytest.CaptureFixture[str]
) -> None:
    # The release machine is encrypted with the data key: StartExecution needs it, through Step Functions.
    cli_iam.authorizer.revoked[cli_iam.deploy_role] = {"StartWithTheReleaseDataKey"}
    assert run("start", "--image-tag", SHA) == ExitCode.AWS
    line = _one_line(capsys.readouterr().err)
    assert "starting the release: KmsAccessDeniedException:" in line and "kms:GenerateDataKey" in line
    assert releases.executions == []


def test_reading_the_stacks_needs_describe_stacks(run: Run, cli_iam: CliIam, capsys: pytest.CaptureFixture[str]) -> None:
    cli_iam.authorizer.revoked[cli_iam.deploy_role] = {"cloudformation:DescribeStacks"}
    assert run("status") == ExitCode.AWS
    line = _one_line(capsys.readouterr().err)
    assert "AccessDenied: User:" in line and "cloudformation:DescribeStacks on resource: arn:aws:cloudformation:" in line


def _take_lease(owner: str) -> None:
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=LEASE_TABLE,
        Item={"LeaseId": {"S": contract.LEASE_ID}, "Owner": {"S": owner}, "ExpiresAt": {"N": str(int(time.time()) + 3600)}},
    )


def _lease_held() -> bool:
    item = boto3.client("dynamodb", region_name=REGION).get_item(TableName=LEASE_TABLE, Key={"LeaseId": {"S": contract.LEASE_ID}})
    return "Item" in item


def test_unlock_is_refused_to_the_deploy_role_and_allowed_to_the_operator(
    run: Run, releases: ScriptedReleases, cli_iam: CliIam, capsys: pytest.CaptureFixture[str]
) -> None:
    _take_lease(STALE_OWNER)
    cli_iam.operator_commands = frozenset()  # `unlock` run with CI's credentials
    assert run("unlock", "--yes") == ExitCode.AWS
    line = _one_line(capsys.readouterr().err)
    assert "freeing the release lease: AccessDeniedException:" in line and "dynamodb:DeleteItem" in line
    assert _lease_held()
    # The deploy role's DeleteItem is for the hold item only: the lease's key was sent and refused.
    (refused,) = [call for call in cli_iam.calls if call.refused]
    assert refused.principal == cli_iam.deploy_role
    assert refused.requests[0].action == "dynamodb:DeleteItem"
    assert refused.requests[0].context == (("dynamodb:LeadingKeys", (contract.LEASE_ID,)),)

    cli_iam.reset()  # a person's credentials again
    assert run("unlock", "--yes") == ExitCode.OK
    assert not _lease_held()
    (delete,) = [call for call in cli_iam.calls if call.operation == "DeleteItem" and not call.refused]
    assert delete.principal == cli_iam.operator
    assert delete.requests[0].context == (("dynamodb:LeadingKeys", (contract.LEASE_ID,)),)


def test_hold_is_the_deploy_roles_and_touches_the_hold_item_only(run: Run, releases: ScriptedReleases, cli_iam: CliIam) -> None:
    assert run("hold", "--reason", "incident INC-7") == ExitCode.OK
    assert run("unhold") == ExitCode.OK
    writes = [call for call in cli_iam.calls if call.operation in {"PutItem", "DeleteItem"}]
    assert {call.operation for call in writes} == {"PutItem", "DeleteItem"}
    for call in writes:
        assert call.principal == cli_iam.deploy_role and not call.refused
        assert call.requests[0].context == (("dynamodb:LeadingKeys", (contract.HOLD_ID,)),)


def test_every_call_of_a_followed_release_is_authorized(
    run: Run, releases: ScriptedReleases, cli_iam: CliIam, capsys: pytest.CaptureFixture[str]
) -> None:
    releases.script = release_script({"status": "SUCCEEDED", "record": success_record(("api",))})
    assert run("start", "--image-tag", SHA, "--wait", "--poll-interval", "1") == ExitCode.OK
    assert run("status") == ExitCode.OK
    assert run("history") == ExitCode.OK
    operations = {(call.service, call.operation) for call in cli_iam.calls}
    assert {("stepfunctions", "StartExecution"), ("stepfunctions", "DescribeExecution"), ("cloudformation", "DescribeStacks")} <= operations
    assert {("logs", "FilterLogEvents"), ("dynamodb", "Query")} & operations
    assert operations <= set(CLI_RULES) | NO_AUTHORIZATION
    for call in cli_iam.calls:
        assert call.exempt or call.requests, call  # every call but GetCallerIdentity needed a decision
        assert not call.refused, call
    assert cli_iam.unchecked == []
    # The history's partition key, read from the key condition, is what a LeadingKeys condition sees.
    queries = [call for call in cli_iam.calls if call.operation == "Query"]
    assert queries and {call.requests[0].context for call in queries} == {(("dynamodb:LeadingKeys", (contract.RECORD_PARTITION,)),)}


def test_an_operation_without_a_row_is_refused(stacks: None, config_dir: Path, cli_iam: CliIam) -> None:
    aws = Aws(load_environment(ENV, config_dir), boto3.Session())
    with pytest.raises(ClientError) as refused:
        aws.client("ecs").list_clusters()
    assert refused.value.response["Error"]["Code"] == "EmulatorHasNoAuthorizationRule"


def test_a_call_without_a_decision_is_noticed(stacks: None, cli_iam: CliIam) -> None:
    client = boto3.Session().client("sts", region_name=REGION)
    client.meta.events.register("after-call", cli_iam._answered)  # the check alone, no authorization
    client.get_caller_identity()
    assert cli_iam.unchecked == ["sts:GetCallerIdentity"]
    cli_iam.unchecked.clear()  # the fixture would fail this test for it


def test_following_and_stopping_a_release_need_no_key(
    run: Run, releases: ScriptedReleases, cli_iam: CliIam, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI asks DescribeExecution for METADATA_ONLY and stops without error and cause: with the
    data key's statement removed after the start, status and stop still work."""
    assert run("start", "--image-tag", SHA) == ExitCode.OK
    cli_iam.authorizer.revoked[cli_iam.deploy_role] = {"StartWithTheReleaseDataKey"}
    assert run("status") == ExitCode.OK
    assert run("stop", "--yes") == ExitCode.OK, capsys.readouterr().err
    assert releases.executions[0].status == "ABORTED"
    assert not [call for call in cli_iam.calls if call.refused]


def test_reading_execution_data_or_stopping_with_a_cause_would_need_the_key(cli_iam: CliIam) -> None:
    machine = next(m for m in cli_iam.account.machines.values() if m.arn.endswith(":stateMachine:cashsouk-example-release"))
    execution = machine.arn.replace(":stateMachine:", ":execution:") + ":v1-all-mig-00000000"
    cli_iam.authorizer.revoked[cli_iam.deploy_role] = {"StartWithTheReleaseDataKey"}
    authorize = cli_iam.authorizer.authorize_client_call
    assert (
        len(
            authorize(
                cli_iam.deploy_role, "stepfunctions", "DescribeExecution", {"executionArn": execution, "includedData": "METADATA_ONLY"}
            )
        )
        == 1
    )
    assert len(authorize(cli_iam.deploy_role, "stepfunctions", "StopExecution", {"executionArn": execution})) == 1
    for operation, params in (
        ("DescribeExecution", {"executionArn": execution}),
        ("StopExecution", {"executionArn": execution, "error": "Stopped", "cause": "by hand"}),
    ):
        with pytest.raises(DeniedError) as denied:
            authorize(cli_iam.deploy_role, "stepfunctions", operation, params)
        assert denied.value.code == "KmsAccessDeniedException" and denied.value.request.resource == machine.key_arn
