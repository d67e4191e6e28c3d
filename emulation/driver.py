"""Run a resolved state machine definition in the interpreter against the fakes."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from moto import mock_aws
from moto.stepfunctions.parser.api import ExecutionStatus
from moto.stepfunctions.parser.models import stepfunctions_parser_backends

from emulation import interpreter
from emulation.fakes import ACCOUNT, REGION, FakeAws, FakeClients, boto3


@dataclass
class Execution:
    arn: str
    status: str
    output: Any
    error: str | None
    cause: str
    history: list[dict[str, Any]]

    @property
    def states_entered(self) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] for e in self.history if e["type"].endswith("StateEntered")]

    @property
    def transitions(self) -> int:
        """State transitions as Step Functions bills them: every state entered, every retry.

        A retry is a TaskScheduled event that does not follow its state's TaskStateEntered (it
        follows the failure it retries), by previousEventId: concurrent Map iterations interleave
        their events, so the order of the history alone does not say which task was retried.
        """
        by_id = {event["id"]: event for event in self.history}
        entered = sum(1 for e in self.history if e["type"].endswith("StateEntered"))
        retries = sum(
            1
            for e in self.history
            if e["type"] == "TaskScheduled" and by_id.get(e.get("previousEventId"), {}).get("type") != "TaskStateEntered"
        )
        return entered + retries


class Interpreter:
    """moto's Step Functions engine, patched (see interpreter.py), answering AWS calls from fakes."""

    def __init__(self) -> None:
        self.clients = FakeClients()
        self._lock = threading.Lock()
        self._machines: dict[str, str] = {}
        self.sfn: Any = None
        self.migrate_roles: tuple[str, str] | None = None  # the synthesized migrate task definition's roles
        # Called with the machine's ARN before each execution starts; raises to refuse the start.
        self.on_start: Callable[[str], None] | None = None

    @property
    def fake(self) -> FakeAws:
        return self.clients.fake

    def reset(self, fake: FakeAws | None = None) -> FakeAws:
        """A new world for the next test: executions an earlier test left running are stopped, and
        every thread of theirs runs to its end first (a state's thread outlives its stopped
        execution by one poll): none may call the new fakes or hold the shared clock."""
        self.stop_running()
        if not interpreter.CLOCK.drain():
            raise RuntimeError("threads of an earlier execution are still running after 30 s: the clock would be shared with them")
        self.clients.fake = fake or FakeAws()
        if self.migrate_roles:
            self.clients.fake.migrate_roles = self.migrate_roles
        interpreter.CLOCK.reset()
        return self.clients.fake

    def stop_running(self) -> None:
        """Stop every execution still running and wait for each to end."""
        backend = stepfunctions_parser_backends[ACCOUNT][REGION]
        running = [execution for execution in backend._get_executions() if execution.exec_status == ExecutionStatus.RUNNING]
        for execution in running:
            execution.stop(stop_date=datetime.now(UTC), error=None, cause="left running by an earlier test")
        for execution in running:
            self.wait(execution.exec_arn)

    def machine(self, definition: dict[str, Any], name: str, *, as_machine: str | None = None, role_arn: str | None = None) -> str:
        """A machine running `definition`. With `as_machine` (a synthesized state machine's ARN) it
        stands for that machine: its Tasks call as `role_arn` and the event chain finds it."""
        body = json.dumps(definition)
        key = f"{name}:{hash(body)}:{as_machine}"
        with self._lock:
            if key not in self._machines:
                self._machines[key] = self.sfn.create_state_machine(
                    name=f"{name}-{len(self._machines)}",
                    definition=body,
                    roleArn=role_arn or f"arn:aws:iam::{ACCOUNT}:role/release",
                )["stateMachineArn"]
                if as_machine:
                    interpreter.MACHINE_ALIASES[self._machines[key]] = as_machine
            return self._machines[key]

    def start(self, machine_arn: str, payload: Any, name: str | None = None) -> str:
        if self.on_start is not None:
            self.on_start(machine_arn)
        return str(
            self.sfn.start_execution(stateMachineArn=machine_arn, name=name or uuid.uuid4().hex[:20], input=json.dumps(payload))[
                "executionArn"
            ]
        )

    def wait(self, execution_arn: str, timeout: float = 120.0) -> Execution:
        """The execution's end, woken by the clock: an execution's last thread ends by notifying it,
        so the end is seen at once (a poll of the API every 50 ms cost each execution 25 ms of idle
        waiting on average, and each poll competed with the execution for the GIL)."""
        execution: Any = stepfunctions_parser_backends[ACCOUNT][REGION].describe_execution(execution_arn)  # the parser's Execution
        if not interpreter.CLOCK.watch(lambda: execution.exec_status != ExecutionStatus.RUNNING, timeout):
            raise TimeoutError(f"{execution_arn} still RUNNING after {timeout} s")
        description = self.sfn.describe_execution(executionArn=execution_arn)
        history = self.history(execution_arn)
        output = json.loads(description["output"]) if description.get("output") else None
        return Execution(
            arn=execution_arn,
            status=description["status"],
            output=output,
            error=description.get("error"),
            cause=description.get("cause") or "",
            history=history,
        )

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        """The execution's events as GetExecutionHistory returns them, read from moto's backend: the
        API's serialization and parsing of a long history cost more than the execution itself
        (test_release_interpreter.py checks both give the same events)."""
        events = stepfunctions_parser_backends[ACCOUNT][REGION].get_execution_history(execution_arn)["events"]
        return [_api_shape(event) for event in events]

    def api_history(self, execution_arn: str) -> list[dict[str, Any]]:
        """The execution's events through the GetExecutionHistory API, page by page."""
        history: list[dict[str, Any]] = []
        token = None
        while True:
            page = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000, **({"nextToken": token} if token else {}))
            history.extend(page["events"])
            token = page.get("nextToken")
            if not token:
                break
        return history

    def run(self, machine_arn: str, payload: Any, name: str | None = None) -> Execution:
        return self.wait(self.start(machine_arn, payload, name))


def _api_shape(value: Any, key: str = "") -> Any:
    """A backend event as the API returns it: no None fields, enums as their strings, timestamps parsed."""
    if isinstance(value, dict):
        return {name: _api_shape(item, name) for name, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_api_shape(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    if key == "timestamp":
        return datetime.fromisoformat(value)  # moto writes ISO 8601 with a Z; dateutil is slower
    return value


@contextmanager
def interpreter_session() -> Iterator[Interpreter]:
    """One moto mock for many executions (the engine runs each execution in a thread)."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        session = Interpreter()
        interpreter.install(session.clients.client)
        session.sfn = boto3.client("stepfunctions", region_name=REGION)
        yield session
