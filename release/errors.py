"""Exit codes and the one exception the CLI turns into a single line on stderr."""

from __future__ import annotations

from enum import IntEnum

from release import contract


class ExitCode(IntEnum):
    """The CLI's exit codes: documented in docs/ci.md, relied on by CI."""

    OK = 0
    FINDINGS = 1  # lint-migrations: squawk reported findings
    USAGE = 2  # bad arguments, unknown environment, invalid config file
    AWS = 3  # AWS call failed, credentials missing or for another account, stack or output missing
    INVALID_INPUT = 10
    IMAGE_NOT_FOUND = 11
    RELEASE_IN_PROGRESS = 12
    MIGRATION_FAILED = 13
    MIGRATION_TIMED_OUT = 14
    DEPLOYMENT_FAILED = 15
    RELEASE_HELD = 16  # releases are held (`release hold`): refused before anything started
    RELEASE_FAILED = 20  # any other failure, a timeout or an abort of the execution
    INTERRUPTED = 130  # Ctrl-C (while following: the execution itself goes on)


# The state machine's error names (the execution's `error`) and what the CLI exits with.
ERROR_EXIT_CODES: dict[str, ExitCode] = {name: ExitCode(code) for name, code in contract.ERROR_EXIT_CODES.items()}


def exit_code_for(error: str | None) -> ExitCode:
    """The exit code of a failed execution with this error name (States.* and unknowns: 20)."""
    return ERROR_EXIT_CODES.get(error or "", ExitCode.RELEASE_FAILED)


class ReleaseError(Exception):
    """A problem already phrased as one line for a person, with the exit code it ends the CLI with."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
