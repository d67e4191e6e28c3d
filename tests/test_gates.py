"""The gates a reviewer trusts: cdk-nag (AwsSolutions) and cfn-lint on every synthesized template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Stack
from aws_cdk.assertions import Annotations, Match
from cfnlint.api import ManualArgs, lint_file

from tests.support import Synthesized


def _stacks(synthesized: Synthesized) -> list[Stack]:
    return [stack for environment in synthesized.environments.values() for stack in environment.all]


def test_every_environment_has_its_stacks(synthesized: Synthesized) -> None:
    assert sorted(synthesized.templates) == sorted(stack.stack_name for stack in _stacks(synthesized))
    assert len(synthesized.templates) >= 6


def test_cdk_nag_finds_nothing_unsuppressed(synthesized: Synthesized) -> None:
    findings = []
    for stack in _stacks(synthesized):
        annotations = Annotations.from_stack(stack)
        for finder in (annotations.find_error, annotations.find_warning):
            findings += [f"{message.id}: {message.entry.data}" for message in finder("*", Match.string_like_regexp("AwsSolutions-"))]
    assert findings == []


def _suppressions(templates: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for stack_name, template in templates.items():
        for logical_id, resource in template.get("Resources", {}).items():
            for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
                found.append((stack_name, logical_id, rule))
    return found


def test_every_suppression_carries_a_reason(templates: dict[str, dict[str, Any]]) -> None:
    suppressions = _suppressions(templates)
    assert suppressions, "expected at least the documented suppressions"
    for stack_name, logical_id, rule in suppressions:
        assert len(rule.get("reason", "")) >= 40, f"{stack_name}/{logical_id} {rule['id']}: reason too short"


def test_wildcard_suppressions_name_what_they_allow(templates: dict[str, dict[str, Any]]) -> None:
    for stack_name, logical_id, rule in _suppressions(templates):
        if rule["id"] == "AwsSolutions-IAM5":
            assert rule.get("applies_to"), f"{stack_name}/{logical_id}: IAM5 suppressed without applies_to"


def test_cfn_lint_finds_no_errors(synthesized: Synthesized) -> None:
    errors = []
    for stack in _stacks(synthesized):
        path = Path(synthesized.outdir) / stack.template_file
        matches = lint_file(path, ManualArgs(regions=[stack.region]))
        errors += [f"{stack.stack_name}: {match}" for match in matches if match.rule.severity == "error"]
    assert errors == []
