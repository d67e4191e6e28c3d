"""The gates a reviewer trusts: cdk-nag (AwsSolutions) and cfn-lint on every synthesized template.

Both read the session's one synthesis. cdk-nag's findings are annotations, which synthesis writes
into the cloud assembly's manifest (what `cdk synth` fails on); cfn-lint loads its rules once per
region and lints each template with them.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aws_cdk import App, Stack, aws_sqs

from stacks import add_cdk_nag
from tests.support import ROOT, UNITS, Synthesized, session_configs

if TYPE_CHECKING:
    from cfnlint.runner import Runner

FINDING_TYPES = ("aws:cdk:error", "aws:cdk:warning")


def decode(path: str) -> tuple[Any, Any]:
    """cfn-lint's decoder. cfn-lint is imported where a test lints, not when the module is collected
    (half a second in every pytest worker, most of which lint nothing)."""
    from cfnlint.decode.decode import decode as cfn_lint_decode  # noqa: PLC0415

    template, errors = cfn_lint_decode(path)
    return template, errors


def assembly_messages(assembly: Path) -> list[str]:
    """Every error or warning recorded in the cloud assembly in `assembly` (what synth prints)."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    messages = []
    for artifact_id, artifact in manifest["artifacts"].items():
        metadata = dict(artifact.get("metadata", {}))
        if "additionalMetadataFile" in artifact:  # where newer CDK versions put a stack's metadata
            metadata.update(json.loads((assembly / artifact["additionalMetadataFile"]).read_text()))
        messages += [
            f"{artifact_id} {path}: {entry['data']}"
            for path, entries in metadata.items()
            for entry in entries
            if entry["type"] in FINDING_TYPES
        ]
    return messages


def nag_findings(assembly: Path) -> list[str]:
    """Every cdk-nag AwsSolutions error or warning recorded in the cloud assembly in `assembly`."""
    return [message for message in assembly_messages(assembly) if "AwsSolutions-" in message]


def test_synth_records_no_warning_at_all(synthesized: Synthesized) -> None:
    """Quiet by default: synth prints no warning a user must learn to ignore (deliberate ones are
    acknowledged in the construct that causes them, with the reason)."""
    assert assembly_messages(synthesized.outdir) == []


def test_every_environment_has_its_stacks(synthesized: Synthesized) -> None:
    expected = [config.stack_name(unit) for config in session_configs() for unit in UNITS]
    assert sorted(synthesized.templates) == sorted(expected)
    assert len(synthesized.templates) >= 6


def test_cdk_nag_finds_nothing_unsuppressed(synthesized: Synthesized) -> None:
    assert nag_findings(synthesized.outdir) == []


def test_cdk_nag_findings_reach_the_assembly(tmp_path: Path) -> None:
    """The check above reads where cdk-nag writes: an unencrypted queue without a DLQ is reported."""
    app = App(outdir=str(tmp_path), builtin_cloud_formation_validation=False)
    aws_sqs.Queue(Stack(app, "Bare"), "Queue")
    add_cdk_nag(app)
    app.synth()
    findings = nag_findings(tmp_path)
    assert any("AwsSolutions-SQS3" in finding for finding in findings), findings
    assert any("AwsSolutions-SQS4" in finding for finding in findings), findings


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


STACK_REGIONS = {config.stack_name(unit): config.region for config in session_configs() for unit in UNITS}


@pytest.fixture(scope="module")
def cfn_lint_runners() -> dict[str, Runner]:
    """One cfn-lint runner per region: loading its rules is most of a run, so it happens once."""
    from cfnlint.config import ConfigMixIn  # noqa: PLC0415 - see decode()
    from cfnlint.runner import Runner  # noqa: PLC0415

    return {region: Runner(ConfigMixIn(regions=[region])) for region in sorted(set(STACK_REGIONS.values()))}


@pytest.fixture(scope="module")
def cfn_lint_matches(synthesized: Synthesized, cfn_lint_runners: dict[str, Runner]) -> Callable[[str], list[Any]]:
    """Stack name -> cfn-lint's matches on its synthesized template, linted once per process (the
    errors test and the warnings test read the same run)."""

    @functools.cache
    def lint(stack_name: str) -> list[Any]:
        template, decode_errors = decode(str(synthesized.outdir / f"{stack_name}.template.json"))
        assert template is not None and not decode_errors, decode_errors
        return list(cfn_lint_runners[STACK_REGIONS[stack_name]].validate_template(template))

    return lint


@pytest.mark.parametrize("stack_name", sorted(STACK_REGIONS))
def test_cfn_lint_finds_no_errors(stack_name: str, cfn_lint_matches: Callable[[str], list[Any]]) -> None:
    assert [str(match) for match in cfn_lint_matches(stack_name) if match.rule.severity == "error"] == []


def test_cfn_lint_reports_the_errors_of_a_broken_template(synthesized: Synthesized, cfn_lint_runners: dict[str, Runner]) -> None:
    """The runners above check what they are given: a resource of an unknown type fails."""
    template, _ = decode(str(synthesized.outdir / f"{synthesized.stack_name('example', 'images')}.template.json"))
    assert template is not None
    next(iter(template["Resources"].values()))["Type"] = "AWS::ECR::NoSuchThing"
    matches = next(iter(cfn_lint_runners.values())).validate_template(template)
    assert [match for match in matches if match.rule.severity == "error"]


