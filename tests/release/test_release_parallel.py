"""Parallel rollouts (constructs/release_machine/deploy.py), executed: services roll out at once,
in the waves `after:` defines, at most `max_parallel_rollouts` at a time; a failure starts no
new service; every deployment id is in the record as soon as UpdateService returns."""

from __future__ import annotations

import copy
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import ConfigError, load_config
from constructs.release_machine.asl import AppTarget, DefinitionSettings
from constructs.release_machine.definition import build_release
from emulation.driver import Interpreter
from emulation.fakes import FakeAws, RolloutPlan
from emulation.interpreter import CLOCK
from emulation.world import APPS, BY_KEY, build_world
from release import contract, limits
from tests.release.test_release_machine import OTHER_EXECUTION, TAG, assert_lease_released, record, untouched_services
from tests.support import ROOT

ROLLOUT = 60  # six polls: enough to tell overlapping rollouts from consecutive ones, and cheap to emulate


@pytest.fixture
def fake(sfn: Interpreter) -> FakeAws:
    fake = build_world(sfn.reset())
    for app in APPS:
        fake.rollouts[app.service] = RolloutPlan(rollout_seconds=ROLLOUT)
    return fake


def variant(definition: dict[str, Any], *, concurrency: int | None = None, waves: dict[str, int] | None = None) -> dict[str, Any]:
    """The synthesized definition with another MaxConcurrency or other `after:` waves (what a
    config with release.max_parallel_rollouts or apps[].after synthesizes: test_deploy_wave_follows_the_config)."""
    changed = copy.deepcopy(definition)
    wave = changed["States"]["DeployWave"]
    if concurrency is not None:
        wave["MaxConcurrency"] = concurrency
    if waves is not None:
        example = json.dumps({a.key: 0 for a in APPS}, separators=(",", ":"))
        assert example in wave["Items"]
        wave["Items"] = wave["Items"].replace(example, json.dumps(waves, separators=(",", ":")))
        rule = changed["States"]["NextWave"]["Choices"][0]
        assert "$waveIndex < 1 " in rule["Condition"]
        rule["Condition"] = rule["Condition"].replace("$waveIndex < 1 ", f"$waveIndex < {max(waves.values()) + 1} ")
    return changed


@pytest.fixture(scope="module")
def one_at_a_time(sfn: Interpreter, definition: dict[str, Any]) -> str:
    return sfn.machine(variant(definition, concurrency=1), "release-one-at-a-time")


@pytest.fixture(scope="module")
def web_after_api(sfn: Interpreter, definition: dict[str, Any]) -> str:
    return sfn.machine(variant(definition, waves={"api": 0, "admin": 1, "investor": 1, "issuer": 1, "landing": 1}), "release-web-after-api")


def updates(fake: FakeAws) -> dict[str, float]:
    return {c.params["service"]: c.at for c in fake.calls_of("UpdateService")}


