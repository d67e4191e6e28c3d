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
    assert "25444" in problem and "360 rollout polls per app" in problem and "25000" in problem


def test_the_bound_grows_with_every_wait() -> None:
    base = bounds().worst_case_history_events()
    assert bounds(rollout_minutes=31).worst_case_history_events() > base
    assert bounds(migrate_minutes=16).worst_case_history_events() > base
    assert bounds(services=6).worst_case_history_events() > base
