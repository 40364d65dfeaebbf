"""Frozen domain types that flow through the pipeline: Frame -> Detections -> Event.

Coordinates: boxes are ``(x1, y1, x2, y2)`` normalised to 0..1 of the original frame.
Times: ``mono`` is monotonic seconds (ordering, intervals); ``wall`` is Unix epoch seconds (UTC).
"""

from __future__ import annotations

__all__ = [
    "Detection",
    "Detections",
    "EndReason",
    "Event",
    "Frame",
    "Image",
    "ModelRef",
    "Phase",
    "Severity",
    "SnapshotRef",
    "UpdateReason",
    "as_image",
    "format_utc",
]

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

BBox = tuple[float, float, float, float]
Image = NDArray[np.uint8]
"""A BGR uint8 HxWx3 image, as OpenCV gives it."""


def as_image(array: Any) -> Image:
    """Type an OpenCV result as an ``Image`` (OpenCV's stubs say ``MatLike``); no copy."""
    return array  # type: ignore[no-any-return]


def format_utc(wall: float) -> str:
    """Unix epoch seconds as ISO 8601 UTC with milliseconds, e.g. ``...T10:15:02.125Z``."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One captured image. ``image`` is BGR uint8 HxWx3 (OpenCV order) and is not copied.

    ``prepared`` is the detector's input made from ``image`` on the source's reader thread
    (opaque here; see ``edge_app.vision.PreparedInput``), or None.
    """

    camera: str
    index: int
    mono: float
    wall: float
    image: Image
    prepared: object | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object (a row of ``Detections``)."""

    label: str
    score: float
    bbox: BBox
    class_id: int


@dataclass(frozen=True, slots=True, eq=False)
class Detections:
    """Detections of one frame as parallel arrays (supervision-style).

    ``xyxy`` float32 (N, 4) normalised to 0..1; ``scores`` float32 (N,); ``class_ids`` int32 (N,);
    ``labels`` the N label strings.
    """

    xyxy: NDArray[np.float32]
    scores: NDArray[np.float32]
    class_ids: NDArray[np.int32]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.xyxy.shape != (n, 4) or self.scores.shape != (n,) or self.class_ids.shape != (n,):
            raise ValueError(
                f"Detections arrays disagree: xyxy {self.xyxy.shape}, scores {self.scores.shape}, "
                f"class_ids {self.class_ids.shape}, {n} labels"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), ())

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[Detection]:
        for i, label in enumerate(self.labels):
            x1, y1, x2, y2 = (float(v) for v in self.xyxy[i])
            yield Detection(label, float(self.scores[i]), (x1, y1, x2, y2), int(self.class_ids[i]))

    def select(self, mask: NDArray[np.bool_]) -> Detections:
        """The rows where ``mask`` is true."""
        idx = np.flatnonzero(mask)
        return Detections(
            self.xyxy[idx],
            self.scores[idx],
            self.class_ids[idx],
            tuple(self.labels[i] for i in idx),
        )


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Phase(StrEnum):
    START = "start"
    UPDATE = "update"
    END = "end"


class UpdateReason(StrEnum):
    """Why a per-object ``update`` event was raised (its ``update_reason``)."""

    ENTERED_ZONE = "entered zone"
    LEFT_ZONE = "left zone"
    BETTER_SNAPSHOT = "better snapshot"
    """The frame is the track's new best sighting: the event gets a snapshot of its own."""


class EndReason(StrEnum):
    """Why an episode, a track's event sequence, a tamper or a health condition ended
    (``end_reason``)."""

    GONE = "gone"
    PRESENT = "present"
    """An absence rule's awaited object is seen again."""
    LEFT_ZONE = "left zone"
    OUTSIDE_SCHEDULE = "outside schedule"
    SOURCE_ENDED = "source ended"
    CONFIG_CHANGED = "config changed"
    """A remote config changed the camera's rules or zones."""
    CLEARED = "cleared"
    """A health condition is gone (``telemetry.HealthEvents``)."""
    STOPPED = "stopped"
    """The app stopped while a health condition was open."""


@dataclass(frozen=True, slots=True)
class ModelRef:
    """Lineage of a decision: the model's name, the first 12 hex digits of its sha256, and
    its registry version (None for manifest models and plain files)."""

    name: str
    sha256: str
    version: str | None = None

    def to_json(self) -> dict[str, str]:
        """The wire form, as events, ``/status`` and the shadow's ``reported`` carry it;
        ``version`` only for a registered model."""
        doc = {"name": self.name, "sha256": self.sha256}
        if self.version is not None:
            doc["version"] = self.version
        return doc


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """An event's snapshot: ``file`` (the annotated JPEG, relative to the snapshot directory),
    ``sha256`` (hex) and ``bytes`` (size) of the clear JPEG, whether or not it is stored
    encrypted. Its siblings are named after ``file`` (``edge_app.actions.sibling``)."""

    file: str
    sha256: str
    bytes: int

    def to_json(self) -> dict[str, object]:
        """The wire form (``snapshot`` in docs/events.md)."""
        return {"file": self.file, "sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True, slots=True)
class Event:
    """An anomaly event (docs/events.md). ``seq`` is assigned by the outbox on commit.

    ``extra`` holds the fields of the wire form that depend on the kind of event (``start_id``,
    ``duration_s``, ``count``, tamper measurements, ...), in wire order; reasons in it are
    ``UpdateReason``/``EndReason`` members, read back through ``update_reason``/``end_reason``.
    """

    id: str
    device: str
    camera: str
    rule: str
    phase: Phase
    severity: Severity
    wall: float
    mono: float
    label: str
    score: float
    bbox: BBox
    model: ModelRef
    config_version: int = 0
    zone: str | None = None
    track_id: int | None = None
    review: bool = False
    snapshot: SnapshotRef | None = None
    seq: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def with_seq(self, seq: int) -> Event:
        return replace(self, seq=seq)

    @property
    def update_reason(self) -> UpdateReason | None:
        """Why this ``update`` was raised; None for other phases and non-object rules."""
        reason = self.extra.get("update_reason")
        return reason if isinstance(reason, UpdateReason) else None

    @property
    def end_reason(self) -> EndReason | None:
        """Why this ``end`` was raised; None for other phases and condition ends that carry
        their measurements instead (a tamper condition that cleared)."""
        reason = self.extra.get("end_reason")
        return reason if isinstance(reason, EndReason) else None

    def to_json(self) -> dict[str, Any]:
        """The wire form (docs/events.md): ``ts`` as UTC ISO 8601, bbox rounded to 4 decimals."""
        doc: dict[str, Any] = {
            "id": self.id,
            "seq": self.seq,
            "device": self.device,
            "camera": self.camera,
            "rule": self.rule,
            "phase": self.phase.value,
            "severity": self.severity.value,
            "ts": format_utc(self.wall),
            "label": self.label,
            "score": round(self.score, 4),
            "bbox": [round(v, 4) for v in self.bbox],
            "zone": self.zone,
            "track_id": self.track_id,
            "model": self.model.to_json(),
            "config_version": self.config_version,
            "review": self.review,
        }
        if self.snapshot is not None:
            doc["snapshot"] = self.snapshot.to_json()
        doc.update(self.extra)
        return doc
