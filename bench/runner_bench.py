"""Benchmark of the migration runner (migrate/runner.py) against a real, local PostgreSQL.

Starts its own throw-away server (testbed/pgserver.py, the same helper the tests use), then
prints plain lines:

  runner.overhead.start_to_command_ms     runner process start -> its command starts
  runner.overhead.command_end_to_exit_ms  its command ends -> the runner process has exited
  runner.handover.release_to_command_ms   a held lock is released -> the first queued runner's
                                          command starts
  runner.handover.command_end_to_next_command_ms
                                          with 16 runners queued on the lock: one runner's command
                                          ends -> the next runner's command starts (this includes
                                          the first runner noticing its command's exit and
                                          releasing the lock, so it bounds the hand-over)
  runner.lock_loss.terminated_to_stopped_ms
                                          pg_terminate_backend(the lock session) -> the command's
                                          process has exited (seen through a pidfd)
  runner.lock_loss.silent_to_stopped_ms   a TCP proxy between runner and server goes silent ->
                                          the command's process has exited (default heartbeat:
                                          every 1 s, 3 s to answer)

Floors measured in the same run, for ratios:
  direct.start_to_command_ms / direct.command_end_to_exit_ms
                                          the same command started directly (no runner)
  floor.python_psycopg_import_ms          `python -c "import psycopg"`: interpreter + import

Goals: overhead <= 300 ms, hand-over <= 100 ms, lock loss (server-ended) <= 1 s, lock loss
(silent network) <= 5 s. Run: .venv/bin/python bench/runner_bench.py (``--runs``, ``--queue``,
``--loss-rounds``, ``--cut-rounds`` change the sample sizes; ``--check`` exits 1 if a goal is missed).
"""

from __future__ import annotations

import argparse
import itertools
import os
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make testbed importable
    sys.path.insert(0, str(REPO))

from testbed import pgserver  # noqa: E402
from testbed.tcp_proxy import TcpProxy  # noqa: E402

RUNNER = REPO / "migrate" / "runner.py"
ROLE, PASSWORD, DB = "bench", "b@nch:p/w%?# x", "bench"
OVERHEAD_GOAL_MS, HANDOVER_GOAL_MS = 300.0, 100.0
LOSS_SERVER_GOAL_MS, LOSS_SILENT_GOAL_MS = 1000.0, 5000.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(name: str, values: list[float], *, with_max: bool = False) -> str:
    line = f"{name} median={statistics.median(values):.1f} p95={percentile(values, 0.95):.1f}"
    if with_max:
        line += f" max={max(values):.1f}"
    return f"{line} n={len(values)}"


def runner_env(server: pgserver.PgServer, command: str, lock_key: int) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DB_HOST": server.host,
        "DB_PORT": str(server.port),
        "DB_NAME": DB,
        "DB_USER": ROLE,
        "DB_PASSWORD": PASSWORD,
        "DB_SSLMODE": "verify-full" if server.tls else "disable",
        "DB_SSLROOTCERT": str(server.ca_file),
        "MIGRATE_COMMAND": command,
        "MIGRATE_LOCK_KEY": str(lock_key),
        "MIGRATE_LOCK_WAIT_SECONDS": "120",
        "MIGRATE_URL_TLS": "libpq",
    }


def stamp_command(path: Path, hold: float = 0.0) -> str:
    """A command writing its start and end wall-clock times (seconds) to ``path``."""
    script = f"echo start $(date +%s.%N) >> {shlex.quote(str(path))}; "
    if hold:
        script += f"sleep {hold}; "
    script += f"echo end $(date +%s.%N) >> {shlex.quote(str(path))}"
    return shlex.join(["sh", "-c", script])


def read_stamps(path: Path) -> tuple[float, float]:
    stamps = dict(line.split() for line in path.read_text().splitlines())
    return float(stamps["start"]), float(stamps["end"])


def measure_overhead(server: pgserver.PgServer, workdir: Path, runs: int) -> tuple[list[float], list[float]]:
    start_to_command: list[float] = []
    end_to_exit: list[float] = []
    for i in range(runs):
        stamps = workdir / f"overhead{i}"
        env = runner_env(server, stamp_command(stamps), lock_key=1001)
        began = time.time()
        proc = subprocess.run([sys.executable, str(RUNNER)], env=env, capture_output=True, check=False)
        exited = time.time()
        if proc.returncode != 0:
            raise SystemExit(f"runner failed ({proc.returncode}): {proc.stderr.decode()}")
        command_start, command_end = read_stamps(stamps)
        start_to_command.append((command_start - began) * 1000)
        end_to_exit.append((exited - command_end) * 1000)
    return start_to_command, end_to_exit


