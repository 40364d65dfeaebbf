"""How a camera's per-object rules follow objects through detector dropouts (``tracking``)."""

from __future__ import annotations

__all__ = ["TrackingConfig"]

from typing import Literal, Self

from pydantic import Field, model_validator

from edge_app.config.base import FieldCheckError, FilePath, Model


class TrackingConfig(Model):
    low_score: float = Field(
        0.15,
        ge=0.0,
        le=1.0,
        description="Floor of the tracker's weak stage: a detection scoring below the rule's "
        "min_score but at least this keeps a track it overlaps alive (never starts one). "
        "Only detections the detector keeps reach it: set detector.score_threshold at or "
        "below this to use them.",
    )
    motion: bool = Field(
        True,
        description="Motion inside or near a lost track's box (the track's region compared "
        "with the previous processed frame) counts as evidence that the object is still there.",
    )
    appearance: bool = Field(
        True,
        description="A lost track's region still looking as at its last sighting (colour "
        "histogram) counts as evidence that the object is still there.",
    )
    max_lost_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds of frame time a track may go without any detection, kept alive "
        "by motion or appearance alone, before it ends regardless.",
    )
    reid_window_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="A new confident detection resumes a track lost at most this long ago "
        "(seconds of frame time) when it has the lost track's size and appearance near its "
        "last position, instead of starting a new object; 0: off.",
    )
    reid: Literal["histogram", "embedding"] = Field(
        "histogram",
        description="Appearance compared for re-identification: a colour histogram (no "
        "model), or an embedding from embedding_model (computed only when a track is lost "
        "or a candidate appears, never every frame).",
    )
    embedding_model: FilePath | None = Field(
        None,
        description="reid: embedding: a TFLite image embedding model (uint8 RGB input, one "
        "feature vector out), e.g. mobilenet_v1_1.0_224_quant_embedding_extractor.tflite.",
    )

    @model_validator(mode="after")
    def _embedding_has_model(self) -> Self:
        if self.reid == "embedding" and self.embedding_model is None:
            raise FieldCheckError(
                ["embedding_model"],
                "reid: embedding needs embedding_model: the path of a .tflite embedding model "
                "(or use reid: histogram, which needs no model)",
            )
        return self
