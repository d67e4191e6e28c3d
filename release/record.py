"""The release record: one DynamoDB item per execution, written by the state machine (release/contract.py).

The CLI reads status, phase, error, cause, digests and outcomes from here, never from the execution
history (which may carry task-definition contents and is not CI's to read).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from release import contract
from release.aws import aws_errors

# A Query page holds at most 1 MB; items are a few KB, so a page of 50 is one call.
_PAGE = 50


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key) or {}
    return str(value.get("S") or "")


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _merge_deployments(data: dict[str, Any], item: dict[str, Any]) -> None:
    """A rollout's deployment id, written to `Deployment_<app>` as soon as UpdateService returns
    (before the next write of the whole record): put where `services` keeps it."""
    services = data.get("services")
    if not isinstance(services, dict):
        services = data["services"] = {}
    for key in item:
        if not key.startswith(contract.RECORD_DEPLOYMENT_PREFIX):
            continue
        try:
            deployment = json.loads(_text(item, key) or "{}")
        except ValueError:
            continue
        app = key.removeprefix(contract.RECORD_DEPLOYMENT_PREFIX)
        entry = services.setdefault(app, {})
        if isinstance(deployment, dict) and isinstance(entry, dict) and not entry.get("deploymentId"):
            entry["deploymentId"] = deployment.get("deploymentId")


@dataclass(frozen=True)
class Record:
    """One release as the state machine recorded it (the `Summary` document, schema in docs/release.md)."""

    data: dict[str, Any]

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Record:
        try:
            data = json.loads(_text(item, contract.RECORD_SUMMARY) or "{}")
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        # The top-level copies stand in for a summary that could not be read.
        data.setdefault("status", _text(item, contract.RECORD_STATUS))
        data.setdefault("imageTag", _text(item, contract.RECORD_IMAGE_TAG))
        data.setdefault("startedAt", _text(item, contract.RECORD_STARTED_AT))
        data.setdefault("execution", _text(item, contract.RECORD_EXECUTION_ARN))
        data.setdefault("name", _text(item, contract.RECORD_SK).partition("#")[2])
        _merge_deployments(data, item)
        return cls(data)

    def _str(self, key: str) -> str:
        value = self.data.get(key)
        return "" if value is None else str(value)

    @property
    def name(self) -> str:
        return self._str("name")

    @property
    def execution(self) -> str:
        return self._str("execution")

    @property
    def status(self) -> str:
        return self._str("status")

    @property
    def image_tag(self) -> str:
        return self._str("imageTag")

    @property
    def kind(self) -> str:
        return self._str("kind") or contract.KIND_RELEASE

    @property
    def phase(self) -> str:
        return self._str("phase")

    @property
    def started_by(self) -> str:
        return self._str("startedBy") or "unknown"

    @property
    def error(self) -> str | None:
        return self.data.get("error") or None

    @property
    def cause(self) -> str | None:
        return self.data.get("cause") or None

    @property
    def started_at(self) -> datetime | None:
        return parse_time(self.data.get("startedAt"))

    @property
    def ended_at(self) -> datetime | None:
        return parse_time(self.data.get("endedAt"))

    @property
    def digests(self) -> dict[str, str]:
        digests = self.data.get("digests")
        return {str(k): str(v) for k, v in digests.items() if v} if isinstance(digests, dict) else {}

    @property
    def migration(self) -> dict[str, Any]:
        migration = self.data.get("migration")
        return migration if isinstance(migration, dict) else {}

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        services = self.data.get("services")
        if not isinstance(services, dict):
            return {}
        return {str(app): value for app, value in services.items() if isinstance(value, dict)}

    @property
    def deployed_apps(self) -> list[str]:
        return [app for app, value in self.services.items() if value.get("outcome") == "deployed"]

    @property
    def lease_released(self) -> bool | None:
        value = self.data.get("leaseReleased")
        return value if isinstance(value, bool) else None

    def duration(self) -> str:
        start, end = self.started_at, self.ended_at
        if start is None or end is None:
            return ""
        seconds = max(0, int((end - start).total_seconds()))
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class RecordTable:
    dynamodb: Any
    table_name: str

    def newest(self, limit: int | None = None) -> Iterator[Record]:
        """Records newest first (`limit` None: all of them, page by page)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": contract.RECORD_PK},
            "ExpressionAttributeValues": {":pk": {"S": contract.RECORD_PARTITION}},
            "ScanIndexForward": False,
        }
        returned = 0
        with aws_errors("reading the release history"):
            while limit is None or returned < limit:
                kwargs["Limit"] = _PAGE if limit is None else min(_PAGE, limit - returned)
                page = self.dynamodb.query(**kwargs)
                for item in page.get("Items", []):
                    returned += 1
                    yield Record.from_item(item)
                if not page.get("LastEvaluatedKey"):
                    return
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def latest(self, limit: int) -> list[Record]:
        return list(self.newest(limit))

    def find(self, execution_arn: str, within: int = _PAGE) -> Record | None:
        """The record of this execution among the `within` newest (a followed release is recent)."""
        return next((r for r in self.newest(within) if r.execution == execution_arn), None)
