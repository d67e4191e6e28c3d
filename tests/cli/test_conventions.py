"""Conventions a user relies on: every doc reference in the code resolves, every `python -m release`
command the README and docs show names a real command and real options, `make` alone lists the
targets, and every command takes `--format json`."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from release.cli import build_parser, main
from release.commands import COMMANDS

REPO = Path(__file__).resolve().parents[2]
CODE = [*sorted((REPO / "release").rglob("*.py")), *sorted((REPO / "constructs").rglob("*.py")), *sorted((REPO / "config").rglob("*.py"))]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# `docs/x.md, "Section"` or `docs/x.md, 'Section'` (a section named after a file), also across a
# comment's line break.
SECTION_REFERENCE = re.compile(r"(docs/[a-z_-]+\.md), (?:\"([^\"]+)\"|'([^']+)')")
FILE_REFERENCE = re.compile(r"\b(docs/[a-z_.-]+\.(?:md|json))\b")


def _headings(path: Path) -> list[str]:
    """Its `#` headings and its run-in titles (a paragraph starting `**Title.**`)."""
    lines = path.read_text().splitlines()
    titles = [m.group(1) for line in lines if (m := re.match(r"\*\*([^*]+)\*\*", line))]
    return [line.lstrip("#").strip() for line in lines if line.startswith("#")] + titles


def test_every_doc_reference_in_the_code_resolves() -> None:
    checked = 0
    for source in CODE:
        text = source.read_text()
        for match in FILE_REFERENCE.finditer(text):
            assert (REPO / match.group(1)).exists(), f"{source.relative_to(REPO)} names {match.group(1)}, which does not exist"
        flat = re.sub(r"\s*\n\s*#?\s*", " ", text)
        for doc, double, single in SECTION_REFERENCE.findall(flat):
            section = double or single
            headings = _headings(REPO / doc)
            assert any(section.lower() in heading.lower() for heading in headings), (
                f"{source.relative_to(REPO)} points at {doc}, {section!r}: no such section ({headings})"
            )
            checked += 1
    assert checked >= 1  # the pattern still finds the references it is meant to check


def _options(parser: argparse.ArgumentParser, command: str) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {option for action in sub._actions for option in action.option_strings}


def _doc_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            for fragment in re.findall(r"python -m release ([a-z-]+(?: [^`#|]*)?)", line):
                words = fragment.split()
                found.append((f"{doc.relative_to(REPO)}: {line.strip()}", words))
    return found


def test_every_documented_command_and_option_exists() -> None:
    parser = build_parser()
    names = {command.NAME for command in COMMANDS}
    commands = _doc_commands()
    assert len(commands) > 30
    for where, words in commands:
        if words[0] not in names:
            pytest.fail(f"{where}: no command {words[0]!r}")
        options = _options(parser, words[0])
        for word in words[1:]:
            flag = word.split("=")[0].strip("[]()|,.`'\"")
            if flag.startswith("--") and re.fullmatch(r"--[a-z-]+", flag):
                assert flag in options, f"{where}: {words[0]} has no option {flag}"


@pytest.mark.parametrize("command", [c.NAME for c in COMMANDS])
def test_every_command_takes_format_json(command: str) -> None:
    assert "--format" in _options(build_parser(), command)
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    (fmt,) = [a for a in sub._actions if "--format" in a.option_strings]
    assert "json" in (fmt.choices or ())


def test_make_alone_lists_the_targets() -> None:
    # As a person types it: not inside another make (whose MAKEFLAGS would add "Entering directory").
    env = {key: value for key, value in os.environ.items() if key not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}
    result = subprocess.run(["make", "-s", "-C", str(REPO)], capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("usage: make <target>")
    listed = {line.split()[0] for line in lines[1:]}
    assert {"help", "setup", "synth", "test", "lint", "diff", "deploy", "drift", "lock"} <= listed


def test_the_release_entry_point_runs_from_any_folder_with_completion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """make setup writes `.venv/bin/release`; with the venv active, `release` works anywhere."""
    # A venv beside the project's (its python, its packages) so that the entry point is written there.
    real = Path(sys.prefix)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(real / "bin" / "python")
    (venv / "pyvenv.cfg").write_text((real / "pyvenv.cfg").read_text())
    (venv / "lib").symlink_to(real / "lib")
    made = subprocess.run(
        ["make", "-s", "-C", str(REPO), f"VENV={venv}", f"{venv}/bin/release"], capture_output=True, text=True, timeout=60, check=False
    )
    assert made.returncode == 0, made.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # The entry point as a shell runs it, from another folder, without the repo on sys.path: the CLI
    # and the config package it imports load (the completion script is printed after both), and the
    # script is named after the command the entry point runs.
    completion = subprocess.run(
        [str(venv / "bin" / "release"), "--print-completion", "bash"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completion.returncode == 0, completion.stderr
    assert "_shtab_release" in completion.stdout and "migrate-status" in completion.stdout
    # From another folder, the environments are still the project's config/ (not the working folder's):
    # shown in this process, which is what the entry point runs (a second interpreter would only import it all again).
    monkeypatch.chdir(elsewhere)
    assert main(["env", "--env", "example", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["region"] == "ap-southeast-5"
