"""What one release costs in Step Functions transitions and waiting, against the old GitHub job.

    PATH=node_modules/.bin:$PATH .venv/bin/python bench/release_bench.py

Runs the synthesized release definition of the example environment in the test interpreter (the
same fakes and virtual clock as tests/release): a migration of 60 s, then rollouts of 5 minutes,
in both rollout poll modes ("retry", the default, and "wait-loop"; docs/release.md, "How a rollout
is polled"). Transitions are counted from the execution's event history the way Step Functions
bills them (every state entered, every retry). Prints figures; asserts nothing.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from constructs.release_definition import ROLLOUT_POLL_MODES  # noqa: E402
from tests.release.driver import Execution, interpreter_session  # noqa: E402
from tests.release.fakes import MigrationPlan, RolloutPlan  # noqa: E402
from tests.release.synth import example_definition  # noqa: E402
from tests.release.world import APPS, build_world  # noqa: E402

PRICE_PER_TRANSITION = 0.025 / 1000  # Step Functions Standard, USD
RUNNER_PER_MINUTE = 0.008  # assumption: GitHub-hosted Linux 2-core runner, USD per minute
ROLLOUT_SECONDS = 300
MIGRATION_SECONDS = 60
OLD_POLL_SECONDS = 15
OLD_TASK_WAIT_LIMIT = 10 * 60  # `aws ecs wait tasks-stopped`: 40 polls x 15 s
OLD_ROLLOUT_LIMIT = 80 * 15  # the rollout loop: 80 x 15 s
# The states a rollout poll goes through ("retry": WaitForRollout alone, once per retry).
POLL_STATES = {"PollDelay", "WaitForRollout", "RolloutProgress"}


def release(definition: dict[str, Any], services: list[str]) -> Execution:
    with interpreter_session() as sfn:
        fake = build_world(sfn.reset())
        fake.migration = MigrationPlan(exit_code=0, duration=MIGRATION_SECONDS)
        for app in APPS:
            fake.rollouts[app.service] = RolloutPlan(rollout_seconds=ROLLOUT_SECONDS)
        machine = sfn.machine(definition, "bench")
        result = sfn.run(machine, {"imageTag": "abc1234", "services": services})
        if result.status != "SUCCEEDED":
            raise SystemExit(f"the benchmark release failed: {result.error}: {result.cause}")
        return result


def poll_transitions(result: Execution) -> int:
    """Transitions spent polling rollouts: poll states entered, and WaitForRollout's retries."""
    by_id = {event["id"]: event for event in result.history}
    count, state = 0, ""
    for event in result.history:  # one service at a time: a rollout's events do not interleave
        if event["type"].endswith("StateEntered"):
            state = event["stateEnteredEventDetails"]["name"]
            count += state in POLL_STATES
        elif event["type"] == "TaskScheduled" and state in POLL_STATES:
            count += by_id[event["previousEventId"]]["type"] != "TaskStateEntered"
    return count


def cost(transitions: int) -> str:
    return f"${transitions * PRICE_PER_TRANSITION:.5f}"


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> None:
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
    definitions: dict[str, dict[str, Any]] = {"retry": example_definition("retry"), "wait-loop": example_definition("wait-loop")}
    assert tuple(definitions) == ROLLOUT_POLL_MODES
    deploy = definitions["retry"]["States"]["DeployServices"]["ItemProcessor"]["States"]
    poll = deploy["WaitForRollout"]["Retry"][0]["IntervalSeconds"]
    poll_budget = deploy["WaitForRollout"]["Retry"][0]["MaxAttempts"]
    wait_loop = definitions["wait-loop"]["States"]["DeployServices"]["ItemProcessor"]["States"]
    assert (
        wait_loop["PollDelay"]["Seconds"] == poll and f"$polls < {poll_budget} " in wait_loop["RolloutProgress"]["Choices"][1]["Condition"]
    )
    lease_poll = definitions["retry"]["States"]["AcquireLease"]["Retry"][0]["IntervalSeconds"]
    print(f"Release of the example environment: migration {MIGRATION_SECONDS} s, each rollout {ROLLOUT_SECONDS} s.\n")
    print(
        row(
            "release",
            "retry (default): transitions",
            "of which rollout polls",
            "Step Functions cost",
            "wait-loop: transitions",
            "of which rollout polls",
            "Step Functions cost",
        )
    )
    print(row("---", "---", "---", "---", "---", "---", "---"))
    for label, services in (("api only", ["api"]), ("all five services", [a.key for a in APPS])):
        cells: list[object] = [label]
        for mode in ROLLOUT_POLL_MODES:
            result = release(definitions[mode], services)
            cells += [result.transitions, poll_transitions(result), cost(result.transitions)]
        print(row(*cells))
    one_service_minutes = math.ceil((MIGRATION_SECONDS + ROLLOUT_SECONDS) / 60) + 1  # + checkout/setup
    five_service_minutes = math.ceil((MIGRATION_SECONDS + 5 * ROLLOUT_SECONDS) / 60) + 1
    print()
    print("Waiting the machine adds beyond ECS's own work (worst case per wait = the poll interval):")
    print(row("wait", "release state machine", "old GitHub Actions job"))
    print(row("---", "---", "---"))
    print(row("migration task to stop", "none: ecs:runTask.sync reacts to the task's stop event", f"up to {OLD_POLL_SECONDS} s"))
    print(
        row(
            "each service rollout",
            f"up to {poll} s (retry: DescribeServices retried every {poll} s; wait-loop: a {poll} s Wait between polls)",
            f"up to {OLD_POLL_SECONDS} s",
        )
    )
    print(
        row("another release running", f"up to {lease_poll} s (lease retried every {lease_poll} s)", "no wait: the old lock did not lock")
    )
    print(
        row(
            "give-up limits",
            f"migration {definitions['retry']['States']['RunMigration']['TimeoutSeconds']} s (then stopped), rollout {poll * poll_budget} s",
            f"tasks-stopped {OLD_TASK_WAIT_LIMIT} s (task keeps running), rollout {OLD_ROLLOUT_LIMIT} s",
        )
    )
    print()
    print("Cost of the waiting itself, per release (assumption: GitHub-hosted Linux 2-core runner at $0.008/min,")
    print("billed per started minute; the state machine's figure is its transitions above):")
    print(row("release", "old job runner minutes", "old job cost"))
    print(row("---", "---", "---"))
    print(row("api only", one_service_minutes, f"${one_service_minutes * RUNNER_PER_MINUTE:.3f}"))
    print(row("all five services", five_service_minutes, f"${five_service_minutes * RUNNER_PER_MINUTE:.3f}"))


if __name__ == "__main__":
    main()
