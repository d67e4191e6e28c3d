"""Every call the emulator answers is authorized as AWS would, against the synthesized templates.

Who calls: each Task as its state machine's role, the EventBridge target as its rule's role. What
is allowed: the roles' identity policies (AWS::IAM::Policy and inline policies), the resource's own
policy (KMS key policies, SQS queue and SNS topic policies), with the condition keys AWS sends
(`ecs:cluster`, `iam:PassedToService`, `kms:ViaService`, `kms:EncryptionContext:*`,
`aws:SourceArn`, ...). The evaluation itself is @cloud-copilot/iam-simulate (npm, pinned in
package.json), a maintained evaluator of identity and resource policies with every condition
operator: one node process per test session, JSON lines over a pipe, each decision cached.

An operation the table below does not know is refused with `EmulatorHasNoAuthorizationRule`, so a
handler added to emulation/fakes.py fails its tests until its row (action, resource ARN, context)
is written here.
"""

from __future__ import annotations

import atexit
import json
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulation.fakes import ACCOUNT, CLUSTER, REGION, FakeError
from emulation.resolve import Resolver

ROOT = Path(__file__).resolve().parent.parent
SERVER = Path(__file__).with_name("iam_server.mjs")
STATES_VIA = f"states.{REGION}.amazonaws.com"


@dataclass(frozen=True)
class Request:
    """One IAM authorization AWS makes for a call (a call may need several: PassRole, TagResource)."""

    action: str
    resource: str
    context: tuple[tuple[str, str | tuple[str, ...]], ...] = ()


@dataclass
class Machine:
    arn: str
    role_arn: str
    key_arn: str | None  # the customer-managed key that encrypts its data, if any


@dataclass
class Target:
    arn: str
    role_arn: str | None
    input_path: str | None
    input_template: Any
    dead_letter_arn: str | None
    max_attempts: int
    max_age_seconds: int


@dataclass
class Rule:
    name: str
    arn: str
    pattern: dict[str, Any]
    targets: list[Target]