PARTLY_ANALYSED = ("aws_cdk", "moto")  # pyproject.toml: mypy skips the modules of these we do not use


def _imported_modules(path: Path) -> set[str]:
    """The modules of PARTLY_ANALYSED one file imports (`from aws_cdk import aws_iam` counts aws_cdk.aws_iam)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            parts = name.split(".")
            if parts[0] in PARTLY_ANALYSED:
                found |= {".".join(parts[:end]) for end in range(1, len(parts) + 1) if _is_module(".".join(parts[:end]))}
    return found


def _is_module(module: str) -> bool:
    """Whether `module` is a module (not a class or function imported from one)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent is not a package
        return False


def _follow_imports(module: str, overrides: list[dict[str, Any]]) -> str:
    """mypy's follow_imports for `module`: a section naming it wins, then the longest matching `x.*`."""
    best, best_rank = "normal", -1
    for section in overrides:
        if "follow_imports" not in section:
            continue
        for pattern in section["module"]:
            if pattern == module:
                rank = 10_000
            elif pattern.endswith(".*") and (module == pattern[:-2] or module.startswith(pattern[:-1])):
                rank = len(pattern)
            else:
                continue
            if rank > best_rank:
                best, best_rank = section["follow_imports"], rank
    return str(best)


def test_mypy_analyses_every_module_our_code_imports() -> None:
    """pyproject.toml skips unused aws_cdk and moto modules (for speed): the ones we use stay analysed."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    sources = [
        path for entry in settings["files"] for path in ([ROOT / entry] if (ROOT / entry).is_file() else (ROOT / entry).rglob("*.py"))
    ]
    used = set().union(*(_imported_modules(path) for path in sources))
    for module in list(used):  # the same services' ref-interfaces type many of their parameters
        service = module.removeprefix("aws_cdk.")
        if service.startswith("aws_") and _is_module(f"aws_cdk.interfaces.{service}"):
            used.add(f"aws_cdk.interfaces.{service}")
    assert {"aws_cdk.aws_ec2", "moto"} <= used  # the scan finds what it looks for
    assert _follow_imports("aws_cdk.aws_s3", settings["overrides"]) == "skip"  # and the settings skip the rest
    assert sorted(module for module in used if _follow_imports(module, settings["overrides"]) != "normal") == []


def _pins(path: Path) -> set[str]:
    """`name==version` of every pinned requirement in a requirements file or lock (names normalized)."""
    pins = set()
    for line in path.read_text().splitlines():
        requirement = line.split("#")[0].split(";")[0].strip().rstrip("\\").strip()
        if "==" in requirement and not requirement.startswith("-"):
            name, version = requirement.split("==", 1)
            pins.add(f"{re.sub(r'[-_.]+', '-', name.split('[')[0]).lower()}=={version.strip()}")
    return pins


@pytest.mark.parametrize(("source", "lock"), [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")])
def test_each_lock_holds_every_pin_of_its_requirements(source: str, lock: str) -> None:
    """The Makefile and CI install the locks: a pin added to requirements*.txt needs `make lock`."""
    assert sorted(_pins(ROOT / source) - _pins(ROOT / lock)) == [], f"run `make lock`: {lock} is behind {source}"


# cfn-lint warnings that are kept, each for a reason, and where each may appear (stack, resource prefix).
# Any other warning fails: a warning a user must learn to ignore is a defect.
ACCEPTED_WARNINGS = {
    # The sandbox's zones are named in config/sandbox.yaml so that synth runs offline
    # (constructs/network.py acknowledges it for CDK_VALIDATION=true runs).
    "W3010": ("cashsouk-sandbox-data", "NetworkVpc"),
    # A major-only engine version ("16"): CDK documents VER_16 as "only a major version, without a
    # specific minor version", and RDS then picks the default minor. A pinned minor would fight RDS's
    # automatic minor upgrades on the next deploy. cfn-lint's data lists full versions only.
    "W3691": ("cashsouk-sandbox-data", "DatabaseInstance"),
    # DependsOn on a role that a GetAtt already implies: CDK writes it for a state machine that
    # depends on its policy, and for its own custom-resource provider. Redundant, harmless.
    "W3005": ("", ""),
}


def test_cfn_lint_warns_only_where_a_warning_is_accepted(cfn_lint_matches: Callable[[str], list[Any]]) -> None:
    warnings = []
    for stack_name in sorted(STACK_REGIONS):
        for match in cfn_lint_matches(stack_name):
            if match.rule.severity != "error":
                warnings.append((match.rule.id, stack_name, str(match.path[1]) if len(match.path) > 1 else ""))
    assert any(rule == "W3010" for rule, _, _ in warnings), "the sandbox's named zones should show up as W3010"
    for rule, stack_name, resource in warnings:
        assert rule in ACCEPTED_WARNINGS, (rule, stack_name, resource)
        stack_prefix, resource_prefix = ACCEPTED_WARNINGS[rule]
        assert stack_name.startswith(stack_prefix) and resource.startswith(resource_prefix), (rule, stack_name, resource)
