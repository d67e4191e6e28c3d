"""DORA's four figures from the release record (`history --stats`), over a window of days.

Definitions (docs/operations.md, "DORA figures"):
- deployments: ended executions of kind release or rollback (recoveries deploy nothing);
- deployment frequency: successful deployments per day of the window;
- change failure rate: of the releases that ended (not counting ones a person stopped before they
  deployed anything), the share that failed, timed out, or were later rolled back;
- time to restore: from a failure's end to the end of the next successful deployment (median, max);
- lead time for changes: from the commit to the end of its successful release, where the image tag
  is a commit that the given git repository knows (median).
"""

from __future__ import annotations

import statistics
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from release import contract
from release.record import Record, parse_time

DEPLOYING_KINDS = (contract.KIND_RELEASE, contract.KIND_ROLLBACK)
_GIT_TIMEOUT = 10


@dataclass(frozen=True)
class Stats:
    window_days: int
    since: str
    deployments: int
    successful: int
    per_day: float
    releases: int
    failed_releases: int
    rolled_back_releases: int
    change_failure_rate: float | None  # 0..1
    restores: int
    time_to_restore_median_minutes: float | None
    time_to_restore_max_minutes: float | None
    lead_time_median_hours: float | None
    lead_time_known: int

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def commit_time_from_git(repo: Path) -> Callable[[str], datetime | None]:
    """A lookup of a commit's time in `repo` (None when git or the commit is unknown)."""

    def lookup(tag: str) -> datetime | None:
        if not tag or not all(c in "0123456789abcdef" for c in tag.lower()) or len(tag) < 7:
            return None
        try:
            result = subprocess.run(
                ["git", "-C", str(repo), "show", "-s", "--format=%cI", f"{tag}^{{commit}}", "--"],
                capture_output=True,
                text=True,
                timeout=_GIT_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return parse_time(result.stdout.strip()) if result.returncode == 0 else None

    return lookup


def _minutes(delta: timedelta) -> float:
    return round(delta.total_seconds() / 60, 1)


def compute(records: Iterable[Record], now: datetime, days: int, commit_time: Callable[[str], datetime | None] | None = None) -> Stats:
    since = now - timedelta(days=days)
    ended = sorted(
        (r for r in records if r.kind in DEPLOYING_KINDS and r.status != contract.STATUS_RUNNING and r.started_at and r.ended_at),
        key=lambda r: r.ended_at or now,
    )
    window = [r for r in ended if r.started_at and r.started_at >= since]
    successful = [r for r in window if r.status == contract.STATUS_SUCCEEDED]
    rolled_back = {str(r.data.get("rollbackOf")) for r in ended if r.kind == contract.KIND_ROLLBACK and r.data.get("rollbackOf")}
    # A release a person stopped before it deployed anything changed nothing in production.
    releases = [r for r in window if r.kind == contract.KIND_RELEASE and not (r.status == contract.STATUS_ABORTED and not r.deployed_apps)]
    failed = [r for r in releases if r.status in (contract.STATUS_FAILED, contract.STATUS_TIMED_OUT)]
    reverted = [r for r in releases if r.status == contract.STATUS_SUCCEEDED and r.name in rolled_back]
    restores = []
    for failure in [*failed, *reverted]:
        fixed = next(
            (
                r
                for r in ended
                if r.status == contract.STATUS_SUCCEEDED
                and r.ended_at
                and failure.ended_at
                and r.ended_at > failure.ended_at
                and r is not failure
            ),
            None,
        )
        if fixed is not None and fixed.ended_at and failure.ended_at:
            restores.append(fixed.ended_at - failure.ended_at)
    lead_times = []
    if commit_time is not None:
        for r in successful:
            if r.kind != contract.KIND_RELEASE:
                continue
            committed = commit_time(r.image_tag)
            if committed is not None and r.ended_at:
                lead_times.append(r.ended_at - committed)
    return Stats(
        window_days=days,
        since=since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        deployments=len(window),
        successful=len(successful),
        per_day=round(len(successful) / days, 2),
        releases=len(releases),
        failed_releases=len(failed),
        rolled_back_releases=len(reverted),
        change_failure_rate=round((len(failed) + len(reverted)) / len(releases), 3) if releases else None,
        restores=len(restores),
        time_to_restore_median_minutes=round(statistics.median(d.total_seconds() for d in restores) / 60, 1) if restores else None,
        time_to_restore_max_minutes=_minutes(max(restores)) if restores else None,
        lead_time_median_hours=round(statistics.median(d.total_seconds() for d in lead_times) / 3600, 1) if lead_times else None,
        lead_time_known=len(lead_times),
    )