@dataclass
class Account:
    """The IAM view of the synthesized templates of one environment, every token resolved."""

    identity_policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # role ARN -> [{name, policy}]
    resource_policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # resource ARN -> policy
    machines: dict[str, Machine] = field(default_factory=dict)  # state machine ARN -> machine
    rules: list[Rule] = field(default_factory=list)
    task_definition_roles: dict[str, list[str]] = field(default_factory=dict)  # family -> role ARNs
    topic_keys: dict[str, str] = field(default_factory=dict)  # topic ARN -> the key that encrypts it
    table_keys: dict[str, str] = field(default_factory=dict)  # table ARN -> its partition key's name

    @classmethod
    def from_templates(cls, templates: dict[str, dict[str, Any]], stacks: list[str] | None = None) -> Account:
        account = cls()
        for stack_name in stacks or list(templates):
            resolver = Resolver(templates, stack_name)
            for logical_id, resource in templates[stack_name].get("Resources", {}).items():
                account._add(resolver, logical_id, resource.get("Type", ""), resource.get("Properties", {}))
        return account

    def _add(self, resolver: Resolver, logical_id: str, kind: str, props: dict[str, Any]) -> None:  # noqa: PLR0912 - one branch per resource type
        if kind == "AWS::IAM::Role":
            arn = resolver.get_att(logical_id, "Arn")
            policies = self.identity_policies.setdefault(arn, [])
            for inline in props.get("Policies", []):
                policies.append({"name": str(resolver.value(inline["PolicyName"])), "policy": resolver.value(inline["PolicyDocument"])})
        elif kind == "AWS::IAM::Policy":
            for role_name in resolver.value(props.get("Roles", [])):
                arn = f"arn:aws:iam::{ACCOUNT}:role/{role_name}"
                self.identity_policies.setdefault(arn, []).append({"name": logical_id, "policy": resolver.value(props["PolicyDocument"])})
        elif kind == "AWS::KMS::Key":
            self.resource_policies[resolver.get_att(logical_id, "Arn")] = resolver.value(props["KeyPolicy"])
        elif kind == "AWS::SQS::QueuePolicy":
            for queue_url in resolver.value(props["Queues"]):
                self.resource_policies[_queue_arn(queue_url)] = resolver.value(props["PolicyDocument"])
        elif kind == "AWS::SNS::TopicPolicy":
            for topic_arn in resolver.value(props["Topics"]):
                self.resource_policies[topic_arn] = resolver.value(props["PolicyDocument"])
        elif kind == "AWS::StepFunctions::StateMachine":
            encryption = resolver.value(props.get("EncryptionConfiguration") or {})
            key = encryption.get("KmsKeyId") if encryption.get("Type") == "CUSTOMER_MANAGED_KMS_KEY" else None
            arn = resolver.ref(logical_id)
            self.machines[arn] = Machine(arn=arn, role_arn=str(resolver.value(props["RoleArn"])), key_arn=key)
        elif kind == "AWS::DynamoDB::Table":
            hash_key = next(k["AttributeName"] for k in props["KeySchema"] if k["KeyType"] == "HASH")
            self.table_keys[resolver.get_att(logical_id, "Arn")] = str(hash_key)
        elif kind == "AWS::SNS::Topic" and props.get("KmsMasterKeyId"):
            self.topic_keys[resolver.ref(logical_id)] = str(resolver.value(props["KmsMasterKeyId"]))
        elif kind == "AWS::ECS::TaskDefinition":
            resolved = resolver.value(props)
            roles = [r for r in (resolved.get("TaskRoleArn"), resolved.get("ExecutionRoleArn")) if r]
            self.task_definition_roles[str(resolved["Family"])] = roles
        elif kind == "AWS::Events::Rule" and "EventPattern" in props:
            resolved = resolver.value(props)
            targets = [
                Target(
                    arn=t["Arn"],
                    role_arn=t.get("RoleArn"),
                    input_path=t.get("InputPath"),
                    input_template=t.get("InputTransformer") or t.get("Input"),
                    dead_letter_arn=(t.get("DeadLetterConfig") or {}).get("Arn"),
                    max_attempts=int((t.get("RetryPolicy") or {}).get("MaximumRetryAttempts", 185)),
                    max_age_seconds=int((t.get("RetryPolicy") or {}).get("MaximumEventAgeInSeconds", 86400)),
                )
                for t in resolved.get("Targets", [])
            ]
            name = str(resolved["Name"])
            self.rules.append(
                Rule(name=name, arn=f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}", pattern=resolved["EventPattern"], targets=targets)
            )

    def add_operator(self, deploy_role_arn: str, lease_table_arn: str) -> str:
        """The operator (OPERATOR): the deploy role's policies and `operator_policy`'s one statement."""
        policies = self.identity_policies[deploy_role_arn]
        self.identity_policies[OPERATOR] = [*policies, {"name": "operator", "policy": operator_policy(lease_table_arn)}]
        return OPERATOR

    def machine(self, name: str) -> Machine:
        return self.machines[f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"]


def _queue_arn(queue_url: str) -> str:
    """A queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>) or an ARN, as an ARN."""
    if queue_url.startswith("arn:"):
        return queue_url
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_url.rstrip('/').rsplit('/', 1)[-1]}"


