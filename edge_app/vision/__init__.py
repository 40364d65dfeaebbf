"""Vision: TFLite runtime loading, label maps, output decoders, preprocessing and detectors."""

from edge_app.vision.decoders import (
    DECODERS,
    Decoded,
    OutputDecoder,
    TensorInfo,
    decode_ssd_postprocess,
    dequantize,
    detect_format,
    get_decoder,
)
from edge_app.vision.detector import Detector, Preparer, TFLiteDetector, open_detector
from edge_app.vision.inspect import inspect_model
from edge_app.vision.labels import (
    LabelMap,
    choose_labels,
    embedded_labels,
    load_labels,
    parse_labels,
)
from edge_app.vision.nms import nms_per_class
from edge_app.vision.preprocess import BoxMap, InputSpec, PreprocessOptions, Preprocessor
from edge_app.vision.runtime import Interpreter, load_interpreter

__all__ = [
    "DECODERS",
    "BoxMap",
    "Decoded",
    "Detector",
    "InputSpec",
    "Interpreter",
    "LabelMap",
    "OutputDecoder",
    "Preparer",
    "PreprocessOptions",
    "Preprocessor",
    "TFLiteDetector",
    "TensorInfo",
    "choose_labels",
    "decode_ssd_postprocess",
    "dequantize",
    "detect_format",
    "embedded_labels",
    "get_decoder",
    "inspect_model",
    "load_interpreter",
    "load_labels",
    "nms_per_class",
    "open_detector",
    "parse_labels",
]
