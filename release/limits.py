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
# ecs:DescribeServices: "You may specify up to 10 services to describe in a single operation."
MAX_SERVICES = 10
# Every wait (migration, rollout) polls this often: the latency a wait adds is at most this.
POLL_SECONDS = 10
LEASE_RETRY_SECONDS = 15
# Attempts of a retried AWS call after the first (throttling, 5xx), with full jitter.
TRANSIENT_RETRIES = 5

# History events, worst case (every call retried the maximum number of times is not assumed; one
# retry per poll is): a Task state writes 5 events (entered, scheduled, started, succeeded,
# exited), a retry 3 more (failed, scheduled, started), a Choice, Pass or Wait state 2.
_TASK = 5
_RETRY = 3
_POLL = 2 + _TASK + 2 + _RETRY  # Wait, DescribeServices/DescribeTasks, Choice, one retry
_FIXED = 60 * (_TASK + _RETRY * TRANSIENT_RETRIES)  # every state outside the loops, all retried
_PER_IMAGE = 4 + _TASK + _RETRY * TRANSIENT_RETRIES  # a Map iteration resolving one digest
_PER_SERVICE = 10 * (_TASK + _RETRY * TRANSIENT_RETRIES)


@dataclass(frozen=True)
class ReleaseBounds:
    services: int
    lease_wait_seconds: int
    migrate_timeout_seconds: int
    rollout_timeout_seconds: int

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
            + self.services * (_PER_SERVICE + _POLL * self.rollout_polls)
        )


def release_limit_problem(bounds: ReleaseBounds) -> str | None:
    """One line naming the limit a release with these settings could pass, or None."""
    if bounds.services > MAX_SERVICES:
        return (
            f"{bounds.services} apps: a release checks every service in one ecs:DescribeServices call, which takes at most {MAX_SERVICES}"
        )
    events = bounds.worst_case_history_events()
    if events > HISTORY_EVENT_LIMIT:
        return (
            f"a release of all {bounds.services} apps could write {events} execution history events "
            f"({bounds.rollout_polls} rollout polls per app, {bounds.migration_polls} migration polls), more than Step Functions' "
            f"{HISTORY_EVENT_LIMIT}: lower release.rollout_timeout_minutes or migrate.timeout_minutes"
        )
    return None