class Evaluator:
    """One node process running @cloud-copilot/iam-simulate for the whole session."""

    def __init__(self) -> None:
        node = ROOT / "node_modules" / ".bin" / "node"
        self._process = subprocess.Popen(
            [str(node) if node.exists() else "node", str(SERVER)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()
        self._ids = 0
        atexit.register(self.close)

    def decide(self, simulation: dict[str, Any]) -> tuple[str, Any]:
        with self._lock:
            self._ids += 1
            assert self._process.stdin is not None and self._process.stdout is not None
            self._process.stdin.write(json.dumps({"id": self._ids, "simulation": simulation}) + "\n")
            self._process.stdin.flush()
            answer = json.loads(self._process.stdout.readline())
        assert answer["id"] == self._ids, answer
        return str(answer["decision"]), answer.get("detail")

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()


class DeniedError(FakeError):
    def __init__(self, code: str, principal: str, request: Request) -> None:
        super().__init__(
            code,
            f"User: {principal} is not authorized to perform: {request.action} on resource: {request.resource}",
        )
        self.principal = principal
        self.request = request


class Authorizer:
    """Decides requests for principals of `account`; every decision is cached."""

    def __init__(self, account: Account, evaluator: Evaluator) -> None:
        self.account = account
        self.evaluator = evaluator
        # Tests remove statements to prove a grant is needed: role ARN -> Sids (or actions) left out.
        self.revoked: dict[str, set[str]] = {}
        self._cache: dict[tuple[Any, ...], bool] = {}
        self._cache_lock = threading.Lock()
        self.decisions = 0  # evaluator round trips (the rest came from the cache)

    def allowed(self, principal: str, request: Request) -> bool:
        revoked = frozenset(self.revoked.get(principal, ()))
        key = (principal, request, revoked)
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
        policies = [
            {"name": p["name"], "policy": _without(p["policy"], revoked)} for p in self.account.identity_policies.get(principal, [])
        ]
        resource_policy = self.account.resource_policies.get(request.resource)
        simulation: dict[str, Any] = {
            "request": {
                "principal": principal,
                "action": request.action,
                "resource": {"resource": request.resource, "accountId": ACCOUNT},
                "contextVariables": {k: list(v) if isinstance(v, tuple) else v for k, v in request.context},
            },
            "identityPolicies": policies,
            "serviceControlPolicies": [],
            "resourceControlPolicies": [],
            **({"resourcePolicy": resource_policy} if resource_policy else {}),
        }
        decision, detail = self.evaluator.decide(simulation)
        if decision == "Error":
            raise AssertionError(f"the IAM evaluator refused the simulation of {request}: {detail}")
        allowed = decision == "Allowed"
        with self._cache_lock:
            self._cache[key] = allowed
            self.decisions += 1
        return allowed

    def require(self, principal: str, requests: list[Request], code: str = "AccessDeniedException") -> None:
        for request in requests:
            if not self.allowed(principal, request):
                raise DeniedError(code, principal, request)

    def authorize_call(self, principal: str, service: str, operation: str, params: dict[str, Any], fake: Any) -> None:
        rule = RULES.get((service, operation))
        if rule is None:
            raise FakeError(
                "EmulatorHasNoAuthorizationRule",
                f"emulation/authorization.py has no row for {service}:{operation}: add its action, resource ARN and context",
            )
        self.require(principal, rule(params, fake, self.account))

    def authorize_client_call(self, principal: str, service: str, operation: str, params: dict[str, Any]) -> list[Request]:
        """A CLI call (emulation's CLI_RULES) as `principal`; the requests it needed, in order."""
        requests = client_requests(service, operation, params, self.account) or []
        for request in requests:
            if not self.allowed(principal, request):
                on_behalf = service == "stepfunctions" and request.action.startswith("kms:")
                code = "KmsAccessDeniedException" if on_behalf else ACCESS_DENIED_CODES.get(service, "AccessDeniedException")
                raise DeniedError(code, principal, request)
        return requests

    def run_execution(self, machine_arn: str) -> None:
        """The machine's own role uses its key for the execution's data (CDK grants it, bound to the
        machine's ARN as encryption context)."""
        machine = self.account.machines.get(machine_arn)
        if machine and machine.key_arn:
            self.require(machine.role_arn, kms_on_behalf(machine, "Run"), code="KmsAccessDeniedException")

    def start_execution(self, principal: str, machine_arn: str) -> None:
        """StartExecution as `principal`, and the KMS calls Step Functions makes on its behalf."""
        self.require(principal, [Request("states:StartExecution", machine_arn)])
        machine = self.account.machines.get(machine_arn)
        if machine and machine.key_arn:
            self.require(principal, kms_on_behalf(machine, "StartExecution"), code="KmsAccessDeniedException")


def _without(policy: dict[str, Any], sids: frozenset[str]) -> dict[str, Any]:
    if not sids:
        return policy
    statements = policy.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements

    def kept(statement: dict[str, Any]) -> bool:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        return statement.get("Sid") not in sids and not sids & set(actions)

    return {**policy, "Statement": [s for s in statements if kept(s)]}


# ---- the KMS calls Step Functions makes on a caller's behalf (docs/release.md, "KMS on the caller's behalf")
def kms_on_behalf(machine: Machine, operation: str) -> list[Request]:
    """StartExecution writes the input encrypted: a data key (GenerateDataKey) and, with a reused key,
    Decrypt of the cached one. AWS documents KmsAccessDeniedException for StartExecution without
    naming the calls, so the emulator requires both, through Step Functions, with the machine's
    ARN as encryption context; a grant that satisfies this satisfies either answer."""
    assert machine.key_arn is not None
    context = (
        ("kms:ViaService", STATES_VIA),
        ("kms:CallerAccount", ACCOUNT),
        ("kms:EncryptionContext:aws:states:stateMachineArn", machine.arn),
    )
    actions = {
        "StartExecution": ("kms:GenerateDataKey", "kms:Decrypt"),
        "Run": ("kms:GenerateDataKey", "kms:Decrypt"),
        "DescribeExecution": ("kms:Decrypt",),  # input and output, unless METADATA_ONLY
        "StopExecution": ("kms:GenerateDataKey",),  # error and cause, when given
    }[operation]
    return [Request(action, machine.key_arn, context) for action in actions]


# ---- the table: (service, operation) -> the requests AWS authorizes ------------------------------------
def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


def _cluster(params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    cluster = params.get("cluster") or CLUSTER
    return (("ecs:cluster", cluster if cluster.startswith("arn:") else _arn("ecs", f"cluster/{cluster}")),)


def _task_arn(task: str, params: dict[str, Any]) -> str:
    if task.startswith("arn:"):
        return task
    cluster = (params.get("cluster") or CLUSTER).rsplit("/", 1)[-1]
    return _arn("ecs", f"task/{cluster}/{task}")


def _pass(roles: list[str]) -> list[Request]:
    context = (("iam:PassedToService", "ecs-tasks.amazonaws.com"),)
    return [Request("iam:PassRole", role, context) for role in roles if role]


def _run_task(params: dict[str, Any], fake: Any, account: Account) -> list[Request]:
    definition = fake._find_task_definition(params["taskDefinition"])
    requests = [Request("ecs:RunTask", definition["taskDefinitionArn"], _cluster(params))]
    # ECS: "iam:PassRole" for the task and execution roles the task definition names.
    requests += _pass([definition.get("taskRoleArn", ""), definition.get("executionRoleArn", "")])
    if params.get("tags"):
        task = _arn("ecs", f"task/{(params.get('cluster') or CLUSTER).rsplit('/', 1)[-1]}/new")
        requests.append(Request("ecs:TagResource", task, (("ecs:CreateAction", "RunTask"), *_cluster(params))))
    return requests


def _register(params: dict[str, Any], fake: Any, account: Account) -> list[Request]:
    requests = [Request("ecs:RegisterTaskDefinition", "*")]
    requests += _pass([params.get("taskRoleArn", ""), params.get("executionRoleArn", "")])
    if params.get("tags"):
        revision = len(fake.task_definitions.get(params["family"], [])) + 1
        arn = _arn("ecs", f"task-definition/{params['family']}:{revision}")
        requests.append(Request("ecs:TagResource", arn, (("ecs:CreateAction", "RegisterTaskDefinition"),)))
    return requests


def _table(params: dict[str, Any]) -> str:
    name = str(params["TableName"])
    return name if name.startswith("arn:") else _arn("dynamodb", f"table/{name}")


def _dynamodb(action: str) -> Callable[[dict[str, Any], Any, Account], list[Request]]:
    return lambda params, fake, account: [Request(f"dynamodb:{action}", _table(params))]


def _db(identifier: str) -> str:
    return identifier if identifier.startswith("arn:") else _arn("rds", f"db:{identifier}")


def _snapshot(identifier: str) -> str:
    return identifier if identifier.startswith("arn:") else _arn("rds", f"snapshot:{identifier}")


def _create_snapshot(params: dict[str, Any], fake: Any, account: Account) -> list[Request]:
    snapshot = _snapshot(params["DBSnapshotIdentifier"])
    # RDS authorizes CreateDBSnapshot on the instance and on the new snapshot, and tags on creation.
    requests = [Request("rds:CreateDBSnapshot", _db(params["DBInstanceIdentifier"])), Request("rds:CreateDBSnapshot", snapshot)]
    if params.get("Tags"):
        requests.append(Request("rds:AddTagsToResource", snapshot))
    return requests


def _describe_snapshots(params: dict[str, Any], fake: Any, account: Account) -> list[Request]:
    if params.get("DBSnapshotIdentifier"):
        return [Request("rds:DescribeDBSnapshots", _snapshot(params["DBSnapshotIdentifier"]))]
    return [Request("rds:DescribeDBSnapshots", _db(params["DBInstanceIdentifier"]))]


RULES: dict[tuple[str, str], Callable[[dict[str, Any], Any, Account], list[Request]]] = {
    ("ecr", "DescribeImages"): lambda p, f, a: [Request("ecr:DescribeImages", _arn("ecr", f"repository/{p['repositoryName']}"))],
    ("ecs", "DescribeTaskDefinition"): lambda p, f, a: [Request("ecs:DescribeTaskDefinition", "*")],
    ("ecs", "RegisterTaskDefinition"): _register,
    ("ecs", "RunTask"): _run_task,
    ("ecs", "DescribeTasks"): lambda p, f, a: [Request("ecs:DescribeTasks", _task_arn(t, p), _cluster(p)) for t in p["tasks"]],
    ("ecs", "StopTask"): lambda p, f, a: [Request("ecs:StopTask", _task_arn(p["task"], p), _cluster(p))],
    ("ecs", "ListTasks"): lambda p, f, a: [Request("ecs:ListTasks", "*", _cluster(p))],
    ("ecs", "DescribeServices"): lambda p, f, a: [
        Request("ecs:DescribeServices", s if s.startswith("arn:") else _arn("ecs", f"service/{CLUSTER}/{s}"), _cluster(p))
        for s in p["services"]
    ],
    ("ecs", "UpdateService"): lambda p, f, a: [
        Request(
            "ecs:UpdateService",
            p["service"] if p["service"].startswith("arn:") else _arn("ecs", f"service/{CLUSTER}/{p['service']}"),
            _cluster(p),
        )
    ],
    ("dynamodb", "GetItem"): _dynamodb("GetItem"),
    ("dynamodb", "PutItem"): _dynamodb("PutItem"),
    ("dynamodb", "UpdateItem"): _dynamodb("UpdateItem"),
    ("dynamodb", "DeleteItem"): _dynamodb("DeleteItem"),
    ("dynamodb", "Query"): _dynamodb("Query"),
    ("ssm", "PutParameter"): lambda p, f, a: [Request("ssm:PutParameter", _arn("ssm", "parameter/" + str(p["Name"]).lstrip("/")))],
    ("ssm", "GetParameter"): lambda p, f, a: [Request("ssm:GetParameter", _arn("ssm", "parameter/" + str(p["Name"]).lstrip("/")))],
    # Rows ready for a restore point (RDS snapshots); the fakes answer them once they have handlers.
    ("rds", "DescribeDBInstances"): lambda p, f, a: [Request("rds:DescribeDBInstances", _db(p["DBInstanceIdentifier"]))],
    ("rds", "CreateDBSnapshot"): _create_snapshot,
    ("rds", "DescribeDBSnapshots"): _describe_snapshots,
    ("rds", "DeleteDBSnapshot"): lambda p, f, a: [Request("rds:DeleteDBSnapshot", _snapshot(p["DBSnapshotIdentifier"]))],
}


# ---- the CLI's calls (tests/cli): the deploy role, or the operator for a person's command -------------
#: A person's credentials for `release unlock` (docs/ci.md: "`unlock` deletes the lease itself: a
#: person's credentials, not CI's"). No template creates this principal: it holds the deploy role's
#: policies plus `operator_policy`, the one right the CLI needs of a person beyond CI's.
OPERATOR = f"arn:aws:iam::{ACCOUNT}:role/release-operator"

#: Calls AWS authorizes for nobody: AWS STS API reference, GetCallerIdentity: "No permissions are
#: required to perform this operation." (an explicit deny cannot refuse it either).
NO_AUTHORIZATION = frozenset({("sts", "GetCallerIdentity")})

#: The error code a refused call returns where it is not AccessDeniedException (query protocol).
ACCESS_DENIED_CODES = {"cloudformation": "AccessDenied"}


def operator_policy(lease_table_arn: str) -> dict[str, Any]:
    """What `release unlock` needs beyond the deploy role: the lease item, by its key only."""
    from release import contract  # noqa: PLC0415 - the CLI's names, only for the CLI's checks

    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "FreeStaleLease",
                "Effect": "Allow",
                "Action": "dynamodb:DeleteItem",
                "Resource": lease_table_arn,
                "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [contract.LEASE_ID]}},
            }
        ],
    }


