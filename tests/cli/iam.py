"""The CLI's AWS calls in its tests, authorized as IAM would authorize them on AWS.

Every client the CLI creates (`release.aws.Aws.client`) gets three botocore hooks:
`before-parameter-build` keeps the call's parameters, `before-call` authorizes them
(emulation/authorization.py's CLI_RULES, decided by @cloud-copilot/iam-simulate against the example
environment's synthesized templates, the qa names mapped onto example's) and answers a refused call
as AWS does (HTTP 400 with `AccessDeniedException`, `AccessDenied` for CloudFormation,
`KmsAccessDeniedException` for StartExecution without the key), so it never reaches moto and the
CLI's own error handling runs. `after-call` notes every call that got an answer without a decision:
the `cli_iam` fixture fails a test that made one.

The principal is the deploy role (constructs/ci_access.py) for every command but `unlock`, which a
person runs: it runs as the operator (emulation/authorization.py's OPERATOR).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse

from emulation.authorization import NO_AUTHORIZATION, Account, Authorizer, DeniedError, Evaluator, Request
from emulation.fakes import FakeError
from emulation.resolve import Resolver
from tests.cli.fakes import ENV, PREFIX

EXAMPLE = "example"  # the synthesized environment whose templates the qa environment stands for
OPERATOR_COMMANDS = frozenset({"unlock"})
_MARK = "cli_iam_decision"
_PARAMS = "cli_iam_params"


def as_example(value: Any) -> Any:
    """The qa names the CLI tests use (stacks, machine, tables, parameter) as example's."""
    if isinstance(value, str):
        return value.replace(f"{PREFIX}-{ENV}-", f"{PREFIX}-{EXAMPLE}-").replace(f"/{PREFIX}/{ENV}/", f"/{PREFIX}/{EXAMPLE}/")
    if isinstance(value, dict):
        return {k: as_example(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_example(v) for v in value]
    return value


@dataclass
class Call:
    service: str
    operation: str
    principal: str
    requests: list[Request] = field(default_factory=list)
    refused: str | None = None  # the error code the call was answered with
    exempt: bool = False  # AWS authorizes it for nobody (NO_AUTHORIZATION)


class CliIam:
    """The botocore hooks and what they saw, for one test session."""

    def __init__(self, templates: dict[str, dict[str, Any]], evaluator: Evaluator) -> None:
        stacks = {name: t for name, t in templates.items() if name.startswith(f"{PREFIX}-{EXAMPLE}-")}
        self.account = Account.from_templates(stacks)
        ci, release = f"{PREFIX}-{EXAMPLE}-ci", f"{PREFIX}-{EXAMPLE}-release"
        self.deploy_role = str(Resolver(stacks, ci).value(stacks[ci]["Outputs"]["DeployRoleArn"]["Value"]))
        lease_table = str(Resolver(stacks, release).value(stacks[release]["Outputs"]["LeaseTableName"]["Value"]))
        lease_arn = next(arn for arn in self.account.table_keys if arn.endswith(f":table/{lease_table}"))
        self.operator = self.account.add_operator(self.deploy_role, lease_arn)
        self.authorizer = Authorizer(self.account, evaluator)
        self.principal = self.deploy_role
        self.operator_commands = OPERATOR_COMMANDS
        self.calls: list[Call] = []
        self.unchecked: list[str] = []
        self._lock = threading.Lock()

    def reset(self) -> None:
        self.principal = self.deploy_role
        self.operator_commands = OPERATOR_COMMANDS
        self.authorizer.revoked.clear()
        self.calls = []
        self.unchecked = []

    def run_as(self, command: str) -> None:
        """A person's command runs with a person's credentials (the operator), the rest as CI's role."""
        self.principal = self.operator if command in self.operator_commands else self.deploy_role

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-parameter-build", self._keep_params)
        events.register("before-call", self._authorize)
        events.register("after-call", self._answered)

    @staticmethod
    def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_PARAMS] = params

    def _authorize(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        service, operation = model.service_model.service_name, model.name
        call = Call(service, operation, self.principal, exempt=(service, operation) in NO_AUTHORIZATION)
        with self._lock:
            self.calls.append(call)
        context[_MARK] = call
        try:
            call.requests = self.authorizer.authorize_client_call(self.principal, service, operation, as_example(context.get(_PARAMS, {})))
        except FakeError as error:
            call.refused = error.code
            if isinstance(error, DeniedError):
                call.requests = [error.request]  # the request IAM refused
            status = 403 if service == "cloudformation" else 400
            parsed = {"Error": {"Code": error.code, "Message": error.message}, "ResponseMetadata": {"HTTPStatusCode": status}}
            return AWSResponse(url="", status_code=status, headers={}, raw=None), parsed
        return None

    def _answered(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if _MARK not in context:
            with self._lock:
                self.unchecked.append(f"{model.service_model.service_name}:{model.name}")
