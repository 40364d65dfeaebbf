"""Device identity and cameras: sources, zones, motion gating, tamper checks, clips; snapshot
retention."""

from __future__ import annotations

__all__ = [
    "CameraConfig",
    "ClipConfig",
    "DeviceConfig",
    "FileSourceConfig",
    "ImageDirSourceConfig",
    "MotionConfig",
    "SnapshotConfig",
    "SourceConfig",
    "TamperConfig",
    "UrlSourceConfig",
    "UsbSourceConfig",
    "ZoneConfig",
]

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from edge_app.config.base import (
    THING_NAME,
    FieldCheckError,
    FilePath,
    Model,
    Name,
    Point,
    Url,
    refuse_repeats,
)
from edge_app.config.inspection import AnomalyConfig, ClassifyConfig
from edge_app.config.tracking import TrackingConfig
from edge_app.domain import Severity


class DeviceConfig(Model):
    thing_name: str = Field(
        pattern=THING_NAME, description="AWS IoT thing name; also the MQTT topic segment {thing}."
    )
    site: str = Field("", max_length=128, description="Free-form site name, carried in status.")
    data_dir: FilePath = Field(
        Path("data"),
        description="Where the outbox, snapshots, clips and state live (relative: to config). "
        "Created 0700 with files 0600 (they hold images of people); an existing folder open "
        "to group or others is reported at start.",
    )


class FileSourceConfig(Model):
    type: Literal["file"] = Field("file", description="Source kind: a video file replayed.")
    path: FilePath = Field(description="Video file to replay (mp4, avi, gif, ...).")
    realtime: bool = Field(
        False,
        description="Pace frames at the file's own fps like a camera; else as fast as possible.",
    )
    speed: float = Field(
        1.0, gt=0, le=100, description="With `realtime`: pace at this multiple of the file's fps."
    )
    loop: bool = Field(False, description="Start over at the end instead of finishing.")
    start_s: float = Field(
        0.0,
        ge=0,
        description="Begin this many seconds into the file (a `loop` starts over at 0); "
        "lets several replays of one clip play out of step, like real cameras.",
    )


class UsbSourceConfig(Model):
    type: Literal["usb"] = Field("usb", description="Source kind: a V4L2 camera.")
    index: int = Field(0, ge=0, description="V4L2 device index (/dev/videoN).")


class UrlSourceConfig(Model):
    type: Literal["url"] = Field("url", description="Source kind: an RTSP/HTTP stream.")
    url: Url = Field(
        pattern=r"^(rtsp|rtsps|http|https|rtmp)://",
        description="RTSP/HTTP stream address, opened through OpenCV's FFmpeg backend. "
        "Credentials in it (user:password@, query values) are never shown in logs or output; "
        "characters such as spaces and quotes must be percent-encoded.",
    )


class ImageDirSourceConfig(Model):
    type: Literal["images"] = Field("images", description="Source kind: a folder of images.")
    path: FilePath = Field(description="Directory of .jpg/.png/.bmp images, read in name order.")
    fps: float = Field(1.0, gt=0, description="Nominal rate used to stamp the images.")


SourceConfig = Annotated[
    FileSourceConfig | UsbSourceConfig | UrlSourceConfig | ImageDirSourceConfig,
    Field(discriminator="type"),
]


class ZoneConfig(Model):
    name: Name = Field(description="Zone name, unique per camera.")
    polygon: list[Point] = Field(
        min_length=3, description="Polygon vertices [x, y], normalised 0..1 of the frame."
    )


class MotionConfig(Model):
    enabled: bool = Field(True, description="Gate the detector on motion.")
    width: int = Field(
        160, ge=32, le=1920, description="Width in pixels of the grey frame motion is computed on."
    )
    threshold: int = Field(
        25, ge=1, le=255, description="Grey-level difference from the previous frame that counts."
    )
    min_area: float = Field(
        0.002, ge=0.0, le=1.0, description="Smallest changed share of the frame that is motion."
    )
    masks: list[list[Point]] = Field(
        default_factory=list,
        description="Polygons (normalised) whose motion is ignored (trees, clocks, screens).",
    )
    force_every_s: float = Field(
        5.0, ge=0.0, le=3600, description="Detect at least this often regardless; 0: never."
    )
    motion_every_s: float = Field(
        0.25,
        ge=0.0,
        le=3600,
        description="While something moves, detect at most this often (seconds of frame time; "
        "the tracker follows people at 4 fps); 0: on every frame with motion.",
    )
    still_every_s: float = Field(
        1.0,
        ge=0.0,
        le=3600,
        description="While rules watch objects but nothing moves, detect this often (keep it "
        "below the rules' end_after_s); 0: every frame.",
    )
    crop: bool = Field(
        False,
        description="When small motion starts in a scene with nothing tracked, detect on a "
        "window around it (the model's aspect ratio, at least its input size) instead of the "
        "whole frame: small, far objects cover more model pixels.",
    )
    crop_max_share: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="Largest share of the frame's area a crop window may cover; larger motion "
        "is detected on the whole frame.",
    )


