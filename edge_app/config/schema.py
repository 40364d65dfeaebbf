"""The configuration tree: one pydantic model, ``extra="forbid"``, every field described.

Relative paths in a file are resolved against the directory of that file (see ``loader``).
"""

from __future__ import annotations

__all__ = [
    "AppConfig",
    "AwsConfig",
    "BatchConfig",
    "CameraConfig",
    "ClipConfig",
    "CloudWatchLogsConfig",
    "DetectorConfig",
    "DeviceConfig",
    "FileSourceConfig",
    "HealthConfig",
    "ImageDirSourceConfig",
    "MetricsConfig",
    "MotionConfig",
    "OutboxConfig",
    "ReconnectConfig",
    "RuleConfig",
    "ScheduleConfig",
    "SourceConfig",
    "TamperConfig",
    "TlsConfig",
    "UplinkConfig",
    "UrlSourceConfig",
    "UsbSourceConfig",
    "ZoneConfig",
]

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_app.domain import Severity

_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
_HHMM = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
THING_NAME = r"^[A-Za-z0-9_:-]{1,128}$"
Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceConfig(_Model):
    thing_name: str = Field(
        pattern=THING_NAME, description="AWS IoT thing name; also the MQTT topic segment {thing}."
    )
    site: str = Field("", max_length=128, description="Free-form site name, carried in status.")
    data_dir: Path = Field(
        Path("data"),
        description="Where the outbox, snapshots and state live (relative: to config).",
    )


class FileSourceConfig(_Model):
    type: Literal["file"] = "file"
    path: Path = Field(description="Video file to replay (mp4, avi, gif, ...).")
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


class UsbSourceConfig(_Model):
    type: Literal["usb"] = "usb"
    index: int = Field(0, ge=0, description="V4L2 device index (/dev/videoN).")


class UrlSourceConfig(_Model):
    type: Literal["url"] = "url"
    url: str = Field(
        pattern=r"^(rtsp|rtsps|http|https|rtmp)://",
        description="RTSP/HTTP stream address, opened through OpenCV's FFmpeg backend.",
    )


class ImageDirSourceConfig(_Model):
    type: Literal["images"] = "images"
    path: Path = Field(description="Directory of .jpg/.png/.bmp images, read in name order.")
    fps: float = Field(1.0, gt=0, description="Nominal rate used to stamp the images.")


SourceConfig = Annotated[
    FileSourceConfig | UsbSourceConfig | UrlSourceConfig | ImageDirSourceConfig,
    Field(discriminator="type"),
]


class ZoneConfig(_Model):
    name: str = Field(pattern=_NAME, description="Zone name, unique per camera.")
    polygon: list[Point] = Field(
        min_length=3, description="Polygon vertices [x, y], normalised 0..1 of the frame."
    )