def measure_direct(workdir: Path, runs: int) -> tuple[list[float], list[float]]:
    """The floor: the same command started directly, without the runner."""
    start_to_command: list[float] = []
    end_to_exit: list[float] = []
    for i in range(runs):
        stamps = workdir / f"direct{i}"
        began = time.time()
        subprocess.run(shlex.split(stamp_command(stamps)), capture_output=True, check=True)
        exited = time.time()
        command_start, command_end = read_stamps(stamps)
        start_to_command.append((command_start - began) * 1000)
        end_to_exit.append((exited - command_end) * 1000)
    return start_to_command, end_to_exit


def measure_import_floor(runs: int) -> list[float]:
    values = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import psycopg"], check=True)
        values.append((time.perf_counter() - began) * 1000)
    return values


def queued_waiters(server: pgserver.PgServer, key: int) -> int:
    hi, lo = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    with server.admin(DB) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
            (hi, lo),
        ).fetchone()
    return int(row[0]) if row else 0


def measure_handover(server: pgserver.PgServer, workdir: Path, queue: int, rounds: int) -> tuple[list[float], list[float]]:
    """Queue ``queue`` runners behind a lock the bench holds, release it, time the hand-overs."""
    release_to_command: list[float] = []
    end_to_next: list[float] = []
    for r in range(rounds):
        key = 2000 + r
        with server.admin(DB) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (key,))
            procs = []
            for i in range(queue):
                env = runner_env(server, stamp_command(workdir / f"q{r}_{i}", hold=0.02), lock_key=key)
                procs.append(
                    subprocess.Popen(
                        [sys.executable, str(RUNNER)],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    )
                )
            deadline = time.monotonic() + 60
            while queued_waiters(server, key) < queue:
                if time.monotonic() > deadline:
                    raise SystemExit("runners did not all queue on the lock within 60 s")
                time.sleep(0.05)
            released = time.time()
            holder.execute("SELECT pg_advisory_unlock(%s)", (key,))
            for proc in procs:
                _, err = proc.communicate(timeout=120)
                if proc.returncode != 0:
                    raise SystemExit(f"runner failed ({proc.returncode}): {err.decode()}")
        spans = sorted(read_stamps(workdir / f"q{r}_{i}") for i in range(queue))
        release_to_command.append((spans[0][0] - released) * 1000)
        for (_, end), (next_start, _) in itertools.pairwise(spans):
            if next_start < end:
                raise SystemExit("two commands overlapped: the lock did not serialise them")
            end_to_next.append((next_start - end) * 1000)
    return release_to_command, end_to_next


def lock_holder(server: pgserver.PgServer, key: int) -> int | None:
    hi, lo = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    with server.admin(DB) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid::bigint = %s AND objid::bigint = %s",
            (hi, lo),
        ).fetchone()
    return int(row[0]) if row else None


