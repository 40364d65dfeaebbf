"""The TFLite detector with real models on real images and clips (../shared/realworld).

Expectations come from ../shared/realworld/MANIFEST.md; detectors are imperfect, so counts are
asserted as ranges, never exact boxes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.config import DetectorConfig
from edge_app.domain import Detections
from edge_app.errors import ModelError, ModelNotFoundError, UnsupportedModelError
from edge_app.models import load_manifest
from edge_app.vision import (
    InputSpec,
    Preprocessor,
    TFLiteDetector,
    inspect_model,
    load_interpreter,
    open_detector,
)
from edge_app.vision.nms import box_iou

LABELS = Path(__file__).resolve().parents[2] / "models" / "labels"

RW = pytest.mark.realworld
MODEL = pytest.mark.model
WHICH = [pytest.param("v1", marks=RW), pytest.param("v2", marks=[RW, MODEL])]


@pytest.fixture(scope="module")
def v1(v1_model: Path) -> Iterator[TFLiteDetector]:
    with TFLiteDetector(v1_model, LABELS / "coco_labels_v1.txt", threads=2) as detector:
        yield detector


@pytest.fixture(scope="module")
def v2(default_model: Path) -> Iterator[TFLiteDetector]:
    config = DetectorConfig(model="ssd_mobilenet_v2_coco", model_dir=default_model.parent)
    with open_detector(config) as detector:
        yield detector


def _image(realworld: Path, name: str) -> NDArray[np.uint8]:
    image = cv2.imread(str(realworld / "images" / name))
    assert image is not None, name
    return np.asarray(image, np.uint8)


def _video_frames(path: Path) -> list[NDArray[np.uint8]]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(np.asarray(frame, np.uint8))
    capture.release()
    assert frames, path
    return frames


def _counts(detections: Detections) -> Counter[str]:
    return Counter(detections.labels)


def _assert_well_formed(detections: Detections, threshold: float) -> None:
    assert detections.xyxy.dtype == np.float32
    assert detections.class_ids.dtype == np.int32
    if len(detections):
        assert float(detections.xyxy.min()) >= 0.0
        assert float(detections.xyxy.max()) <= 1.0
        assert np.all(detections.xyxy[:, 2] >= detections.xyxy[:, 0])
        assert np.all(detections.xyxy[:, 3] >= detections.xyxy[:, 1])
        assert float(detections.scores.min()) >= threshold


# --- what the detectors say about themselves -------------------------------------------------


@pytest.mark.realworld
def test_v1_detector_describes_itself(v1: TFLiteDetector) -> None:
    assert v1.runtime_name.startswith("ai-edge-litert ")
    assert v1.input_size == (300, 300)
    assert v1.format == "ssd_postprocess"
    assert v1.model.name == "ssd_mobilenet_v1_coco_quant"  # no model_name given: the file stem
    assert v1.model.sha256 == "df027205054d"
    assert v1.labels.name(0) == "person"


@pytest.mark.model
def test_default_model_opens_through_the_catalog(v2: TFLiteDetector, default_model: Path) -> None:
    spec = load_manifest().default_spec()
    assert v2.model.name == spec.name
    assert v2.model.sha256 == spec.sha256[:12]
    assert v2.sha256 == spec.sha256
    assert v2.path == default_model
    assert v2.input_size == tuple(spec.input)
    assert v2.labels.name(2) == "car"


# --- MANIFEST expectations -------------------------------------------------------------------


@pytest.mark.realworld
def test_grace_hopper_is_a_person_with_a_tie(v1: TFLiteDetector, realworld: Path) -> None:
    found = v1.detect(_image(realworld, "grace_hopper.bmp"))
    _assert_well_formed(found, 0.5)
    people = [d for d in found if d.label == "person"]
    assert max(d.score for d in people) >= 0.5
    assert "tie" in found.labels
    # the tie is below the face, inside the person's box, on the middle of the image
    tie = next(d for d in found if d.label == "tie")
    assert 0.3 < (tie.bbox[0] + tie.bbox[2]) / 2 < 0.7
    assert (tie.bbox[1] + tie.bbox[3]) / 2 > 0.5


@pytest.mark.parametrize("which", WHICH)
def test_kite_and_cold_has_people_and_kites(
    which: str, request: pytest.FixtureRequest, realworld: Path
) -> None:
    detector: TFLiteDetector = request.getfixturevalue(which)
    found = detector.detect(_image(realworld, "kite_and_cold.jpg"))
    _assert_well_formed(found, 0.5)
    counts = _counts(found)
    assert counts["person"] >= 4, counts
    assert counts["kite"] >= 4, counts


@pytest.mark.parametrize("which", WHICH)
def test_traffic_frame_zero_has_cars(
    which: str, request: pytest.FixtureRequest, realworld: Path
) -> None:
    detector: TFLiteDetector = request.getfixturevalue(which)
    frame = _video_frames(realworld / "videos" / "traffic_frames.mp4")[0]
    counts = _counts(detector.detect(frame))
    assert counts["car"] >= 2, counts


@pytest.mark.parametrize(
    ("which", "share"),
    [pytest.param("v1", 0.9, marks=RW), pytest.param("v2", 0.8, marks=[RW, MODEL])],
)
def test_three_people_walk_up_in_every_gif_frame(
    which: str, share: float, request: pytest.FixtureRequest, realworld: Path
) -> None:
    detector: TFLiteDetector = request.getfixturevalue(which)
    frames = _video_frames(realworld / "videos" / "face-demographics-walking-and-pause.gif")
    persons = [_counts(detector.detect(f))["person"] for f in frames]
    assert len(frames) == 41
    assert all(2 <= n <= 4 for n in persons), persons
    assert sum(n == 3 for n in persons) >= share * len(persons), persons


@pytest.mark.realworld
def test_boxes_are_normalised_to_the_original_frame(v1: TFLiteDetector, realworld: Path) -> None:
    """The same scene at another size and aspect gives the same normalised boxes."""
    image = _image(realworld, "grace_hopper.bmp")
    wide = cv2.resize(image, (image.shape[1] * 2, image.shape[0]))
    a, b = v1.detect(image), v1.detect(np.asarray(wide, np.uint8))
    tie_a = next(d for d in a if d.label == "tie")
    tie_b = next(d for d in b if d.label == "tie")
    np.testing.assert_allclose(tie_a.bbox, tie_b.bbox, atol=0.03)


@pytest.mark.realworld
def test_threshold_filters_scores(v1_model: Path, realworld: Path) -> None:
    image = _image(realworld, "kite_and_cold.jpg")
    with TFLiteDetector(v1_model, LABELS / "coco_labels_v1.txt", score_threshold=0.2) as low:
        loose = low.detect(image)
        low.set_score_threshold(0.6)
        strict = low.detect(image)
    _assert_well_formed(loose, 0.2)
    _assert_well_formed(strict, 0.6)
    assert len(loose) > len(strict)


@pytest.mark.realworld
def test_detect_leaves_the_frame_alone(v1: TFLiteDetector, realworld: Path) -> None:
    image = _image(realworld, "grace_hopper.bmp")
    before = image.copy()
    v1.detect(image)
    np.testing.assert_array_equal(image, before)


# --- refusals --------------------------------------------------------------------------------


def test_a_non_model_file_is_refused_naming_it(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.tflite"
    bogus.write_text("these are notes, not a model\n")
    with pytest.raises(ModelError, match=r"notes\.tflite is not a loadable TFLite model"):
        TFLiteDetector(bogus, None)
    with pytest.raises(ModelNotFoundError, match=r"absent\.tflite does not exist"):
        load_interpreter(tmp_path / "absent.tflite", 1)
    with pytest.raises(ModelNotFoundError, match=r"absent\.tflite does not exist"):
        TFLiteDetector(tmp_path / "absent.tflite", None)


def test_open_detector_says_to_pull_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="run: edge-app models pull ssd_mobilenet_v1_coco"):
        open_detector(DetectorConfig(model="ssd_mobilenet_v1_coco", model_dir=tmp_path))


@pytest.mark.realworld
def test_bad_frames_and_closed_detectors_raise(v1_model: Path) -> None:
    detector = TFLiteDetector(v1_model, LABELS / "coco_labels_v1.txt")
    with pytest.raises(ValueError, match="BGR uint8"):
        detector.detect(np.zeros((300, 300), np.uint8))
    with pytest.raises(ValueError, match="BGR uint8"):
        detector.detect(np.zeros((300, 300, 3), np.float32))
    detector.close()
    detector.close()
    with pytest.raises(ModelError, match="closed"):
        detector.detect(np.zeros((300, 300, 3), np.uint8))
    with pytest.raises(ValueError, match="score_threshold"):
        TFLiteDetector(v1_model, None, score_threshold=1.5)


@pytest.mark.realworld
def test_unknown_model_without_labels_names_classes_by_id(
    default_model: Path, realworld: Path
) -> None:
    # SSD v2 carries no metadata; v1 would name its classes from its embedded labelmap.txt
    with TFLiteDetector(default_model, None) as detector:
        assert detector.labels_source == "none"
        found = detector.detect(_image(realworld, "grace_hopper.bmp"))
    assert "class_0" in found.labels  # person, unnamed


@pytest.mark.realworld
def test_a_model_with_metadata_needs_no_label_file(v1_model: Path, realworld: Path) -> None:
    with TFLiteDetector(v1_model, None) as detector:
        assert detector.labels_source == "model metadata (labelmap.txt)"
        found = detector.detect(_image(realworld, "grace_hopper.bmp"))
    assert "person" in found.labels


@pytest.mark.realworld
def test_inspect_reports_the_layout(v1_model: Path) -> None:
    report = inspect_model(v1_model)
    assert report["format"] == "ssd_postprocess"
    assert report["format_error"] is None
    assert report["manifest_name"] == "ssd_mobilenet_v1_coco"
    assert report["bytes"] == 4_185_003
    assert report["sha256"].startswith("df027205054d6fd9")
    assert report["inputs"][0]["shape"] == [1, 300, 300, 3]
    assert report["inputs"][0]["dtype"] == "uint8"
    assert report["inputs"][0]["quantization"] == {"scale": 0.0078125, "zero_point": 128}
    assert [o["shape"] for o in report["outputs"]] == [[1, 10, 4], [1, 10], [1, 10], [1]]


# --- preprocessing ---------------------------------------------------------------------------


def _details(dtype: Any, shape: tuple[int, ...] = (1, 4, 6, 3)) -> dict[str, Any]:
    return {
        "name": "in",
        "index": 7,
        "shape": np.array(shape),
        "dtype": dtype,
        "quantization": (0.0, 0),
    }


@pytest.fixture
def frame() -> NDArray[np.uint8]:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)


def _reference(frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
    resized = cv2.resize(frame, (6, 4), interpolation=cv2.INTER_LINEAR)
    return np.asarray(cv2.cvtColor(resized, cv2.COLOR_BGR2RGB), np.uint8)


@pytest.mark.parametrize(
    ("dtype", "convert"),
    [
        (np.uint8, lambda rgb: rgb),
        (np.int8, lambda rgb: (rgb.astype(np.int16) - 128).astype(np.int8)),
        (np.float32, lambda rgb: (rgb.astype(np.float32) - 127.5) / 127.5),
    ],
    ids=["uint8", "int8", "float32"],
)
def test_preprocessor_writes_rgb_into_the_buffer(
    frame: NDArray[np.uint8], dtype: Any, convert: Any
) -> None:
    buffer = np.full((1, 4, 6, 3), 99, dtype=dtype)
    spec = InputSpec.from_details(_details(dtype))
    Preprocessor(spec, lambda: buffer)(frame)
    np.testing.assert_allclose(buffer[0], convert(_reference(frame)), atol=1e-6)


def test_preprocessor_skips_the_resize_at_input_size(frame: NDArray[np.uint8]) -> None:
    buffer = np.zeros((1, 8, 12, 3), np.uint8)
    spec = InputSpec.from_details(_details(np.uint8, (1, 8, 12, 3)))
    Preprocessor(spec, lambda: buffer)(frame)
    np.testing.assert_array_equal(buffer[0], frame[:, :, ::-1])


@pytest.mark.realworld
def test_preprocessor_feeds_the_interpreter_like_set_tensor(
    v1_model: Path, realworld: Path
) -> None:
    """Writing into the input buffer in place is what set_tensor() of the same pixels does."""
    image = _image(realworld, "kite_and_cold.jpg")
    interpreter, _ = load_interpreter(v1_model, 1)
    details = interpreter.get_input_details()[0]
    outputs = [d["index"] for d in interpreter.get_output_details()]
    expected_input = cv2.cvtColor(cv2.resize(image, (300, 300)), cv2.COLOR_BGR2RGB)[None]
    interpreter.set_tensor(details["index"], expected_input)
    interpreter.invoke()
    expected = [interpreter.get_tensor(i).copy() for i in outputs]
    Preprocessor.for_interpreter(interpreter, InputSpec.from_details(details))(image)
    np.testing.assert_array_equal(interpreter.get_tensor(details["index"]), expected_input)
    interpreter.invoke()
    for want, i in zip(expected, outputs, strict=True):
        np.testing.assert_array_equal(interpreter.get_tensor(i), want)


@pytest.mark.parametrize(
    ("shape", "dtype", "message"),
    [
        ((1, 3, 300, 300), np.uint8, "NHWC"),
        ((1, 300, 300, 1), np.uint8, "NHWC"),
        ((2, 300, 300, 3), np.uint8, "NHWC"),
        ((1, 300, 300, 3), np.float16, "supported input types"),
    ],
)
def test_input_spec_refuses_inputs_it_cannot_feed(
    shape: tuple[int, ...], dtype: Any, message: str
) -> None:
    with pytest.raises(UnsupportedModelError, match=message):
        InputSpec.from_details(_details(dtype, shape))


@RW
def test_letterbox_boxes_map_back_onto_the_stretched_ones(v1_model: Path, realworld: Path) -> None:
    """The same person found through a letterboxed input lands on the same frame box: the
    un-letterboxing is right (a wrong offset or scale would move the box by tens of pixels)."""
    image = _image(realworld, "grace_hopper.bmp")
    labels = LABELS / "coco_labels_v1.txt"
    boxes = {}
    for resize, align in (
        ("stretch", "center"),
        ("letterbox", "center"),
        ("letterbox", "top_left"),
    ):
        options = {"resize": resize, "align": align, "pad_value": 0}
        with TFLiteDetector(v1_model, labels, threads=1, preprocess=options) as detector:
            assert detector.options.resize == resize
            found = [d for d in detector.detect(image) if d.label == "person"]
        assert found, (resize, align)
        best = max(found, key=lambda d: d.score)
        boxes[(resize, align)] = np.array(best.bbox, np.float32)
    reference = boxes[("stretch", "center")]
    for key, box in boxes.items():
        iou = float(box_iou(reference, box[None])[0])
        assert iou > 0.8, (key, box, reference)


@RW
def test_forced_format_that_does_not_fit_is_refused_naming_the_tensors(v1_model: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="not the yolov8 layout") as info:
        TFLiteDetector(v1_model, threads=1, fmt="yolov8")
    assert "TFLite_Detection_PostProcess" in str(info.value)
