"""Event clips from the ring buffer: pre/post frames, mp4v on disk, bounded queue, retention."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.actions.clips import ClipRecorder, ClipWriter
from edge_app.domain import Frame, as_image


def frame(i: int, width: int = 320) -> Frame:
    # frame i shows its own number as its grey level, so a clip's frames can be read back
    image = np.full((width * 9 // 16, width, 3), (i * 6) % 250, np.uint8)
    return Frame("yard", i, 100.0 + i / 10, 1_790_000_000.0 + i / 10, image)


def read_back(path: Path) -> list[int]:
    capture = cv2.VideoCapture(str(path))
    levels = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        levels.append(round(float(image.mean()) / 6))
    capture.release()
    return levels


def assert_frames(levels: list[int], expected: list[int]) -> None:
    # mp4v's lossy YUV round trip moves a flat grey level by a few units: +-1 frame number
    assert len(levels) == len(expected), levels
    assert all(abs(a - b) <= 1 for a, b in zip(levels, expected, strict=True)), levels


@pytest.fixture
def writer() -> Iterator[ClipWriter]:
    w = ClipWriter()
    yield w
    w.close()


def test_clip_holds_pre_and_post_seconds_at_the_clip_rate(
    tmp_path: Path, writer: ClipWriter
) -> None:
    recorder = ClipRecorder(tmp_path, writer, pre_s=1.0, post_s=1.0, fps=5.0)
    clip = None
    for i in range(60):
        recorder.push(frame(i))
        if i == 30:
            clip = recorder.begin("event.mp4", 100.0 + i / 10)
    assert clip is not None
    assert clip.done.wait(10)
    writer.close()
    # kept every other frame (5 of 10 fps): pre 2.0..3.0 s -> frames 20..30, post to 4.0 s
    assert_frames(read_back(tmp_path / "event.mp4"), [20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40])
    assert [p.name for p in tmp_path.iterdir()] == ["event.mp4"]  # no temp file left
    assert writer.written == 1


def test_large_frames_are_downscaled(tmp_path: Path, writer: ClipWriter) -> None:
    recorder = ClipRecorder(tmp_path, writer, pre_s=0.5, post_s=0.2, fps=10.0, width=160)
    recorder.push(frame(0, width=640))
    clip = recorder.begin("small.mp4", 100.0)
    for i in range(1, 5):
        recorder.push(frame(i, width=640))
    assert clip.done.wait(10)
    capture = cv2.VideoCapture(str(tmp_path / "small.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 160
    capture.release()


@pytest.mark.slow
def test_a_full_queue_drops_clips_instead_of_blocking(tmp_path: Path) -> None:
    writer = ClipWriter(max_pending=1)
    # Occupy the writer with a long clip, then submit more than the queue holds.
    recorder = ClipRecorder(tmp_path, writer, pre_s=30.0, post_s=0.0, fps=100.0, width=1920)
    for i in range(200):
        recorder.push(frame(i, width=1280))
    clips = [recorder.begin(f"c{n}.mp4", 120.0) for n in range(6)]
    recorder.push(frame(200, width=1280))  # closes all six clips at once
    writer.close()
    assert writer.written + writer.dropped == 6
    assert writer.dropped >= 1
    assert all(c.done.is_set() for c in clips)


def test_flush_writes_open_clips(tmp_path: Path, writer: ClipWriter) -> None:
    recorder = ClipRecorder(tmp_path, writer, pre_s=1.0, post_s=60.0)
    recorder.push(frame(0))
    clip = recorder.begin("open.mp4", 100.0)
    recorder.push(frame(2))
    recorder.flush()
    assert clip.done.wait(10)
    assert_frames(read_back(tmp_path / "open.mp4"), [0, 2])


@pytest.mark.realworld
def test_ring_buffer_of_real_frames_costs_a_fraction_of_raw(
    tmp_path: Path, writer: ClipWriter, realworld: Path
) -> None:
    # ten seconds of a real 768x432 camera clip at 5 fps, 640 px wide: 50 frames that would
    # hold 50 x 640 x 360 x 3 = 34.6 MB raw; as JPEG they must take under a tenth of that
    capture = cv2.VideoCapture(str(realworld / "videos" / "one-by-one-person-detection.mp4"))
    recorder = ClipRecorder(tmp_path, writer, pre_s=10.0, post_s=0.0, fps=5.0, width=640)
    for i in range(101):
        ok, image = capture.read()
        assert ok
        recorder.push(Frame("yard", i, 100.0 + i / 10, 1_790_000_000.0 + i / 10, as_image(image)))
    capture.release()
    raw = 51 * 640 * 360 * 3
    assert 0 < recorder.buffered_bytes < raw / 10
    clip = recorder.begin("real.mp4", 110.0)
    recorder.flush()
    assert clip.done.wait(10)
    assert len(read_back(tmp_path / "real.mp4")) == 51  # every buffered frame decodes
