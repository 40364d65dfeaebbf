"""Decoding and checking one events batch, as the IoT rule hands it to the Lambda (pure).

The rule (``deploy/aws/edge-app.yaml``, ``EventsRule``) selects::

    SELECT 'events' AS kind, encode(*, 'base64') AS payload, topic(2) AS thing,
           get_mqtt_property('content_type') AS content_type, timestamp() AS received_ms
    FROM 'edge-app/+/events'

The payload is base64 because a compressed batch is binary and the Lambda action only takes
JSON; ``content_type`` is the MQTT 5 Content Type the device set (``application/json``, or
``application/json+gzip|zlib|zstd`` with ``uplink.compression``); ``thing`` is the second topic
level, which the IoT policy makes the publisher's own thing name.

Bad input never raises: ``decode_batch`` returns a ``Rejected`` with the reason, and
``check_events`` splits a batch into good events and (event, reason) pairs, so one bad event
never fails the others. This module is a copy of the device's contract, not an import of it:
the function is deployed without edge_app (``tests/cloud`` checks that the two agree).
"""

from __future__ import annotations

__all__ = [
    "MAX_DECODED_BYTES",
    "SCHEMA",
    "Batch",
    "Rejected",
    "check_events",
    "decode_batch",
    "inflate",
]

import base64
import binascii
import json
import math
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# zstd: the standard library has it from Python 3.14; before, only if zstandard is packaged
# with the function. gzip and zlib need nothing.
try:
    from compression import zstd as _std_zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    _std_zstd = None
try:
    import zstandard as _zstandard
except ImportError:
    _zstandard = None  # type: ignore[assignment]  # then zstd batches are refused

SCHEMA = "edge-app/events/1"
# A batch is at most 128 KB on the wire; decompressed, more than 8 MiB is refused (a "zip
# bomb" must not exhaust the function's memory).
MAX_DECODED_BYTES = 8 * 1024 * 1024
MAX_EVENTS = 10_000
_JSON = "application/json"
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_THING = re.compile(r"^[A-Za-z0-9_:-]{1,128}$")
_PHASES = frozenset({"start", "update", "end"})
_SEVERITIES = frozenset({"low", "medium", "high"})


@dataclass(frozen=True)
class Rejected:
    """A batch that cannot be taken at all, and why (for the log, the metric and S3)."""

    reason: str


@dataclass(frozen=True)
class Batch:
    """A decoded batch: ``device`` (checked against the topic's thing), its ``events``
    (unchecked dicts), ``dropped`` counts ``{rule: {severity: n}}``."""

    device: str
    batch_id: str
    first_seq: int | None
    last_seq: int | None
    events: list[Any]
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(n for by_severity in self.dropped.values() for n in by_severity.values())


def _zstd_inflate(data: bytes, limit: int) -> bytes:
    if _std_zstd is not None:
        out: bytes = _std_zstd.ZstdDecompressor().decompress(data, limit + 1)
        return out
    if _zstandard is None:
        raise ValueError(
            "zstd batches need Python 3.14's compression.zstd or the zstandard package in the "
            "function; or set uplink.compression: gzip on the device"
        )
    parts, size = [], 0
    with _zstandard.ZstdDecompressor().stream_reader(data) as reader:
        while size <= limit:
            chunk = reader.read(limit + 1 - size)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
    return b"".join(parts)


def inflate(data: bytes, content_type: str | None, limit: int = MAX_DECODED_BYTES) -> bytes:
    """The JSON bytes of a payload sent with ``content_type``; ``ValueError`` (with the
    reason) for an unknown type, a payload that does not decompress or inflates past
    ``limit`` bytes."""
    if content_type in (None, "", _JSON):
        return data
    wbits = {f"{_JSON}+gzip": 16 + zlib.MAX_WBITS, f"{_JSON}+zlib": zlib.MAX_WBITS}.get(
        content_type
    )
    if wbits is not None:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            raise ValueError(f"payload does not decompress as {content_type}: {exc}") from exc
        if len(out) <= limit and not inflater.eof:
            raise ValueError(f"payload is a truncated {content_type} stream")
    elif content_type == f"{_JSON}+zstd":
        try:
            out = _zstd_inflate(data, limit)
        except ValueError:
            raise
        except Exception as exc:  # zstd errors have no common importable type
            raise ValueError(f"payload does not decompress as {content_type}: {exc}") from exc
    else:
        raise ValueError(f"unknown content type {content_type!r}")
    if len(out) > limit:
        raise ValueError(f"payload inflates to more than {limit} bytes: refused")
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


