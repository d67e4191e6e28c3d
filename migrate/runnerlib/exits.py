"""The runner's exit codes and the errors that carry them.

The runner's own codes live in a reserved range, 80-89, that no migration tool here uses, so a
command that fails half-way with 2 or 6 never reads as "nothing ran" or "timed out". A command
exit code inside that range is reported as EXIT_COMMAND_IN_RESERVED_RANGE (its own code is logged).
release/contract.py (RUNNER_EXIT_MEANINGS) names the same codes; a test keeps them equal.
"""

from __future__ import annotations

EXIT_CONFIG = 80
EXIT_DB_UNREACHABLE = 81
EXIT_LOCK_TIMEOUT = 82
EXIT_LOCK_LOST = 83
EXIT_DEADLINE = 84
EXIT_LOGIN_REFUSED = 85
EXIT_NOT_EXECUTABLE = 86
EXIT_NOT_FOUND = 87
EXIT_COMMAND_IN_RESERVED_RANGE = 88
EXIT_INTERNAL = 89

RESERVED = range(80, 90)


def command_exit(returncode: int) -> int:
    """The runner's code for the command's own exit (negative: killed by that signal)."""
    if returncode < 0:
        return 128 - returncode
    if returncode in RESERVED:
        return EXIT_COMMAND_IN_RESERVED_RANGE
    return returncode


class ConfigError(Exception):
    """A missing or invalid environment variable (the message names it)."""


class LockTimeoutError(Exception):
    """The lock was not acquired before the deadline (the message names the holder)."""


class RunnerExitError(Exception):
    """Ends the run with ``code`` and a one-line ``message`` on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Stopped(SystemExit):
    """Raised from the signal handler before the command runs.

    A SystemExit subclass on purpose: psycopg cancels a running query (the lock wait) on the
    server when a SystemExit/KeyboardInterrupt interrupts it, so no waiter is left behind.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
