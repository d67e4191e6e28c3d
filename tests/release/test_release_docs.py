"""docs/ shows the definitions that are actually synthesized, and they are valid States Language."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.release.conftest import CLEANUP, MACHINE
from tools.state_machine_diagram import ASL_FILES, DOC, asl_text, block, current_block, mermaid

ROOT = Path(__file__).resolve().parents[2]
FIX = "run: python tools/state_machine_diagram.py --write"


def test_the_documented_diagram_is_current(definition: dict[str, Any]) -> None:
    assert current_block(DOC.read_text()) == block(definition), f"docs/release.md is out of date: {FIX}"


@pytest.mark.parametrize(("name", "fixture"), [(MACHINE, "definition"), (CLEANUP, "cleanup_definition")])
def test_the_committed_definitions_are_current(name: str, fixture: str, request: pytest.FixtureRequest) -> None:
    assert ASL_FILES[name].read_text() == asl_text(request.getfixturevalue(fixture)), f"{ASL_FILES[name].name} is out of date: {FIX}"


def test_asl_validator_accepts_the_committed_definitions() -> None:
    validator = ROOT / "node_modules" / ".bin" / "asl-validator"
    paths = [argument for path in ASL_FILES.values() for argument in ("--json-path", str(path))]
    result = subprocess.run([str(validator), *paths], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("is valid") == len(ASL_FILES), result.stdout


def test_asl_validator_rejects_a_broken_definition(tmp_path: Path) -> None:
    # The gate can fail: a Next that names no state is refused.
    broken = tmp_path / "broken.asl.json"
    broken.write_text('{"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}')
    validator = ROOT / "node_modules" / ".bin" / "asl-validator"
    result = subprocess.run([str(validator), "--json-path", str(broken)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0


def test_the_diagram_shows_every_state_and_the_failure_paths(definition: dict[str, Any]) -> None:
    diagram = mermaid(definition)
    for name in definition["States"]:
        assert name in diagram
    assert "MigrationProgress -->|default| StopMigration" in diagram
    assert "DeployWave__RolloutProgress -->|rule, assigns| DeployWave__ServiceDone" in diagram
