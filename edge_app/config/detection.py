"""The detector and the rules that turn its detections into events."""

from __future__ import annotations

__all__ = ["Day", "DetectorConfig", "RuleConfig", "ScheduleConfig"]

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from edge_app.config.base import HHMM, FieldCheckError, FilePath, Model, Name, NotPem, Point
from edge_app.domain import Severity


class DetectorConfig(Model):
    model: Annotated[str, NotPem] = Field(
        "ssd_mobilenet_v2_coco",
        description="A model name from models/manifest.yaml, a registered NAME@VERSION "
        "(edge-app models list), or a path to a .tflite file (its sidecar FILE.tflite.yaml, "
        "if any, gives its format, labels and preprocessing).",
    )
    labels: FilePath | None = Field(
        None,
        description="Label file; default: the model's sidecar or registry entry's, else the "
        "labels embedded in the model's metadata, else the manifest's.",
    )
    threads: int = Field(2, ge=1, le=64, description="Interpreter CPU threads.")
    delegate: Literal["none", "edgetpu"] = Field(
        "none",
        description="Accelerator: edgetpu loads libedgetpu.so.1 (Coral Edge TPU runtime) "
        "through the TFLite runtime's load_delegate; none: CPU only.",
    )
    score_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Detections below this score are discarded."
    )
    model_dir: FilePath | None = Field(
        None, description="Model cache; default $EDGE_APP_MODEL_DIR or ~/.cache/edge-app/models."
    )
    format: str | None = Field(
        None,
        pattern=r"^[a-z0-9_]{1,64}$",
        description="Output format (ssd_postprocess, yolov5, yolov8, yolox); null: the "
        "model's sidecar or registry entry's, else detected from the output tensors.",
    )
    iou_threshold: float = Field(
        0.45,
        ge=0.0,
        le=1.0,
        description="NMS overlap above which a weaker box of the same "
        "class is dropped (YOLO formats; SSD models run NMS in the graph).",
    )
    # The preprocessing fields default to null, meaning "as the model's sidecar or registry
    # entry says, else as the format's reference exporter feeds it": a value set here would
    # override a YOLOX model's BGR 0..255 top-left convention and make it detect nothing.
    resize: Literal["stretch", "letterbox"] | None = Field(
        None,
        description="Frame -> input resize; null: the model's conventions, else the format's "
        "(SSD stretch, YOLO letterbox).",
    )
    pad_value: int | None = Field(
        None, ge=0, le=255, description="Letterbox padding grey level; null: 114."
    )
    letterbox_align: Literal["center", "top_left"] | None = Field(
        None,
        description="Where the letterboxed image sits in the input; null: the model's "
        "conventions, else the format's (YOLOX top_left, others center).",
    )
    channel_order: Literal["rgb", "bgr"] | None = Field(
        None,
        description="Input channel order; null: the model's conventions, else the format's "
        "(YOLOX bgr, others rgb).",
    )
    input_range: Literal["-1..1", "0..1", "0..255"] | None = Field(
        None,
        description="Float inputs' pixel scaling; null: the model's conventions, else the "
        "format's (SSD -1..1, YOLOv5/YOLOv8 0..1, YOLOX 0..255).",
    )


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEK: list[Day] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class ScheduleConfig(Model):
    days: list[Day] = Field(
        default_factory=lambda: list(_WEEK),
        min_length=1,
        description="Days the window opens on (the day its start falls on).",
    )
    start: str = Field("00:00", pattern=HHMM, description="Window start, HH:MM device local.")
    end: str = Field(
        "24:00", pattern=HHMM, description="Window end, HH:MM; before start: past midnight."
    )


class RuleConfig(Model):
    name: Name = Field(description="Rule name; the event's `rule`.")
    camera: str | None = Field(None, description="Camera this rule watches; null: every camera.")
    labels: list[str] = Field(min_length=1, description="Labels that trigger the rule.")
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="Lowest score that counts.")
    zone: str | None = Field(
        None, description="Zone the box's bottom-centre must be in; null: whole frame."
    )
    min_frames: int = Field(
        3, ge=1, le=1000, description="Consecutive processed frames before `start` is raised."
    )
    end_after_s: float = Field(
        2.0,
        ge=0,
        le=3600,
        description="Seconds the condition must be false before `end`; per_object: seconds "
        "without a detection or other evidence of the object (cameras[].tracking).",
    )
    severity: Severity = Field(Severity.MEDIUM, description="Severity of the events raised.")
    review_band: tuple[float, float] | None = Field(
        None, description="Scores in [low, high) set `review: true` (human-review queue)."
    )
    per_object: bool = Field(
        False,
        description="One start/update/end sequence per tracked object (IoU tracker; start "
        "once min_frames hits with a median score >= min_score; kept through detector "
        "dropouts as cameras[].tracking says) instead of one episode per rule.",
    )
    min_area: float = Field(
        0.0, ge=0.0, le=1.0, description="Smallest box area, as a share of the frame, that counts."
    )
    min_count: int = Field(
        1, ge=1, le=1000, description="Matching objects needed at once (count threshold)."
    )
    absent_for_s: float | None = Field(
        None,
        gt=0,
        le=86400,
        description="Absence rule: start once no matching object has been seen for this long; "
        "end when one is seen again.",
    )
    dwell_s: float = Field(
        0.0, ge=0, le=86400, description="per_object: start only after this long in the zone."
    )
    line: tuple[Point, Point] | None = Field(
        None, description="per_object: raise an event each time a track's anchor crosses it."
    )
    direction: Literal["both", "left_to_right", "right_to_left"] = Field(
        "both",
        description="Crossings that count; left and right as seen walking from the line's "
        "first point to its second.",
    )
    cooldown_s: float = Field(
        0.0, ge=0, le=86400, description="After an end, no new start of this rule for this long."
    )
    schedule: ScheduleConfig | None = Field(
        None, description="When the rule is armed; null: always. Open episodes end outside it."
    )

    @model_validator(mode="after")
    def _kinds_fit(self) -> Self:
        if (self.line is not None or self.dwell_s) and not self.per_object:
            where = "line" if self.line is not None else "dwell_s"
            raise FieldCheckError(
                [where], "line and dwell_s need per_object: true (they follow one object)"
            )
        if self.absent_for_s is not None and (self.per_object or self.min_count > 1):
            raise FieldCheckError(
                ["absent_for_s"],
                "absent_for_s is a whole-rule condition: drop per_object/min_count",
            )
        if self.line is not None and self.line[0] == self.line[1]:
            raise FieldCheckError(["line"], "line needs two different points")
        return self

    @model_validator(mode="after")
    def _band_ordered(self) -> Self:
        if self.review_band is not None:
            low, high = self.review_band
            if not 0.0 <= low < high <= 1.0:
                raise FieldCheckError(
                    ["review_band"], "review_band must be [low, high] with 0 <= low < high <= 1"
                )
        return self
