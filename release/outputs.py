"""An environment's stack outputs as JSON, or as `KEY=value` lines for $GITHUB_OUTPUT."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping

_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_]")


def github_key(key: str) -> str:
    """A GitHub Actions output name: letters, digits and `_`, not starting with a digit."""
    safe = _UNSAFE_KEY.sub("_", key)
    return f"_{safe}" if not safe or safe[0].isdigit() else safe


def as_json(outputs: Mapping[str, Mapping[str, str]]) -> str:
    """`{"<stack name>": {"<OutputKey>": "<value>"}}`, keys sorted."""
    return json.dumps({stack: dict(sorted(values.items())) for stack, values in outputs.items()}, indent=2)


def as_github(outputs: Mapping[str, Mapping[str, str]], units: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(lines, warnings). One `Key=value` line per output.

    Keys are the OutputKeys (unique across an environment's stacks by convention); a key found in
    two stacks is written as `<unit>_<Key>` for each. A value with a line break would let one
    output write others into $GITHUB_OUTPUT: such values are left out with a warning.
    """
    unit_of = {stack: unit for unit, stack in units.items()}
    counts = Counter(github_key(key) for values in outputs.values() for key in values)
    lines: list[str] = []
    warnings: list[str] = []
    for stack, values in outputs.items():
        for key, value in sorted(values.items()):
            name = github_key(key)
            if counts[name] > 1:
                name = f"{github_key(unit_of.get(stack, stack))}_{name}"
            if "\n" in value or "\r" in value:
                warnings.append(f"{stack} output {key} spans several lines: left out")
                continue
            lines.append(f"{name}={value}")
    return lines, warnings
