"""The migration runner against a real PostgreSQL server, driven as a subprocess.

The migration command is tests/migrate/fake_migrate.sh: psql applying SQL files once each, the
way ``prisma migrate deploy`` applies its migrations.
"""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from testbed import pgserver
from tests.migrate.runner_harness import (
    FAKE_MIGRATE,
    MIGRATIONS,
    PASSWORD,
    ROLE,
    Result,
    Runner,
    advisory_locks,
    first_in_order,
)

StartRunner = Callable[..., Runner]
RunRunner = Callable[..., Result]

MIGRATE = shlex.join(["sh", str(FAKE_MIGRATE), str(MIGRATIONS)])


def sh(script: str) -> str:
    """MIGRATE_COMMAND running ``script`` with sh -c."""
    return shlex.join(["sh", "-c", script])


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
        assert quote(PASSWORD, safe="") not in text


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.005)  # the predicates are a file read or a query: cheap to poll finely
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def applied_versions(pg: pgserver.PgServer, database: str) -> list[str]:
    with pg.admin(database) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    return [str(r[0]) for r in rows]


# --------------------------------------------------------------------------- one at a time


#: Enough to queue several behind one holder; each command is a few psql calls (slow on a loaded machine).
RUNNERS = 5


def test_concurrent_runners_run_one_at_a_time_and_migrate_once(
    pg: pgserver.PgServer,
    fresh_database: str,
    base_env: dict[str, str],
    start_runner: StartRunner,
    tmp_path: Path,
) -> None:
    database = fresh_database
    state = tmp_path / "state"
    state.mkdir()
    env = base_env | {
        "DB_NAME": database,
        "MIGRATE_COMMAND": MIGRATE,
        "STATE_DIR": str(state),
        # Each command is inside for its psql session (~40 ms) and this much more: a lock handed on
        # before a command ended would let the next one in well within that.
        "HOLD_SECONDS": "0.02",
    }
    runners = [start_runner(env, f"r{i}") for i in range(RUNNERS)]
    results = [r.wait(timeout=30) for r in runners]

    for r in results:
        assert r.code == 0, r.stdout + r.stderr
        assert "OVERLAP" not in r.stdout
        assert r.stderr == ""
        assert_no_secret(r.stdout, r.stderr)

    # The journal proves no two commands were inside at the same time.
    events = [line.split() for line in (state / "journal").read_text().splitlines()]
    assert len(events) == 2 * RUNNERS
    intervals: dict[str, list[float]] = {}
    for kind, stamp, pid in events:
        intervals.setdefault(pid, []).append(float(stamp))
        assert kind in ("start", "end")
    spans = sorted((s, e) for s, e in intervals.values())
    assert len(spans) == RUNNERS
    for (_, prev_end), (next_start, _) in itertools.pairwise(spans):
        assert next_start >= prev_end

    # The migration was applied exactly once, by exactly one runner.
    all_out = "".join(r.stdout for r in results)
    assert all_out.count("applied: 001_create_accounts") - all_out.count("already applied: 001") == 1
    assert all_out.count("already applied: 001_create_accounts") == RUNNERS - 1
    assert applied_versions(pg, database) == ["001_create_accounts", "002_add_display_name"]

    # The ones that queued said so, and named the holder.
    waited = [r.stdout for r in results if "waiting for lock key" in r.stdout]
    assert waited, "no runner reported waiting"
    assert all("held by pid" in out for out in waited)
    assert any("migrate-runner" in out.split("held by pid", 1)[1] for out in waited)
    assert advisory_locks(pg, database, int(env["MIGRATE_LOCK_KEY"])) == []


def test_log_lines_tell_the_story(base_env: dict[str, str], run_runner: RunRunner) -> None:
    res = run_runner(base_env | {"MIGRATE_COMMAND": sh("echo from-command")})
    assert res.code == 0
    lines = res.stdout.splitlines()
    key = base_env["MIGRATE_LOCK_KEY"]
    expected = [
        f"connecting to {base_env['DB_HOST']}:{base_env['DB_PORT']} database {base_env['DB_NAME']} as {ROLE}",
        "connected (PostgreSQL",
        f"lock key {key} acquired after",
        "running: sh -c 'echo from-command'",
        "from-command",
        "command exited 0 after",
        f"lock key {key} released",
    ]
    position = 0
    for want in expected:
        while position < len(lines) and want not in lines[position]:
            position += 1
        assert position < len(lines), f"missing or out of order: {want!r}\n{res.stdout}"
    for line in lines:
        if line != "from-command":
            assert line[:4].isdigit() and line[10] == "T" and " migrate-runner: " in line
    assert_no_secret(res.stdout, res.stderr)


