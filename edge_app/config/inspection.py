"""Visual inspection of a camera: anomaly detection learned from normal footage, and image
classifiers on the whole frame or per zone."""

from __future__ import annotations

__all__ = ["ANOMALY_LABEL", "AnomalyConfig", "ClassifyConfig"]

from pydantic import Field

from edge_app.config.base import FilePath, Model, Name

ANOMALY_LABEL = "anomaly"
"""The label of anomaly detections; rules whose ``labels`` include it watch the anomaly
scores of an inspecting camera (and only those)."""


class AnomalyConfig(Model):
    model: FilePath = Field(
        description="Anomaly model written by `edge-app anomaly fit --out FILE` (relative: to "
        "the config file). The part of the frame it inspects (whole frame or a zone's box) "
        "was fixed when it was fitted."
    )
    extractor: FilePath = Field(
        description="The TFLite feature extractor the model was fitted with (its sha256 is "
        "checked against the model's lineage), e.g. "
        "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite."
    )
    every_s: float = Field(
        0.2,
        ge=0.0,
        le=3600,
        description="Inspect at most one frame per this many seconds of frame time (0.2: 5 "
        "inspected frames/s); 0: every processed frame.",
    )
    threads: int = Field(
        1, ge=1, le=16, description="CPU threads of the feature extractor's interpreter."
    )
    global_share: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="When at least this share of the inspected patches is at or above half the "
        "threshold the change is global (camera moved, lens covered or blurred): no anomaly is "
        "reported, and the tamper checks report the cause. Inspect a zone around the part, so "
        "that a defect covers well under this share of it.",
    )


class ClassifyConfig(Model):
    model: FilePath = Field(
        description="TFLite image classifier: one output of class scores, [1, N] (relative: "
        "to the config file), e.g. a MobileNet trained on good / scratch / missing cap."
    )
    labels: FilePath | None = Field(
        None,
        description="Label file, one name a line (line i names class i); null: the labels "
        "embedded in the model, else class_<i>.",
    )
    zones: list[Name] = Field(
        default_factory=list,
        description="Zones of this camera to classify, each on its own crop (its bounding box; "
        "e.g. one per station on a conveyor); empty: the whole frame.",
    )
    rules: list[Name] = Field(
        min_length=1,
        description="Names of the rules that watch the classifier's labels (and only those "
        "rules): they get, per classified region, the top_k labels with their scores and the "
        "region as the box.",
    )
    top_k: int = Field(3, ge=1, le=20, description="Labels per region given to the rules.")
    every_s: float = Field(
        1.0,
        ge=0.0,
        le=3600,
        description="Classify at most one frame per this many seconds of frame time; 0: every "
        "processed frame.",
    )
    threads: int = Field(1, ge=1, le=16, description="CPU threads of the classifier.")
