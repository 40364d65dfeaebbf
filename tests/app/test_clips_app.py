"""End to end: the appliance writes a pre/post mp4v clip per event start, named in the event."""

from __future__ import annotations

from pathlib import Path

import cv2

from edge_app.app import EdgeApp
from edge_app.config import parse_config
from simulator.scene import SceneTruth
from tests.app.test_app import RULES, stored_events


def test_each_start_event_names_a_clip_that_is_written(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth]
) -> None:
    clip, _ = scene
    config = parse_config(
        {
            "device": {"thing_name": "test-cam", "data_dir": str(tmp_path / "data")},
            "cameras": [
                {
                    "name": "yard",
                    "source": {"type": "file", "path": str(clip)},
                    "clips": {"pre_s": 1.0, "post_s": 1.0, "fps": 5, "width": 320},
                }
            ],
            "detector": {"model": str(default_model), "score_threshold": 0.4},
            "rules": [{**r, "min_frames": 3, "end_after_s": 1.0} for r in RULES],
            "uplink": {"enabled": False},
            "log_level": "warning",
        }
    )
    with EdgeApp(config) as app:
        app.wait()
    starts = [e for e in stored_events(config) if e["phase"] == "start"]
    assert starts
    folder = tmp_path / "data" / "clips" / "yard"
    for event in starts:
        path = folder / event["clip"]
        assert path.is_file(), path
        capture = cv2.VideoCapture(str(path))
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        capture.release()
        assert width == 320
        assert 2 <= frames <= 12  # up to 1 s before and 1 s after (both ends kept), at 5 fps
