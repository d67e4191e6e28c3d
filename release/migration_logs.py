"""The migrate task's log lines while a release runs: CloudWatch Logs Live Tail, else polling.

Live Tail (StartLiveTail) pushes new events about once a second over one response stream (sessions
end after at most three hours). It needs `logs:StartLiveTail`; when the call is refused, or the
stream ends before the release does, the follower falls back to FilterLogEvents polling from the
last event it saw. Events are told apart by (stream, timestamp, message), so the switch from one to
the other neither loses nor repeats a line. The stream names are `migrate/<container>/<task id>`:
with one release at a time (the lease), every stream with that prefix written since the release
started is its migration's.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from release import contract
from release.aws import aws_errors

STREAM_PREFIX = f"{contract.MIGRATE_LOG_STREAM_PREFIX}/"
_MAX_PAGES_PER_POLL = 20


@dataclass(frozen=True)
class LogLine:
    stream: str
    timestamp: int  # milliseconds since the epoch
    message: str


@dataclass
class MigrationLogs:
    logs: Any
    group_name: str
    group_arn: str
    since_ms: int
    live: bool = True
    mode: str = "polling"  # "live-tail" while a Live Tail session delivers
    _seen: set[tuple[str, int, str]] = field(default_factory=set)
    _latest_ms: int = 0
    _queue: queue.Queue[LogLine | None] = field(default_factory=queue.Queue)
    _stream: Any = None

    def start(self) -> None:
        """Open a Live Tail session if allowed; otherwise stay with polling (no error)."""
        self._latest_ms = self.since_ms
        if not self.live:
            return
        try:
            response = self.logs.start_live_tail(logGroupIdentifiers=[self.group_arn], logStreamNamePrefixes=[STREAM_PREFIX])
        except (ClientError, BotoCoreError, AttributeError):
            return  # AccessDenied, an endpoint without Live Tail, an old SDK: poll instead
        self._stream = response["responseStream"]
        self.mode = "live-tail"
        threading.Thread(target=self._read_stream, name="live-tail", daemon=True).start()

    def _read_stream(self) -> None:
        # Any end of the session (the three-hour limit, a SessionStreamingException, the network)
        # puts None: poll() then falls back to polling from the last line seen.
        with contextlib.suppress(Exception):
            for event in self._stream:
                for result in (event.get("sessionUpdate") or {}).get("sessionResults") or []:
                    self._queue.put(
                        LogLine(str(result.get("logStreamName", "")), int(result.get("timestamp", 0)), str(result.get("message", "")))
                    )
        self._queue.put(None)

    def poll(self) -> list[LogLine]:
        """New lines since the last call, oldest first."""
        lines: list[LogLine] = []
        if self.mode == "live-tail":
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:  # the session ended: poll from here on
                    self.mode = "polling"
                    break
                lines.append(item)
        if self.mode == "polling":
            lines += self._filter()
        ours = [line for line in lines if line.stream.startswith(STREAM_PREFIX)]  # whatever the server filtered
        return [line for line in sorted(ours, key=lambda line: line.timestamp) if self._new(line)]

    def _new(self, line: LogLine) -> bool:
        key = (line.stream, line.timestamp, line.message)
        if key in self._seen:
            return False
        self._seen.add(key)
        self._latest_ms = max(self._latest_ms, line.timestamp)
        return True

    def _filter(self) -> list[LogLine]:
        kwargs: dict[str, Any] = {"logGroupName": self.group_name, "logStreamNamePrefix": STREAM_PREFIX, "startTime": self._latest_ms}
        lines: list[LogLine] = []
        with aws_errors("reading the migrate task's logs"):
            for _ in range(_MAX_PAGES_PER_POLL):
                try:
                    page = self.logs.filter_log_events(**kwargs)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                        return lines
                    raise
                lines += [
                    LogLine(str(e.get("logStreamName", "")), int(e.get("timestamp", 0)), str(e.get("message", "")))
                    for e in page.get("events", [])
                ]
                if not page.get("nextToken"):
                    break
                kwargs["nextToken"] = page["nextToken"]
        return lines

    def close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()


def stream_of(task_arn: str) -> str:
    """The migrate task's log stream: `<prefix>/<container>/<task id>` (awslogs' naming)."""
    return f"{contract.MIGRATE_LOG_STREAM_PREFIX}/{contract.MIGRATE_CONTAINER_NAME}/{task_arn.rsplit('/', 1)[-1]}"


def log_commands(env_name: str, log_group: str, record: Any) -> list[str]:
    """Pasteable commands that print a release's migration log: this CLI's, and the AWS CLI's."""
    task_arn = str(record.migration.get("taskArn") or "")
    if not task_arn:
        return []
    since = record.started_at.strftime("%Y-%m-%dT%H:%M:%SZ") if record.started_at else "1d"
    return [
        f"python -m release logs --env {env_name} --release {record.name}",
        f"aws logs tail {log_group} --log-stream-names {stream_of(task_arn)} --since {since}",
    ]