def _scalar(value: Any) -> str:
    """A DynamoDB attribute value ({"S": "hold"}) as the string IAM compares."""
    return str(next(iter(value.values()))) if isinstance(value, dict) and value else str(value)


def _leading_keys(params: dict[str, Any], account: Account) -> tuple[tuple[str, str | tuple[str, ...]], ...]:
    """`dynamodb:LeadingKeys`: the partition key values the call names (its Key, Item or key
    condition), as DynamoDB sends them. Left out, a ForAllValues condition would allow anything (IAM:
    it "also returns true if there are no context keys in the request")."""
    hash_key = account.table_keys.get(_table(params))
    values: list[str] = []
    if hash_key:
        item = params.get("Key") or params.get("Item") or {}
        if hash_key in item:
            values.append(_scalar(item[hash_key]))
        elif params.get("KeyConditionExpression"):
            names = params.get("ExpressionAttributeNames") or {}
            for clause in re.split(r"(?i)\s+AND\s+", str(params["KeyConditionExpression"])):
                left, _, right = clause.partition("=")
                if names.get(left.strip(), left.strip()) == hash_key and right.strip().startswith(":"):
                    values.append(_scalar((params.get("ExpressionAttributeValues") or {})[right.strip()]))
    return (("dynamodb:LeadingKeys", tuple(values)),)


