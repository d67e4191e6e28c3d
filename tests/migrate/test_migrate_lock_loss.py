"""A runner that loses its lock session stops its command and exits 5, never 0.

Each case runs two runners on one lock key: A holds the lock and runs a command that writes a
time-stamped line every 20 ms until it is killed; B waits, then runs a command that writes its
start. The journal (one file, wall-clock stamps) proves no two commands overlapped: every line A
wrote is older than B's start. How fast A notices is measured in bench/runner_bench.py; the tests
only guard against hangs.

The connection-cut case uses a short heartbeat (MIGRATE_HEARTBEAT_SECONDS=0.05, an answer timeout
of 0.3 s, 1.5 s where a run must be repeated) so that A notices the cut in about 0.3 s instead of
about 4 s.
"""

from __future__ import annotations

import os
import secrets
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed import pgserver
from testbed.tcp_proxy import TcpProxy
from tests.migrate.runner_harness import APP_DB, Result, Runner, advisory_locks, first_in_order
from tests.migrate.test_migrate_runner import wait_until

StartRunner = Callable[..., Runner]


def ticking(journal: Path, name: str) -> str:
    """A command that records its start, then a tick every 20 ms until it is killed."""
    j = shlex.quote(str(journal))
    return shlex.join(
        [
            "sh",
            "-c",
            f'echo "start $(date +%s.%N) {name}" >> {j}; while :; do echo "tick $(date +%s.%N) {name}" >> {j}; sleep 0.02; done',
        ]
    )


def once(journal: Path, name: str) -> str:
    j = shlex.quote(str(journal))
    return shlex.join(["sh", "-c", f'echo "start $(date +%s.%N) {name}" >> {j}; echo "end $(date +%s.%N) {name}" >> {j}'])


def stamps(journal: Path, name: str) -> list[float]:
    lines = [line.split() for line in journal.read_text().splitlines()]
    return [float(stamp) for _, stamp, who in lines if who == name]


def assert_no_overlap(journal: Path, first: str, second: str) -> None:
    first_stamps, second_stamps = stamps(journal, first), stamps(journal, second)
    assert first_stamps and second_stamps, journal.read_text()
    assert max(first_stamps) < min(second_stamps), f"{first} still ran after {second} started:\n{journal.read_text()}"


def lock_holder_pid(pg: pgserver.PgServer, database: str, key: int) -> int:
    granted = [pid for pid, granted in advisory_locks(pg, database, key) if granted]
    assert len(granted) == 1
    return granted[0]


def start_pair(
    start_runner: StartRunner, env_a: dict[str, str], env_b: dict[str, str], journal: Path, suffix: str = ""
) -> tuple[Runner, Runner]:
    """A holding the lock and running its ticking command; B queued behind it (``suffix`` names a
    second pair's runners apart from the first's)."""
    a = start_runner(env_a | {"MIGRATE_COMMAND": ticking(journal, "A")}, f"A{suffix}")
    wait_until(lambda: journal.exists() and bool(stamps(journal, "A")), 15, "A's command to start")
    b = start_runner(env_b | {"MIGRATE_COMMAND": once(journal, "B")}, f"B{suffix}")
    b.wait_for_output("waiting for lock key", timeout=15)
    return a, b


def assert_lock_lost(result_code: int, stderr: str) -> None:
    assert result_code == 83, stderr
    (line,) = [line for line in stderr.splitlines() if line.strip()]
    assert "lost while the command ran" in line


def test_session_terminated_by_the_server(
    pg: pgserver.PgServer, database: str, base_env: dict[str, str], start_runner: StartRunner, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    a, b = start_pair(start_runner, base_env, base_env, journal)
    # The promise (docs/migrations.md) is for a runner scheduled normally: A's reaction must beat
    # B's hand-over, which needs more CPU. Here both share a test machine's CPUs, where a loaded
    # moment could starve A alone; B, queued, runs on at a lower priority (its command inherits it)
    # so that the race measures the runner, not the scheduler. An idle machine is unaffected.
    os.setpriority(os.PRIO_PROCESS, b.proc.pid, 10)
    key = int(base_env["MIGRATE_LOCK_KEY"])
    with pg.admin(database) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (lock_holder_pid(pg, database, key),))
    res_a, res_b = a.wait(timeout=20), b.wait(timeout=20)
    assert_lock_lost(res_a.code, res_a.stderr)
    assert "command's process group killed" in res_a.stdout
    assert res_b.code == 0, res_b.stdout + res_b.stderr
    assert_no_overlap(journal, "A", "B")
    assert advisory_locks(pg, database, key) == []


def test_heartbeats_answered_through_a_long_command_end_in_success(base_env: dict[str, str], start_runner: StartRunner) -> None:
    # A heartbeat every 12.5 ms through a 0.1 s command: eight of them (a round trip here is ~1 ms).
    env = base_env | {"MIGRATE_HEARTBEAT_SECONDS": "0.0125", "MIGRATE_HEARTBEAT_TIMEOUT_SECONDS": "2", "MIGRATE_COMMAND": "sleep 0.1"}
    res = start_runner(env).wait(timeout=20)
    assert res.code == 0, res.stdout + res.stderr
    assert "released (held by this session throughout)" in res.stdout
    assert "lock lost" not in res.stdout