def start_holding_runner(env: dict[str, str], pidfile: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A runner whose command writes its pid and sleeps; returns (runner, a pidfd on the command)."""
    env = env | {"MIGRATE_COMMAND": shlex.join(["sh", "-c", f"echo $$ > {shlex.quote(str(pidfile))}; exec sleep 60"])}
    proc = subprocess.Popen([sys.executable, str(RUNNER)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text().strip()):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("the holding runner's command did not start")
        time.sleep(0.01)
    return proc, os.pidfd_open(int(pidfile.read_text()))


def wait_stopped(proc: subprocess.Popen[bytes], pidfd: int, since: float) -> float:
    """Milliseconds from ``since`` until the command exited; the runner must then exit 83 (lock lost)."""
    if not select.select([pidfd], [], [], 60)[0]:
        raise SystemExit("the command was not stopped within 60 s of losing the lock")
    stopped = time.monotonic()
    os.close(pidfd)
    if proc.wait(timeout=60) != 83:
        raise SystemExit(f"the runner exited {proc.returncode} after losing its lock, not 83")
    return (stopped - since) * 1000


def measure_lock_loss(server: pgserver.PgServer, workdir: Path, rounds: int) -> list[float]:
    """pg_terminate_backend(lock session) -> the command's process has exited."""
    values = []
    for r in range(rounds):
        key = 3000 + r
        proc, pidfd = start_holding_runner(runner_env(server, "true", key), workdir / f"loss{r}.pid")
        holder = lock_holder(server, key)
        with server.admin(DB) as admin:
            since = time.monotonic()
            admin.execute("SELECT pg_terminate_backend(%s)", (holder,))
        values.append(wait_stopped(proc, pidfd, since))
    return values


def measure_silent_network(server: pgserver.PgServer, workdir: Path, rounds: int) -> list[float]:
    """A proxy between runner and server goes silent -> the command's process has exited."""
    values = []
    for r in range(rounds):
        proxy = TcpProxy(server.host, server.port)
        try:
            env = runner_env(server, "true", 4000 + r) | {"DB_PORT": str(proxy.port)}
            proc, pidfd = start_holding_runner(env, workdir / f"cut{r}.pid")
            since = time.monotonic()
            proxy.blackhole()
            values.append(wait_stopped(proc, pidfd, since))
        finally:
            proxy.close()
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs for the overhead figures")
    parser.add_argument("--queue", type=int, default=16, help="runners queued for the hand-over figures")
    parser.add_argument("--rounds", type=int, default=2, help="hand-over rounds")
    parser.add_argument("--loss-rounds", type=int, default=20, help="lock-loss rounds (server-ended session)")
    parser.add_argument("--cut-rounds", type=int, default=5, help="lock-loss rounds (silent network, ~4 s each)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()

    try:
        server = pgserver.start_server(tls=True)
    except pgserver.PgUnavailableError as exc:
        print(f"runner bench skipped: {exc}")
        return 0
    try:
        server.create_role_and_db(ROLE, PASSWORD, DB)
        with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
            workdir = Path(tmp)
            subprocess.run([sys.executable, str(RUNNER)], env=runner_env(server, "true", 1), capture_output=True, check=True)  # warm-up
            start_to_command, end_to_exit = measure_overhead(server, workdir, args.runs)
            direct_start, direct_end = measure_direct(workdir, args.runs)
            import_floor = measure_import_floor(args.runs)
            release_to_command, end_to_next = measure_handover(server, workdir, args.queue, args.rounds)
            loss = measure_lock_loss(server, workdir, args.loss_rounds)
            silent = measure_silent_network(server, workdir, args.cut_rounds)
    finally:
        server.stop()

    print(f"runner.bench server=PostgreSQL-local tls={'on' if server.tls else 'off'} cpus={os.cpu_count()} queue={args.queue}")
    print(summary("runner.overhead.start_to_command_ms", start_to_command))
    print(summary("runner.overhead.command_end_to_exit_ms", end_to_exit))
    print(summary("runner.handover.release_to_command_ms", release_to_command, with_max=True))
    print(summary("runner.handover.command_end_to_next_command_ms", end_to_next, with_max=True))
    print(summary("runner.lock_loss.terminated_to_stopped_ms", loss, with_max=True))
    print(summary("runner.lock_loss.silent_to_stopped_ms", silent, with_max=True))
    print(summary("direct.start_to_command_ms", direct_start))
    print(summary("direct.command_end_to_exit_ms", direct_end))
    print(summary("floor.python_psycopg_import_ms", import_floor))
    for name, runner_values, floor_values in (
        ("start_to_command", start_to_command, direct_start),
        ("command_end_to_exit", end_to_exit, direct_end),
    ):
        runner_p50, floor_p50 = statistics.median(runner_values), statistics.median(floor_values)
        print(f"runner.ratio.{name} runner/direct median={runner_p50 / floor_p50:.1f}x added_median={runner_p50 - floor_p50:.1f}ms")
    print(
        f"runner.ratio.start_to_command_vs_import_floor median={statistics.median(start_to_command) / statistics.median(import_floor):.2f}x"
    )

    goals = [
        ("overhead start_to_command p95", percentile(start_to_command, 0.95), OVERHEAD_GOAL_MS),
        ("overhead command_end_to_exit p95", percentile(end_to_exit, 0.95), OVERHEAD_GOAL_MS),
        ("handover command_end_to_next_command p95", percentile(end_to_next, 0.95), HANDOVER_GOAL_MS),
        ("lock_loss terminated_to_stopped p95", percentile(loss, 0.95), LOSS_SERVER_GOAL_MS),
        ("lock_loss silent_to_stopped max", max(silent), LOSS_SILENT_GOAL_MS),
    ]
    missed = False
    for name, value, goal in goals:
        ok = value <= goal
        missed |= not ok
        print(f"runner.goal {name} {value:.1f}ms <= {goal:.0f}ms: {'met' if ok else 'MISSED'}")
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
