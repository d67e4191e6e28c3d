"""`plan`: what a release would do, read-only, with every blocker; running digests from the record."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError

from release.commands import plan as plan_command
from release.errors import ExitCode
from tests.cli.conftest import Run
from tests.cli.fakes import LEASE_TABLE, REGION, RELEASED_PARAMETER, ScriptedReleases, create_services, finished_record, push_image

NEW = "b7e1c0de"
OLD = "a1b2c3d4"


@pytest.fixture
def world(releases: ScriptedReleases) -> dict[str, str]:
    """Services with the circuit breaker on, the new tag's images, and the last release of api (OLD)."""
    create_services()
    digests = {app: push_image(f"{app}-cashsouk", NEW) for app in ("api", "admin")}
    digests["migrate"] = push_image("cashsouk-migrate", NEW)
    old = push_image("api-cashsouk", OLD)
    finished_record(
        f"{OLD}-all-mig-0000aaaa", OLD, started=datetime(2026, 11, 20, 9, 0, tzinfo=UTC), digests={"api": old, "migrate": "sha256:m"}
    )
    digests["old_api"] = old
    return digests


def _table_rows(out: str) -> dict[str, str]:
    return {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│") and line.split("│")[1].strip()}


def test_a_clean_plan(run: Run, world: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run("plan", "--image-tag", NEW) == ExitCode.OK
    out = capsys.readouterr().out
    rows = _table_rows(out)
    assert world["old_api"][:19] in rows["api"] and world["api"][:19] in rows["api"] and "changes" in rows["api"]
    assert set(rows) - {"app"} == {"api"}  # the default: the apps that use the schema
    assert f"Migration: runs first, with image {world['migrate']}" in out
    assert "No blockers: the release can start." in out


def test_nothing_is_started_or_written(run: Run, world: dict[str, str], releases: ScriptedReleases) -> None:
    table = boto3.client("dynamodb", region_name=REGION)
    before = table.scan(TableName="cashsouk-qa-release-history")["Items"]
    assert run("plan", "--image-tag", NEW, "--services", "api", "admin") == ExitCode.OK
    assert releases.executions == []
    assert table.scan(TableName="cashsouk-qa-release-history")["Items"] == before
    assert "Item" not in table.get_item(TableName=LEASE_TABLE, Key={"LeaseId": {"S": "release"}})


def test_unchanged_and_unknown_services_are_marked(run: Run, world: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    push_image("admin-cashsouk", OLD)
    assert run("plan", "--image-tag", OLD, "--services", "api", "admin", "--no-migrate") == ExitCode.OK
    out = capsys.readouterr().out
    rows = _table_rows(out)
    assert "unchanged" in rows["api"]
    assert "unknown (not released by this tool)" in rows["admin"] and "changes" in rows["admin"]
    assert "Migration: skipped (--no-migrate): the schema stays as it is" in out


def test_running_digest_from_the_released_parameter_when_no_record_has_it(
    run: Run, world: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    released = {"imageTag": "older", "digests": {"admin": "sha256:" + "ad" * 32}, "execution": None, "releasedAt": None}
    boto3.client("ssm", region_name=REGION).put_parameter(Name=RELEASED_PARAMETER, Value=json.dumps(released), Type="String")
    assert run("plan", "--image-tag", NEW, "--services", "admin", "--format", "json") == ExitCode.OK
    data = json.loads(capsys.readouterr().out)
    (admin,) = data["services"]
    assert admin["running"] == "sha256:" + "ad" * 32 and admin["running_from"] == "released parameter"
    assert admin["new"] == world["admin"] and admin["unchanged"] is False


def test_every_blocker_at_once(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    create_services(breaker={"api": {"enable": True, "rollback": False}}, controller={"admin": "CODE_DEPLOY"})
    push_image("admin-cashsouk", NEW)  # api's and the migrate image are missing
    assert run("start", "--image-tag", "other") == ExitCode.OK  # another release running
    capsys.readouterr()

    code = run("plan", "--image-tag", NEW, "--services", "api", "admin", "--format", "json")

    data = json.loads(capsys.readouterr().out)
    blockers = [b["text"] for b in data["blockers"]]
    assert code == ExitCode.IMAGE_NOT_FOUND  # the first blocker's code
    assert "api: image api-cashsouk:b7e1c0de does not exist" in blockers
    assert "migrate: image cashsouk-migrate:b7e1c0de does not exist" in blockers
    assert any(b.startswith("api: service api-cashsouk-09ff has the deployment circuit breaker with rollback off") for b in blockers)
    # The fix is a command to paste, not console clicks; it repeats the service's percentages.
    (breaker,) = [b for b in blockers if "circuit breaker" in b]
    assert breaker.endswith(
        "turn both on: aws ecs update-service --region ap-southeast-5 --cluster default --service api-cashsouk-09ff "
        "--deployment-configuration 'deploymentCircuitBreaker={enable=true,rollback=true}'"
    ), breaker
    assert any(b.startswith("admin: service admin-cashsouk-544e uses the CODE_DEPLOY deployment controller") for b in blockers)
    assert any(b.startswith("release other-1svc-mig-") and "is running" in b for b in blockers)
    assert len(blockers) == 5


def test_a_held_lease_of_a_finished_release_is_a_blocker(run: Run, world: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=LEASE_TABLE,
        Item={"LeaseId": {"S": "release"}, "Owner": {"S": "arn:aws:states:ap-southeast-5:123456789012:execution:cashsouk-qa-release:gone"}},
    )
    assert run("plan", "--image-tag", NEW, "--format", "github") == ExitCode.RELEASE_IN_PROGRESS
    out = capsys.readouterr().out
    assert out.startswith(f"### Release plan: `{NEW}` to `qa`")
    assert "| api | api-cashsouk-09ff |" in out
    assert "- :x: the lease is held by gone, which is gone (stale: free it with python -m release unlock --env qa)" in out


def test_describe_services_access_denied_is_a_note(world: dict[str, str]) -> None:
    class _Denied:
        def describe_services(self, **kwargs: object) -> object:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "DescribeServices")

    class _Aws:
        def client(self, name: str) -> _Denied:
            return _Denied()

    blockers, notes = plan_command.service_blockers(_Aws(), "default", {"api": "api-cashsouk-09ff"})  # type: ignore[arg-type]
    assert blockers == [] and notes and "no ecs:DescribeServices right" in notes[0]
