"""One module per subcommand of `python -m release`: each has NAME, HELP, add_arguments and run."""

from __future__ import annotations

from types import ModuleType

from release.commands import (
    env,
    history,
    hold,
    lint_migrations,
    logs,
    migrate_status,
    outputs,
    plan,
    resolve,
    rollback,
    start,
    status,
    stop,
    unhold,
    unlock,
    watch,
)

COMMANDS: tuple[ModuleType, ...] = (
    start,
    watch,
    logs,
    plan,
    status,
    history,
    rollback,
    stop,
    hold,
    unhold,
    unlock,
    migrate_status,
    resolve,
    outputs,
    env,
    lint_migrations,
)
