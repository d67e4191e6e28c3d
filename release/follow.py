"""Follow one execution to its end: its phase from the release record, the migration's log lines.

Reads only what CI may read (issue 9.6): DescribeExecution with `includedData=METADATA_ONLY`
(status, no input or output) and the release record the state machine keeps in DynamoDB (phase,
error, cause, outcomes). It never reads the execution history, which may carry task-definition
contents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from release.aws import aws_errors
from release.migration_logs import MigrationLogs
from release.progress import ServiceProgress
from release.record import Record, RecordTable

RUNNING_STATUSES = frozenset({"RUNNING", "PENDING_REDRIVE"})
# After the execution ends, how many polls to wait for its record to show the end too: the
# state machine writes it before it ends, the cleanup machine after an abort or timeout.
FINAL_RECORD_POLLS = 12


class Reporter(Protocol):
    def step(self, when: datetime | None, symbol: str, text: str) -> None: ...

    def log_line(self, when: datetime | None, message: str) -> None: ...


def describe(sfn: Any, execution_arn: str) -> dict[str, Any]:
    """Status and dates only: the input and output stay unread (they may be encrypted for CI)."""
    with aws_errors("reading the execution"):
        return dict(sfn.describe_execution(executionArn=execution_arn, includedData="METADATA_ONLY"))


@dataclass
class ExecutionFollower:
    sfn: Any
    records: RecordTable
    logs: MigrationLogs | None
    execution_arn: str
    reporter: Reporter
    sleep: Callable[[float], None]
    interval: float
    services: ServiceProgress | None = None
    _phase: str = ""

    def run(self) -> tuple[dict[str, Any], Record | None]:
        """Report until the execution ends; return its last DescribeExecution and its record."""
        if self.logs is not None:
            self.logs.start()
        try:
            while True:
                description = describe(self.sfn, self.execution_arn)
                record = self.records.find(self.execution_arn)
                self._report(record)
                if description.get("status") not in RUNNING_STATUSES:
                    return description, self._final_record(description, record)
                self.sleep(self.interval)
        finally:
            if self.logs is not None:
                self.logs.close()

    def _final_record(self, description: dict[str, Any], record: Record | None) -> Record | None:
        for _ in range(FINAL_RECORD_POLLS):
            if record is not None and record.status == description.get("status"):
                break
            self.sleep(self.interval)
            record = self.records.find(self.execution_arn)
            self._report(record)
        return record

    def _report(self, record: Record | None) -> None:
        if record is not None and record.phase and record.phase != self._phase:
            self._phase = record.phase
            self.reporter.step(datetime.now(UTC), ">", record.phase)
        if self.services is not None:
            self.services.poll(record)
        if self.logs is not None:
            for line in self.logs.poll():
                self.reporter.log_line(datetime.fromtimestamp(line.timestamp / 1000, UTC), line.message.rstrip("\n"))