def test_command_that_ends_its_own_lock_session_and_exits_0_is_not_a_success(
    pg: pgserver.PgServer, database: str, base_env: dict[str, str], start_runner: StartRunner
) -> None:
    key = int(base_env["MIGRATE_LOCK_KEY"])
    hi, lo = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    where = f"classid::bigint = {hi} AND objid::bigint = {lo}"
    query = f"SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND {where}"  # noqa: S608 - ints
    command = shlex.join(["sh", "-c", f'psql -X -q -At "$DATABASE_URL" -c "{query}" >/dev/null; exit 0'])
    res = start_runner(base_env | {"MIGRATE_COMMAND": command}).wait(timeout=20)
    assert_lock_lost(res.code, res.stderr)


@dataclass
class Cut:
    """What one connection-cut run showed."""

    timeout: float
    res_a: Result | None  # None: the pair never formed (A's lock was gone before B queued)
    res_b: Result | None
    a_session: int
    holder_after_a: list[tuple[int, bool]]  # the lock's sessions once A had ended
    b_waited: bool  # B was still waiting once A had ended
    journal: Path


#: A's heartbeat answer timeouts: the first run's is short (the cut is noticed ~0.3 s after it);
#: a run where A lost its lock before the cut (a heartbeat answered late on a loaded machine) is
#: repeated with the longer one, whose result the test judges whatever it shows.
CUT_TIMEOUTS = (0.3, 1.5)


def test_connection_cut_stops_the_command_before_the_server_frees_the_lock(
    pg: pgserver.PgServer, database: str, base_env: dict[str, str], start_runner: StartRunner, tmp_path: Path
) -> None:
    def cut(timeout: float) -> Cut:
        journal = tmp_path / f"journal-{timeout:g}"
        # A lock key per run: nothing a first run left behind can queue with the next run's pair.
        key = secrets.randbits(64) - 2**63
        env = base_env | {"MIGRATE_LOCK_KEY": str(key)}
        proxy = TcpProxy(pg.host, pg.port)
        try:
            env_a = env | {
                "DB_PORT": str(proxy.port),
                "MIGRATE_HEARTBEAT_SECONDS": "0.05",
                "MIGRATE_HEARTBEAT_TIMEOUT_SECONDS": f"{timeout:g}",
            }
            try:
                a, b = start_pair(start_runner, env_a, env, journal, suffix=f"-{timeout:g}")
                a_session = lock_holder_pid(pg, database, key)
            except AssertionError:
                if timeout == CUT_TIMEOUTS[-1]:
                    raise
                return Cut(timeout, None, None, 0, [], False, journal)
            proxy.blackhole()
            res_a = a.wait(timeout=20)
            holder_after_a = advisory_locks(pg, database, key)
            b_waited = b.proc.poll() is None
        finally:
            proxy.close()  # the server now sees the connection end, as its keepalives eventually would
        return Cut(timeout, res_a, b.wait(timeout=20), a_session, holder_after_a, b_waited, journal)

    # In order: A's silent session still held the lock when A stopped, i.e. A lost it to the cut.
    run = first_in_order(cut, CUT_TIMEOUTS, lambda run: (run.a_session, True) in run.holder_after_a)
    assert run.res_a is not None and run.res_b is not None
    assert_lock_lost(run.res_a.code, run.res_a.stderr)
    assert f"did not answer a heartbeat within {run.timeout:g} s" in run.res_a.stdout
    # A stopped while the server still held the lock for its silent session: B still waited.
    assert [holder for holder in run.holder_after_a if holder[1]] == [(run.a_session, True)]
    assert run.b_waited
    assert run.res_b.code == 0, run.res_b.stdout + run.res_b.stderr
    assert_no_overlap(run.journal, "A", "B")


# --------------------------------------------------------------------------- restarts


# These tests stop and restart the worker's server itself (`pg`): nothing holds a session to it
# between tests, its data outlives the restart, and a server of their own cost a start (certificates,
# a cluster copy, a database) for two restarts that cost ~0.05 s each.
@pytest.fixture
def own_env(base_env: dict[str, str]) -> dict[str, str]:
    return base_env | {"DB_NAME": APP_DB, "MIGRATE_CONNECT_WAIT_SECONDS": "30"}


def test_server_restart_while_a_runs_and_b_waits(
    pg: pgserver.PgServer, own_env: dict[str, str], start_runner: StartRunner, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    a, b = start_pair(start_runner, own_env, own_env, journal)
    pg.restart()
    res_a, res_b = a.wait(timeout=30), b.wait(timeout=30)
    assert_lock_lost(res_a.code, res_a.stderr)
    # B lost its connection while waiting (holding nothing), reconnected and took the lock.
    assert res_b.code == 0, res_b.stdout + res_b.stderr
    assert "connection lost while waiting for the lock" in res_b.stdout
    assert_no_overlap(journal, "A", "B")


def test_server_started_late(pg: pgserver.PgServer, own_env: dict[str, str], start_runner: StartRunner, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pg.shut_down()
    try:
        runner = start_runner(own_env | {"MIGRATE_COMMAND": shlex.join(["touch", str(marker)])})
        runner.wait_for_output("database not reachable yet", timeout=15)
    finally:
        pg.start_again()
    res = runner.wait(timeout=40)
    assert res.code == 0, res.stdout + res.stderr
    assert marker.exists()
    assert "retrying in" in res.stdout
