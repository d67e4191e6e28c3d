"""docs/release.md shows the diagram of the definition that is actually synthesized."""

from __future__ import annotations

from typing import Any

from tools.state_machine_diagram import DOC, block, current_block, mermaid


def test_the_documented_diagram_is_current(definition: dict[str, Any]) -> None:
    assert current_block(DOC.read_text()) == block(definition), (
        "docs/release.md is out of date: run PATH=node_modules/.bin:$PATH .venv/bin/python tools/state_machine_diagram.py --write"
    )


def test_the_diagram_shows_every_state_and_the_failure_paths(definition: dict[str, Any]) -> None:
    diagram = mermaid(definition)
    for name in definition["States"]:
        assert name in diagram
    assert 'RunMigration -. "Timeout" .-> ReleaseLeaseAfterFailure' in diagram
    assert 'DeployServices__WaitForRollout -. "retry QueryEvaluationError' in diagram
