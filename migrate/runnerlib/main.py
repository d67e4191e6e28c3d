"""run(): configuration, lock, command, exit code; main(): signals and the one-line failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from typing import NoReturn

from runnerlib import child
from runnerlib.connection import application_name, where
from runnerlib.exits import (
    EXIT_CONFIG,
    EXIT_DEADLINE,
    EXIT_INTERNAL,
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    ConfigError,
    RunnerExitError,
    Stopped,
)
from runnerlib.lock import acquire, release_lock
from runnerlib.output import die, log, one_line
from runnerlib.settings import Config, child_environment, deadline_for, load_config

#: The variable each action's command comes from (for messages).
COMMAND_VARIABLE = {"deploy": "MIGRATE_COMMAND", "status": "MIGRATE_STATUS_COMMAND", "resolve": "MIGRATE_RESOLVE_COMMAND"}


def _resolve(cfg: Config, env: Mapping[str, str]) -> None:
    """Fail fast (before waiting for the lock) when the command cannot be found."""
    name = COMMAND_VARIABLE[cfg.action]
    program = cfg.command[0]
    if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        if os.path.sep in program and os.path.exists(program):
            die(EXIT_NOT_EXECUTABLE, f"command not executable: {program} ({name})")
        die(EXIT_NOT_FOUND, f"command not found: {program} ({name})")


def _start_failure(cfg: Config, exc: OSError) -> RunnerExitError:
    name, program = COMMAND_VARIABLE[cfg.action], cfg.command[0]
    if isinstance(exc, FileNotFoundError):
        return RunnerExitError(EXIT_NOT_FOUND, f"command not found: {program} ({name}): {one_line(exc)}")
    if isinstance(exc, PermissionError):
        return RunnerExitError(EXIT_NOT_EXECUTABLE, f"command not executable: {program} ({name}): {one_line(exc)}")
    return RunnerExitError(EXIT_NOT_EXECUTABLE, f"cannot start {program} ({name}): {one_line(exc)}")


def run(env: Mapping[str, str]) -> int:
    started = time.monotonic()
    try:
        cfg = load_config(env)
    except ConfigError as exc:
        die(EXIT_CONFIG, str(exc))
    _resolve(cfg, env)
    deadline = deadline_for(cfg, started)
    if deadline.left() <= 0:
        die(EXIT_DEADLINE, f"{deadline.name} had passed when the runner started: nothing ran")

    app_name = application_name(env)
    log(f"action {cfg.action}: connecting to {where(cfg)} (from {cfg.source}, sslmode={cfg.sslmode}, application_name {app_name!r})")
    try:
        conn, waited = acquire(cfg, app_name, deadline)
    except RunnerExitError as exc:
        die(exc.code, str(exc))
    try:
        log(f"lock key {cfg.lock_key} acquired after {waited:.2f} s")
        try:
            return child.run_command(cfg, child_environment(env, cfg), conn, deadline)
        except OSError as exc:  # the command could not be started: nothing ran
            release_lock(conn, cfg.lock_key)
            raise _start_failure(cfg, exc) from None
    except RunnerExitError as exc:
        die(exc.code, str(exc))
    finally:
        child.teardown()
        with contextlib.suppress(Exception):
            conn.close()


def main() -> int:
    signal.signal(signal.SIGTERM, child.on_signal)
    signal.signal(signal.SIGINT, child.on_signal)
    try:
        return run(os.environ)
    except Stopped as stop:
        name = signal.Signals(stop.signum).name
        log(f"received {name} before the command started: exiting {128 + stop.signum}")
        return 128 + stop.signum
    except SystemExit:
        raise
    except Exception as exc:  # any other failure: one line, no traceback
        die(EXIT_INTERNAL, f"unexpected error: {type(exc).__name__}: {one_line(exc)}")


def exit_now(code: int) -> NoReturn:
    """Exit without the interpreter's teardown (module and thread clean-up): every line is already
    flushed and the session closed, and tearing down psycopg and threads only delays the exit code
    the state machine and the next runner are waiting for."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def entry() -> NoReturn:
    try:
        status = main()
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else EXIT_INTERNAL)
    exit_now(status)
