"""``edge-app models convert``: a TensorFlow/Keras detector -> a verified TFLite model.

Needs the ``[convert]`` extra (TensorFlow), imported only when a conversion runs; the daemon
never imports this package (import-linter contract). See docs/models.md.
"""

from edge_app.convert.agreement import Agreement, OutputError, match_detections, output_error
from edge_app.convert.frames import CalibrationSet, FrameRecord, sample_frames
from edge_app.convert.pipeline import ConversionReport, ConvertOptions, convert_model
from edge_app.convert.source import QUANTIZE_MODES, SourceModel, load_source, require_tensorflow

__all__ = [
    "QUANTIZE_MODES",
    "Agreement",
    "CalibrationSet",
    "ConversionReport",
    "ConvertOptions",
    "FrameRecord",
    "OutputError",
    "SourceModel",
    "convert_model",
    "load_source",
    "match_detections",
    "output_error",
    "require_tensorflow",
    "sample_frames",
]
