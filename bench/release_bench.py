"""What one release costs in Step Functions transitions and waiting, against the old GitHub job.

    .venv/bin/python bench/release_bench.py

Runs the example environment's release definition (a fresh synthesis) in the emulator (the same
interpreter, fakes and discrete-event clock as tests/release): a migration of 60 s, then rollouts
of 5 minutes. Time is the emulator's clock (concurrent waits overlap as on AWS), transitions are
counted from the execution's event history the way Step Functions bills them (every state
entered, every retry). Prints figures; asserts only what it reports on (a release that failed, or
a clock that had to be forced, is not measured).
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
from emulation.interpreter import CLOCK  # noqa: E402
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


SNAPSHOT_SECONDS = 600  # assumption: AWS documents no duration ("varies with the size of your databases")


def release(
    definition: dict[str, Any], services: list[str], *, throttle: str | None = None, snapshot: bool = False
) -> tuple[Execution, float]:
    """One release in the emulator; its result and its length in emulated seconds."""
    with interpreter_session() as sfn:
        fake = build_world(sfn.reset())
        fake.migration = MigrationPlan(exit_code=0, duration=MIGRATION_SECONDS)
        fake.snapshot_seconds = SNAPSHOT_SECONDS
        for app in APPS:
            fake.rollouts[app.service] = RolloutPlan(rollout_seconds=ROLLOUT_SECONDS)
        if throttle:
            fake.fail(throttle, "ThrottlingException", times=2)
        payload: dict[str, Any] = {"imageTag": "abc1234", "services": services, **({"snapshot": True} if snapshot else {})}
        result = sfn.run(sfn.machine(definition, "bench"), payload)
        if result.status != "SUCCEEDED":
            raise SystemExit(f"the benchmark release failed: {result.error}: {result.cause}")
        if CLOCK.forced_jumps:
            raise SystemExit(f"the emulated clock was forced {CLOCK.forced_jumps} times: the figures would not be emulated time")
        return result, CLOCK.now()


def cost(transitions: int) -> str:
    return f"${transitions * PRICE_PER_TRANSITION:.4f}"


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def main() -> None:
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
    definition = resolve_definition(synthesized_templates(), EXAMPLE_RELEASE)
    states = definition["States"]
    poll = states["DeployWave"]["ItemProcessor"]["States"]["RolloutPollDelay"]["Seconds"]
    migration_poll = states["MigrationPollDelay"]["Seconds"]
    lease_poll = states["AcquireLease"]["Retry"][0]["IntervalSeconds"]
    print(
        f"Release of the example environment: migration {MIGRATION_SECONDS} s, each rollout {ROLLOUT_SECONDS} s, "
        f"services {states['DeployWave']['MaxConcurrency']} at a time; time is the emulator's (virtual) clock.\n"
    )
    floor = MIGRATION_SECONDS + ROLLOUT_SECONDS  # the migration + the slowest single rollout
    print(
        row(
            "release",
            "emulated time",
            "÷ (migration + slowest rollout)",
            "transitions",
            "of which polls (migration / rollouts)",
            "retries",
            "history events",
            "Step Functions cost",
            "old job runner minutes (cost)",
        )
    )
    print(row(*["---"] * 9))
    for label, services in (("api only", ["api"]), ("all five services", [a.key for a in APPS])):
        result, elapsed = release(definition, services)
        entered = Counter(result.states_entered)
        polls = (sum(entered[s] for s in MIGRATION_POLL_STATES), sum(entered[s] for s in POLL_STATES))
        retries = result.transitions - len(result.states_entered)
        old = math.ceil((MIGRATION_SECONDS + len(services) * ROLLOUT_SECONDS) / 60) + 1  # + checkout/setup, one rollout after another
        print(
            row(
                label,
                minutes(elapsed),
                f"{elapsed / floor:.2f}x",
                result.transitions,
                f"{polls[0]} / {polls[1]}",
                retries,
                len(result.history),
                cost(result.transitions),
                f"{old} (${old * RUNNER_PER_MINUTE:.3f})",
            )
        )
    snapshot, with_snapshot = release(definition, ["api"], snapshot=True)
    _, without = release(definition, ["api"])
    print(
        f"\napi only with --snapshot (a fake snapshot of {SNAPSHOT_SECONDS} s: AWS documents no duration, an assumption): "
        f"{minutes(with_snapshot)}, {with_snapshot - without:.0f} s more than without; "
        f"{snapshot.transitions} transitions ({cost(snapshot.transitions)})."
    )
    throttled, _ = release(definition, ["api"], throttle="UpdateService")
    print(
        f"The same api-only release with UpdateService throttled twice: {throttled.transitions} transitions "
        f"({throttled.transitions - len(throttled.states_entered)} retries), still SUCCEEDED."
    )
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


if __name__ == "__main__":
    main()
