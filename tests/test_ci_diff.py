"""`cdk diff` in pull requests works from the review role's own rights (issue 9.4).

The pinned CDK CLI runs for real against moto's CloudFormation and STS (a threaded server on
loopback, `AWS_ENDPOINT_URL` pointing at it, fake credentials). In front of moto sits a small
gate that plays IAM for the review role: it evaluates each request against the review role's
policy as synthesized (action and resource, the way IAM matches them) and answers AccessDenied
otherwise, recording every call. moto's own IAM enforcement cannot do this here: it checks
CloudFormation calls against resource "*", which a policy scoped to stack ARNs never matches.

What the CLI does, read from its bundled code (node_modules/aws-cdk/lib/index.js):
`readCurrentTemplateWithNestedStacks` → `accessStackForLookupBestEffort` → `accessStackForLookup`:
try the bootstrap lookup role; `forEnvironment` catches the failed AssumeRole and, when the base
credentials are for the stack's account, warns "could not be used to assume … Proceeding anyway"
and returns them; `accessStackForLookup` warns "Lookup role … was not assumed. Proceeding with
default credentials." and uses them (so the deploy role is never tried). The SSM bootstrap-version
read happens only when the lookup role *was* assumed. Then DescribeStacks and GetTemplate with the
base credentials. This test pins that behaviour down.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from constructs.ci_access import REVIEW_ACTIONS
from tests.support import ROOT, Synthesized

ACCOUNT = "123456789012"
REGION = "ap-southeast-5"
REVIEW_KEY = "AKIAREVIEWROLE000001"  # the review role's session, as the diff step has it
ADMIN_KEY = "AKIASETUP00000000001"  # the test's own setup calls, not gated
STACK = "cashsouk-example-ci"
CDK = ROOT / "node_modules" / ".bin" / "cdk"

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _resolve(value: Any) -> str:
    """A resource of the synthesized policy as IAM sees it (partition and account are literal here)."""
    if isinstance(value, str):
        return value
    if value == {"Ref": "AWS::Partition"}:
        return "aws"
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_resolve(part) for part in parts)
    raise AssertionError(f"unexpected token in the review policy: {value}")


def review_policy(template: dict[str, Any]) -> list[tuple[set[str], list[str]]]:
    (role,) = [r for r in template["Resources"].values() if r["Properties"].get("RoleName", "").endswith("-github-review")]
    statements = [s for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    allowed = []
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        allowed.append(({a.lower() for a in actions}, [_resolve(r) for r in resources]))
    return allowed


@dataclass
class Call:
    service: str
    action: str
    resource: str
    allowed: bool


@dataclass
class IamGate:
    """WSGI middleware: who calls (by access key), what (service:Action) on what (resource ARN)."""

    backend: WsgiApp
    policy: list[tuple[set[str], list[str]]]
    stack_ids: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        if f"Credential={ADMIN_KEY}/" in authorization:
            return self.backend(environ, start_response)
        service = authorization.split("Credential=", 1)[1].split("/")[3] if "Credential=" in authorization else "?"
        target = environ.get("HTTP_X_AMZ_TARGET")
        form = parse_qs(body.decode())
        action = target.split(".")[-1] if target else form.get("Action", ["?"])[0]
        resource = self._resource(service, action, form, body)
        allowed = f"Credential={REVIEW_KEY}/" in authorization and self._allows(f"{service}:{action}", resource)
        self.calls.append(Call(service, action, resource, allowed))
        if allowed:
            return self.backend(environ, start_response)
        return self._deny(service, action, target is not None, start_response)

    def _resource(self, service: str, action: str, form: dict[str, list[str]], body: bytes) -> str:
        if service == "sts" and action == "AssumeRole":
            return form["RoleArn"][0]
        if service == "cloudformation" and "StackName" in form:
            name = form["StackName"][0]
            return f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/{self.stack_ids.get(name, 'no-such-stack')}"
        if service == "ssm":
            name = json.loads(body or b"{}").get("Name", "")
            return f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}"
        return "*"

    def _allows(self, action: str, resource: str) -> bool:
        if action == "sts:GetCallerIdentity":  # AWS: no permission is required for it
            return True
        return any(
            action.lower() in actions and any(fnmatch.fnmatchcase(resource, r) for r in resources) for actions, resources in self.policy
        )

    @staticmethod
    def _deny(service: str, action: str, json_protocol: bool, start_response: StartResponse) -> Iterable[bytes]:
        message = f"User: arn:aws:sts::{ACCOUNT}:assumed-role/review is not authorized to perform: {service}:{action}"
        if json_protocol:
            start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.1")])
            return [json.dumps({"__type": "AccessDeniedException", "message": message}).encode()]
        start_response("403 Forbidden", [("Content-Type", "text/xml")])
        xml = f"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message></Error><RequestId>gate</RequestId></ErrorResponse>"
        return [xml.encode()]


@pytest.fixture(scope="module")
def aws(synthesized: Synthesized) -> Iterator[tuple[str, IamGate]]:
    gate = IamGate(DomainDispatcherApplication(create_backend_app), review_policy(synthesized.templates[STACK]))
    server: BaseWSGIServer = make_server("127.0.0.1", 0, gate, threaded=True)
    # serve_forever checks for shutdown() every poll_interval (0.5 s by default): the teardown waited that long.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    # The deployed ci stack: an older version of it, so the diff has something to show.
    cloudformation = boto3.client(
        "cloudformation", endpoint_url=url, region_name=REGION, aws_access_key_id=ADMIN_KEY, aws_secret_access_key="setup"
    )
    created = cloudformation.create_stack(
        StackName=STACK, TemplateBody=json.dumps({"Resources": {"OldTopic": {"Type": "AWS::SNS::Topic"}}})
    )
    gate.stack_ids[STACK] = created["StackId"].rsplit("/", 1)[1]
    yield url, gate
    server.shutdown()
    thread.join(timeout=60)


@pytest.fixture(scope="module")
def diff(aws: tuple[str, IamGate], synthesized: Synthesized, tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """The diff step as pr-diff.yml runs it (`cdk diff --app <assembly dir>`), on the session's cloud assembly."""
    url, _ = aws
    home = tmp_path_factory.mktemp("home")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": REVIEW_KEY,
        "AWS_SECRET_ACCESS_KEY": "review-secret",
        "AWS_SESSION_TOKEN": "review-session",
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "CDK_DISABLE_VERSION_CHECK": "1",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
    }
    command = [str(CDK), "diff", "--app", str(synthesized.outdir), "-e", STACK, "--method=template", "--no-color", "--no-notices"]
    return subprocess.run(command, env=env, cwd=home, capture_output=True, text=True, timeout=120, check=False)


