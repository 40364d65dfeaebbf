"""The events batch payload (docs/events.md), as pure functions.

Wire form, compact JSON, keys in this order::

    {"schema": "edge-app/events/1", "device": ..., "batch_id": ..., "first_seq": ...,
     "last_seq": ..., "events": [...], "dropped": {rule: {severity: count}}}

Event bodies are stored in the outbox as compact JSON strings and are *joined* into the payload,
never parsed and re-serialised: a 128 KB batch costs one string join, not 500 ``json.dumps``.
``first_seq``/``last_seq`` are the lowest and highest ``seq`` in ``events`` (``null`` for a batch
that only reports drops); seqs between them may have been delivered in other batches or dropped.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "SCHEMA",
    "Dropped",
    "decode_batch",
    "encode_batch",
    "envelope_bytes",
]

import json
from collections.abc import Mapping, Sequence
from typing import Any

from edge_app.errors import UplinkError

SCHEMA = "edge-app/events/1"
# AWS IoT Core's largest MQTT payload.
DEFAULT_MAX_PAYLOAD_BYTES = 131_072

Dropped = Mapping[str, Mapping[str, int]]
"""Counts of events evicted before delivery: ``{rule: {severity: count}}``."""

_COMPACT = (",", ":")


def encode_batch(
    device: str,
    batch_id: str,
    bodies: Sequence[str],
    dropped: Dropped,
    *,
    first_seq: int | None,
    last_seq: int | None,
) -> bytes:
    """The complete MQTT payload (UTF-8 bytes) of one events batch.

    ``bodies`` are compact JSON objects, one per event, already in seq order; they are trusted
    (the outbox wrote them) and joined as they are. ``dropped`` may be empty.
    """
    head = json.dumps(
        {
            "schema": SCHEMA,
            "device": device,
            "batch_id": batch_id,
            "first_seq": first_seq,
            "last_seq": last_seq,
        },
        separators=_COMPACT,
    )
    drops = json.dumps(dropped, separators=_COMPACT, sort_keys=True)
    # head ends with "}"; reopen it to append the two remaining keys.
    text = f'{head[:-1]},"events":[{",".join(bodies)}],"dropped":{drops}}}'
    return text.encode("utf-8")


def envelope_bytes(
    device: str,
    batch_id: str,
    dropped: Dropped,
    *,
    first_seq: int | None,
    last_seq: int | None,
) -> int:
    """Size in bytes of a batch with no events; each event then adds its body plus one comma.

    With ``n`` bodies the payload is ``envelope_bytes(...) + sum(len(b)) + max(0, n - 1)``
    bytes (bodies are ASCII), which lets a caller fill a batch up to a limit without encoding it
    repeatedly.
    """
    return len(encode_batch(device, batch_id, (), dropped, first_seq=first_seq, last_seq=last_seq))


def decode_batch(payload: bytes) -> dict[str, Any]:
    """Parse and check a batch payload (for consumers and tests); ``UplinkError`` if malformed."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UplinkError(f"events batch is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise UplinkError(f"events batch must be a JSON object, got {type(doc).__name__}")
    if doc.get("schema") != SCHEMA:
        raise UplinkError(f"events batch schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    missing = [
        key
        for key in ("device", "batch_id", "first_seq", "last_seq", "events", "dropped")
        if key not in doc
    ]
    if missing:
        raise UplinkError(f"events batch lacks {missing}")
    if not isinstance(doc["events"], list) or not isinstance(doc["dropped"], dict):
        raise UplinkError("events batch: 'events' must be a list and 'dropped' an object")
    return doc
