"""Request parameters checked as AWS checks them, before a fake answers.

botocore's own ParamValidator (which every request already passes) checks required members, types
and minimums only. `validate` adds what the service model also says (maximum lengths and sizes,
ranges, enums, patterns) and the documented rules a model cannot express (DOCUMENTED, each row
quoting AWS). A violation fails with the error the service returns for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulation.fakes import FakeError

# The error each service answers a malformed request with (its API reference's "Errors").
ERROR_CODE = {"ecs": "InvalidParameterException", "ecr": "InvalidParameterException"}
DEFAULT_ERROR = "ValidationException"

_PATTERNS: dict[str, re.Pattern[str]] = {}


def _pattern(text: str) -> re.Pattern[str] | None:
    if text not in _PATTERNS:
        try:
            _PATTERNS[text] = re.compile(text)
        except re.error:  # a Java-only construct: the model's pattern cannot be checked here
            return None
    return _PATTERNS[text]


def _walk(shape: Any, value: Any, path: str, problems: list[str]) -> None:  # noqa: PLR0912 - one branch per shape type
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                _walk(member, value[name], f"{path}.{name}" if path else name, problems)
    elif kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} items, at most {meta['max']}")
        for index, item in enumerate(value):
            _walk(shape.member, item, f"{path}[{index}]", problems)
    elif kind == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} entries, at most {meta['max']}")
        for key, item in value.items():
            _walk(shape.key, key, f"{path}.<key>", problems)
            _walk(shape.value, item, f"{path}.{key}", problems)
    elif kind == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} characters, at most {meta['max']}")
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            problems.append(f"{path}: {value!r} is not one of {', '.join(enum)}")
        pattern = _pattern(meta["pattern"]) if "pattern" in meta else None
        if pattern is not None and not pattern.fullmatch(value):
            problems.append(f"{path}: {value!r} does not match {meta['pattern']}")
    elif kind in ("integer", "long", "double", "float") and isinstance(value, int | float) and not isinstance(value, bool):
        if "max" in meta and value > meta["max"]:
            problems.append(f"{path}: {value}, at most {meta['max']}")
        if "min" in meta and value < meta["min"]:
            problems.append(f"{path}: {value}, at least {meta['min']}")


@dataclass(frozen=True)
class Documented:
    service: str
    operation: str
    quote: str  # AWS's sentence the rule enforces
    check: Callable[[dict[str, Any]], str | None]  # a problem, or None


_STARTED_BY = re.compile(r"[A-Za-z0-9_/-]{1,128}")
_CLIENT_TOKEN = re.compile(r"[\x21-\x7e]{1,64}")


def _lone_started_by(params: dict[str, Any]) -> str | None:
    others = [k for k in ("containerInstance", "family", "serviceName", "desiredStatus", "launchType") if k in params]
    if "startedBy" in params and others:
        return f"startedBy with {', '.join(others)}: when you specify startedBy as the filter, it must be the only filter"
    return None


def _started_by(params: dict[str, Any]) -> str | None:
    value = params.get("startedBy")
    if value is not None and not _STARTED_BY.fullmatch(value):
        return f"startedBy {value!r}: up to 128 letters, numbers, hyphens (-), forward slashes (/) and underscores (_)"
    return None


def _client_token(params: dict[str, Any]) -> str | None:
    value = params.get("clientToken")
    if value is not None and not _CLIENT_TOKEN.fullmatch(value):
        return f"clientToken {value!r}: up to 64 ASCII characters 33-126"
    return None


DOCUMENTED = [
    Documented(
        "ecs",
        "ListTasks",
        'ECS API reference, ListTasks, startedBy: "When you specify startedBy as the filter, it must be the only filter that you use."',
        _lone_started_by,
    ),
    Documented(
        "ecs",
        "RunTask",
        'ECS API reference, RunTask, startedBy: "Up to 128 letters (uppercase and lowercase), numbers, hyphens (-), forward slash (/), '
        'and underscores (_) are allowed."',
        _started_by,
    ),
    Documented(
        "ecs",
        "RunTask",
        'ECS API reference, RunTask, clientToken: "Up to 64 ASCII characters are allowed." (ASCII 33-126, no spaces)',
        _client_token,
    ),
]


def validate(service: str, operation: Any, params: dict[str, Any]) -> None:
    """Raise the service's validation error if `params` break the model or a documented rule."""
    problems: list[str] = []
    if operation.input_shape is not None:
        _walk(operation.input_shape, params, "", problems)
    for rule in DOCUMENTED:
        if rule.service == service and rule.operation == operation.name:
            problem = rule.check(params)
            if problem:
                problems.append(problem)
    if problems:
        raise FakeError(ERROR_CODE.get(service, DEFAULT_ERROR), "; ".join(problems))
