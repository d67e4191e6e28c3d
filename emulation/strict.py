"""The strict emulator: the checks AWS makes before it answers, and the end-of-execution event chain.

`Strict(templates)` reads one environment's synthesized templates (emulation/authorization.py's
Account) and gives the interpreter two checks that run before every fake answers:
authorization (each Task as its machine's role) and parameter validation (emulation/parameters.py).
`EventChain` delivers the "Step Functions Execution Status Change" event of an execution that ended
to the synthesized rules: each rule's pattern decides, the target's role is authorized (with the KMS
calls Step Functions makes on its behalf), a refused delivery is retried per the target's retry
policy and lands in the dead-letter queue (if the queue's policy lets EventBridge send).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from moto.events.models import EventPattern

from emulation import interpreter, parameters
from emulation.authorization import Account, Authorizer, DeniedError, Evaluator, Request, Rule, Target
from emulation.fakes import ACCOUNT, REGION, FakeAws, FakeError

if TYPE_CHECKING:
    from emulation.driver import Execution, Interpreter

STATUS_CHANGE = "Step Functions Execution Status Change"


class Strict:
    """Authorization and parameter checks for one environment's templates."""

    def __init__(self, templates: dict[str, dict[str, Any]], evaluator: Evaluator | None = None) -> None:
        self.account = Account.from_templates(templates)
        self.authorizer = Authorizer(self.account, evaluator or Evaluator())

    def authorize(self, service: str, model: Any, params: dict[str, Any], fake: FakeAws) -> None:
        caller = interpreter.current_caller()
        # Machines the tests build from their own snippets stand for no synthesized machine: only
        # the synthesized machines are authorized, each as its template's role.
        machine = self.account.machines.get(caller[1]) if caller else None
        if machine is None:
            return
        self.authorizer.authorize_call(machine.role_arn, service, model.name, params, fake)

    def execution_start(self, machine_arn: str) -> None:
        """Before an execution of a synthesized machine starts: its role may use the data key."""
        self.authorizer.run_execution(interpreter.MACHINE_ALIASES.get(machine_arn, machine_arn))

    @staticmethod
    def validate(service: str, model: Any, params: dict[str, Any], fake: FakeAws) -> None:
        parameters.validate(service, model, params)


@dataclass
class Delivery:
    rule: str
    target: str
    attempts: int
    started: str | None = None  # the execution a state machine target started
    error: str | None = None  # why the last attempt was refused
    dead_lettered: bool = False
    message: Any = None  # what an SNS target published


def status_change_event(description: dict[str, Any], machine_arn: str) -> dict[str, Any]:
    """The event Step Functions sends when an execution ends, as AWS documents its fields."""

    def millis(value: Any) -> int | None:
        return int(value.timestamp() * 1000) if isinstance(value, datetime) else None

    detail: dict[str, Any] = {
        "executionArn": description["executionArn"],
        "stateMachineArn": machine_arn,
        "name": description["name"],
        "status": description["status"],
        "startDate": millis(description.get("startDate")),
        "stopDate": millis(description.get("stopDate")) or int(datetime.now(UTC).timestamp() * 1000),
        "input": description.get("input"),
        "output": description.get("output"),
        "inputDetails": {"included": True},
        "outputDetails": {"included": True} if description.get("output") else None,
        "error": description.get("error"),
        "cause": description.get("cause"),
    }
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": STATUS_CHANGE,
        "source": "aws.states",
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [description["executionArn"]],
        "detail": detail,
    }


def _path(event: Any, path: str) -> Any:
    value = event
    for part in path.removeprefix("$").strip(".").split("."):
        if not part:
            continue
        value = value.get(part) if isinstance(value, dict) else None
    return value


def target_input(target: Target, event: dict[str, Any]) -> Any:
    """What EventBridge passes the target: the event, a path of it, a constant or a transformation."""
    if target.input_path:
        return _path(event, target.input_path)
    template = target.input_template
    if isinstance(template, str):
        return json.loads(template)
    if isinstance(template, dict):
        text = template["InputTemplate"]
        # "The InputTemplate can also be valid JSON with varibles in quotes or out" (EventBridge API
        # reference, InputTransformer): out of quotes a value is a JSON value, in quotes escaped text.
        for name, path in template.get("InputPathsMap", {}).items():
            value = _path(event, path)
            whole = re.compile(rf"(?<=[\[:,])\s*<{re.escape(name)}>\s*(?=[\]}},])")
            text = whole.sub(lambda _, v=value: json.dumps(v), text)  # type: ignore[misc]
            text = text.replace(f"<{name}>", "null" if value is None else json.dumps(str(value))[1:-1])
        return json.loads(text)
    return event


