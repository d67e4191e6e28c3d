"""What one release costs in Step Functions transitions and waiting, against the old GitHub job.

    .venv/bin/python bench/release_bench.py

Runs the example environment's release definition (a fresh synthesis) in the emulator (the same
interpreter, fakes and virtual clock as tests/release): a migration of 60 s, then rollouts of 5
minutes. Transitions are counted from the execution's event history the way Step Functions bills
them (every state entered, every retry). Prints figures; asserts only what it reports on (a
release that failed is not measured).
"""

from __future__ import annotations

import logging
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulation.driver import Execution, interpreter_session  # noqa: E402
from emulation.fakes import MigrationPlan, RolloutPlan  # noqa: E402
from emulation.resolve import resolve_definition  # noqa: E402
from emulation.synth import EXAMPLE_RELEASE, synthesized_templates  # noqa: E402
from emulation.world import APPS, build_world  # noqa: E402

PRICE_PER_TRANSITION = 0.025 / 1000  # Step Functions Standard, USD
RUNNER_PER_MINUTE = 0.008  # assumption: GitHub-hosted Linux 2-core runner, USD per minute
ROLLOUT_SECONDS = 300
MIGRATION_SECONDS = 60
OLD_POLL_SECONDS = 15
POLL_STATES = {"RolloutPollDelay", "WaitForRollout", "RolloutProgress"}
MIGRATION_POLL_STATES = {"MigrationPollDelay", "DescribeMigration", "MigrationProgress"}


def release(definition: dict[str, Any], services: list[str], *, throttle: str | None = None) -> Execution:
    with interpreter_session() as sfn:
        fake = build_world(sfn.reset())
        fake.migration = MigrationPlan(exit_code=0, duration=MIGRATION_SECONDS)
        for app in APPS:
            fake.rollouts[app.service] = RolloutPlan(rollout_seconds=ROLLOUT_SECONDS)
        if throttle:
            fake.fail(throttle, "ThrottlingException", times=2)
        result = sfn.run(sfn.machine(definition, "bench"), {"imageTag": "abc1234", "services": services})
        if result.status != "SUCCEEDED":
            raise SystemExit(f"the benchmark release failed: {result.error}: {result.cause}")
        return result


def cost(transitions: int) -> str:
    return f"${transitions * PRICE_PER_TRANSITION:.4f}"


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> None:
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
    definition = resolve_definition(synthesized_templates(), EXAMPLE_RELEASE)
    states = definition["States"]
    poll = states["RolloutPollDelay"]["Seconds"]
    migration_poll = states["MigrationPollDelay"]["Seconds"]
    lease_poll = states["AcquireLease"]["Retry"][0]["IntervalSeconds"]
    print(f"Release of the example environment: migration {MIGRATION_SECONDS} s, each rollout {ROLLOUT_SECONDS} s.\n")
    print(row("release", "transitions", "of which polls (migration / rollouts)", "retries", "history events", "Step Functions cost"))
    print(row("---", "---", "---", "---", "---", "---"))
    for label, services in (("api only", ["api"]), ("all five services", [a.key for a in APPS])):
        result = release(definition, services)
        entered = Counter(result.states_entered)
        polls = (sum(entered[s] for s in MIGRATION_POLL_STATES), sum(entered[s] for s in POLL_STATES))
        retries = result.transitions - len(result.states_entered)
        print(row(label, result.transitions, f"{polls[0]} / {polls[1]}", retries, len(result.history), cost(result.transitions)))
    throttled = release(definition, ["api"], throttle="UpdateService")
    print(
        f"\nThe same api-only release with UpdateService throttled twice: {throttled.transitions} transitions "
        f"({throttled.transitions - len(throttled.states_entered)} retries), still SUCCEEDED."
    )
    one_service_minutes = math.ceil((MIGRATION_SECONDS + ROLLOUT_SECONDS) / 60) + 1  # + checkout/setup
    five_service_minutes = math.ceil((MIGRATION_SECONDS + 5 * ROLLOUT_SECONDS) / 60) + 1
    print("\nLatency the machine adds beyond ECS's own work (worst case per wait = the poll interval):")
    print(row("wait", "release state machine", "old GitHub Actions job"))
    print(row("---", "---", "---"))
    print(
        row("migration task to stop", f"up to {migration_poll} s (DescribeTasks every {migration_poll} s)", f"up to {OLD_POLL_SECONDS} s")
    )
    print(row("each service rollout", f"up to {poll} s (DescribeServices every {poll} s)", f"up to {OLD_POLL_SECONDS} s"))
    print(
        row("another release running", f"up to {lease_poll} s (lease retried every {lease_poll} s)", "no wait: the old lock did not lock")
    )
    print("\nThe old job's runner minutes for the same releases (assumption: $0.008/min, billed per started minute):")
    print(row("release", "old job runner minutes", "old job cost"))
    print(row("---", "---", "---"))
    print(row("api only", one_service_minutes, f"${one_service_minutes * RUNNER_PER_MINUTE:.3f}"))
    print(row("all five services", five_service_minutes, f"${five_service_minutes * RUNNER_PER_MINUTE:.3f}"))


if __name__ == "__main__":
    main()
