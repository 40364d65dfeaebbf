"""Value types of the outbox API: ``Batch``, ``OutboxStats``, the ``BatchEncoder`` seam, and the
severity ranks the events table stores (so "lowest severity first" is an index scan)."""

from __future__ import annotations

__all__ = [
    "IOT_CORE_MAX_PAYLOAD_BYTES",
    "RANK",
    "Batch",
    "BatchEncoder",
    "OutboxStats",
    "severity_of_rank",
]

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edge_app.domain import Severity

# AWS IoT Core's largest MQTT payload, bytes: an event that cannot fit alone is dead-lettered.
IOT_CORE_MAX_PAYLOAD_BYTES = 131_072

# Eviction order: the severity column stores this rank so "lowest first" is an index scan.
_RANKS: tuple[Severity, ...] = (Severity.LOW, Severity.MEDIUM, Severity.HIGH)
RANK = {severity: rank for rank, severity in enumerate(_RANKS)}


def severity_of_rank(rank: int) -> Severity:
    """The severity stored as ``rank`` in the events table."""
    return _RANKS[rank]


class BatchEncoder(Protocol):
    """Builds a batch payload (``edge_app.uplink.encode_batch`` is the one shipped).

    Must join ``bodies`` with one comma and nothing else, so that the payload of ``n`` bodies is
    the empty-batch size plus ``sum(len(body)) + n - 1`` bytes; ``lease`` relies on that to fill
    batches up to a byte limit without encoding them repeatedly.
    """

    def __call__(
        self,
        device: str,
        batch_id: str,
        bodies: Sequence[str],
        dropped: Mapping[str, Mapping[str, int]],
        *,
        first_seq: int | None,
        last_seq: int | None,
    ) -> bytes: ...


@dataclass(frozen=True, slots=True, eq=False)
class Batch:
    """Events leased for one publish. ``events`` are compact JSON bodies in seq order.

    ``payload`` is the complete MQTT payload. ``first_seq``/``last_seq`` are ``None`` for a
    batch that only reports ``dropped`` counts ({rule: {severity: count}}).
    """

    batch_id: str
    first_seq: int | None
    last_seq: int | None
    events: tuple[str, ...]
    dropped: Mapping[str, Mapping[str, int]]
    payload: bytes

    def __len__(self) -> int:
        return len(self.events)


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """A snapshot of the store. Bytes are sums of stored JSON bodies, not file size."""

    depth: int
    bytes: int
    oldest_wall: float | None
    last_seq: int
    leased: int
    leased_bytes: int
    dropped: int
    """Drops waiting to be reported in a batch (cleared when that batch is acknowledged)."""
    dropped_total: Mapping[str, int] = field(default_factory=dict)
    """Events dropped since the store was opened (evicted for space or age, or dead-lettered),
    by severity value ("low", "medium", "high"); only grows, for metrics."""
    salvaged: Mapping[str, int] = field(default_factory=dict)
    """Rows salvaged from a damaged file when the store was opened ("events", "lane_rows")."""
    unreadable: Mapping[str, int] = field(default_factory=dict)
    """Rows of that damaged file known lost: stored, but unreadable ("events", "lane_rows")."""

    @property
    def pending(self) -> int:
        """Stored events not out in a batch."""
        return self.depth - self.leased

    @property
    def pending_bytes(self) -> int:
        """Bytes of stored events not out in a batch."""
        return self.bytes - self.leased_bytes