# --------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize("code", [0, 1, 2, 3, 5, 6, 7, 70, 79, 90, 126])
def test_command_exit_code_passes_through(
    pg: pgserver.PgServer,
    database: str,
    base_env: dict[str, str],
    run_runner: RunRunner,
    code: int,
) -> None:
    res = run_runner(base_env | {"MIGRATE_COMMAND": sh(f"echo out; echo err >&2; exit {code}")})
    assert res.code == code
    assert "out\n" in res.stdout and "err\n" in res.stdout  # both streams reach stdout
    assert f"command exited {code} after" in res.stdout
    assert res.stderr == ""
    assert advisory_locks(pg, database, int(base_env["MIGRATE_LOCK_KEY"])) == []


def test_command_killed_by_signal_gives_128_plus_signal(base_env: dict[str, str], run_runner: RunRunner) -> None:
    res = run_runner(base_env | {"MIGRATE_COMMAND": sh("kill -KILL $$")})
    assert res.code == 137
    assert "command killed by SIGKILL" in res.stdout


def test_failed_migration_fails_and_next_run_retries(
    pg: pgserver.PgServer,
    fresh_database: str,
    base_env: dict[str, str],
    run_runner: RunRunner,
    tmp_path: Path,
) -> None:
    database = fresh_database
    base_env = base_env | {"DB_NAME": database}
    broken = tmp_path / "migrations"
    broken.mkdir()
    (broken / "001_ok.sql").write_text("CREATE TABLE t1 (id int);\n")
    (broken / "002_bad.sql").write_text("ALTER TABLE missing ADD COLUMN x int;\n")
    res = run_runner(base_env | {"MIGRATE_COMMAND": shlex.join(["sh", str(FAKE_MIGRATE), str(broken)])})
    assert res.code != 0
    assert 'relation "missing" does not exist' in res.stdout
    assert applied_versions(pg, database) == ["001_ok"]

    (broken / "002_bad.sql").write_text("ALTER TABLE t1 ADD COLUMN x int;\n")
    res = run_runner(base_env | {"MIGRATE_COMMAND": shlex.join(["sh", str(FAKE_MIGRATE), str(broken)])})
    assert res.code == 0, res.stdout
    assert applied_versions(pg, database) == ["001_ok", "002_bad"]


# --------------------------------------------------------------------------- dead holders


