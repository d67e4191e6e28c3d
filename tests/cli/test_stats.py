"""`history --stats`: DORA's figures from the release record (a window of days; lead time from a
git clone when tags are commits)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from release.errors import ExitCode
from tests.cli.conftest import Run
from tests.cli.fakes import ScriptedReleases, finished_record


def _commit(repo: Path, when: datetime) -> str:
    env = {**os.environ, "GIT_COMMITTER_DATE": when.isoformat(), "GIT_AUTHOR_DATE": when.isoformat()}
    for args in (
        ["init", "-q", "-b", "main"],
        ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "--allow-empty", "-m", "x"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env, timeout=60)
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


@pytest.fixture
def history(releases: ScriptedReleases, tmp_path: Path) -> Path:
    """Thirty days with one failure restored by the next release, and one release rolled back."""
    now = datetime.now(UTC)
    repo = tmp_path / "app"
    repo.mkdir()
    sha = _commit(repo, now - timedelta(days=11))

    def day(n: int) -> datetime:
        return now - timedelta(days=n)

    finished_record("old-1svc-mig-00000000", "old", started=day(40))  # outside the window
    finished_record(f"{sha[:8]}-1svc-mig-00000001", sha, started=day(10), seconds=300)
    finished_record("r2-1svc-mig-00000002", "r2", started=day(9), status="FAILED", seconds=120)
    r3 = finished_record("r3-1svc-mig-00000003", "r3", started=day(9) + timedelta(hours=1), seconds=300)
    finished_record("r2-1svc-nomig-00000004", "r2", started=day(8), kind="rollback", seconds=60, rollbackOf=r3["name"])
    finished_record("r4-1svc-mig-00000005", "r4", started=day(7), status="ABORTED", deployed=())  # stopped before deploying
    finished_record("r3-status-00000006", "r3", started=day(6), kind="migrate-status", deployed=())  # deploys nothing
    return repo


def test_stats_json(run: Run, history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("history", "--stats", "--format", "json", "--repo-root", str(history)) == ExitCode.OK
    stats = json.loads(capsys.readouterr().out)
    assert (stats["deployments"], stats["successful"], stats["per_day"]) == (5, 3, 0.1)
    assert (stats["releases"], stats["failed_releases"], stats["rolled_back_releases"]) == (3, 1, 1)
    assert stats["change_failure_rate"] == 0.667
    # r2's failure restored by r3 (63 min later); r3's rollback ended 23 h 56 min after r3.
    assert (stats["restores"], stats["time_to_restore_median_minutes"], stats["time_to_restore_max_minutes"]) == (2, 719.5, 1376.0)
    assert (stats["lead_time_known"], stats["lead_time_median_hours"]) == (1, 24.1)


def test_stats_table_without_a_clone(run: Run, history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("history", "--stats", "--days", "9") == ExitCode.OK  # r3, its rollback, the stopped one
    out = capsys.readouterr().out
    assert "DORA figures, qa, last 9 days" in out
    assert "0.22/day (2 successful of 3 deployments)" in out
    assert "100% (0 failed, 1 rolled back, of 1 releases)" in out
    assert "unknown (pass --repo-root <app clone> when tags are commits)" in out


def test_stats_window_is_bounded(run: Run, releases: ScriptedReleases, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("history", "--stats", "--days", "0") == ExitCode.USAGE
    assert "--days must be between 1 and 366" in capsys.readouterr().err
