"""Vision: TFLite runtime loading, label maps, output decoders, preprocessing and detectors."""

from edge_app.vision.decoders import (
    DECODERS,
    Decoded,
    OutputDecoder,
    TensorInfo,
    decode_ssd_postprocess,
    detect_format,
)
from edge_app.vision.detector import Detector, TFLiteDetector, open_detector
from edge_app.vision.inspect import inspect_model
from edge_app.vision.labels import LabelMap, load_labels, parse_labels
from edge_app.vision.preprocess import InputSpec, Preprocessor
from edge_app.vision.runtime import Interpreter, load_interpreter

__all__ = [
    "DECODERS",
    "Decoded",
    "Detector",
    "InputSpec",
    "Interpreter",
    "LabelMap",
    "OutputDecoder",
    "Preprocessor",
    "TFLiteDetector",
    "TensorInfo",
    "decode_ssd_postprocess",
    "detect_format",
    "inspect_model",
    "load_interpreter",
    "load_labels",
    "open_detector",
    "parse_labels",
]
