"""The AWS limits the release state machine is built around, and the check the config runs on them.

Pure Python (no CDK): config/__init__.py calls `release_limit_problem` before any construct exists,
and the definition (constructs/release_machine/) takes its intervals from here, so the bound the
config checks is computed from the same numbers the definition uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Step Functions: "Maximum execution history size: 25,000 events" (a Standard execution that would
# pass it fails). docs/release.md, "What the definition relies on".
HISTORY_EVENT_LIMIT = 25_000
# The release is sized for at most 10 apps: its history and payload bounds below, and its rollouts'
# MaxConcurrency (release.max_parallel_rollouts, at most 10). (ecs:DescribeServices also takes "up
# to 10 services ... in a single operation"; the release describes one per call.)
MAX_SERVICES = 10
# Step Functions: "The maximum size of the input or output of a task ... is 256 KiB" (a larger task
# result is States.DataLimitExceeded, which no Catch can handle). docs/release.md.
TASK_RESULT_QUOTA_BYTES = 256 * 1024
# ecs:DescribeServices returns up to 100 of a service's most recent events. AWS documents no
# maximum length for an event's message; a message names the service, tasks, target groups and
# a reason: 1 KiB per event (id, time and message as JSON) is taken as the worst case, and the
# rest of a service description (deployments, load balancers, network, tags) as 16 KiB.
SERVICE_EVENTS_MAX = 100
SERVICE_EVENT_BYTES_WORST = 1024
SERVICE_WITHOUT_EVENTS_BYTES_WORST = 16 * 1024
# Services per DescribeServices call (CheckServices maps over them; the deploy phase describes
# one service at a time anyway): the worst-case result must stay within half the quota.
DESCRIBE_SERVICES_BATCH = 1


def describe_services_worst_case_bytes(services_per_call: int = DESCRIBE_SERVICES_BATCH) -> int:
    return services_per_call * (SERVICE_WITHOUT_EVENTS_BYTES_WORST + SERVICE_EVENTS_MAX * SERVICE_EVENT_BYTES_WORST)


# Every wait (migration, rollout) polls this often: the latency a wait adds is at most this.
POLL_SECONDS = 10
# After StopTask the release waits for STOPPED, polling this often, for the migrate container's
# stop timeout (ECS sends SIGTERM, then SIGKILL after it: 30 s by default, at most 120 s on
# Fargate) plus this margin for ECS to report the task STOPPED.
STOP_POLL_SECONDS = 5
STOP_TIMEOUT_DEFAULT_SECONDS = 30
STOP_TIMEOUT_MAX_SECONDS = 120
STOP_MARGIN_SECONDS = 30
# The runner's absolute deadline (RunTask's MIGRATE_DEADLINE_AT) is the release's migration bound,
# counted from RunTask, less this margin: the runner's stop grace (20 s, migrate/runner.py), the
# task reaching STOPPED, and one poll of the release fit in it, so the runner's own exit 6 is
# what the release sees, not its own bound.
RUNNER_DEADLINE_MARGIN_SECONDS = 60


def runner_deadline_offset(migrate_timeout_seconds: int) -> int:
    """Seconds after RunTask at which the runner must have stopped the command (never less than
    half the bound, for very short bounds)."""
    return max(migrate_timeout_seconds - RUNNER_DEADLINE_MARGIN_SECONDS, migrate_timeout_seconds // 2)


def stop_polls(stop_timeout_seconds: int) -> int:
    """DescribeTasks polls after StopTask before giving up on seeing STOPPED."""
    return math.ceil((min(stop_timeout_seconds, STOP_TIMEOUT_MAX_SECONDS) + STOP_MARGIN_SECONDS) / STOP_POLL_SECONDS)


LEASE_RETRY_SECONDS = 15
SNAPSHOT_POLL_SECONDS = 30
# Attempts of a retried AWS call after the first (throttling, 5xx), with full jitter.
TRANSIENT_RETRIES = 5

# History events, worst case (every call retried the maximum number of times is not assumed; one
# retry per poll is): a Task state writes 5 events (entered, scheduled, started, succeeded,
# exited), a retry 3 more (failed, scheduled, started), a Choice, Pass or Wait state 2.
_TASK = 5
_RETRY = 3
_POLL = 2 + _TASK + 2 + _RETRY  # Wait, DescribeServices/DescribeTasks, Choice, one retry
_FIXED = 80 * (_TASK + _RETRY * TRANSIENT_RETRIES)  # every state outside the loops (restore point included), all retried
_PER_IMAGE = 4 + _TASK + _RETRY * TRANSIENT_RETRIES  # a Map iteration: one digest, or one service's check
# One service's Map iteration (deploy.py): MapIterationStarted/Succeeded, 4 Pass/Choice states
# outside the poll loop, and at most 8 Task states (lease check, gate read, DescribeServices,
# DescribeTaskDefinition, RegisterTaskDefinition, UpdateService, the deployment written to the
# record, the gate closed), each retried fully; rounded up to 10 Tasks for room. Concurrency does
# not change the count: every iteration's events are in the one execution history.
_PER_SERVICE = 2 + 4 * 2 + 10 * (_TASK + _RETRY * TRANSIENT_RETRIES)
# One wave (a Map over the services of one `after:` level): its Choice, the Map's four events
# (entered, started, succeeded, exited) and the progress record written after it.
_PER_WAVE = 2 + 4 + _TASK + _RETRY * TRANSIENT_RETRIES

# A Map state's output is the array of every iteration's output, so the task-result quota covers
# the array. An iteration's output (deploy.py ServiceDone): app, service, outcome, task definition
# ARN, deployment id, error name and a reason cut to MAX_REASON_CHARS. The lengths AWS allows: a
# service name 255, a task definition ARN about 100 + family 255 + revision, an error name and a
# deployment id well under 256. Rounded up per field.
MAX_REASON_CHARS = 1000
_ITERATION_OUTPUT_BYTES = 7 * 64 + 255 + 512 + 256 + 256 + 4 * MAX_REASON_CHARS  # JSON escaping can quadruple a reason


def map_output_bytes(services: int) -> int:
    """Worst case of DeployWave's aggregated output (every service in one wave)."""
    return 2 + services * (_ITERATION_OUTPUT_BYTES + 1)