def test_five_services_roll_out_at_once_and_take_one_rollout(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    result = sfn.run(machine, {"imageTag": TAG, "services": [a.key for a in APPS], "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    started = updates(fake)
    assert set(started) == {a.service for a in APPS}
    # Every UpdateService before any rollout could have ended: they overlap.
    assert max(started.values()) - min(started.values()) < limits.POLL_SECONDS
    last_poll = max(c.at for c in fake.calls_of("DescribeServices"))
    assert last_poll - min(started.values()) == pytest.approx(ROLLOUT, abs=limits.POLL_SECONDS)
    assert [v["outcome"] for v in result.output["services"].values()] == ["deployed"] * 5
    assert CLOCK.forced_jumps == 0
    assert_lease_released(fake, result)


def test_at_most_max_parallel_rollouts_at_once(sfn: Interpreter, one_at_a_time: str, fake: FakeAws) -> None:
    result = sfn.run(one_at_a_time, {"imageTag": TAG, "services": ["api", "admin", "landing"], "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    times = sorted(updates(fake).values())
    assert [b - a >= ROLLOUT for a, b in itertools.pairwise(times)] == [True, True]


def test_a_failure_starts_no_new_service_and_names_each_outcome(sfn: Interpreter, one_at_a_time: str, fake: FakeAws) -> None:
    api, admin = BY_KEY["api"], BY_KEY["admin"]
    fake.rollouts[admin.service] = RolloutPlan(outcome="FAILED", rollout_seconds=90, reason="tasks failed to start")
    result = sfn.run(one_at_a_time, {"imageTag": TAG, "services": ["api", "admin", "landing"], "migrate": False})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    assert [c.params["service"] for c in fake.calls_of("UpdateService")] == [api.service, admin.service]
    api_revision = fake.latest(api.family)["taskDefinitionArn"]
    assert result.cause.startswith(f"service {admin.service} (admin) was not deployed: rollout FAILED")
    assert result.cause.endswith(f"; already deployed: api ({api_revision}); not touched: landing")
    services = record(fake)["services"]
    assert services["landing"]["outcome"] == "untouched" and "another service of this release failed" in services["landing"]["reason"]
    assert services["admin"]["outcome"] == "failed" and services["admin"]["deploymentId"].startswith("ecs-svc/")
    untouched_services(fake, except_=("api", "admin"))
    assert_lease_released(fake, result)


def test_a_failure_lets_the_rollouts_already_started_finish(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    fake.rollouts[BY_KEY["admin"].service] = RolloutPlan(outcome="FAILED", rollout_seconds=30, reason="tasks failed to start")
    result = sfn.run(machine, {"imageTag": TAG, "services": ["api", "admin", "landing"], "migrate": False})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    outcomes = {k: v["outcome"] for k, v in record(fake)["services"].items()}
    assert outcomes == {"api": "deployed", "admin": "failed", "landing": "deployed"}
    # The release waited for api and landing to end (5 minutes), not only for admin's failure.
    failed_at = max(c.at for c in fake.calls_of("DescribeServices"))
    assert failed_at - min(updates(fake).values()) >= ROLLOUT


def test_a_web_app_after_the_api_starts_when_the_api_has_rolled_out(sfn: Interpreter, web_after_api: str, fake: FakeAws) -> None:
    result = sfn.run(web_after_api, {"imageTag": TAG, "services": ["landing", "api", "admin"], "migrate": False})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    started = updates(fake)
    api, admin, landing = (BY_KEY[k].service for k in ("api", "admin", "landing"))
    assert started[landing] - started[api] >= ROLLOUT and started[admin] - started[api] >= ROLLOUT
    assert started[landing] - started[admin] == pytest.approx(0, abs=limits.POLL_SECONDS)  # the same wave


def test_a_failed_wave_starts_no_later_wave(sfn: Interpreter, web_after_api: str, fake: FakeAws) -> None:
    fake.rollouts[BY_KEY["api"].service] = RolloutPlan(outcome="FAILED", rollout_seconds=60, reason="health checks failed")
    result = sfn.run(web_after_api, {"imageTag": TAG, "services": ["api", "landing"], "migrate": False})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    assert list(updates(fake)) == [BY_KEY["api"].service]
    assert result.cause.endswith("; already deployed: none; not touched: landing")
    assert [s for s in result.states_entered if s == "DeployWave"] == ["DeployWave"]


def test_a_lease_lost_mid_deploy_is_release_in_progress_and_touches_nothing_more(
    sfn: Interpreter, one_at_a_time: str, fake: FakeAws
) -> None:
    update_service = fake._ecs_UpdateService

    def update_then_lose_the_lease(*args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = update_service(*args, **kwargs)
        fake.lease_items[contract.LEASE_ID] = {"LeaseId": {"S": contract.LEASE_ID}, "Owner": {"S": OTHER_EXECUTION}}
        return answer

    fake._ecs_UpdateService = update_then_lose_the_lease  # type: ignore[method-assign]
    result = sfn.run(one_at_a_time, {"imageTag": TAG, "services": ["api", "admin"], "migrate": False})
    assert (result.status, result.error) == ("FAILED", "ReleaseInProgress")
    assert "no longer holds the release lease" in result.cause and "already deployed: api" in result.cause
    assert list(updates(fake)) == [BY_KEY["api"].service]
    assert record(fake)["leaseReleased"] is True
    assert fake.lease_items[contract.LEASE_ID]["Owner"] == {"S": OTHER_EXECUTION}  # another's lease is left alone


def test_each_deployment_is_in_the_record_while_it_rolls_out(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    for app in APPS:
        fake.rollouts[app.service] = RolloutPlan(rollout_seconds=6 * 3600)
    execution = sfn.start(machine, {"imageTag": TAG, "services": ["api", "admin"], "migrate": False})
    deadline = time.monotonic() + 60

    def written() -> list[str]:
        (item,) = fake.history.values() or [{}]
        return sorted(k for k in item if k.startswith(contract.RECORD_DEPLOYMENT_PREFIX))

    while len(written()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    sfn.sfn.stop_execution(executionArn=execution)
    assert sfn.wait(execution).status == "ABORTED"
    assert written() == ["Deployment_admin", "Deployment_api"]
    (item,) = fake.history.values()
    for key in ("api", "admin"):
        deployment = json.loads(item[contract.RECORD_DEPLOYMENT_PREFIX + key]["S"])
        assert deployment["deploymentId"] == update_id(fake, BY_KEY[key].service)
        assert deployment["state"] == "IN_PROGRESS" and deployment["service"] == BY_KEY[key].service
        assert deployment["taskDefinition"] == fake.latest(BY_KEY[key].family)["taskDefinitionArn"]


def update_id(fake: FakeAws, service: str) -> str:
    (deployment,) = [d for d in fake.services[service]["deployments"] if d["rolloutState"] == "IN_PROGRESS"]
    return str(deployment["id"])


def test_a_long_reason_is_cut_so_the_map_output_stays_bounded(sfn: Interpreter, machine: str, fake: FakeAws) -> None:
    for app in APPS:
        fake.rollouts[app.service] = RolloutPlan(outcome="FAILED", rollout_seconds=30, reason="x" * 20_000)
    result = sfn.run(machine, {"imageTag": TAG, "services": [a.key for a in APPS], "migrate": False})
    assert (result.status, result.error) == ("FAILED", "DeploymentFailed")
    (exited,) = [e for e in result.history if e["type"] == "MapStateExited" and e["stateExitedEventDetails"]["name"] == "DeployWave"]
    output = exited["stateExitedEventDetails"]["output"]
    assert len(output.encode()) <= limits.map_output_bytes(len(APPS))
    assert all(len(v["reason"]) == limits.MAX_REASON_CHARS for v in record(fake)["services"].values())


# ---- the config ------------------------------------------------------------------------------------
def _config_with(tmp_path: Path, change: Any) -> Path:
    data = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    change(data)
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ({"landing": ["web"]}, "apps[4].after: unknown app web (apps: api, admin, investor, issuer, landing)"),
        ({"api": ["landing"], "landing": ["api"]}, "apps[0].after: a cycle, api -> landing -> api"),
        ({"admin": ["admin"]}, "apps[1].after: a cycle, admin -> admin"),
    ],
)
def test_an_order_that_cannot_be_followed_is_refused_in_one_line(tmp_path: Path, after: dict[str, list[str]], expected: str) -> None:
    def change(data: dict[str, Any]) -> None:
        for app in data["apps"]:
            app["after"] = after.get(app["name"], [])

    with pytest.raises(ConfigError) as raised:
        load_config("broken", _config_with(tmp_path, change))
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_waves_follow_the_longest_chain_of_after() -> None:
    waves = limits.rollout_waves({"api": [], "admin": ["api"], "landing": ["admin", "api"], "issuer": []})
    assert waves == {"api": 0, "admin": 1, "landing": 2, "issuer": 0}


def test_deploy_wave_follows_the_config(definition: dict[str, Any]) -> None:
    # The example: no `after`, one wave of all five, five at once (release.max_parallel_rollouts).
    wave = definition["States"]["DeployWave"]
    assert wave["MaxConcurrency"] == load_config("example").release.max_parallel_rollouts == 5
    assert json.dumps({a.key: 0 for a in APPS}, separators=(",", ":")) in wave["Items"]
    assert "$waveIndex < 1 " in definition["States"]["NextWave"]["Choices"][0]["Condition"]


def test_after_and_max_parallel_rollouts_shape_the_definition() -> None:
    # Built from the settings directly (no synthesis): waves from `after:`, MaxConcurrency from
    # release.max_parallel_rollouts, and the wave loop as long as the longest chain.
    def target(app: str, *after: str) -> AppTarget:
        return AppTarget(app, f"{app}-svc", f"arn:svc/{app}", "Main", app, f"uri/{app}", f"arn:repo/{app}", app == "api", after)

    apps = [target("api"), target("admin", "api"), target("landing", "admin"), target("issuer")]
    settings = DefinitionSettings(
        cluster_name="default",
        cluster_arn="arn:cluster",
        migrate_family="migrate",
        migrate_task_definitions_arn="arn:td/migrate:*",
        cluster_tasks_arn="arn:task/default/*",
        all_task_definitions_arn="arn:td/*",
        migrate_repository_name="migrate",
        migrate_repository_uri="uri/migrate",
        migrate_repository_arn="arn:repo/migrate",
        lease_table_name="t-lease",
        lease_table_arn="arn:t-lease",
        history_table_name="t-history",
        history_table_arn="arn:t-history",
        released_parameter_name="x",
        released_parameter_arn="x",
        subnet_ids=["s"],
        security_group_ids=["g"],
        pass_role_arns=[],
        apps=apps,
        lease_wait_seconds=60,
        migrate_timeout_seconds=600,
        rollout_timeout_seconds=600,
        execution_timeout_seconds=7200,
        max_parallel_rollouts=2,
    )
    definition, _ = build_release(settings)
    wave = definition["States"]["DeployWave"]
    assert wave["MaxConcurrency"] == 2
    assert '{"api":0,"admin":1,"landing":2,"issuer":0}' in wave["Items"]
    assert "$waveIndex < 3 " in definition["States"]["NextWave"]["Choices"][0]["Condition"]
    assert "RestorePoint" not in definition["States"]  # no database configured: no restore point phase
