"""Leasing batches whose bytes *on the wire* fit the payload limit, compressed or not.

Uncompressed, the outbox packs a batch to the byte limit exactly (``Outbox.lease``). A
compressed batch's size is known only after compressing it, so the packer leases by JSON
bytes, with a budget of the limit times the compression ratio it has seen (less a margin),
and compresses. A batch that still comes out too large is released and leased again smaller:
the same oldest events, so order and leases stay as the outbox keeps them. The ratio of JSON
events barely changes from batch to batch, so that is rare after the first few batches.
"""

from __future__ import annotations

__all__ = ["Outgoing", "Packer"]

import logging
from dataclasses import dataclass

from edge_app.outbox import Batch, BatchEncoder, Outbox
from edge_app.uplink.compression import Codec

_log = logging.getLogger(__name__)

# Lease this share of (limit x ratio seen): a batch a little more compressible than the last
# still fits, and one a little less is not released for a few bytes.
_MARGIN = 0.92
# The JSON budget is never more than this many times the wire limit (bounds the memory of
# one batch, and a wrong ratio, e.g. from a batch of repeated events).
_MAX_RATIO = 32.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A leased batch and the bytes that go on the wire for it (its payload, compressed)."""

    batch: Batch
    wire: bytes


class Packer:
    """Leases from ``outbox`` and compresses with ``codec``. Not thread-safe: the drain thread
    owns it. ``ratio`` is JSON bytes per wire byte seen last (1.0 until a batch was packed)."""

    def __init__(self, outbox: Outbox, codec: Codec, encoder: BatchEncoder) -> None:
        self._outbox = outbox
        self._codec = codec
        self._encoder = encoder
        self.ratio = 1.0
        self.repacked = 0
        """Batches released and leased again smaller because they compressed too large."""

    @property
    def codec(self) -> Codec:
        return self._codec

    def lease(self, max_events: int, max_bytes: int) -> Outgoing | None:
        """The oldest events as one batch of at most ``max_events`` events whose wire bytes
        are at most ``max_bytes`` (a lone event that does not fit goes alone, as the outbox
        sends it); ``None`` when nothing waits. The caller acks or releases ``batch``."""
        if self._codec.identity:
            batch = self._outbox.lease(max_events, max_bytes, encoder=self._encoder)
            return None if batch is None else Outgoing(batch, batch.payload)
        budget = max(max_bytes, int(max_bytes * min(self.ratio, _MAX_RATIO) * _MARGIN))
        while True:
            batch = self._outbox.lease(max_events, budget, encoder=self._encoder)
            if batch is None:
                return None
            wire = self._codec.compress(batch.payload)
            self.ratio = len(batch.payload) / max(len(wire), 1)
            if len(wire) <= max_bytes or len(batch.events) <= 1:
                return Outgoing(batch, wire)
            # Too large: the same oldest events again, fewer bytes of them.
            self._outbox.release(batch)
            self.repacked += 1
            smaller = int(len(batch.payload) * max_bytes / len(wire) * _MARGIN)
            _log.debug(
                "batch of %d events compressed to %d bytes (> %d); leasing %d JSON bytes",
                len(batch.events),
                len(wire),
                max_bytes,
                smaller,
            )
            budget = max(1, min(smaller, len(batch.payload) - 1))
