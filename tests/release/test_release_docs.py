"""docs/ shows the definitions that are actually synthesized, and they are valid States Language."""

from __future__ import annotations

import re
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


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """One asl-validator run (Node starts once) over the committed definitions and a broken one:
    the validator reports each file on its own line."""
    # The gate can fail: a Next that names no state is refused.
    broken = tmp_path_factory.mktemp("asl") / "broken.asl.json"
    broken.write_text('{"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}')
    paths = [argument for path in [*ASL_FILES.values(), broken] for argument in ("--json-path", str(path))]
    validator = ROOT / "node_modules" / ".bin" / "asl-validator"
    return subprocess.run([str(validator), *paths], capture_output=True, text=True, timeout=120, check=False)


def _verdicts(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """File name -> "valid" / "invalid", from the validator's lines."""
    found = re.findall(r'State machine definition "([^"]+)" is (valid|invalid)', result.stdout + result.stderr)
    return {Path(path).name: verdict for path, verdict in found}


def test_asl_validator_accepts_the_committed_definitions(validated: subprocess.CompletedProcess[str]) -> None:
    verdicts = _verdicts(validated)
    assert {path.name: verdicts.get(path.name) for path in ASL_FILES.values()} == {path.name: "valid" for path in ASL_FILES.values()}, (
        validated.stdout + validated.stderr
    )


def test_asl_validator_rejects_a_broken_definition(validated: subprocess.CompletedProcess[str]) -> None:
    assert validated.returncode != 0 and _verdicts(validated).get("broken.asl.json") == "invalid", validated.stdout + validated.stderr


def test_the_diagram_shows_every_state_and_the_failure_paths(definition: dict[str, Any]) -> None:
    diagram = mermaid(definition)
    for name in definition["States"]:
        assert name in diagram
    assert "MigrationProgress -->|default| StopMigration" in diagram
    assert "DeployWave__RolloutProgress -->|rule, assigns| DeployWave__ServiceDone" in diagram
