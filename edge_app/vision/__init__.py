"""Vision: TFLite runtime loading, label maps, output decoders, preprocessing and detectors;
anomaly models and classifiers for visual inspection."""

from edge_app.vision.anomaly import AnomalyModel, AnomalyScorer
from edge_app.vision.anomaly_fit import FitOptions, evaluate, fit_anomaly
from edge_app.vision.classifier import Classifier
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
from edge_app.vision.features import FeatureExtractor
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
    "AnomalyModel",
    "AnomalyScorer",
    "BoxMap",
    "Classifier",
    "Decoded",
    "Detector",
    "FeatureExtractor",
    "FitOptions",
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
    "evaluate",
    "fit_anomaly",
    "get_decoder",
    "inspect_model",
    "load_interpreter",
    "load_labels",
    "nms_per_class",
    "open_detector",
    "parse_labels",
]
