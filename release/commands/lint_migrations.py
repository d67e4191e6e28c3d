"""`lint-migrations`: run squawk on the Prisma migrations a change adds; Markdown for the review comment.

The files are `<review.migrations_path>/<folder>/migration.sql` that `git diff --diff-filter=A
BASE...HEAD` lists (added, not changed: an applied migration is never edited). The rules left out
come from the environment's `review.squawk_excluded_rules`. Exit 0: no findings (or no migration
added); 1: findings; 2: usage (bad base, no git, no squawk).
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
    command = [squawk_binary(), "--reporter", "json"]
    if excluded:
        command.append(f"--exclude={','.join(excluded)}")
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
        lines += ["| file | line | rule | finding |", "| --- | --- | --- | --- |"]
        for f in findings:
            text = (f.message + (f" {f.help}" if f.help else "")).replace("|", "\\|")
            lines.append(f"| `{f.file}` | {f.line} | `{f.rule}` | {text} |")
        lines += ["", "A deliberate exception: a `-- squawk-ignore <rule>` comment above the statement, with the reason."]
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
                {"files": files, "findings": [asdict(f) for f in findings], "excludedRules": list(env.squawk_excluded_rules)}, indent=2
            )
        )
    elif args.format == "markdown":
        print(markdown(files, findings, env.squawk_excluded_rules), end="")
    else:
        for f in findings:
            print(f"{f.file}:{f.line}: {f.rule}: {f.message}")
        print(f"{len(findings)} finding(s) in {len(files)} added migration(s) under {env.migrations_path}")
    return int(ExitCode.FINDINGS if findings else ExitCode.OK)
