"""`resolve`: mark a failed migration (Prisma's P3009) as rolled back or applied with `prisma migrate
resolve`, in the migrate task under the lease and advisory lock, recorded, its log followed.

Only after a person has looked at the database (docs/operations.md, "A failed migration (P3009)"):
`--rolled-back` when the migration's changes are not in the database (undone, or never made), so
the next release runs it again; `--applied` when they are all there (finished by hand).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from release import contract
from release.commands.common import Context, confirmed
from release.recovery import add_recovery_arguments, migration_name, run_recovery

NAME = "resolve"
HELP = "Mark a failed Prisma migration --rolled-back or --applied (prisma migrate resolve, through the release path)."


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--rolled-back", metavar="MIGRATION", help="its changes are not in the database: the next release runs it again")
    which.add_argument("--applied", metavar="MIGRATION", help="its changes are all in the database: the next release skips it")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation (CI)")
    add_recovery_arguments(parser, poll_interval)


def run(args: argparse.Namespace, ctx: Context) -> int:
    kind, name = ("rolled-back", args.rolled_back) if args.rolled_back else ("applied", args.applied)
    migration = migration_name(name)
    confirmed(ctx, args.yes, f"Mark migration {migration} as {kind} in {ctx.env.env_name}'s database (prisma migrate resolve --{kind})?")
    return run_recovery(ctx, args, contract.ACTION_RESOLVE, f"{kind}:{migration}", f"prisma migrate resolve --{kind} {migration}")
