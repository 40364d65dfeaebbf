"""Labels embedded in a model's TFLite metadata (a zip archive after the flatbuffer).

The real SSD v1 model of ../shared/realworld carries ``labelmap.txt`` that way; the default
model (SSD v2) carries none, so a second model is built here by appending an archive with a
``labels.txt`` to its bytes, which the interpreter must still load.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import pytest

from edge_app.cli import main as cli_main
from edge_app.config import DetectorConfig
from edge_app.domain import as_image
from edge_app.errors import ModelError
from edge_app.vision import TFLiteDetector, embedded_labels, inspect_model, open_detector

# id form, sparse ids like Coral's coco_labels.txt, but names no stock label file uses, so a
# detection named "visitor" can only have come from the embedded archive
CUSTOM = "0 visitor\n2 cart\n"


def with_archive(model: Path, out: Path, members: dict[str, str]) -> Path:
    out.write_bytes(model.read_bytes())
    with zipfile.ZipFile(out, "a") as archive:  # "a" on a non-zip file appends an archive
        for name, text in members.items():
            archive.writestr(name, text)
    return out


@pytest.fixture
def labelled_v2(default_model: Path, tmp_path: Path) -> Path:
    return with_archive(default_model, tmp_path / "v2_with_labels.tflite", {"labels.txt": CUSTOM})


@pytest.mark.realworld
def test_the_real_v1_model_carries_its_label_map(v1_model: Path) -> None:
    found = embedded_labels(v1_model)
    assert found is not None
    labels, member = found
    assert member == "labelmap.txt"
    assert len(labels) == 80  # 90 ids, 10 of them "???" (unused) and the background line
    assert (labels.name(0), labels.name(2), labels.name(89)) == ("person", "car", "toothbrush")


def test_the_default_model_carries_none(default_model: Path) -> None:
    assert embedded_labels(default_model) is None


@pytest.mark.realworld
def test_appended_labels_name_the_detections(labelled_v2: Path, realworld: Path) -> None:
    image = cv2.imread(str(realworld / "images" / "grace_hopper.bmp"), cv2.IMREAD_COLOR)
    with TFLiteDetector(labelled_v2, score_threshold=0.5) as detector:  # it loads
        assert detector.labels_source == "model metadata (labels.txt)"
        detections = detector.detect(as_image(image))
    assert "visitor" in detections.labels
    assert "person" not in detections.labels


def test_an_explicit_label_file_wins(labelled_v2: Path, tmp_path: Path) -> None:
    explicit = tmp_path / "mine.txt"
    explicit.write_text("0 somebody\n", encoding="utf-8")
    with TFLiteDetector(labelled_v2, explicit) as detector:
        assert detector.labels_source == f"file {explicit}"
        assert detector.labels.name(0) == "somebody"


def test_open_detector_uses_embedded_labels_when_the_config_names_none(
    labelled_v2: Path, tmp_path: Path
) -> None:
    # an unknown file (its digest is in no manifest): no catalog labels, the archive's are used
    config = DetectorConfig(model=str(labelled_v2), model_dir=tmp_path)
    with open_detector(config) as detector:
        assert detector.labels_source == "model metadata (labels.txt)"
        assert detector.labels.name(2) == "cart"


def test_inspect_reports_where_labels_come_from(
    labelled_v2: Path, default_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert inspect_model(labelled_v2)["labels"] == {
        "source": "model metadata (labels.txt)",
        "count": 2,
    }
    manifest = inspect_model(default_model)["labels"]
    assert manifest["source"].startswith("manifest ")
    assert manifest["source"].endswith("coco_labels.txt")
    assert cli_main(["models", "inspect", str(labelled_v2), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["labels"]["count"] == 2
    assert cli_main(["models", "inspect", str(labelled_v2)]) == 0
    assert "labels:   2 from model metadata (labels.txt)" in capsys.readouterr().out


def test_a_broken_embedded_label_file_is_refused_naming_it(
    default_model: Path, tmp_path: Path
) -> None:
    broken = with_archive(default_model, tmp_path / "broken.tflite", {"labels.txt": "\n\n"})
    with pytest.raises(ModelError, match=r"broken\.tflite \(embedded labels\.txt\) has no labels"):
        TFLiteDetector(broken)


def test_among_several_text_files_the_label_one_is_taken(
    default_model: Path, tmp_path: Path
) -> None:
    model = with_archive(
        default_model,
        tmp_path / "notes.tflite",
        {"README.txt": "not labels", "labelmap.txt": "???\nperson\nbicycle\n"},
    )
    found = embedded_labels(model)
    assert found is not None
    assert found[1] == "labelmap.txt"
    assert found[0].name(1) == "bicycle"