def decode_batch(event: dict[str, Any]) -> Batch | Rejected:
    """The batch in the rule's ``event`` (``payload`` base64, ``content_type``, ``thing``)."""
    thing = event.get("thing")
    if not isinstance(thing, str) or not _THING.match(thing):
        return Rejected(f"topic thing name {thing!r} is not a valid thing name")
    payload = event.get("payload")
    if not isinstance(payload, str):
        return Rejected("no base64 'payload' in the rule's output: check the rule's SQL")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        return Rejected(f"payload is not base64: {exc}")
    content_type = event.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        return Rejected(f"content_type {content_type!r} is not a string")
    try:
        text = inflate(raw, content_type)
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        return Rejected(f"not an events batch ({content_type or 'no content type'}): {exc}")
    return _check_envelope(doc, thing)


def _check_envelope(doc: object, thing: str) -> Batch | Rejected:  # noqa: PLR0911  # one per check
    if not isinstance(doc, dict):
        return Rejected(f"batch is a JSON {type(doc).__name__}, not an object")
    if doc.get("schema") != SCHEMA:
        return Rejected(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    device = doc.get("device")
    if device != thing:
        # The policy lets a device publish only on its own topic: a batch naming another
        # device is forged or misconfigured, and is not credited to either.
        return Rejected(f"batch says device {device!r} but was published by thing {thing!r}")
    batch_id, events, dropped = doc.get("batch_id"), doc.get("events"), doc.get("dropped")
    if not isinstance(batch_id, str) or not _ULID.match(batch_id):
        return Rejected(f"batch_id {batch_id!r} is not a ULID")
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        return Rejected(f"'events' must be a list of at most {MAX_EVENTS} events")
    if not isinstance(dropped, dict) or not all(
        isinstance(counts, dict) and all(_is_int(n) and n >= 0 for n in counts.values())
        for counts in dropped.values()
    ):
        return Rejected("'dropped' must be {rule: {severity: count}} with counts >= 0")
    first, last = doc.get("first_seq"), doc.get("last_seq")
    if not all(v is None or (_is_int(v) and v >= 1) for v in (first, last)):
        return Rejected(f"first_seq/last_seq {first!r}/{last!r} must be integers >= 1 or null")
    return Batch(device, batch_id, first, last, events, dropped)


def _event_problem(event: object, device: str) -> str | None:
    """Why ``event`` is not a valid event of ``device``; None if it is."""
    if not isinstance(event, dict):
        return f"event is a JSON {type(event).__name__}, not an object"
    checks: list[tuple[str, bool]] = [
        ("id must be a ULID", isinstance(event.get("id"), str) and bool(_ULID.match(event["id"]))),
        ("seq must be an integer >= 1", _is_int(event.get("seq")) and event["seq"] >= 1),
        (f"device must be {device!r}", event.get("device") == device),
        ("camera must be a string", isinstance(event.get("camera"), str)),
        ("rule must be a non-empty string", isinstance(event.get("rule"), str) and event["rule"]),
        (f"phase must be one of {sorted(_PHASES)}", event.get("phase") in _PHASES),
        (f"severity must be one of {sorted(_SEVERITIES)}", event.get("severity") in _SEVERITIES),
        ("label must be a string", isinstance(event.get("label"), str)),
        (
            "score must be a number 0..1",
            _is_number(event.get("score")) and 0 <= event["score"] <= 1,
        ),
        ("review must be true or false", isinstance(event.get("review", False), bool)),
        (
            "bbox must be 4 numbers",
            isinstance(event.get("bbox"), list)
            and len(event["bbox"]) == 4
            and all(_is_number(v) for v in event["bbox"]),
        ),
        (
            "model must be an object with a name",
            isinstance(event.get("model"), dict) and isinstance(event["model"].get("name"), str),
        ),
    ]
    for reason, ok in checks:
        if not ok:
            return reason
    try:
        datetime.fromisoformat(str(event.get("ts")).replace("Z", "+00:00"))
    except ValueError:
        return f"ts {event.get('ts')!r} is not an ISO 8601 time"
    return None


def check_events(batch: Batch) -> tuple[list[dict[str, Any]], list[tuple[object, str]]]:
    """``(good, bad)``: the events that are valid events of the batch's device, and each
    other one with the reason. An id given twice in one batch counts once."""
    good: list[dict[str, Any]] = []
    bad: list[tuple[object, str]] = []
    seen: set[str] = set()
    for event in batch.events:
        problem = _event_problem(event, batch.device)
        if problem is not None:
            bad.append((event, problem))
        elif event["id"] not in seen:
            seen.add(event["id"])
            good.append(event)
    return good, bad
