"""``edge-app anomaly fit`` and ``eval`` on real footage, and their answers to bad input."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge_app.cli import main
from tests.vision.defects import DEFECTS, inject

EXTRACTOR = "models/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"


@pytest.fixture(scope="module")
def footage(realworld: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """normal.mp4 (frames 0..99), held/ (frames 100..120 as PNG), defects/ with boxes.json."""
    root = tmp_path_factory.mktemp("footage")
    capture = cv2.VideoCapture(str(realworld / "videos" / "bottle-detection.mp4"))
    frames = [np.asarray(capture.read()[1], np.uint8) for _ in range(121)]
    capture.release()
    writer = cv2.VideoWriter(
        str(root / "normal.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 30, (640, 360)
    )
    for frame in frames[:100]:
        writer.write(frame)
    writer.release()
    (root / "held").mkdir()
    for i, frame in enumerate(frames[100:]):
        cv2.imwrite(str(root / "held" / f"{i:03d}.png"), frame)
    (root / "defects").mkdir()
    donor = np.asarray(cv2.imread(str(realworld / "images" / "kite_and_cold.jpg")), np.uint8)
    rng = np.random.default_rng(11)
    boxes = {}
    for i in range(12):
        image, box = inject(frames[100 + i], list(DEFECTS)[i % 4], rng, donor)
        cv2.imwrite(str(root / "defects" / f"d{i:02d}.png"), image)
        boxes[f"d{i:02d}.png"] = [list(box)]
    (root / "defects" / "boxes.json").write_text(json.dumps(boxes))
    return {
        "root": root,
        "normal": root / "normal.mp4",
        "held": root / "held",
        "defects": root / "defects",
    }


def test_fit_then_eval_on_real_footage(
    footage: dict[str, Path], realworld: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "line.npz"
    code = main(
        [
            "anomaly",
            "fit",
            str(footage["normal"]),
            "--extractor",
            str(realworld / EXTRACTOR),
            "--out",
            str(out),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "extract: 100/100 frames" in captured.err  # progress, on stderr
    lineage = json.loads(captured.out)
    assert lineage["sources"] == [{"source": "normal.mp4", "frames": 100, "train": 80}]
    assert lineage["threshold"] > lineage["calibration"]["held_out_max"]
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600

    code = main(
        [
            "anomaly",
            "eval",
            "--model",
            str(out),
            "--extractor",
            str(realworld / EXTRACTOR),
            "--normal",
            str(footage["held"]),
            "--defects",
            str(footage["defects"]),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    figures = json.loads(captured.out)
    assert figures["normal_frames"] == 21
    assert figures["defect_frames"] == 12
    assert figures["auroc"] >= 0.95
    assert figures["localisation"] >= 0.9
    assert figures["false_alarm_rate"] == 0.0


def test_fit_inside_a_zone_of_a_camera(
    footage: dict[str, Path], realworld: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device": {"thing_name": "cam-1"},
                "uplink": {"enabled": False},
                "cameras": [
                    {
                        "name": "line",
                        "source": {"type": "usb"},
                        "zones": [
                            {
                                "name": "middle",
                                "polygon": [[0.3, 0.2], [0.7, 0.2], [0.7, 0.95], [0.3, 0.95]],
                            }
                        ],
                    }
                ],
            }
        )
    )
    out = tmp_path / "middle.npz"
    code = main(
        [
            "anomaly",
            "fit",
            str(footage["normal"]),
            "--extractor",
            str(realworld / EXTRACTOR),
            "--out",
            str(out),
            "--camera-config",
            str(config),
            "--camera",
            "line",
            "--zone",
            "middle",
            "--max-frames",
            "30",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["crop"] == [0.3, 0.2, 0.7, 0.95]
    assert json.loads(captured.out)["sources"][0]["frames"] == 30


def _exit_code(argv: list[str]) -> int:
    """``main``'s exit code, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zone", "dock"], "--camera and --zone need --camera-config FILE"),
        (["--max-frames", "0"], "must be >= 1"),
    ],
)
def test_fit_argument_errors_are_one_line(
    args: list[str],
    message: str,
    footage: dict[str, Path],
    realworld: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["anomaly", "fit", str(footage["normal"]), "--extractor", str(realworld / EXTRACTOR)]
    assert _exit_code([*argv, "--out", str(tmp_path / "m.npz"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_a_region_outside_the_frame_is_refused(
    footage: dict[str, Path], realworld: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "anomaly",
                "fit",
                str(footage["normal"]),
                "--extractor",
                str(realworld / EXTRACTOR),
                "--out",
                str(tmp_path / "m.npz"),
                "--region",
                "0.5,0.5,1.2,0.9",
            ]
        )
    assert exit_info.value.code == 2
    assert "is not inside the frame" in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()


def test_a_video_that_cannot_be_read_is_a_clear_error(
    realworld: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00 this is no video" * 50)
    code = main(
        [
            "anomaly",
            "fit",
            str(broken),
            "--extractor",
            str(realworld / EXTRACTOR),
            "--out",
            str(tmp_path / "m.npz"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "broken.mp4" in err
    assert "video" in err
    assert "Traceback" not in err


def test_an_empty_folder_is_a_clear_error(
    realworld: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "anomaly",
            "fit",
            str(tmp_path / "empty"),
            "--extractor",
            str(realworld / EXTRACTOR),
            "--out",
            str(tmp_path / "m.npz"),
        ]
    )
    assert code == 2
    assert "holds no images or videos" in capsys.readouterr().err


def test_eval_refuses_a_file_that_is_not_an_anomaly_model(
    footage: dict[str, Path], realworld: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "anomaly",
            "eval",
            "--model",
            str(realworld / EXTRACTOR),
            "--extractor",
            str(realworld / EXTRACTOR),
            "--normal",
            str(footage["held"]),
            "--defects",
            str(footage["defects"]),
        ]
    )
    assert code == 2
    assert "is not an edge-app anomaly model" in capsys.readouterr().err


def test_eval_needs_the_boxes_of_the_defects(
    footage: dict[str, Path], realworld: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.npz"
    assert (
        main(
            [
                "anomaly",
                "fit",
                str(footage["held"]),
                "--extractor",
                str(realworld / EXTRACTOR),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    code = main(
        [
            "anomaly",
            "eval",
            "--model",
            str(out),
            "--extractor",
            str(realworld / EXTRACTOR),
            "--normal",
            str(footage["held"]),
            "--defects",
            str(footage["held"]),
        ]
    )
    assert code == 2
    assert "has no boxes.json" in capsys.readouterr().err
