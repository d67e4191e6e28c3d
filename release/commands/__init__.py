"""One module per subcommand of `python -m release`: each has NAME, HELP, add_arguments and run."""

from __future__ import annotations

from types import ModuleType

from release.commands import env, history, lint_migrations, logs, outputs, plan, rollback, start, status, stop, watch

COMMANDS: tuple[ModuleType, ...] = (start, watch, logs, plan, status, history, rollback, stop, outputs, env, lint_migrations)
