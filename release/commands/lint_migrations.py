"""`lint-migrations`: run squawk on the Prisma migrations a change adds; Markdown for the review comment.

The files are `<review.migrations_path>/<folder>/migration.sql` that `git diff --diff-filter=A
BASE...HEAD` lists (added, not changed: an applied migration is never edited). squawk runs as
Prisma runs them: in a transaction (`--assume-in-transaction`), so an index on a table the same
migration creates is not flagged. The rules Prisma's own SQL breaks on every model (PRISMA_LEFT_OUT,
each with its reason) are left out, as are the environment's `review.squawk_excluded_rules`; what
is left locks or breaks a running app, and each finding comes with its Prisma-side fix
(PRISMA_FIXES). Apart from the review, the statements that lose or rewrite data (DESTRUCTIVE_RULES)
are listed whatever the review leaves out, and advise a snapshot: CI's deploy turns on `start
--snapshot` from this. Exit 0: no findings (or no migration added); 1: findings; 2: usage (bad
base, no git, no squawk).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

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

# Statements whose data a point-in-time restore alone may bring back too slowly (a whole instance)
# or too coarsely (everything written since): a snapshot is taken before a release that runs them.
# squawk 2.70.0's rule names. They count even when the config excludes them from the review or a
# `-- squawk-ignore` comment waives them: a reviewed drop still drops the data. Plain TRUNCATE, DELETE and UPDATE have no squawk rule.
DESTRUCTIVE_RULES: dict[str, str] = {
    "ban-drop-column": "the column's values are gone",
    "ban-drop-table": "the table's rows are gone",
    "ban-drop-schema": "every object in the schema is gone (with CASCADE)",
    "ban-drop-database": "the database is gone",
    "ban-truncate-cascade": "the rows of the table and of every table that references it are gone",
    "changing-column-type": "every value is rewritten by a cast (precision or length can be lost)",
    "renaming-column": "the old name is gone: the running code's writes fail, a way back is a reverse migration",
    "renaming-table": "the old name is gone: the running code's writes fail, a way back is a reverse migration",
}
# Neutralizes squawk's ignore comments (`squawk-ignore`, `squawk-ignore-file`) with as many bytes,
# so lines and columns stay where they are.
_IGNORE_COMMENT = re.compile(rb"squawk-ignore", re.IGNORECASE)

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


@dataclass(frozen=True)
class Destructive:
    file: str
    line: int  # 1-based
    rule: str


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
    beside = Path(sys.executable).with_name("squawk")  # installed beside Python (requirements-dev.lock, requirements-cli.lock)
    found = str(beside) if beside.exists() else shutil.which("squawk")
    if not found:
        raise ReleaseError(
            "squawk is not installed: run make setup (installs requirements-dev.lock, hash-pinned, squawk-cli included)"
            " or install requirements-cli.lock",
            ExitCode.USAGE,
        )
    return found


def _squawk(cwd: Path, options: list[str], files: list[str]) -> list[dict[str, Any]]:
    command = [squawk_binary(), "--reporter", "json", "--assume-in-transaction", *options, *files]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT_SECONDS, check=False)
    try:
        raw = json.loads(result.stdout or "[]")
    except ValueError:
        raw = None
    if not isinstance(raw, list):
        raise ReleaseError(f"squawk failed (exit {result.returncode}): {result.stderr.strip()[:300]}", ExitCode.USAGE)
    return raw


def run_squawk(repo_root: Path, files: list[str], excluded: tuple[str, ...]) -> list[Finding]:
    left_out = sorted({*PRISMA_LEFT_OUT, *excluded})
    return [
        # squawk's JSON lines count from 0.
        Finding(str(v["file"]), int(v.get("line", 0)) + 1, str(v["rule_name"]), str(v["message"]), v.get("help"))
        for v in _squawk(repo_root, [f"--exclude={','.join(left_out)}"], files)
    ]


def destructive_statements(repo_root: Path, files: list[str]) -> list[Destructive]:
    """The DESTRUCTIVE_RULES statements in `files`, whatever the review leaves out: squawk reads
    copies without ignore comments, and an empty config (no .squawk.toml setting can hide one)."""
    with tempfile.TemporaryDirectory(prefix="lint-migrations-") as tmp:
        copies = Path(tmp, "repo")
        for name in files:
            copy = copies / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(_IGNORE_COMMENT.sub(b"squawk-unused", (repo_root / name).read_bytes()))
        config = Path(tmp, "empty.toml")
        config.write_text("")
        raw = _squawk(copies, ["--config", str(config)], files)
    found = {Destructive(str(v["file"]), int(v.get("line", 0)) + 1, str(v["rule_name"])) for v in raw}
    return sorted((d for d in found if d.rule in DESTRUCTIVE_RULES), key=lambda d: (d.file, d.line, d.rule))


def destructive_line(destructive: list[Destructive]) -> str:
    if not destructive:
        return "Snapshot advised: no (no statement that loses or rewrites data)."
    where = ", ".join(f"{d.file}:{d.line} {d.rule}" for d in destructive)
    return f"Snapshot advised: yes, data lost or rewritten by {where} (CI's release takes one before migrating)."


def markdown(files: list[str], findings: list[Finding], excluded: tuple[str, ...], destructive: list[Destructive]) -> str:
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
    if destructive:
        lines += ["", f"**{destructive_line(destructive)}**"]
    lines += ["", f'Rules Prisma\'s own SQL breaks, left out: {", ".join(sorted(PRISMA_LEFT_OUT))} (docs/ci.md, "Migration lint").']
    if excluded:
        lines += ["", f"Rules left out by the config: {', '.join(excluded)}."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, ctx: Context) -> int:
    env = ctx.env
    files = added_migrations(args.repo_root, args.base, env.migrations_path)
    findings = run_squawk(args.repo_root, files, env.squawk_excluded_rules) if files else []
    destructive = destructive_statements(args.repo_root, files) if files else []
    if args.format == "json":
        print(
            json.dumps(
                {
                    "files": files,
                    "findings": [asdict(f) | {"fix": f.fix} for f in findings],
                    "excludedRules": list(env.squawk_excluded_rules),
                    "prismaLeftOut": PRISMA_LEFT_OUT,
                    "destructive": [asdict(d) for d in destructive],
                    "destructiveRules": DESTRUCTIVE_RULES,
                    "snapshotAdvised": bool(destructive),
                },
                indent=2,
            )
        )
    elif args.format == "markdown":
        print(markdown(files, findings, env.squawk_excluded_rules, destructive), end="")
    else:
        for f in findings:
            print(f"{f.file}:{f.line}: {f.rule}: {f.message}")
            if f.fix:
                print(f"    fix (Prisma): {f.fix}")
        print(destructive_line(destructive))
        print(f"{len(findings)} finding(s) in {len(files)} added migration(s) under {env.migrations_path}")
    return int(ExitCode.FINDINGS if findings else ExitCode.OK)