def test_the_diff_runs_on_the_review_roles_own_credentials(diff: subprocess.CompletedProcess[str]) -> None:
    output = diff.stdout + diff.stderr
    assert diff.returncode == 0, output
    lookup = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-lookup-role-{ACCOUNT}-{REGION}"
    assert f"could not be used to assume '{lookup}', but are for the right account. Proceeding anyway." in output
    assert f"Lookup role {lookup} was not assumed. Proceeding with default credentials." in output
    # The deployed template was read and compared: the old topic goes, the roles come.
    assert "[-] AWS::SNS::Topic OldTopic destroy" in output
    assert "[+] AWS::IAM::Role GithubActions/ReviewRole" in output
    assert "Number of stacks with differences: 1" in output


def test_the_diff_needs_exactly_the_review_roles_rights(diff: subprocess.CompletedProcess[str], aws: tuple[str, IamGate]) -> None:
    _, gate = aws
    allowed = {(c.service, c.action, c.resource) for c in gate.calls if c.allowed}
    denied = {(c.service, c.action, c.resource) for c in gate.calls if not c.allowed}
    stack_arn = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/{gate.stack_ids[STACK]}"
    # GetCallerIdentity (which needs no permission) may or may not be called to learn the account.
    assert allowed - {("sts", "GetCallerIdentity", "*")} == {
        ("cloudformation", "DescribeStacks", stack_arn),
        ("cloudformation", "GetTemplate", stack_arn),
    }
    # Refused, as it should be: the bootstrap's lookup role. Nothing else was even attempted: not the
    # deploy role (the fallback credentials count as the lookup access), not SSM's bootstrap version
    # (read only after the lookup role was assumed).
    assert denied == {("sts", "AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-lookup-role-{ACCOUNT}-{REGION}")}
    assert {f"{service}:{action}" for service, action, _ in allowed} - {"sts:GetCallerIdentity"} == set(REVIEW_ACTIONS)


def test_the_gate_denies_what_the_policy_does_not_name(aws: tuple[str, IamGate]) -> None:
    """The emulated IAM check is not a rubber stamp: another stack, or another action, is refused."""
    _, gate = aws
    assert gate._allows("cloudformation:GetTemplate", f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/cashsouk-example-data/abc")
    assert not gate._allows("cloudformation:GetTemplate", f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/other-stack/abc")
    assert not gate._allows("cloudformation:ListStacks", "*")
    assert not gate._allows("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-lookup-role-{ACCOUNT}-{REGION}")
    assert not gate._allows("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/cdk-bootstrap/hnb659fds/version")


def test_the_cli_is_the_pinned_one() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    installed = json.loads((ROOT / "node_modules" / "aws-cdk" / "package.json").read_text())["version"]
    assert (
        installed == "2.1148.1" and package["devDependencies"].get("aws-cdk", package.get("dependencies", {}).get("aws-cdk")) == installed
    )
    assert Path(CDK).exists()
