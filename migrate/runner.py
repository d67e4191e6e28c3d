#!/usr/bin/env python3
"""Migration runner: the entrypoint of the migrate container.

Takes a PostgreSQL session-level advisory lock (waiting for it, with a deadline), runs the
migration command (default ``npx prisma migrate deploy``) with a ``DATABASE_URL`` built from the
environment, and watches its lock session while the command runs: if the session ends or stops
answering, the command's process group is killed at once and the runner exits 5 ("lock lost").
It exits with the command's code only when the session that took the lock verifiably lived until
the command ended (the final ``pg_advisory_unlock`` on that same session returns true).

Environment (see docs/migrations.md):
  DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD   the database (single keys of the owner secret)
  DATABASE_URL              instead of DB_*: a whole postgresql:// URL
  DB_SSLMODE                disable|allow|prefer|require|verify-ca|verify-full (default verify-full)
  DB_SSLROOTCERT            CA bundle file; required for verify-ca/verify-full
  MIGRATE_URL_TLS           prisma|libpq: how TLS is spelled in the command's URL (default prisma)
  MIGRATE_COMMAND           the command, split like a shell would (default npx prisma migrate deploy)
  MIGRATE_LOCK_KEY          int64 advisory lock key (default 7883946363647714593, "migrate!")
  MIGRATE_LOCK_WAIT_SECONDS how long to wait for the lock (default 900)
  MIGRATE_LOCK_LOG_SECONDS  while waiting, log who holds the lock this often (default 15)
  MIGRATE_CONNECT_WAIT_SECONDS how long transient connect errors are retried (default 120)
  MIGRATE_DEADLINE_SECONDS  runner-wide deadline from start (default: none)
  MIGRATE_HEARTBEAT_SECONDS / MIGRATE_HEARTBEAT_TIMEOUT_SECONDS
                            lock-session heartbeat interval and answer timeout (default 1 / 3)
  MIGRATE_STOP_GRACE_SECONDS after forwarding SIGTERM/SIGINT (or at the deadline), how long the
                            command gets before SIGKILL (default 20; below the task's stopTimeout)
  MIGRATE_DEADLINE_AT       Unix epoch seconds: the deadline is the earlier of this and the above
  MIGRATE_ACTION            deploy (MIGRATE_COMMAND) | status (MIGRATE_STATUS_COMMAND, default
                            npx prisma migrate status) | resolve (MIGRATE_RESOLVE_COMMAND, default
                            npx prisma migrate resolve, + --rolled-back|--applied NAME from
                            MIGRATE_RESOLVE=rolled-back:NAME|applied:NAME)

Exit codes: the command's own code, except that a code in the runner's reserved range 80-89 is
reported as 88; 80 configuration error (including TLS verification and an unknown database);
81 database unreachable for MIGRATE_CONNECT_WAIT_SECONDS; 82 lock wait ran out; 83 lock lost;
84 deadline reached; 85 login refused (authentication); 86 command not executable; 87 command not
found; 89 unexpected internal error; 128+N stopped by signal N.

The parts live in runnerlib/ beside this file (Python standard library + psycopg 3 only); the
image copies both.
"""

from __future__ import annotations

import os
import sys

# Run as a script, Python puts this folder first on sys.path; imported (tests), it may not.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import psycopg  # noqa: E402  (the tests build connection errors from it)
from runnerlib.child import run_command, supervise  # noqa: E402
from runnerlib.connection import application_name, classify_connect_error, connect  # noqa: E402
from runnerlib.exits import (  # noqa: E402
    EXIT_COMMAND_IN_RESERVED_RANGE,
    EXIT_CONFIG,
    EXIT_DB_UNREACHABLE,
    EXIT_DEADLINE,
    EXIT_INTERNAL,
    EXIT_LOCK_LOST,
    EXIT_LOCK_TIMEOUT,
    EXIT_LOGIN_REFUSED,
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    ConfigError,
    RunnerExitError,
    command_exit,
)
from runnerlib.lock import LockWatch, acquire, acquire_lock, describe_holder  # noqa: E402
from runnerlib.main import entry, main, run  # noqa: E402
from runnerlib.output import Redactor, log  # noqa: E402
from runnerlib.settings import DEFAULT_LOCK_KEY, PRISMA_LOCK_KEY, Config, child_environment, load_config  # noqa: E402

__all__ = [
    "DEFAULT_LOCK_KEY",
    "EXIT_COMMAND_IN_RESERVED_RANGE",
    "EXIT_CONFIG",
    "EXIT_DB_UNREACHABLE",
    "EXIT_DEADLINE",
    "EXIT_INTERNAL",
    "EXIT_LOCK_LOST",
    "EXIT_LOCK_TIMEOUT",
    "EXIT_LOGIN_REFUSED",
    "EXIT_NOT_EXECUTABLE",
    "EXIT_NOT_FOUND",
    "PRISMA_LOCK_KEY",
    "Config",
    "ConfigError",
    "LockWatch",
    "Redactor",
    "RunnerExitError",
    "acquire",
    "acquire_lock",
    "application_name",
    "child_environment",
    "classify_connect_error",
    "command_exit",
    "connect",
    "describe_holder",
    "load_config",
    "log",
    "main",
    "psycopg",
    "run",
    "run_command",
    "supervise",
]

if __name__ == "__main__":
    entry()
