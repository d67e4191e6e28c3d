"""The deploy role's rights for watching a rollout and holding releases (issue 16): each narrow,
each with its condition, checked on the synthesized example environment."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.support import Synthesized


@pytest.fixture(scope="module")
def ci(synthesized: Synthesized) -> Template:
    return synthesized.template("example", "ci")


def _deploy_statements(template: Template) -> dict[str, dict[str, Any]]:
    resources = template.to_json()["Resources"]
    (key,) = [k for k, r in resources.items() if r["Type"] == "AWS::IAM::Role" and r["Properties"]["RoleName"].endswith("-github-deploy")]
    inline = [s for p in resources[key]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    attached = [
        s
        for r in resources.values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": key} in r["Properties"]["Roles"]
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    return {s["Sid"]: s for s in inline + attached}


def _cluster_condition(statement: dict[str, Any]) -> str:
    return json.dumps(statement["Condition"]["ArnEquals"]["ecs:cluster"])


def test_stopped_tasks_are_read_in_the_environments_cluster_only(ci: Template) -> None:
    by_sid = _deploy_statements(ci)
    describe = by_sid["WatchServiceTasks"]
    assert describe["Action"] == "ecs:DescribeTasks"
    assert ":task/default/*" in json.dumps(describe["Resource"])
    assert ":cluster/default" in _cluster_condition(describe)
    listing = by_sid["ListClusterTasks"]
    assert listing["Action"] == "ecs:ListTasks" and listing["Resource"] == "*"  # no resource level on tasks
    assert ":cluster/default" in _cluster_condition(listing)


def test_hold_rights_reach_the_hold_item_only(ci: Template) -> None:
    hold = _deploy_statements(ci)["HoldReleases"]
    assert sorted(hold["Action"]) == ["dynamodb:DeleteItem", "dynamodb:PutItem"]
    assert hold["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["hold"]}}
    assert "LeaseTable" in json.dumps(hold["Resource"]) or "Lease" in json.dumps(hold["Resource"])
