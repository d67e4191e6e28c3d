"""What a person (or a CI log) sees: steps, the migrate task's log lines, the summary or the error."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from release import contract
from release.progress import ServiceState
from release.record import Record

_SYMBOLS = {">": ("▶", "cyan"), "ok": ("✓", "green"), "x": ("✗", "red"), "svc": ("◆", "blue")}


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
    """Prints a followed execution as it happens (implements follow.Reporter and
    progress.ProgressReporter). On a terminal the services sit in a live block that redraws in
    place while the other lines scroll above it; elsewhere (CI logs) each change is one
    timestamped line."""

    def __init__(self, console: Console, live: bool | None = None) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.services: dict[str, ServiceState] = {}
        self._live: Live | None = None
        self._stops_shown: set[tuple[str, str]] = set()

    def open(self) -> None:
        if self.live and self._live is None:
            self._live = Live(services_table(self.services.values()), console=self.console, auto_refresh=False)
            self._live.start()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def info(self, text: str) -> None:
        self.console.print(Text(text))

    def warning(self, text: str) -> None:
        self.console.print(Text(f"{_clock(datetime.now(UTC))} ! {text}", style="yellow"))

    def service_changed(self, when: datetime, state: ServiceState) -> None:
        self.services[state.app] = state
        if self._live is not None:
            self._live.update(services_table(self.services.values()), refresh=True)
        else:
            self.step(when, "svc", state.line())
        for stop in state.stopped:
            if (state.app, stop) not in self._stops_shown:
                self._stops_shown.add((state.app, stop))
                self.console.print(Text(f"{_clock(when)}   {state.app} | stopped {stop}", style="red"), soft_wrap=True)

    def service_event(self, when: datetime, app: str, message: str) -> None:
        line = Text(f"{_clock(when)}   {app} | ", style="dim")
        line.append(message)
        self.console.print(line, soft_wrap=True)

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

    def succeeded(self, record: Record | None, name: str) -> None:
        tag = record.image_tag if record else ""
        self.console.print(Text(f"Release {tag} succeeded ({name})".replace("  ", " "), style="bold green"))
        if record is not None:
            self.console.print(record_table(record))

    def failed(self, name: str, status: str, error: str | None, cause: str | None, code: int) -> None:
        err = make_console(stderr=True)
        headline = f"Release {name} {status}"
        if error:
            headline += f": {error}"
        err.print(Text(headline, style="bold red"))
        if cause:
            err.print(Text(f"cause: {cause}"), soft_wrap=True)
        err.print(Text(f"exit code {code}"))


_OUTCOME_STYLES = {"deployed": "green", "failed": "red", "untouched": "dim", "succeeded": "green", "timed-out": "red"}
_STATUS_STYLES = {"SUCCEEDED": "green", "RUNNING": "cyan", "FAILED": "red", "TIMED_OUT": "red", "ABORTED": "yellow"}


def migration_line(record: Record) -> str:
    migration = record.migration
    outcome = str(migration.get("outcome") or "not-run")
    line = outcome
    if migration.get("exitCode") is not None:
        line += f", exit code {migration['exitCode']}"
    if migration.get("reason"):
        line += f" ({migration['reason']})"
    digest = record.digests.get(contract.MIGRATE_APP)
    if digest and outcome not in ("skipped", "not-run"):
        line += f", image {short_digest(digest)}"
    return line


def services_line(record: Record) -> str:
    return ", ".join(f"{app} {value.get('outcome', '?')}" for app, value in record.services.items()) or "-"


def record_table(record: Record, env_name: str | None = None) -> Table:
    """One release, field by field (status, rollback, history detail)."""
    table = Table(show_header=False, title=f"Release {record.name}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    status = record.status + (f": {record.error}" if record.error else "")
    table.add_row("status", Text(status, style=_STATUS_STYLES.get(record.status, "")))
    if record.cause:
        table.add_row("cause", Text(record.cause))
    kind = record.kind + (f" of {record.data['rollbackOf']}" if record.data.get("rollbackOf") else "")
    table.add_row("image tag", Text(f"{record.image_tag} ({kind})"))
    table.add_row("phase", Text(record.phase or "?"))
    table.add_row("started", Text(f"{_iso(record.started_at)} by {record.started_by}"))
    table.add_row("ended", Text(f"{_iso(record.ended_at)} ({record.duration()})" if record.ended_at else "-"))
    table.add_row("migration", Text(migration_line(record)))
    for app, value in record.services.items():
        outcome = str(value.get("outcome", "?"))
        text = Text(outcome, style=_OUTCOME_STYLES.get(outcome, ""))
        if record.digests.get(app):
            text.append(f"  {short_digest(record.digests[app])}")
        if value.get("taskDefinition"):
            text.append(f"  {revision(value['taskDefinition'])}")
        if value.get("reason"):
            text.append(f"  ({value['reason']})")
        table.add_row(f"  {app}", text)
    if record.data.get("note"):
        table.add_row("note", Text(str(record.data["note"])))
    if record.lease_released is False and record.status != "RUNNING":
        fix = f"python -m release unlock --env {env_name}" if env_name else "python -m release unlock --env <env>"
        table.add_row("lease", Text(f"NOT released (free it: {fix})", style="red"))
    return table


_STATE_STYLES = {"COMPLETED": "green", "deployed": "green", "FAILED": "red", "failed": "red", "IN_PROGRESS": "cyan", "waiting": "dim"}


def services_table(states: Any) -> Table:
    """The live block: one row per service of the release."""
    table = Table(title="Services", title_justify="left")
    for column in ("app", "state", "running/desired", "pending", "deployment", "last event"):
        table.add_column(column, overflow="fold")
    for state in states:
        table.add_row(
            state.app,
            Text(state.state, style=_STATE_STYLES.get(state.state, "")),
            f"{state.running}/{state.desired}",
            str(state.pending),
            state.deployment,
            state.last_event,
        )
    return table


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_summary(name: str, arn: str, status: str, record: Record | None, services: list[ServiceState] | None = None) -> str:
    """The outcome as GitHub-flavoured Markdown (for $GITHUB_STEP_SUMMARY), from the release record
    and, when the services were watched, how each rollout ended."""
    lines = [f"### Release `{name}`: {status}", "", f"Execution: `{arn}`", ""]
    if services:
        lines += ["| service | rollout | running/desired | last event |", "| --- | --- | --- | --- |"]
        lines += [f"| {s.app} | {s.state} | {s.running}/{s.desired} | {_cell(s.last_event)} |" for s in services]
        stops = [f"- {s.app}: stopped {_cell(stop)}" for s in services for stop in s.stopped]
        lines += ["", *stops, ""] if stops else [""]
    if record is None:
        return "\n".join([*lines, "No release record was found for this execution."]) + "\n"
    if record.error:
        lines += [f"Error: `{record.error}`", "", "```", str(record.cause or ""), "```", ""]
    lines += [f"Migration: {migration_line(record)}", ""]
    lines += ["| app | outcome | image | task definition |", "| --- | --- | --- | --- |"]
    for app, value in record.services.items():
        lines.append(
            f"| {app} | {value.get('outcome', '')} | `{short_digest(record.digests.get(app))}` | {revision(value.get('taskDefinition'))} |"
        )
    return "\n".join(lines) + "\n"


def history_table(records: list[Record]) -> Table:
    table = Table(title="Releases (newest first)", title_justify="left")
    for column in ("started", "tag", "kind", "status", "services", "migration", "duration", "by"):
        table.add_column(column)
    for record in records:
        status = record.status + (f" {record.error}" if record.error else "")
        table.add_row(
            _iso(record.started_at),
            record.image_tag,
            record.kind,
            Text(status, style=_STATUS_STYLES.get(record.status, "")),
            services_line(record),
            str(record.migration.get("outcome") or "not-run"),
            record.duration() or ("running" if record.status == "RUNNING" else ""),
            record.started_by,
        )
    return table