class MotionConfig(_Model):
    enabled: bool = Field(True, description="Gate the detector on motion.")
    width: int = Field(
        160, ge=32, le=1920, description="Width in pixels of the grey frame motion is computed on."
    )
    threshold: int = Field(
        25, ge=1, le=255, description="Grey-level difference from the background that counts."
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
        0.2,
        ge=0.0,
        le=3600,
        description="While something moves, detect at most this often (seconds of frame time; "
        "the tracker follows people at 5 fps); 0: on every frame with motion.",
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


class TamperConfig(_Model):
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


class ClipConfig(_Model):
    pre_s: float = Field(3.0, ge=0, le=60, description="Seconds before the event start.")
    post_s: float = Field(5.0, ge=0, le=300, description="Seconds after the event start.")
    fps: float = Field(5.0, gt=0, le=30, description="Frames per second kept for clips.")
    width: int = Field(640, ge=64, le=3840, description="Clips are downscaled to this width.")
    max_mb: float = Field(500.0, gt=0, description="Retention: total size of the clip folder.")
    max_age_h: float = Field(72.0, gt=0, description="Retention: clips older than this go.")


class CameraConfig(_Model):
    name: str = Field(pattern=_NAME, description="Camera name, unique on the device.")
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

    @field_validator("zones")
    @classmethod
    def _unique_zones(cls, zones: list[ZoneConfig]) -> list[ZoneConfig]:
        names = [z.name for z in zones]
        if len(set(names)) != len(names):
            raise ValueError(f"zone names must be unique, got {names}")
        return zones


class DetectorConfig(_Model):
    model: str = Field(
        "ssd_mobilenet_v2_coco",
        description="A model name from models/manifest.yaml, or a path to a .tflite file.",
    )
    labels: Path | None = Field(
        None,
        description="Label file; default: the labels embedded in the model's metadata, "
        "else the manifest's.",
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
    model_dir: Path | None = Field(
        None, description="Model cache; default $EDGE_APP_MODEL_DIR or ~/.cache/edge-app/models."
    )
    format: str | None = Field(
        None,
        pattern=r"^[a-z0-9_]{1,64}$",
        description="Output format (ssd_postprocess, yolov5, yolov8, yolox); null: detected "
        "from the output tensors.",
    )
    iou_threshold: float = Field(
        0.45,
        ge=0.0,
        le=1.0,
        description="NMS overlap above which a weaker box of the same "
        "class is dropped (YOLO formats; SSD models run NMS in the graph).",
    )
    resize: Literal["stretch", "letterbox"] | None = Field(
        None, description="Frame -> input resize; null: the format's (SSD stretch, YOLO letterbox)."
    )
    pad_value: int = Field(114, ge=0, le=255, description="Letterbox padding grey level.")
    letterbox_align: Literal["center", "top_left"] = Field(
        "center", description="Where the letterboxed image sits in the input."
    )
    channel_order: Literal["rgb", "bgr"] = Field("rgb", description="Input channel order.")
    input_range: Literal["-1..1", "0..1", "0..255"] | None = Field(
        None, description="Float inputs' pixel scaling; null: the format's (SSD -1..1, YOLO 0..1)."
    )


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEK: list[Day] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class ScheduleConfig(_Model):
    days: list[Day] = Field(
        default_factory=lambda: list(_WEEK),
        min_length=1,
        description="Days the window opens on (the day its start falls on).",
    )
    start: str = Field("00:00", pattern=_HHMM, description="Window start, HH:MM device local.")
    end: str = Field(
        "24:00", pattern=_HHMM, description="Window end, HH:MM; before start: past midnight."
    )


class RuleConfig(_Model):
    name: str = Field(pattern=_NAME, description="Rule name; the event's `rule`.")
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
        2.0, ge=0, le=3600, description="Seconds the condition must be false before `end`."
    )
    severity: Severity = Field(Severity.MEDIUM, description="Severity of the events raised.")
    review_band: tuple[float, float] | None = Field(
        None, description="Scores in [low, high) set `review: true` (human-review queue)."
    )
    per_object: bool = Field(
        False,
        description="One start/update/end sequence per tracked object (IoU tracker; start "
        "once min_frames hits with a median score >= min_score) instead of one episode per "
        "rule.",
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
            raise ValueError("line and dwell_s need per_object: true (they follow one object)")
        if self.absent_for_s is not None and (self.per_object or self.min_count > 1):
            raise ValueError("absent_for_s is a whole-rule condition: drop per_object/min_count")
        if self.line is not None and self.line[0] == self.line[1]:
            raise ValueError("line needs two different points")
        return self

    @model_validator(mode="after")
    def _band_ordered(self) -> Self:
        if self.review_band is not None:
            low, high = self.review_band
            if not 0.0 <= low < high <= 1.0:
                raise ValueError("review_band must be [low, high] with 0 <= low < high <= 1")
        return self


class OutboxConfig(_Model):
    path: Path | None = Field(None, description="SQLite file; default: <data_dir>/outbox.db.")
    max_bytes: int = Field(
        256 * 1024 * 1024, ge=1024 * 1024, description="Largest size of stored events, in bytes."
    )
    max_age_days: float = Field(
        14.0, gt=0, description="Undelivered events older than this are dropped and counted."
    )


class TlsConfig(_Model):
    ca: Path = Field(description="CA certificate (PEM) that signed the broker's certificate.")
    cert: Path = Field(description="This device's client certificate (PEM).")
    key: Path = Field(description="This device's private key (PEM). Never logged.")


class BatchConfig(_Model):
    max_events: int = Field(500, ge=1, le=10_000, description="Most events in one publish.")
    max_bytes: int = Field(
        128 * 1024, ge=1024, le=128 * 1024, description="Largest batch payload (IoT Core: 128 KB)."
    )
    max_wait_s: float = Field(
        0.5, ge=0, le=60, description="How long to wait for more events before a partial batch."
    )


class ReconnectConfig(_Model):
    min_s: float = Field(0.5, gt=0, le=60, description="First reconnect delay, seconds.")
    max_s: float = Field(
        30.0, gt=0, le=3600, description="Cap of the exponential backoff, seconds."
    )


class UplinkConfig(_Model):
    enabled: bool = Field(True, description="Deliver events over MQTT; off: store only.")
    host: str = Field("localhost", description="MQTT broker host (AWS IoT Core endpoint).")
    port: int = Field(8883, ge=1, le=65535, description="MQTT broker port.")
    tls: TlsConfig | None = Field(None, description="Mutual TLS files; null: plain TCP (tests).")
    client_id: str | None = Field(None, description="MQTT client id; default: the thing name.")
    topic_prefix: str = Field(
        "edge-app/{thing}", description="Topic prefix; `{thing}` is the thing name."
    )
    keepalive_s: int = Field(30, ge=5, le=1200, description="MQTT keepalive, seconds.")
    inflight: int = Field(20, ge=1, le=100, description="Most unacknowledged QoS 1 publishes.")
    max_publishes_per_s: int = Field(
        100, ge=1, le=100, description="Publish rate cap (AWS IoT Core: 100/s per connection)."
    )
    max_bytes_per_s: int = Field(
        524_288,
        ge=1024,
        le=524_288,
        description="Payload byte rate cap, bytes/s (AWS IoT Core: 512 KB/s per connection).",
    )
    snapshot_lane_rows: int = Field(
        1000,
        ge=0,
        description="Event JPEGs queued for upload on {prefix}/snapshots/{event_id}, at most "
        "this many (oldest dropped first); 0: do not upload snapshots.",
    )
    batch: BatchConfig = Field(default_factory=BatchConfig, description="Batching of events.")
    reconnect: ReconnectConfig = Field(
        default_factory=ReconnectConfig, description="Reconnect backoff."
    )
    flush_timeout_s: float = Field(
        5.0, ge=0, le=300, description="On shutdown, how long to keep delivering stored events."
    )


class AwsConfig(_Model):
    region: str = Field("us-east-1", description="AWS region of CloudWatch and CW Logs.")
    credentials: Literal["chain", "iot"] = Field(
        "chain",
        description="chain: boto3's standard chain; iot: the AWS IoT credentials provider "
        "with uplink.tls (no long-lived keys on the device).",
    )
    iot_endpoint: str | None = Field(
        None, description="`aws iot describe-endpoint --endpoint-type iot:CredentialProvider`."
    )
    role_alias: str | None = Field(None, description="IoT role alias of the IAM role to assume.")

    @model_validator(mode="after")
    def _iot_complete(self) -> Self:
        if self.credentials == "iot" and not (self.iot_endpoint and self.role_alias):
            raise ValueError("aws.credentials 'iot' needs aws.iot_endpoint and aws.role_alias")
        return self


class MetricsConfig(_Model):
    enabled: bool = Field(True, description="Collect metrics and ship one-minute aggregates.")
    sink: Literal["mqtt", "cloudwatch", "file", "none"] = Field(
        "mqtt",
        description="mqtt: EMF on {prefix}/metrics (no AWS keys); cloudwatch: PutMetricData "
        "(boto3); file: EMF lines for the CloudWatch agent; none: keep them queued.",
    )
    namespace: str = Field("EdgeApp", min_length=1, max_length=255, description="CW namespace.")
    sample_s: float = Field(10.0, gt=0, le=60, description="Seconds between collector samples.")
    period_s: float = Field(
        60.0, gt=0, le=3600, description="Aggregation period, seconds (CloudWatch: 60)."
    )
    file: Path | None = Field(None, description="EMF file for sink `file`; default data_dir.")
    endpoint_url: str | None = Field(None, description="CloudWatch endpoint override (tests).")
    max_rows: int = Field(
        500_000, ge=1000, description="Most aggregates kept while offline (oldest dropped)."
    )


class CloudWatchLogsConfig(_Model):
    enabled: bool = Field(False, description="Ship the app's warnings and errors to CW Logs.")
    group: str = Field("/edge-app", min_length=1, max_length=512, description="Log group.")
    stream: str | None = Field(None, description="Log stream; default: the thing name.")
    endpoint_url: str | None = Field(None, description="CloudWatch Logs endpoint override.")


class HealthConfig(_Model):
    enabled: bool = Field(True, description="Serve /healthz, /metrics and /status over HTTP.")
    host: str = Field("127.0.0.1", description="Bind address; 0.0.0.0 exposes it on the LAN.")
    port: int = Field(8321, ge=0, le=65535, description="TCP port; 0: any free port.")
    camera_stale_s: float = Field(30.0, gt=0, description="No frame processed this long: stale.")
    detector_stuck_s: float = Field(30.0, gt=0, description="Inside detect this long: stuck.")
    disk_low_fraction: float = Field(0.05, ge=0, le=1, description="Free share below: low.")
    uplink_down_s: float = Field(300.0, gt=0, description="Uplink down this long: degraded.")
    outbox_full_fraction: float = Field(0.9, gt=0, le=1, description="Outbox fill: near full.")


class AppConfig(_Model):
    """The whole configuration of one device."""

    version: int = Field(0, ge=0, description="Configuration version, carried in every event.")
    device: DeviceConfig = Field(description="Identity of this device.")
    cameras: list[CameraConfig] = Field(min_length=1, description="Cameras of this device.")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="Object detector.")
    rules: list[RuleConfig] = Field(default_factory=list, description="Rules that raise events.")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="Durable event store.")
    uplink: UplinkConfig = Field(default_factory=UplinkConfig, description="MQTT delivery.")
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="Metrics and their sink."
    )
    aws: AwsConfig = Field(default_factory=AwsConfig, description="AWS access of the sinks.")
    cloudwatch_logs: CloudWatchLogsConfig = Field(
        default_factory=CloudWatchLogsConfig, description="Shipping of warnings/errors."
    )
    health: HealthConfig = Field(
        default_factory=HealthConfig, description="Local health/metrics HTTP endpoint."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level of log lines written to stderr."
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        cams = {c.name: c for c in self.cameras}
        if len(cams) != len(self.cameras):
            raise ValueError("camera names must be unique")
        rule_names = [r.name for r in self.rules]
        if len(set(rule_names)) != len(rule_names):
            raise ValueError(f"rule names must be unique, got {rule_names}")
        for rule in self.rules:
            targets = [cams[rule.camera]] if rule.camera in cams else list(cams.values())
            if rule.camera is not None and rule.camera not in cams:
                raise ValueError(f"rule {rule.name!r}: no camera named {rule.camera!r}")
            if rule.zone is not None:
                missing = [c.name for c in targets if rule.zone not in {z.name for z in c.zones}]
                if missing:
                    raise ValueError(f"rule {rule.name!r}: zone {rule.zone!r} not on {missing}")
        if self.aws.credentials == "iot" and self.uplink.tls is None:
            raise ValueError("aws.credentials 'iot' needs uplink.tls (the device certificate)")
        return self

    @property
    def outbox_path(self) -> Path:
        return self.outbox.path or self.device.data_dir / "outbox.db"

    @property
    def topic_prefix(self) -> str:
        return self.uplink.topic_prefix.replace("{thing}", self.device.thing_name)