def test_sigkilled_holder_does_not_block_the_next_runner(
    pg: pgserver.PgServer,
    database: str,
    base_env: dict[str, str],
    start_runner: StartRunner,
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "command.pid"
    holder = start_runner(
        base_env | {"MIGRATE_COMMAND": sh(f"echo $$ > {pidfile}; echo holding; exec sleep 60")},
        "holder",
    )
    holder.wait_for_output("holding", whole_line=True)
    command_pid = int(pidfile.read_text())

    nxt = start_runner(base_env | {"MIGRATE_COMMAND": sh("echo next-ran")}, "next")
    nxt.wait_for_output("waiting for lock key")

    killed_at = time.monotonic()
    holder.signal(signal.SIGKILL)
    res = nxt.wait(timeout=15)
    handover = time.monotonic() - killed_at
    assert res.code == 0, res.stdout + res.stderr
    assert "next-ran" in res.stdout
    assert handover < 5, f"next runner took {handover:.1f} s after the holder was killed"

    # The dead runner's command does not carry on without the lock.
    def gone() -> bool:
        try:
            os.kill(command_pid, 0)
        except ProcessLookupError:
            return True
        # A zombie waiting for its (dead) parent's reaper counts as gone.
        stat = Path(f"/proc/{command_pid}/stat")
        return stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z"

    wait_until(gone, 5, "the killed runner's command to die")


# --------------------------------------------------------------------------- signals


def test_sigterm_stops_command_releases_lock_exits_143(
    pg: pgserver.PgServer,
    database: str,
    base_env: dict[str, str],
    start_runner: StartRunner,
) -> None:
    script = 'trap "echo command-got-TERM; exit 5" TERM; echo ready; while :; do sleep 0.05; done'
    runner = start_runner(base_env | {"MIGRATE_COMMAND": sh(script)})
    runner.wait_for_output("ready", whole_line=True)
    key = int(base_env["MIGRATE_LOCK_KEY"])
    assert [granted for _, granted in advisory_locks(pg, database, key)] == [True]

    runner.signal(signal.SIGTERM)
    res = runner.wait(timeout=10)
    assert res.code == 143
    assert "received SIGTERM: forwarding it to the command" in res.stdout
    assert "command-got-TERM" in res.stdout
    assert "command exited 5 after" in res.stdout
    assert f"lock key {key} released" in res.stdout
    assert advisory_locks(pg, database, key) == []


def test_sigterm_to_a_command_that_ignores_it_kills_it_after_the_grace(
    pg: pgserver.PgServer,
    database: str,
    base_env: dict[str, str],
    start_runner: StartRunner,
) -> None:
    script = "trap '' TERM; echo ready; sleep 30"
    # The command ignores SIGTERM for good: any grace ends in SIGKILL, a short one sooner.
    env = base_env | {"MIGRATE_COMMAND": sh(script), "MIGRATE_STOP_GRACE_SECONDS": "0.05"}
    runner = start_runner(env)
    runner.wait_for_output("ready", whole_line=True)
    runner.signal(signal.SIGTERM)
    res = runner.wait(timeout=10)
    assert res.code == 143
    assert "sending SIGKILL" in res.stdout
    assert "command killed by SIGKILL" in res.stdout
    assert advisory_locks(pg, database, int(base_env["MIGRATE_LOCK_KEY"])) == []


def test_sigint_while_waiting_for_the_lock_leaves_no_waiter(
    pg: pgserver.PgServer,
    database: str,
    base_env: dict[str, str],
    start_runner: StartRunner,
    tmp_path: Path,
) -> None:
    key = int(base_env["MIGRATE_LOCK_KEY"])
    marker = tmp_path / "ran"
    with pg.admin(database) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        runner = start_runner(base_env | {"MIGRATE_COMMAND": sh(f"touch {marker}")})
        runner.wait_for_output("waiting for lock key")
        runner.signal(signal.SIGINT)
        res = runner.wait(timeout=10)
        assert res.code == 130
        assert "received SIGINT before the command started" in res.stdout
        assert not marker.exists()
        # The cancelled waiter is gone from the lock queue: only the holder remains.
        wait_until(
            lambda: advisory_locks(pg, database, key) == [(holder.info.backend_pid, True)],
            5,
            "the runner's lock wait to go away",
        )


# --------------------------------------------------------------------------- lock timeout


def test_lock_wait_runs_out_with_code_4_naming_the_holder(
    pg: pgserver.PgServer,
    database: str,
    base_env: dict[str, str],
    start_runner: StartRunner,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    env = base_env | {"MIGRATE_COMMAND": sh(f"touch {marker}")}
    del env["MIGRATE_LOCK_KEY"]  # the default key: a 64-bit value with the high half set
    default_key = int.from_bytes(b"migrate!", "big")
    runs: list[tuple[float, float]] = []  # (wait, seconds it took): the result is the last run's

    def attempt(wait: float) -> Result:
        started = time.monotonic()
        res = start_runner(env | {"MIGRATE_LOCK_WAIT_SECONDS": f"{wait:g}", "MIGRATE_LOCK_LOG_SECONDS": f"{wait / 3:g}"}).wait(timeout=10)
        runs.append((wait, time.monotonic() - started))
        return res

    with pg.admin(database) as holder:
        holder.execute("SET application_name = 'stuck-release-42'")
        holder.execute("SELECT pg_advisory_lock(%s)", (default_key,))
        # A progress line needs one lock_timeout slice to end before the wait does.
        res = first_in_order(attempt, (0.3, 1.2), lambda res: "still waiting for lock key" in res.stdout)
        holder_pid = holder.info.backend_pid
    wait, took = runs[-1]

    assert res.code == 82
    assert not marker.exists()
    assert 0.8 * wait < took < 8
    assert len(res.stderr_lines) == 1, res.stderr
    line = res.stderr_lines[0]
    assert f"lock key {default_key} not acquired within {wait:g} s" in line
    assert "MIGRATE_LOCK_WAIT_SECONDS" in line
    assert f"pid {holder_pid}" in line and "stuck-release-42" in line
    assert "Traceback" not in res.stderr
    assert f"waiting for lock key {default_key} held by pid {holder_pid}" in res.stdout
    assert res.stdout.count("still waiting for lock key") >= 1


# --------------------------------------------------------------------------- URLs and TLS


def test_special_character_password_reaches_the_command_over_tls(
    pg: pgserver.PgServer, base_env: dict[str, str], run_runner: RunRunner
) -> None:
    query = "SELECT current_user, current_database(), (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())"
    script = f'echo "DB_PASSWORD in env: ${{DB_PASSWORD+yes}}"; psql -X -At "$DATABASE_URL" -c "{query}"'
    res = run_runner(base_env | {"MIGRATE_COMMAND": sh(script)})
    assert res.code == 0, res.stdout + res.stderr
    tls = "t" if pg.tls else "f"
    assert f"{ROLE}|{base_env['DB_NAME']}|{tls}" in res.stdout
    assert "DB_PASSWORD in env: " in res.stdout.splitlines()  # unset for the command
    if pg.tls:
        assert "TLS on" in res.stdout
    assert_no_secret(res.stdout, res.stderr)


def test_database_url_is_passed_through_with_sslmode_added(pg: pgserver.PgServer, base_env: dict[str, str], run_runner: RunRunner) -> None:
    url = f"postgresql://{ROLE}:{quote(PASSWORD, safe='')}@{pg.host}:{pg.port}/{base_env['DB_NAME']}?connect_timeout=5"
    env = {k: v for k, v in base_env.items() if not k.startswith("DB_")}
    env |= {
        "DB_SSLMODE": "require",
        "DATABASE_URL": url,
        "EXPECTED_URL": url + "&sslmode=require",
        "MIGRATE_COMMAND": sh(
            '[ "$DATABASE_URL" = "$EXPECTED_URL" ] && echo url-as-expected; psql -X -At "$DATABASE_URL" -c "SELECT current_user"'
        ),
    }
    if not pg.tls:
        pytest.skip("the test server has no TLS")
    res = run_runner(env)
    assert res.code == 0, res.stdout + res.stderr
    assert "url-as-expected" in res.stdout
    assert f"\n{ROLE}\n" in res.stdout
    assert "from DATABASE_URL, sslmode=require" in res.stdout
    assert_no_secret(res.stdout, res.stderr)


def test_database_url_sslmode_is_kept(pg: pgserver.PgServer, base_env: dict[str, str], run_runner: RunRunner) -> None:
    url = f"postgres://{ROLE}:{quote(PASSWORD, safe='')}@{pg.host}:{pg.port}/{base_env['DB_NAME']}?sslmode=disable"
    env = {k: v for k, v in base_env.items() if not k.startswith("DB_")}
    env |= {
        "DATABASE_URL": url,
        "EXPECTED_URL": url,
        "MIGRATE_COMMAND": sh(
            '[ "$DATABASE_URL" = "$EXPECTED_URL" ] && echo url-unchanged; '
            'psql -X -At "$DATABASE_URL" -c '
            '"SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"'
        ),
    }
    res = run_runner(env)
    assert res.code == 0, res.stdout + res.stderr
    assert "url-unchanged" in res.stdout
    assert "\nf\n" in res.stdout
    assert "TLS off" in res.stdout


def test_application_name_names_the_ecs_task(pg: pgserver.PgServer, base_env: dict[str, str], run_runner: RunRunner) -> None:
    # No metadata endpoint answers here: the task id comes from the URI itself.
    task_id = "0123456789abcdef0123456789abcdef"
    env = base_env | {
        "ECS_CONTAINER_METADATA_URI_V4": f"http://127.0.0.1:9/v4/{task_id}-1234567890",
        "MIGRATE_COMMAND": sh(
            'psql -X -At "$DATABASE_URL" -c "SELECT a.application_name FROM pg_locks l '
            "JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND l.granted\""
        ),
    }
    res = run_runner(env)
    assert res.code == 0, res.stdout + res.stderr
    assert f"\nmigrate-runner {task_id}\n" in res.stdout
