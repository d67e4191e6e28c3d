"""Connecting: TLS that verifies, login and configuration errors that fail at once, transient
errors retried for MIGRATE_CONNECT_WAIT_SECONDS, and the runner-wide deadline."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed import pgserver
from tests.migrate.runner_harness import PASSWORD, Result, Runner, advisory_locks, first_in_order
from tests.migrate.test_migrate_runner import assert_no_secret, sh

RunRunner = Callable[..., Result]
StartRunner = Callable[..., Runner]

SSL_QUERY = 'psql -X -At "$DATABASE_URL" -c "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"'


@pytest.fixture
def tls_env(pg: pgserver.PgServer, base_env: dict[str, str]) -> dict[str, str]:
    if not pg.tls:
        pytest.skip("the test server has no TLS")
    return base_env | {"DB_SSLMODE": "verify-full", "DB_SSLROOTCERT": str(pg.ca_file)}


def only_line(res: Result) -> str:
    assert len(res.stderr_lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return res.stderr_lines[0]


# --------------------------------------------------------------------------- TLS


def test_verify_full_with_the_test_ca_succeeds(tls_env: dict[str, str], run_runner: RunRunner) -> None:
    script = f'echo "$DATABASE_URL" | grep -q "sslmode=verify-full&sslrootcert=" && echo url-verifies; {SSL_QUERY}'
    res = run_runner(tls_env | {"MIGRATE_COMMAND": sh(script)})
    assert res.code == 0, res.stdout + res.stderr
    assert "url-verifies" in res.stdout.splitlines()
    assert "t" in res.stdout.splitlines()  # the command's own connection is encrypted too
    assert "sslmode=verify-full" in res.stdout and "TLS on" in res.stdout
    assert_no_secret(res.stdout, res.stderr)


def test_verify_full_by_host_name(tls_env: dict[str, str], run_runner: RunRunner) -> None:
    res = run_runner(tls_env | {"DB_HOST": "localhost", "MIGRATE_COMMAND": sh(SSL_QUERY)})
    assert res.code == 0, res.stdout + res.stderr


def test_wrong_ca_fails_at_once_with_a_clear_message(pg: pgserver.PgServer, tls_env: dict[str, str], run_runner: RunRunner) -> None:
    res = run_runner(tls_env | {"DB_SSLROOTCERT": str(pg.wrong_ca_file), "MIGRATE_COMMAND": sh("echo ran")})
    assert res.code == 80
    line = only_line(res)
    assert "cannot connect to" in line and "as configured" in line and "certificate verify failed" in line
    assert "retrying" not in res.stdout and "ran" not in res.stdout.splitlines()


def test_sslmode_in_database_url_contradicting_db_sslmode_changes_nothing(
    pg: pgserver.PgServer, base_env: dict[str, str], run_runner: RunRunner
) -> None:
    # The case: require + ?sslmode=disable ran with TLS off. Now it is refused before connecting.
    url = f"postgresql://u:pw@{pg.host}:{pg.port}/app?sslmode=disable"
    res = run_runner(base_env | {"DATABASE_URL": url, "DB_SSLMODE": "require", "MIGRATE_COMMAND": sh("echo ran")})
    assert res.code == 80
    line = only_line(res)
    assert "DATABASE_URL asks for sslmode disable but DB_SSLMODE is require" in line
    assert res.stdout == ""


# --------------------------------------------------------------------------- login and reachability


def test_wrong_password_fails_at_once_with_its_own_code(base_env: dict[str, str], run_runner: RunRunner) -> None:
    res = run_runner(base_env | {"DB_PASSWORD": "wrong:" + PASSWORD, "MIGRATE_COMMAND": sh("true")})
    assert res.code == 85
    line = only_line(res)
    assert "login refused" in line and "password authentication failed" in line
    assert "retrying" not in res.stdout
    assert "wrong:" not in res.stdout + res.stderr
    assert_no_secret(res.stdout, res.stderr)


def test_unknown_database_is_a_config_error(base_env: dict[str, str], run_runner: RunRunner) -> None:
    res = run_runner(base_env | {"DB_NAME": "no_such_db", "MIGRATE_COMMAND": sh("true")})
    assert res.code == 80
    assert 'database "no_such_db" does not exist' in only_line(res)


def test_unreachable_database_is_retried_then_exits_81(base_env: dict[str, str], run_runner: RunRunner) -> None:
    env = base_env | {"DB_PORT": str(pgserver.free_port()), "MIGRATE_COMMAND": sh("true")}
    # At least one refused attempt must end within the wait for a retry to be logged.
    res = first_in_order(
        lambda wait: run_runner(env | {"MIGRATE_CONNECT_WAIT_SECONDS": f"{wait:g}"}),
        (0.1, 1),
        lambda res: "database not reachable yet" in res.stdout,
    )
    assert res.code == 81
    line = only_line(res)
    assert "cannot connect to 127.0.0.1:" in line and "refused" in line and "MIGRATE_CONNECT_WAIT_SECONDS" in line
    assert "database not reachable yet" in res.stdout
    assert_no_secret(res.stdout, res.stderr)


# --------------------------------------------------------------------------- deadline


def test_deadline_stops_the_command_releases_the_lock_and_exits_84(
    pg: pgserver.PgServer, database: str, base_env: dict[str, str], start_runner: StartRunner
) -> None:
    script = 'trap "echo command-got-TERM; exit 0" TERM; echo ready; while :; do sleep 0.05; done'

    def attempt(seconds: float) -> Result:
        return start_runner(base_env | {"MIGRATE_DEADLINE_SECONDS": f"{seconds:g}", "MIGRATE_COMMAND": sh(script)}).wait(timeout=20)

    # The command must be running (its trap set: "ready") when the deadline comes.
    res = first_in_order(attempt, (0.2, 1.5), lambda res: "ready" in res.stdout.splitlines())
    assert res.code == 84
    assert "MIGRATE_DEADLINE_SECONDS" in only_line(res)
    assert "command-got-TERM" in res.stdout  # stopped the way ECS would stop it: SIGTERM first
    assert "released (held by this session throughout)" in res.stdout
    assert advisory_locks(pg, database, int(base_env["MIGRATE_LOCK_KEY"])) == []


def test_deadline_while_waiting_for_the_lock_exits_84(
    pg: pgserver.PgServer, database: str, base_env: dict[str, str], run_runner: RunRunner, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    key = int(base_env["MIGRATE_LOCK_KEY"])
    with pg.admin(database) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        env = base_env | {"MIGRATE_COMMAND": shlex.join(["touch", str(marker)])}
        # The runner must be waiting for the lock (connected, its first try refused) at the deadline.
        res = first_in_order(
            lambda seconds: run_runner(env | {"MIGRATE_DEADLINE_SECONDS": f"{seconds:g}"}),
            (0.1, 1),
            lambda res: "waiting for lock key" in res.stdout,
        )
    assert res.code == 84
    assert "MIGRATE_DEADLINE_SECONDS reached while waiting for the lock" in only_line(res)
    assert not marker.exists()
