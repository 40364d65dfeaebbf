"""The last update's outcome as ``/status`` and the shadow's ``reported.model_update`` show it."""

from __future__ import annotations

__all__ = ["UpdateRecord"]

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_app.models.offer import UpdateResult

_REASON_MAX = 300
"""Longest reason shown (characters): a reason names a URL and an error, never a document."""


@dataclass(frozen=True, slots=True)
class UpdateRecord:
    """One offer's outcome: which ref was offered, by whom, when (UTC wall time)."""

    ref: str
    origin: str
    wall: float
    result: UpdateResult

    def to_json(self) -> dict[str, Any]:
        result = self.result
        return {
            "state": result.state.value,
            "ref": self.ref,
            "origin": self.origin[:100],
            "reason": result.reason[:_REASON_MAX] or None,
            "agreement": None if result.agreement is None else round(result.agreement, 4),
            "model": result.model.to_json(),
            "at": datetime.fromtimestamp(self.wall, UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
        }