def _dynamodb_item(action: str) -> Callable[[dict[str, Any], Any, Account], list[Request]]:
    return lambda params, fake, account: [Request(f"dynamodb:{action}", _table(params), _leading_keys(params, account))]


def _stack(params: dict[str, Any]) -> str:
    name = str(params.get("StackName") or "*")
    # A stack's ARN ends in the id CloudFormation gave it; any id stands for it here.
    return name if name.startswith("arn:") else _arn("cloudformation", f"stack/{name}/00000000-0000-0000-0000-000000000000")


def _log_groups(action: str, names: list[str]) -> list[Request]:
    """CloudWatch Logs names a log group `log-group:<name>` in the Service Authorization Reference and
    `log-group:<name>:*` in its own policy examples: the CLI must hold both, so either answer passes."""
    requests = []
    for name in names:
        arn = name.removesuffix(":*") if name.startswith("arn:") else _arn("logs", f"log-group:{name}")
        requests += [Request(action, arn), Request(action, f"{arn}:*")]
    return requests


def _start_execution(params: dict[str, Any], fake: Any, account: Account) -> list[Request]:
    """StartExecution, and the KMS calls Step Functions makes for a caller of a CMK-encrypted machine."""
    machine_arn = str(params["stateMachineArn"])
    requests = [Request("states:StartExecution", machine_arn)]
    machine = account.machines.get(machine_arn)
    if machine and machine.key_arn:
        requests += kms_on_behalf(machine, "StartExecution")
    return requests


