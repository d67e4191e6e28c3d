"""The hold: one item of the lease table (`LeaseId` = contract.HOLD_ID) that the state machine reads
before it takes anything (constructs/release_machine/hold.py). `release hold` writes it,
`release unhold` deletes it; `start` and `plan` read it so that a person learns at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from release import contract
from release.aws import Aws, aws_errors


@dataclass(frozen=True)
class Hold:
    reason: str
    held_by: str
    held_at: str

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Hold:
        def text(key: str) -> str:
            return str((item.get(key) or {}).get("S") or "?")

        return cls(text("Reason"), text("HeldBy"), text("HeldAt"))

    def line(self) -> str:
        return f"releases are held by {self.held_by} since {self.held_at}: {self.reason}"

    def as_json(self) -> dict[str, str]:
        return {"reason": self.reason, "heldBy": self.held_by, "heldAt": self.held_at}


def _key() -> dict[str, Any]:
    return {"LeaseId": {"S": contract.HOLD_ID}}


def read_hold(aws: Aws, table: str) -> Hold | None:
    with aws_errors("reading the release hold"):
        item = aws.client("dynamodb").get_item(TableName=table, Key=_key(), ConsistentRead=True).get("Item")
    return Hold.from_item(item) if item else None


def put_hold(aws: Aws, table: str, reason: str, held_by: str) -> tuple[Hold, Hold | None]:
    """Hold (again: the newer reason replaces the older); returns the hold and the one it replaced."""
    held_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    item = {**_key(), "Reason": {"S": reason}, "HeldBy": {"S": held_by}, "HeldAt": {"S": held_at}}
    with aws_errors("holding releases"):
        old = aws.client("dynamodb").put_item(TableName=table, Item=item, ReturnValues="ALL_OLD").get("Attributes")
    return Hold(reason, held_by, held_at), (Hold.from_item(old) if old else None)


def delete_hold(aws: Aws, table: str) -> Hold | None:
    with aws_errors("removing the release hold"):
        old = aws.client("dynamodb").delete_item(TableName=table, Key=_key(), ReturnValues="ALL_OLD").get("Attributes")
    return Hold.from_item(old) if old else None
