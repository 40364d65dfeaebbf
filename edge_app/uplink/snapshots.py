"""The snapshot lane: each event's JPEG, published after the events, on its own topic.

Rows of the outbox's ``snapshots`` lane (``LaneStore``) name an event id and its JPEG file
(relative to the snapshot directory); other keys are ignored. ``SnapshotSender`` is the first
side lane (``LaneSender``) of the drain loop, asked for the next publish only when no event is
waiting, so a snapshot backlog never delays an event. Each JPEG is re-encoded smaller until it
fits the payload limit and published (QoS 1) on
``{prefix}/snapshots/{event_id}``; the row is deleted on PUBACK and kept on failure. A file
that no longer exists (cleaned up locally) is skipped and counted. The lane is bounded by rows
(``LaneStore.max_rows``, oldest dropped first and counted) and, through ``Outbox.share_budget``,
by the outbox byte budget: a row weighs its JPEG's size, and snapshots are dropped (oldest
first, counted) before any event is evicted. Dropping a row never deletes the JPEG, which
belongs to local snapshot retention (``edge_app.actions.retention``), which keeps the files of
every row still queued (``SnapshotSender.queued_ids``). An encrypted JPEG (``<file>.enc``, see
``edge_app.atrest``) is decrypted before it is published: the cloud gets the clear JPEG (TLS
protects the wire). One that does not decrypt (no key, another key, altered or renamed) is
skipped, logged and counted in ``unreadable``.
"""

from __future__ import annotations

__all__ = ["SnapshotSender", "fit_jpeg", "snapshot_row"]

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from edge_app.atrest import Sealer, read_stored
from edge_app.errors import EncryptionError, UplinkError
from edge_app.outbox import LaneStore
from edge_app.uplink.lanes import LanePublish, StoredLaneSender

_log = logging.getLogger(__name__)


def snapshot_row(event_id: str, file: str, size: int | None = None) -> str:
    """The lane body for one snapshot: compact JSON ``{"event_id", "file", "bytes"}``.

    ``size`` is the JPEG's size in bytes; ``LaneStore`` counts it against the outbox byte
    budget (rows without ``bytes``, written before, count only their own length).
    """
    doc: dict[str, object] = {"event_id": event_id, "file": file}
    if size is not None:
        doc["bytes"] = int(size)
    return json.dumps(doc, separators=(",", ":"))


def fit_jpeg(data: bytes, limit: int) -> bytes:
    """``data`` (a JPEG) if it is at most ``limit`` bytes, else a smaller re-encoding that is:
    lower quality first, then 3/4 of the size per step. ``UplinkError`` if it is not a JPEG."""
    if len(data) <= limit:
        return data
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UplinkError(f"snapshot of {len(data)} bytes is not a decodable image")
    quality = 80
    while True:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and len(buf) <= limit:
            return bytes(buf.tobytes())
        if quality > 50:
            quality -= 15
            continue
        h, w = image.shape[:2]
        if min(h, w) < 16:
            raise UplinkError(f"snapshot cannot be made smaller than {limit} bytes")
        image = cv2.resize(image, (w * 3 // 4, h * 3 // 4), interpolation=cv2.INTER_AREA)


class SnapshotSender(StoredLaneSender):
    """The snapshot lane as a ``LaneSender``: turns its rows into publishes. ``root`` is the
    snapshot directory; payloads stay within ``max_bytes`` (IoT Core: 128 KB); ``sealer``
    opens encrypted JPEGs. Used by one drain thread (``waiting`` is thread-safe). A publish
    handed back is offered again as it was, so a JPEG is not re-encoded for every retry."""

    lane = "snapshots"

    def __init__(
        self,
        lane: LaneStore,
        root: Path,
        *,
        topic_prefix: str,
        max_bytes: int = 131_072,
        sealer: Sealer | None = None,
    ) -> None:
        super().__init__(lane)
        self._root = root
        self._prefix, self._max_bytes = topic_prefix, max_bytes
        self._sealer = sealer
        self.sent = 0
        self.missing_files = 0
        self.unreadable = 0
        """Encrypted JPEGs skipped because they did not decrypt."""

    def next_publish(self) -> LanePublish | None:
        """The oldest snapshot not yet handed out, or None when there is none."""
        if self._ready:
            return self._ready.popleft()
        while rows := self._unclaimed(1):
            row = rows[0]
            try:
                doc = json.loads(row.body)  # extra keys (such as "bytes") are ignored
                data = read_stored(self._root / doc["file"], self._sealer)
                payload = fit_jpeg(data, self._max_bytes)
            except (OSError, ValueError, KeyError, TypeError, UplinkError, EncryptionError) as exc:
                # Gone or unreadable: nothing to wait for; skip it rather than block the lane.
                if isinstance(exc, EncryptionError):
                    self.unreadable += 1
                else:
                    self.missing_files += 1
                _log.warning("snapshot row %d skipped: %s", row.id, exc)
                self._lane.delete([row.id])
                continue
            topic = f"{self._prefix}/snapshots/{doc['event_id']}"
            return self._claim(LanePublish(topic, payload, (row.id,)))
        return None

    def queued_ids(self) -> set[str]:
        """Event ids whose snapshot row is still in the lane (waiting or out unacknowledged):
        local retention keeps their files. Reads the whole lane (bounded by its max_rows)."""
        ids: set[str] = set()
        for row in self._lane.peek(self._lane.stats().rows):
            try:
                ids.add(str(json.loads(row.body)["event_id"]))
            except (ValueError, KeyError, TypeError):
                continue  # a row that cannot be sent protects nothing; next_publish drops it
        return ids

    def delivered(self, publish: LanePublish) -> None:
        """The broker acknowledged ``publish``: remove its row."""
        super().delivered(publish)
        self.sent += 1