def _machine_of(execution_arn: str, account: Account) -> Machine | None:
    """arn:aws:states:<region>:<account>:execution:<machine>:<name> -> the machine, if synthesized."""
    parts = execution_arn.split(":")
    return account.machines.get(":".join([*parts[:5], "stateMachine", parts[6]])) if len(parts) == 8 else None


def _describe_execution(params: dict[str, Any], fake: Any, account: Account) -> list[Request]:
    """Step Functions API reference, DescribeExecution `includedData`: "If your state machine
    definition is encrypted with a KMS key, callers must have kms:Decrypt permission"; METADATA_ONLY
    returns no input or output, so needs no key."""
    execution = str(params["executionArn"])
    requests = [Request("states:DescribeExecution", execution)]
    machine = _machine_of(execution, account)
    if machine and machine.key_arn and params.get("includedData", "ALL_DATA") != "METADATA_ONLY":
        requests += kms_on_behalf(machine, "DescribeExecution")
    return requests


def _stop_execution(params: dict[str, Any], fake: Any, account: Account) -> list[Request]:
    """StopExecution API reference: "A caller can stop an execution without using any KMS permissions
    in the execution role if the caller provides a null value for both error and cause fields"."""
    execution = str(params["executionArn"])
    requests = [Request("states:StopExecution", execution)]
    machine = _machine_of(execution, account)
    if machine and machine.key_arn and (params.get("error") is not None or params.get("cause") is not None):
        requests += kms_on_behalf(machine, "StopExecution")
    return requests


