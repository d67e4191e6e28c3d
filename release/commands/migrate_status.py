"""`migrate-status`: `prisma migrate status` against the environment's database, through the release
path (the migrate task, the lease, the advisory lock, the record), its log printed as it runs.

Exit 0: the database is up to date with the image's migrations. Prisma exits non-zero when some
are not applied or one failed: the release records MigrationFailed (exit 13) and the log says which.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from release import contract
from release.commands.common import Context
from release.recovery import add_recovery_arguments, run_recovery

NAME = "migrate-status"
HELP = "Run `prisma migrate status` in the migrate task (under the lease and lock) and print its log."


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    add_recovery_arguments(parser, poll_interval)


def run(args: argparse.Namespace, ctx: Context) -> int:
    return run_recovery(ctx, args, contract.ACTION_STATUS, None, "prisma migrate status")
