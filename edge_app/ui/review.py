"""Human verdicts on events: checked from the page's JSON, turned into ``review`` events.

A verdict is an event of its own (docs/events.md, "Review events"): ``rule: "review"``,
``review_of`` the reviewed event's id, ``verdict`` ``confirmed|rejected|relabelled``,
``label`` and ``bbox`` the corrected ones (the original's when only confirmed), ``model``
the model that made the original decision, and ``original`` its label, score and box. It is
stored in the outbox and delivered like any other event, so the cloud can join the two by id.
"""

from __future__ import annotations

__all__ = ["VERDICTS", "ReviewError", "parse_verdict", "review_event"]

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from edge_app.clock import Clock
from edge_app.domain import BBox, Event, ModelRef, Phase, Severity
from edge_app.ids import new_ulid

VERDICTS = ("confirmed", "rejected", "relabelled")
REVIEW_RULE = "review"
_LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,64}")


class ReviewError(ValueError):
    """A verdict the page sent is malformed; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a reviewer decided on event ``event_id``: ``label``/``bbox`` None keep the
    original's."""

    event_id: str
    verdict: str
    label: str | None
    bbox: BBox | None


def parse_verdict(body: bytes) -> Verdict:
    """The verdict in a JSON body ``{"event_id", "verdict", "label"?, "bbox"?}``;
    ``ReviewError`` naming the first bad field."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReviewError(f"the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ReviewError("the body must be a JSON object")
    event_id, verdict = doc.get("event_id"), doc.get("verdict")
    if not isinstance(event_id, str) or not re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", event_id):
        raise ReviewError("event_id: must be the 26-character id of an event")
    if verdict not in VERDICTS:
        raise ReviewError(f"verdict: must be one of {', '.join(VERDICTS)}")
    label = doc.get("label")
    if label is not None and (not isinstance(label, str) or not _LABEL.fullmatch(label)):
        raise ReviewError("label: must be 1 to 64 printable characters")
    if verdict == "relabelled" and label is None:
        raise ReviewError("label: a relabelled verdict needs the corrected label")
    return Verdict(event_id, verdict, label, _bbox(doc.get("bbox")))


def _bbox(value: Any) -> BBox | None:
    if value is None:
        return None
    ok = (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in value)
    )
    if not ok or not (value[0] < value[2] and value[1] < value[3]):
        raise ReviewError("bbox: must be [x1, y1, x2, y2], normalised 0..1, x1 < x2, y1 < y2")
    x1, y1, x2, y2 = (float(v) for v in value)
    return (x1, y1, x2, y2)


def review_event(verdict: Verdict, original: dict[str, Any], clock: Clock) -> Event:
    """The review event of ``verdict`` on ``original`` (its wire form, from the journal)."""
    wall = clock.time()
    box = original.get("bbox") or [0.0, 0.0, 0.0, 0.0]
    model = original.get("model") or {}
    return Event(
        id=new_ulid(wall),
        device=str(original["device"]),
        camera=str(original["camera"]),
        rule=REVIEW_RULE,
        phase=Phase.UPDATE,
        severity=Severity.LOW,
        wall=wall,
        mono=clock.monotonic(),
        label=verdict.label if verdict.label is not None else str(original.get("label", "")),
        score=1.0,  # a person's verdict
        bbox=verdict.bbox or (float(box[0]), float(box[1]), float(box[2]), float(box[3])),
        model=ModelRef(str(model.get("name", "")), str(model.get("sha256", ""))),
        config_version=int(original.get("config_version") or 0),
        zone=original.get("zone"),
        track_id=original.get("track_id"),
        extra={
            "review_of": verdict.event_id,
            "verdict": verdict.verdict,
            "original": {
                "rule": original.get("rule"),
                "label": original.get("label"),
                "score": original.get("score"),
                "bbox": box,
            },
        },
    )
