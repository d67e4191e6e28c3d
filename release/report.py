"""What a person (or a CI log) sees: steps, the migrate task's log lines, the summary or the error."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

_SYMBOLS = {">": ("▶", "cyan"), "ok": ("✓", "green"), "x": ("✗", "red")}


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Off a terminal (CI logs) rich would wrap at 80 columns: give tables and log lines room.
    width = None if stream.isatty() or "COLUMNS" in os.environ else 160
    return Console(stderr=stderr, highlight=False, width=width)


def _clock(when: datetime | None) -> str:
    if when is None:
        return "--:--:--"
    return when.astimezone().strftime("%H:%M:%S")


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return "" if value is None else str(value)


def short_digest(digest: Any) -> str:
    text = str(digest or "")
    return text[:19] if text.startswith("sha256:") else text


def revision(task_definition_arn: Any) -> str:
    """`family:revision` out of a task definition ARN."""
    return str(task_definition_arn or "").rsplit("/", 1)[-1]


class ConsoleReporter:
    """Prints a followed execution as it happens (implements follow.Reporter)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def info(self, text: str) -> None:
        self.console.print(Text(text))

    def step(self, when: datetime | None, symbol: str, text: str) -> None:
        mark, style = _SYMBOLS.get(symbol, (symbol, ""))
        line = Text(f"{_clock(when)} ")
        line.append(mark, style=style)
        line.append(f" {text}")
        self.console.print(line)

    def migration_task(self, task_arn: str, log_group: str, log_stream: str) -> None:
        self.console.print(Text(f"         migrate task {task_arn.rsplit('/', 1)[-1]}: logs {log_group} {log_stream}", style="dim"))

    def log_line(self, when: datetime | None, message: str) -> None:
        line = Text(f"{_clock(when)}   migrate | ", style="dim")
        line.append(message)  # never parsed as markup: log lines may contain [brackets]
        self.console.print(line, soft_wrap=True)

    def succeeded(self, name: str, output: dict[str, Any]) -> None:
        self.console.print(Text(f"Release {output.get('imageTag', '')} succeeded ({name})", style="bold green"))
        migration = output.get("migration")
        if isinstance(migration, dict):
            table = Table(title="Migration", title_justify="left")
            for column in ("exit code", "image", "task definition", "log stream"):
                table.add_column(column)
            table.add_row(
                str(migration.get("exitCode", "")),
                short_digest(migration.get("imageDigest")),
                revision(migration.get("taskDefinitionArn")),
                str(migration.get("logStream", "")),
            )
            self.console.print(table)
        else:
            self.console.print(Text("Migration: not run (--no-migrate)"))
        services = output.get("services") or []
        table = Table(title="Services", title_justify="left")
        for column in ("app", "service", "task definition", "deployment", "rollout"):
            table.add_column(column)
        for service in services:
            if isinstance(service, dict):
                table.add_row(
                    str(service.get("app", "")),
                    str(service.get("service", "")),
                    revision(service.get("taskDefinitionArn")),
                    str(service.get("deploymentId", "")),
                    str(service.get("rolloutState", "")),
                )
        self.console.print(table)

    def failed(self, name: str, status: str, error: str | None, cause: str | None, code: int) -> None:
        err = make_console(stderr=True)
        headline = f"Release {name} {status}"
        if error:
            headline += f": {error}"
        err.print(Text(headline, style="bold red"))
        if cause:
            err.print(Text(f"cause: {cause}"), soft_wrap=True)
        err.print(Text(f"exit code {code}"))


def markdown_summary(name: str, arn: str, description: dict[str, Any]) -> str:
    """The outcome as GitHub-flavoured Markdown (for $GITHUB_STEP_SUMMARY)."""
    status = str(description.get("status", ""))
    lines = [f"### Release `{name}`: {status}", "", f"Execution: `{arn}`", ""]
    output: dict[str, Any] = {}
    if description.get("output"):
        try:
            output = json.loads(description["output"])
        except ValueError:
            output = {}
    if status == "SUCCEEDED":
        migration = output.get("migration")
        if isinstance(migration, dict):
            digest = short_digest(migration.get("imageDigest"))
            lines.append(
                f"Migration: exit code {migration.get('exitCode')}, image `{digest}`, log stream `{migration.get('logStream', '')}`"
            )
            lines.append("")
        lines += ["| app | service | task definition | rollout |", "| --- | --- | --- | --- |"]
        for service in output.get("services") or []:
            if isinstance(service, dict):
                lines.append(
                    f"| {service.get('app', '')} | {service.get('service', '')} | "
                    f"{revision(service.get('taskDefinitionArn'))} | {service.get('rolloutState', '')} |"
                )
    else:
        lines += [f"Error: `{description.get('error') or status}`", "", "```", str(description.get("cause") or ""), "```"]
    return "\n".join(lines) + "\n"


def executions_table(executions: list[dict[str, Any]]) -> Table:
    table = Table(title="Recent releases", title_justify="left")
    for column in ("name", "status", "started", "stopped"):
        table.add_column(column)
    styles = {"SUCCEEDED": "green", "RUNNING": "cyan", "FAILED": "red", "TIMED_OUT": "red", "ABORTED": "yellow"}
    for execution in executions:
        status = str(execution.get("status", ""))
        table.add_row(
            str(execution.get("name", "")),
            Text(status, style=styles.get(status, "")),
            _iso(execution.get("startDate")),
            _iso(execution.get("stopDate")),
        )
    return table
