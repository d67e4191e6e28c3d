"""`python -m release`: parse the command line and hand it to the subcommand's module.

Exit codes (docs/ci.md): 0 success; 2 usage or config error; 3 AWS error or missing stack/output;
10 InvalidInput, 11 ImageNotFound, 12 ReleaseInProgress, 13 MigrationFailed, 14 MigrationTimedOut,
15 DeploymentFailed, 20 any other failure, timeout or abort; 130 interrupted (Ctrl-C).
Each subcommand lives in release/commands/<name>.py (NAME, HELP, add_arguments, run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import shtab
from botocore.exceptions import BotoCoreError, ClientError

from release.aws import SessionFactory, default_session
from release.commands import COMMANDS
from release.commands.common import Context, ask_on_terminal
from release.environment import load_environment
from release.errors import ExitCode, ReleaseError

# `release` when run through the venv's entry point (make setup writes .venv/bin/release, which sets it).
PROG = os.environ.get("RELEASE_PROG") or "python -m release"


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise ReleaseError(f"{message} (see {self.prog} --help)", ExitCode.USAGE)


# Polling faster than once a second only spends API quota; slower than five minutes hides a rollout.
MIN_POLL_SECONDS = 1.0
MAX_POLL_SECONDS = 300.0


def _poll_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    # `not (a <= v <= b)` is also true for nan; inf is above the bound.
    if not (MIN_POLL_SECONDS <= value <= MAX_POLL_SECONDS):
        raise argparse.ArgumentTypeError(f"must be between {MIN_POLL_SECONDS:g} and {MAX_POLL_SECONDS:g} seconds, not {text!r}")
    return value


def build_parser() -> _Parser:
    parser = _Parser(prog=PROG, description="Plan, start, follow, stop and roll back releases of one environment.")
    # `release --print-completion bash|zsh|tcsh`: the shell's completion script (docs/ci.md).
    shtab.add_argument_to(parser, ["--print-completion"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        sub.add_argument("--env", required=True, metavar="NAME", help="environment: config/NAME.yaml")
        sub.add_argument(
            "--config-dir",
            type=Path,
            default=os.environ.get("RELEASE_CONFIG_DIR"),
            help="folder of the environment files (default: the project's config/; env RELEASE_CONFIG_DIR)",
        )
        command.add_arguments(sub, _poll_interval)
        if not any("--format" in action.option_strings for action in sub._actions):
            sub.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or one JSON document on stdout")
        sub.set_defaults(run=command.run)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    session_factory: SessionFactory = default_session,
    sleep: Callable[[float], None] = time.sleep,
    confirm: Callable[[str], bool | None] = ask_on_terminal,
) -> int:
    try:
        args = build_parser().parse_args(argv)
        ctx = Context(load_environment(args.env, args.config_dir), session_factory, sleep, confirm)
        return int(args.run(args, ctx))
    except ReleaseError as exc:
        print(f"release: {exc.message}", file=sys.stderr)
        return int(exc.code)
    except (BotoCoreError, ClientError) as exc:  # outside an aws_errors block, e.g. an unknown AWS_PROFILE
        print(f"release: AWS: {exc}", file=sys.stderr)
        return int(ExitCode.AWS)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("release: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:  # `release … | head`: the reader has what it wanted
        sys.stderr.close()
        return int(ExitCode.OK)
