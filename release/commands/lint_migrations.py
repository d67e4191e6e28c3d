"""`lint-migrations`: run squawk on the Prisma migrations a change adds; Markdown for the review comment.

The files are `<review.migrations_path>/<folder>/migration.sql` that `git diff --diff-filter=A
BASE...HEAD` lists (added, not changed: an applied migration is never edited). squawk runs as
Prisma runs them: in a transaction (`--assume-in-transaction`), so an index on a table the same
migration creates is not flagged. The rules Prisma's own SQL breaks on every model (PRISMA_LEFT_OUT,
each with its reason) are left out, as are the environment's `review.squawk_excluded_rules`; what
is left locks or breaks a running app, and each finding comes with its Prisma-side fix
(PRISMA_FIXES). Exit 0: no findings (or no migration added); 1: findings; 2: usage (bad base, no
git, no squawk).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from release.commands.common import Context
from release.errors import ExitCode, ReleaseError

# Rules Prisma's generated SQL breaks for every new model or column: each is a choice Prisma makes,
# not a lock a running app waits on. Left out always (docs/ci.md, "Migration lint" says how to opt in).
PRISMA_LEFT_OUT: dict[str, str] = {
    "prefer-robust-stmts": "Prisma never re-runs an applied migration; a failed one waits for `release resolve`",
    "prefer-bigint-over-int": "Prisma's `Int` is `integer` (use `BigInt` in schema.prisma where 2^31 is in reach)",
    "prefer-identity": "Prisma's `@default(autoincrement())` is `SERIAL`",
    "prefer-timestamp-tz": "Prisma's `DateTime` is `timestamp(3)`, written in UTC by Prisma's client (`@db.Timestamptz(3)` where wanted)",
    "require-lock-timeout": 'asked of every ALTER; Prisma writes no SET: bound a statement on a busy table by hand (docs/ci.md, "Migration lint")',
    "require-statement-timeout": "asked of every ALTER, as require-lock-timeout",
}
_EXPAND_CONTRACT = "expand and contract: add the new column, backfill, switch the code in a release, drop the old one in a later migration"
# What to do on the Prisma side about each rule that stays (squawk's message says what locks).
PRISMA_FIXES: dict[str, str] = {
    "require-concurrent-index-creation": (
        "Prisma runs each migration in a transaction, where CREATE INDEX CONCURRENTLY fails (P3018). Large table: create the index "
        "before the release with psql (CREATE INDEX CONCURRENTLY IF NOT EXISTS …) and make the migration CREATE INDEX IF NOT EXISTS "
        "(a no-op then). Small table: keep it, with `-- squawk-ignore require-concurrent-index-creation` and why"
    ),
    "adding-required-field": "make the field optional (`String?`) or give it a `@default(…)`; require it in a later migration after a backfill",
    "adding-not-nullable-field": "SET NOT NULL scans the table under an exclusive lock: add a CHECK (… IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL (edit migration.sql)",
    "changing-column-type": _EXPAND_CONTRACT,
    "renaming-column": 'the running code still uses the old name during the rollout: keep the database name with `@map("old")`, or '
    + _EXPAND_CONTRACT,
    "renaming-table": 'keep the table\'s database name with `@@map("Old")`',
    "ban-drop-column": "the running code still reads it during the rollout: remove the field from the code in one release, drop the column in a later one",
    "ban-drop-table": "remove the model's use in one release, drop the table in a later one",
    "adding-foreign-key-constraint": "on an existing table: add the constraint NOT VALID in this migration, VALIDATE CONSTRAINT in a later one (edit migration.sql)",
    "constraint-missing-not-valid": "add it NOT VALID here and VALIDATE CONSTRAINT in a later migration (edit migration.sql)",
    "disallowed-unique-constraint": "create the unique index first (see require-concurrent-index-creation), then ADD CONSTRAINT … UNIQUE USING INDEX",
    "adding-field-with-default": "a volatile default (now(), uuid) rewrites the table: add the column without it, then SET DEFAULT",
}

NAME = "lint-migrations"
HELP = "Lint the Prisma migrations a change adds with squawk (rules and path from the config); no AWS access."
_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Finding:
    file: str
    line: int  # 1-based
    rule: str
    message: str
    help: str | None

    @property
    def fix(self) -> str | None:
        return PRISMA_FIXES.get(self.rule)


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument("--base", required=True, metavar="REF", help="the commit the change is compared with (the pull request's base)")
    parser.add_argument("--repo-root", type=Path, default=Path.cwd(), metavar="PATH", help="the repository's top folder (default: here)")
    parser.add_argument(
        "--format", choices=("text", "markdown", "json"), default="text", help="text (default), Markdown for a comment, or JSON"
    )


def added_migrations(repo_root: Path, base: str, migrations_path: str) -> list[str]:
    """Paths (relative to the repository) of the migration.sql files added since `base`."""
    if not base or base.startswith("-"):
        # git would read it as an option (e.g. `--output=<file>` writes a file): a ref never starts with "-".
        raise ReleaseError(f"--base must be a commit or branch, not an option: {base!r}", ExitCode.USAGE)
    try:
        result = subprocess.run(
            ["git", "-C", str(repo_root), "diff", "--name-only", "--diff-filter=A", "-z", f"{base}...HEAD", "--", migrations_path],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise ReleaseError("git is not installed", ExitCode.USAGE) from None
    if result.returncode != 0:
        raise ReleaseError(f"git diff against {base} failed: {result.stderr.strip().splitlines()[-1:]}", ExitCode.USAGE)
    paths = [PurePosixPath(p) for p in result.stdout.split("\0") if p]
    base_path = PurePosixPath(migrations_path)
    return sorted(str(p) for p in paths if p.name == "migration.sql" and p.parent.parent == base_path)


def squawk_binary() -> str:
    beside = Path(sys.executable).with_name("squawk")  # installed in the same venv (requirements-dev.txt)
    found = str(beside) if beside.exists() else shutil.which("squawk")
    if not found:
        raise ReleaseError(
            "squawk is not installed: run make setup (installs requirements-dev.lock, hash-pinned, squawk-cli included)", ExitCode.USAGE
        )
    return found


def run_squawk(repo_root: Path, files: list[str], excluded: tuple[str, ...]) -> list[Finding]:
    command = [squawk_binary(), "--reporter", "json", "--assume-in-transaction"]
    left_out = sorted({*PRISMA_LEFT_OUT, *excluded})
    command.append(f"--exclude={','.join(left_out)}")
    result = subprocess.run([*command, *files], cwd=repo_root, capture_output=True, text=True, timeout=_TIMEOUT_SECONDS, check=False)
    try:
        raw = json.loads(result.stdout or "[]")
    except ValueError:
        raise ReleaseError(f"squawk failed (exit {result.returncode}): {result.stderr.strip()[:300]}", ExitCode.USAGE) from None
    return [
        # squawk's JSON lines count from 0.
        Finding(str(v["file"]), int(v.get("line", 0)) + 1, str(v["rule_name"]), str(v["message"]), v.get("help"))
        for v in raw
    ]


def markdown(files: list[str], findings: list[Finding], excluded: tuple[str, ...]) -> str:
    lines = ["### Migration lint (squawk)", ""]
    if not files:
        return "\n".join([*lines, "No migration added."]) + "\n"
    if not findings:
        lines.append(f"No findings in {len(files)} added migration(s): {', '.join(f'`{f}`' for f in files)}.")
    else:
        lines += ["| file | line | rule | finding | Prisma-side fix |", "| --- | --- | --- | --- | --- |"]
        for f in findings:
            text = (f.message + (f" {f.help}" if f.help else "")).replace("|", "\\|")
            fix = (f.fix or "").replace("|", "\\|")
            lines.append(f"| `{f.file}` | {f.line} | `{f.rule}` | {text} | {fix} |")
        lines += ["", "A deliberate exception: a `-- squawk-ignore <rule>` comment above the statement, with the reason."]
    lines += ["", f'Rules Prisma\'s own SQL breaks, left out: {", ".join(sorted(PRISMA_LEFT_OUT))} (docs/ci.md, "Migration lint").']
    if excluded:
        lines += ["", f"Rules left out by the config: {', '.join(excluded)}."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, ctx: Context) -> int:
    env = ctx.env
    files = added_migrations(args.repo_root, args.base, env.migrations_path)
    findings = run_squawk(args.repo_root, files, env.squawk_excluded_rules) if files else []
    if args.format == "json":
        print(
            json.dumps(
                {
                    "files": files,
                    "findings": [asdict(f) | {"fix": f.fix} for f in findings],
                    "excludedRules": list(env.squawk_excluded_rules),
                    "prismaLeftOut": PRISMA_LEFT_OUT,
                },
                indent=2,
            )
        )
    elif args.format == "markdown":
        print(markdown(files, findings, env.squawk_excluded_rules), end="")
    else:
        for f in findings:
            print(f"{f.file}:{f.line}: {f.rule}: {f.message}")
            if f.fix:
                print(f"    fix (Prisma): {f.fix}")
        print(f"{len(findings)} finding(s) in {len(files)} added migration(s) under {env.migrations_path}")
    return int(ExitCode.FINDINGS if findings else ExitCode.OK)
