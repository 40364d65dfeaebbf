"""A per-object ``update`` for a better snapshot writes and names its own snapshot files.

Real clip, default model, the real ``EdgeApp``: each such update's snapshot is a new pair of
JPEGs (annotated + clean), written from the frame that is the track's new best sighting, and
not the ``start``'s files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_app.actions.snapshot import sibling
from edge_app.app import EdgeApp
from edge_app.clock import SystemClock
from edge_app.config import parse_config
from edge_app.outbox import Outbox
from edge_app.uplink import encode_batch

pytestmark = pytest.mark.realworld


@pytest.fixture(scope="module")
def run(
    realworld: Path, default_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict[str, Any]]]:
    data = tmp_path_factory.mktemp("snapshots") / "data"
    clip = realworld / "videos" / "one-by-one-person-detection.mp4"
    config = parse_config(
        {
            "device": {"thing_name": "cam", "data_dir": str(data)},
            "cameras": [
                {
                    "name": "yard",
                    "source": {"type": "file", "path": str(clip)},
                    "fps": 5,
                    "motion": {},  # detector on motion only: a third of the runs
                }
            ],
            "detector": {"model": str(default_model), "score_threshold": 0.3},
            "rules": [
                {
                    "name": "visitor",
                    "labels": ["person"],
                    "min_score": 0.5,
                    "per_object": True,
                    "min_frames": 3,
                    "end_after_s": 1.0,
                }
            ],
            "uplink": {"enabled": False},
            "health": {"enabled": False},
            "log_level": "warning",
        }
    )
    with EdgeApp(config) as app:
        app.wait()
    with Outbox(
        config.outbox_path, clock=SystemClock(), device="x", max_bytes=1 << 30, max_age_s=1e9
    ) as outbox:
        batch = outbox.lease(100_000, 1 << 30, encoder=encode_batch)
        events = [json.loads(body) for body in batch.events] if batch else []
    return data / "snapshots", events


def _image(path: Path) -> np.ndarray[Any, np.dtype[np.uint8]]:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return np.asarray(image, np.uint8)


def test_better_snapshot_updates_have_their_own_files(
    run: tuple[Path, list[dict[str, Any]]],
) -> None:
    root, events = run
    starts = {e["track_id"]: e for e in events if e["phase"] == "start"}
    updates = [e for e in events if e.get("update_reason") == "better snapshot"]
    assert updates, "the clip has visitors whose score rises clearly after their start"
    for update in updates:
        start = starts[update["track_id"]]
        snap, first = update["snapshot"], start["snapshot"]
        assert snap["file"].endswith(f"{update['id']}.jpg")
        assert sibling(snap["file"], "clean").name == f"{update['id']}.clean.jpg"
        assert snap["file"] != first["file"]
        assert snap["sha256"] != first["sha256"]
        data = (root / snap["file"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (snap["bytes"], snap["sha256"])
        assert update["score"] >= start["score"] + 0.1 - 1e-4  # lifecycle.BETTER_BY
        # the update's frame is the best sighting: its box is drawn there, in the event's red
        annotated, clean = (
            _image(root / snap["file"]),
            _image(root / sibling(snap["file"], "clean")),
        )
        h, w = annotated.shape[:2]
        x1, y1, _, y2 = update["bbox"]
        rows = slice(int(y1 * h) + 2, max(int(y1 * h) + 3, int(y2 * h) - 2))
        edge = slice(max(0, int(x1 * w) - 1), int(x1 * w) + 2)
        drawn = annotated[rows, edge].astype(int) - clean[rows, edge].astype(int)
        red_gain = drawn[..., 2].mean() - drawn[..., 1].mean()
        assert red_gain > 20, f"no red box at the update's bbox (gain {red_gain:.1f})"


def test_zone_free_updates_only_come_for_better_snapshots(
    run: tuple[Path, list[dict[str, Any]]],
) -> None:
    # no zone: every update is a better snapshot, and ends carry no snapshot of their own
    _, events = run
    assert all(
        e.get("update_reason") == "better snapshot" for e in events if e["phase"] == "update"
    )
    assert all("snapshot" not in e for e in events if e["phase"] == "end")
