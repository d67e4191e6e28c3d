"""The AWS limits the release is built around (release/limits.py), as the config applies them."""

from __future__ import annotations

from release import limits
from release.limits import ReleaseBounds, release_limit_problem


def bounds(services: int = 5, rollout_minutes: int = 30, migrate_minutes: int = 15) -> ReleaseBounds:
    return ReleaseBounds(services, 20 * 60, migrate_minutes * 60, rollout_minutes * 60)


def test_the_example_environment_is_within_every_limit() -> None:
    assert release_limit_problem(bounds()) is None
    assert bounds().worst_case_history_events() < limits.HISTORY_EVENT_LIMIT


def test_more_services_than_one_describe_services_call_takes_is_one_line_naming_the_limit() -> None:
    problem = release_limit_problem(bounds(services=11))
    assert problem is not None and "\n" not in problem
    assert "11 apps" in problem and "at most 10" in problem


def test_a_history_that_could_pass_25000_events_is_refused_naming_the_numbers() -> None:
    problem = release_limit_problem(bounds(rollout_minutes=60))
    assert problem is not None and "\n" not in problem
    assert "26324" in problem and "360 rollout polls per app" in problem and "25000" in problem


def test_the_bound_grows_with_every_wait() -> None:
    base = bounds().worst_case_history_events()
    assert bounds(rollout_minutes=31).worst_case_history_events() > base
    assert bounds(migrate_minutes=16).worst_case_history_events() > base
    assert bounds(services=6).worst_case_history_events() > base


def test_one_describe_services_call_stays_within_half_the_task_result_quota() -> None:
    # Up to 100 events per service, 1 KiB each at worst, plus 16 KiB for the rest of the service.
    worst = limits.describe_services_worst_case_bytes()
    assert worst == 118_784 <= limits.TASK_RESULT_QUOTA_BYTES // 2
    # Two services per call would already pass half the quota; ten (one call) pass the quota itself.
    assert limits.describe_services_worst_case_bytes(2) > limits.TASK_RESULT_QUOTA_BYTES // 2
    assert limits.describe_services_worst_case_bytes(10) > limits.TASK_RESULT_QUOTA_BYTES


def test_the_stop_wait_is_bounded_by_the_stop_timeout_fargate_allows() -> None:
    assert limits.stop_polls(30) * limits.STOP_POLL_SECONDS == 60
    assert limits.stop_polls(600) == limits.stop_polls(120) == 30  # Fargate's maximum stop timeout: 120 s


def test_the_runner_deadline_fires_before_the_release_bound() -> None:
    assert limits.runner_deadline_offset(900) == 840
    for bound in (60, 120, 300, 900, 3600):
        offset = limits.runner_deadline_offset(bound)
        assert bound // 2 <= offset < bound
