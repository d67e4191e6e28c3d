"""Fixtures for the migration runner's tests: a real PostgreSQL server and a runner driver.

The server is started once per session (see pgserver.py); each test gets its own database and
its own lock key, so tests do not see each other's locks or tables.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from psycopg import sql

from testbed import pgserver
from tests.migrate.runner_harness import APP_DB, PASSWORD, ROLE, ForkServer, Result, Runner, load_runner_module, serve_app_database


@pytest.fixture(scope="session")
def runner_module() -> ModuleType:
    return load_runner_module()


@pytest.fixture(scope="session")
def pg() -> Iterator[pgserver.PgServer]:
    ForkServer.shared()  # started first: its imports run while the database server starts
    yield from serve_app_database()


_db_counter = itertools.count(1)


@pytest.fixture
def database(pg: pgserver.PgServer) -> str:
    """The shared database: tests isolate themselves by lock key (advisory locks are per key)."""
    return APP_DB


@pytest.fixture
def fresh_database(pg: pgserver.PgServer) -> str:
    """A new, empty database owned by the migrator role (for tests that apply migrations)."""
    name = f"t{os.getpid()}_{next(_db_counter)}"
    with pg.admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(ROLE)))
    return name


@pytest.fixture
def lock_key() -> int:
    """A lock key of its own for the test: full 64-bit range, sign included."""
    return secrets.randbits(64) - 2**63


@pytest.fixture
def base_env(pg: pgserver.PgServer, database: str, lock_key: int) -> dict[str, str]:
    """Environment for a runner: DB_* keys as ECS would inject them, TLS required."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C.UTF-8",
        "DB_HOST": pg.host,
        "DB_PORT": str(pg.port),
        "DB_NAME": database,
        "DB_USER": ROLE,
        "DB_PASSWORD": PASSWORD,
        "DB_SSLMODE": "require" if pg.tls else "disable",
        "MIGRATE_URL_TLS": "libpq",  # the stand-in command is psql
        "MIGRATE_LOCK_KEY": str(lock_key),
        "MIGRATE_LOCK_WAIT_SECONDS": "20",
        "MIGRATE_STOP_GRACE_SECONDS": "5",
    }


@pytest.fixture
def start_runner(tmp_path: Path) -> Iterator[Callable[..., Runner]]:
    """``start_runner(env, name=..., new_process=False) -> Runner``; every runner is killed at the
    end of the test. Runners are forked from the fork server unless ``new_process``."""
    runners: list[Runner] = []
    counter = itertools.count(1)

    def start(env: dict[str, str], name: str | None = None, *, new_process: bool = False) -> Runner:
        runner = Runner(env, tmp_path, name or f"runner{next(counter)}", new_process=new_process)
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        runner.kill()
        if runner.proc.poll() is None:
            runner.proc.wait(timeout=10)


@pytest.fixture
def run_runner(start_runner: Callable[..., Runner]) -> Callable[..., Result]:
    """``run_runner(env, timeout=20) -> Result``: start one runner and wait for it."""

    def run(env: dict[str, str], timeout: float = 20) -> Result:
        runner = start_runner(env)
        return runner.wait(timeout)

    return run
