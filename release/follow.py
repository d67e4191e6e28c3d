"""Follow one execution: its steps from the execution history, the migrate task's log lines.

Polls GetExecutionHistory newest first (`reverseOrder`), paging back only until it meets an event
it has already reported, so one poll costs one call however long the history has grown; new events
are then reported oldest first, each once. Once the migrate task is known, GetLogEvents follows its
log stream, until DescribeExecution reports a final status.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from botocore.exceptions import ClientError

from release.aws import aws_errors, error_code

RUNNING_STATUSES = frozenset({"RUNNING", "PENDING_REDRIVE"})
# The migrate task's stream: `<awslogs-stream-prefix>/<container name>/<task id>`.
LOG_STREAM_PREFIX = "migrate"
DEFAULT_CONTAINER = "migrate"
# A state entered again and again (a rollout wait loop) is shown the first few times, then every tenth.
_REPEAT_SHOWN = 3
_REPEAT_EVERY = 10
_MAX_LOG_PAGES_PER_POLL = 20
# GetExecutionHistory returns at most 1000 events a page; a poll usually needs far fewer.
HISTORY_PAGE_SIZE = 200


class Reporter(Protocol):
    def step(self, when: datetime | None, symbol: str, text: str) -> None: ...

    def migration_task(self, task_arn: str, log_group: str, log_stream: str) -> None: ...

    def log_line(self, when: datetime | None, message: str) -> None: ...


@dataclass(frozen=True)
class MigrationTask:
    task_arn: str
    log_stream: str


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def find_task(document: Any) -> MigrationTask | None:
    """The ECS task in a RunTask/DescribeTasks result (either key casing), with its log stream."""
    for node in _walk(document):
        task_arn = node.get("TaskArn") or node.get("taskArn")
        if isinstance(task_arn, str) and ":task/" in task_arn:
            containers = node.get("Containers") or node.get("containers") or []
            names = [c.get("Name") or c.get("name") for c in containers if isinstance(c, dict)]
            container = next((n for n in names if n == DEFAULT_CONTAINER), None) or next(
                (n for n in names if isinstance(n, str)), DEFAULT_CONTAINER
            )
            task_id = task_arn.rsplit("/", 1)[-1]
            return MigrationTask(task_arn=task_arn, log_stream=f"{LOG_STREAM_PREFIX}/{container}/{task_id}")
    return None


def _is_run_task(details: dict[str, Any]) -> bool:
    return details.get("resourceType") == "ecs" and str(details.get("resource", "")).startswith("runTask")


def _ms_to_datetime(ms: Any) -> datetime | None:
    if not isinstance(ms, int | float):
        return None
    return datetime.fromtimestamp(ms / 1000).astimezone()


@dataclass
class LogTail:
    """New events of one log stream, from the start, across calls (GetLogEvents forward tokens)."""

    logs: Any
    group: str
    stream: str
    token: str | None = None

    def poll(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for _ in range(_MAX_LOG_PAGES_PER_POLL):
            kwargs: dict[str, Any] = {"logGroupName": self.group, "logStreamName": self.stream, "startFromHead": True}
            if self.token:
                kwargs["nextToken"] = self.token
            try:
                page = self.logs.get_log_events(**kwargs)
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return events  # the task has not written anything yet
                raise
            events.extend(page.get("events", []))
            token = page.get("nextForwardToken")
            if not token or token == self.token:
                break
            self.token = token
        return events


@dataclass
class ExecutionFollower:
    sfn: Any
    logs: Any
    execution_arn: str
    log_group: str | None
    reporter: Reporter
    sleep: Callable[[float], None]
    interval: float
    last_event_id: int = 0
    task: MigrationTask | None = None
    _tail: LogTail | None = None
    _entered: Counter[str] = field(default_factory=Counter)

    def run(self) -> dict[str, Any]:
        """Report until the execution ends; return its final DescribeExecution."""
        while True:
            self.poll_history()
            self.poll_logs()
            with aws_errors("reading the execution"):
                description: dict[str, Any] = self.sfn.describe_execution(executionArn=self.execution_arn)
            if description.get("status") not in RUNNING_STATUSES:
                self.poll_history()
                self.finish_logs(description)
                return description
            self.sleep(self.interval)

    def poll_history(self) -> None:
        """Report the events added since the last poll, oldest first.

        Reading forward from the first event would re-read the whole history on every poll (a
        long rollout loop adds thousands of events); newest first, the first page usually reaches
        an event already reported and the poll ends there.
        """
        fresh: dict[int, dict[str, Any]] = {}
        with aws_errors("reading the execution history"):
            kwargs: dict[str, Any] = {"executionArn": self.execution_arn, "maxResults": HISTORY_PAGE_SIZE, "reverseOrder": True}
            while True:
                page = self.sfn.get_execution_history(**kwargs)
                reached_seen = False
                for event in page.get("events", []):
                    event_id = int(event["id"])
                    if event_id <= self.last_event_id:
                        reached_seen = True
                        break
                    fresh.setdefault(event_id, event)
                if reached_seen or not page.get("nextToken"):
                    break
                kwargs["nextToken"] = page["nextToken"]
        for event_id in sorted(fresh):
            self.last_event_id = event_id
            self.handle(fresh[event_id])

    def handle(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", ""))
        when = event.get("timestamp")
        if kind.endswith("StateEntered"):
            name = str(event.get("stateEnteredEventDetails", {}).get("name", "?"))
            self._entered[name] += 1
            count = self._entered[name]
            if count <= _REPEAT_SHOWN or count % _REPEAT_EVERY == 0:
                self.reporter.step(when, ">", name if count == 1 else f"{name} (#{count})")
        elif kind.endswith("StateExited"):
            name = str(event.get("stateExitedEventDetails", {}).get("name", "?"))
            count = self._entered[name]
            if count <= _REPEAT_SHOWN or count % _REPEAT_EVERY == 0:
                self.reporter.step(when, "ok", name if count <= 1 else f"{name} (#{count})")
        elif kind in ("TaskSubmitted", "TaskStarted", "TaskSucceeded", "TaskFailed"):
            details = next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})
            if _is_run_task(details):
                document = _json(details.get("output")) or _json(details.get("cause"))
                self._found_task(find_task(document))
            if kind == "TaskFailed":
                error = details.get("error") or "error"
                self.reporter.step(when, "x", f"{details.get('resourceType', 'task')}:{details.get('resource', '')} failed: {error}")

    def _found_task(self, task: MigrationTask | None) -> None:
        if task is None or (self.task is not None and self.task.task_arn == task.task_arn):
            return
        self.task = task
        if self.log_group:
            self._tail = LogTail(self.logs, self.log_group, task.log_stream)
            self.reporter.migration_task(task.task_arn, self.log_group, task.log_stream)

    def poll_logs(self) -> None:
        if self._tail is None:
            return
        with aws_errors("reading the migrate task's logs"):
            for log_event in self._tail.poll():
                self.reporter.log_line(_ms_to_datetime(log_event.get("timestamp")), str(log_event.get("message", "")).rstrip("\n"))

    def finish_logs(self, description: dict[str, Any]) -> None:
        """Last log lines; the success output names the stream if the history never showed the task."""
        migration = (_json(description.get("output")) or {}).get("migration") if description.get("output") else None
        if isinstance(migration, dict) and migration.get("logStream") and self.log_group:
            stream = str(migration["logStream"])
            if self._tail is None or self._tail.stream != stream:
                self.task = MigrationTask(task_arn=str(migration.get("taskArn", "")), log_stream=stream)
                self._tail = LogTail(self.logs, self.log_group, stream)
                self.reporter.migration_task(self.task.task_arn, self.log_group, stream)
        self.poll_logs()