def rollout_waves(after: dict[str, list[str]]) -> dict[str, int]:
    """Each app's wave: 0 for an app that waits for none, else one more than the latest wave it
    waits for. Callers have refused cycles and unknown names (config/__init__.py)."""
    waves: dict[str, int] = {}

    def wave(app: str) -> int:
        if app not in waves:
            waves[app] = 1 + max((wave(other) for other in after.get(app, []) if other in after), default=-1)
        return waves[app]

    for app in after:
        wave(app)
    return waves


@dataclass(frozen=True)
class ReleaseBounds:
    services: int
    lease_wait_seconds: int
    migrate_timeout_seconds: int
    rollout_timeout_seconds: int
    snapshot_timeout_seconds: int = 0  # 0: no snapshot phase

    @property
    def snapshot_polls(self) -> int:
        # restore_point.py polls DescribeDBSnapshots every SNAPSHOT_POLL_SECONDS.
        return math.ceil(self.snapshot_timeout_seconds / SNAPSHOT_POLL_SECONDS)

    @property
    def lease_attempts(self) -> int:
        return math.ceil(self.lease_wait_seconds / LEASE_RETRY_SECONDS)

    @property
    def migration_polls(self) -> int:
        return max(1, math.ceil(self.migrate_timeout_seconds / POLL_SECONDS))

    @property
    def rollout_polls(self) -> int:
        return max(1, math.ceil(self.rollout_timeout_seconds / POLL_SECONDS))

    def worst_case_history_events(self) -> int:
        return (
            _FIXED
            + _PER_IMAGE * (self.services + 1)
            + _RETRY * self.lease_attempts
            + _POLL * self.migration_polls
            + _POLL * stop_polls(STOP_TIMEOUT_MAX_SECONDS)
            + _POLL * self.snapshot_polls
            + _PER_IMAGE * self.services
            + self.services * (_PER_SERVICE + _PER_WAVE + _POLL * self.rollout_polls)
        )


def release_limit_problem(bounds: ReleaseBounds) -> str | None:
    """One line naming the limit a release with these settings could pass, or None."""
    if bounds.services > MAX_SERVICES:
        return (
            f"{bounds.services} apps: a release is sized for at most {MAX_SERVICES} (its history and payload bounds, its parallel rollouts)"
        )
    if map_output_bytes(bounds.services) > TASK_RESULT_QUOTA_BYTES or describe_services_worst_case_bytes() > TASK_RESULT_QUOTA_BYTES // 2:
        return f"{bounds.services} apps: the deploy Map's output could pass Step Functions' {TASK_RESULT_QUOTA_BYTES} bytes"
    events = bounds.worst_case_history_events()
    if events > HISTORY_EVENT_LIMIT:
        return (
            f"a release of all {bounds.services} apps could write {events} execution history events "
            f"({bounds.rollout_polls} rollout polls per app, {bounds.migration_polls} migration polls), more than Step Functions' "
            f"{HISTORY_EVENT_LIMIT}: lower release.rollout_timeout_minutes or migrate.timeout_minutes"
        )
    return None