class TamperConfig(Model):
    enabled: bool = Field(True, description="Watch this camera for tampering and feed faults.")
    warmup_s: float = Field(
        10.0, gt=0, le=3600, description="Seconds of frames that teach the camera's normal view."
    )
    hold_s: float = Field(
        2.0, ge=0, le=600, description="A condition must hold (and clear) this long to count."
    )
    frozen_s: float = Field(3.0, gt=0, le=3600, description="Identical frames this long: frozen.")
    sharpness_ratio: float = Field(
        0.35, gt=0, lt=1, description="Defocused below this share of the learned sharpness."
    )
    moved_share: float = Field(
        0.6, gt=0, le=1, description="Moved when this share of textured cells no longer match."
    )
    severity: Severity = Field(Severity.HIGH, description="Severity of tamper events.")


class ClipConfig(Model):
    pre_s: float = Field(3.0, ge=0, le=60, description="Seconds before the event start.")
    post_s: float = Field(5.0, ge=0, le=300, description="Seconds after the event start.")
    fps: float = Field(5.0, gt=0, le=30, description="Frames per second kept for clips.")
    width: int = Field(640, ge=64, le=3840, description="Clips are downscaled to this width.")
    max_mb: float = Field(
        500.0, gt=0, description="Retention: total size of the clip folder, in MiB."
    )
    max_age_h: float = Field(72.0, gt=0, description="Retention: clips older than this go (hours).")


class SnapshotConfig(Model):
    max_mb: float = Field(
        1000.0,
        gt=0,
        description="Retention: total size in MiB of <data_dir>/snapshots; the oldest events' "
        "files go first. Files of an event still in the outbox or queued for upload are kept, "
        "even over this.",
    )
    max_age_h: float = Field(
        72.0,
        gt=0,
        description="Retention: an event's snapshot files older than this many hours go, unless "
        "the event is still in the outbox or its upload still queued.",
    )
    prune_every_s: float = Field(
        600.0,
        gt=0,
        le=86400,
        description="Local retention (snapshots, and every camera's clips by its clips.max_mb "
        "and max_age_h) runs at start and then every this many seconds, off the frame loop.",
    )


class CameraConfig(Model):
    name: Name = Field(
        description="Camera name, unique on the device; also its snapshots/ and clips/ folder."
    )
    source: SourceConfig = Field(description="Where frames come from; chosen by `type`.")
    fps: float | None = Field(
        None, gt=0, le=120, description="Most frames per second to process; null: every frame."
    )
    resize: tuple[Annotated[int, Field(ge=16)], Annotated[int, Field(ge=16)]] | None = Field(
        None, description="Resize captured frames to [width, height] pixels before processing."
    )
    zones: list[ZoneConfig] = Field(default_factory=list, description="Named zones of this camera.")
    max_lag_s: float | None = Field(
        None,
        gt=0,
        le=60,
        description="Live or realtime sources: frames older than this when their turn comes "
        "are dropped and counted per camera (never queued); null: process every frame.",
    )
    clips: ClipConfig | None = Field(
        None, description="A pre/post mp4v clip per event start; null: no clips."
    )
    tamper: TamperConfig | None = Field(
        None, description="Tamper and health events (blocked, defocused, moved, frozen)."
    )
    motion: MotionConfig | None = Field(
        None,
        description="Run the detector only on motion, while rules have live objects, and every "
        "force_every_s; null: detect on every processed frame.",
    )
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig,
        description="How per-object rules keep a track through detector dropouts: weak "
        "detections, motion and appearance evidence, re-identification (local only).",
    )
    anomaly: AnomalyConfig | None = Field(
        None,
        description="Anomaly inspection with a model fitted on normal footage (rules with the "
        "label `anomaly` watch it; see docs/inspection.md); with it, tamper checks run with "
        "their defaults unless `tamper` is set. null: none.",
    )
    classify: ClassifyConfig | None = Field(
        None,
        description="An image classifier on the whole frame or per zone, feeding the rules "
        "it names (see docs/inspection.md); null: none.",
    )

    @field_validator("zones")
    @classmethod
    def _unique_zones(cls, zones: list[ZoneConfig]) -> list[ZoneConfig]:
        refuse_repeats((z.name for z in zones), "zone")
        return zones

    @model_validator(mode="after")
    def _classified_zones(self) -> Self:
        known = {z.name for z in self.zones}
        if self.classify is not None:
            for i, zone in enumerate(self.classify.zones):
                if zone not in known:
                    raise FieldCheckError(
                        ["classify", "zones", i], f"no zone named {zone!r} on this camera"
                    )
        return self