CLI_RULES: dict[tuple[str, str], Callable[[dict[str, Any], Any, Account], list[Request]]] = {
    ("cloudformation", "DescribeStacks"): lambda p, f, a: [Request("cloudformation:DescribeStacks", _stack(p))],
    ("stepfunctions", "StartExecution"): _start_execution,
    ("stepfunctions", "ListExecutions"): lambda p, f, a: [Request("states:ListExecutions", str(p["stateMachineArn"]))],
    ("stepfunctions", "DescribeExecution"): _describe_execution,
    ("stepfunctions", "StopExecution"): _stop_execution,
    ("dynamodb", "GetItem"): _dynamodb_item("GetItem"),
    ("dynamodb", "Query"): _dynamodb_item("Query"),
    ("dynamodb", "PutItem"): _dynamodb_item("PutItem"),
    ("dynamodb", "DeleteItem"): _dynamodb_item("DeleteItem"),
    ("logs", "FilterLogEvents"): lambda p, f, a: _log_groups(
        "logs:FilterLogEvents", [str(p.get("logGroupIdentifier") or p.get("logGroupName"))]
    ),
    ("logs", "StartLiveTail"): lambda p, f, a: _log_groups("logs:StartLiveTail", [str(g) for g in p["logGroupIdentifiers"]]),
    ("ecr", "DescribeImages"): RULES[("ecr", "DescribeImages")],
    ("ecs", "DescribeServices"): RULES[("ecs", "DescribeServices")],
    ("ecs", "DescribeTasks"): RULES[("ecs", "DescribeTasks")],
    ("ecs", "ListTasks"): RULES[("ecs", "ListTasks")],
    ("ssm", "GetParameter"): RULES[("ssm", "GetParameter")],
}
"""The CLI's operations: the requests AWS authorizes for each (`Authorizer.authorize_client_call`)."""


def client_requests(service: str, operation: str, params: dict[str, Any], account: Account) -> list[Request] | None:
    """The requests of one CLI call; None for a call AWS authorizes for nobody (NO_AUTHORIZATION).

    An operation without a row fails `EmulatorHasNoAuthorizationRule`, as for the machines."""
    if (service, operation) in NO_AUTHORIZATION:
        return None
    rule = CLI_RULES.get((service, operation))
    if rule is None:
        raise FakeError(
            "EmulatorHasNoAuthorizationRule",
            f"emulation/authorization.py has no CLI row for {service}:{operation}: add its action, resource ARN and context",
        )
    return rule(params, None, account)