class EventChain:
    """EventBridge between the executions that end and the targets of the synthesized rules."""

    def __init__(self, strict: Strict, sfn: Interpreter) -> None:
        self.strict = strict
        self.sfn = sfn

    def deliver(self, execution: Execution) -> list[Delivery]:
        description = self.sfn.sfn.describe_execution(executionArn=execution.arn)
        machine = interpreter.MACHINE_ALIASES.get(description["stateMachineArn"], description["stateMachineArn"])
        event = status_change_event(description, machine)
        deliveries = []
        for rule in self.strict.account.rules:
            if EventPattern(None, rule.pattern).matches_event(event):
                deliveries += [self._deliver(rule, target, event) for target in rule.targets]
        return deliveries

    def _deliver(self, rule: Rule, target: Target, event: dict[str, Any]) -> Delivery:
        delivery = Delivery(rule=rule.name, target=target.arn, attempts=0)
        payload = target_input(target, event)
        # Authorization answers the same at every attempt here: the retries exhaust the policy
        # (MaximumRetryAttempts after the first attempt) and the event goes to the dead-letter queue.
        for _ in range(1 + target.max_attempts):
            delivery.attempts += 1
            try:
                if ":states:" in target.arn and ":stateMachine:" in target.arn:
                    delivery.started = self._start(target, payload)
                elif ":sns:" in target.arn:
                    self._publish(rule, target)
                    delivery.message = payload
                else:
                    raise FakeError("EmulatorHasNoTarget", f"the event chain cannot deliver to {target.arn}")
                delivery.error = None
                return delivery
            except FakeError as error:
                delivery.error = f"{error.code}: {error.message}"
        self._dead_letter(rule, target, event, delivery)
        return delivery

    def _start(self, target: Target, payload: Any) -> str:
        if not target.role_arn:
            raise FakeError("AccessDeniedException", "a state machine target needs a role")
        self.strict.authorizer.start_execution(target.role_arn, target.arn)
        machine = next((k for k, v in interpreter.MACHINE_ALIASES.items() if v == target.arn), None)
        if machine is None:
            raise FakeError("StateMachineDoesNotExist", f"no machine registered for {target.arn}: pass its name to Interpreter.machine")
        return self.sfn.start(machine, payload)

    def _publish(self, rule: Rule, target: Target) -> None:
        """EventBridge publishes as the service, allowed by the topic's policy (and its key's)."""
        context = (("aws:SourceArn", rule.arn), ("aws:SourceAccount", ACCOUNT), ("aws:SecureTransport", "true"))
        self._as_service(Request("sns:Publish", target.arn, context))
        key = self.strict.account.topic_keys.get(target.arn)
        if key:  # SNS encrypts the message with the topic's key, for the publisher
            via = (("kms:ViaService", f"sns.{REGION}.amazonaws.com"), *context)
            for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                self._as_service(Request(action, key, via))

    def _as_service(self, request: Request) -> None:
        if not self.strict.authorizer.allowed("events.amazonaws.com", request):
            raise DeniedError("AccessDeniedException", "events.amazonaws.com", request)

    def _dead_letter(self, rule: Rule, target: Target, event: dict[str, Any], delivery: Delivery) -> None:
        if not target.dead_letter_arn:
            return
        context = (("aws:SourceArn", rule.arn), ("aws:SourceAccount", ACCOUNT), ("aws:SecureTransport", "true"))
        try:
            self._as_service(Request("sqs:SendMessage", target.dead_letter_arn, context))
        except FakeError:
            return  # EventBridge drops the event: nothing lands, nothing alarms
        delivery.dead_lettered = True
        self.sfn.fake.dead_letters.append(
            {"rule": rule.name, "target": target.arn, "error": delivery.error, "attempts": delivery.attempts, "event": event}
        )
