"""Frame sources over real files: video replay, live capture (file as camera), image folders.

Test videos are written with ``cv2.VideoWriter``. Each frame encodes its index in five vertical
black/white bands (bit b = band b), which survives lossy codecs, so order can be checked exactly.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Generator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_app.clock import FakeClock, SystemClock
from edge_app.config import CameraConfig
from edge_app.domain import Frame, Image
from edge_app.errors import SourceError
from edge_app.sources import ImageDirSource, LiveSource, VideoFileSource, open_source, open_video
from tests.factories import wait_until

WAIT_S = 5.0
N = 30  # frames in a generated clip (< 32: five bits of index)
W, H = 160, 120
BITS = 5


def encode(index: int, size: tuple[int, int] = (W, H)) -> Image:
    """A BGR frame whose five vertical bands spell ``index`` in binary (white = 1)."""
    w, h = size
    image = np.zeros((h, w, 3), np.uint8)
    band = w // BITS
    for bit in range(BITS):
        if index >> bit & 1:
            image[:, bit * band : (bit + 1) * band] = 255
    return image


def decode(image: Image) -> int:
    """The index ``encode`` wrote, read from the middle half of each band (any frame size)."""
    band = image.shape[1] / BITS
    value = 0
    for bit in range(BITS):
        lo, hi = int(bit * band + band / 4), int((bit + 1) * band - band / 4)
        if image[:, lo:hi].mean() > 128:
            value |= 1 << bit
    return value


def write_video(
    path: Path, n: int = N, fps: float = 10.0, fourcc: str = "MJPG", first: int = 0
) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (W, H))
    assert writer.isOpened(), f"cannot write {fourcc} test video {path}"
    for i in range(first, first + n):
        writer.write(encode(i))
    writer.release()
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """30 frames, 160x120, 10 fps, MJPG in AVI (decodes frame-exactly)."""
    return write_video(tmp_path / "clip.avi")


def live_threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


# --- VideoFileSource -------------------------------------------------------------------------


@pytest.mark.parametrize(("fourcc", "suffix"), [("MJPG", ".avi"), ("mp4v", ".mp4")])
def test_every_frame_in_order_on_the_video_timeline(
    tmp_path: Path, fourcc: str, suffix: str
) -> None:
    path = write_video(tmp_path / f"clip{suffix}", fourcc=fourcc)
    clock = FakeClock(monotonic=100.0, wall=1_790_000_000.0)
    source = VideoFileSource(path, "dock", clock=clock)
    with closing(source):
        frames = list(source.frames(threading.Event()))
    assert source.fps == pytest.approx(10.0)
    assert source.frame_count == N
    assert [decode(f.image) for f in frames] == list(range(N))
    assert [f.index for f in frames] == list(range(N))
    assert {f.camera for f in frames} == {"dock"}
    assert [f.mono for f in frames] == pytest.approx([100.0 + i / 10 for i in range(N)])
    assert [f.wall for f in frames] == pytest.approx([1_790_000_000.0 + i / 10 for i in range(N)])
    assert {f.size for f in frames} == {(W, H)}
    assert source.dropped == 0


def test_realtime_with_speed_delivers_every_frame_in_order(tmp_path: Path) -> None:
    # a short, fast clip on the real clock: pacing is exercised, only order/count asserted
    path = write_video(tmp_path / "fast.avi", n=12, fps=100.0)
    source = VideoFileSource(path, "dock", clock=SystemClock(), realtime=True, speed=4.0)
    with closing(source):
        frames = list(source.frames(threading.Event()))
    assert [decode(f.image) for f in frames] == list(range(12))
    # stamps stay on the video timeline (index / fps), not on the pace of delivery
    assert [f.mono - frames[0].mono for f in frames] == pytest.approx([i / 100 for i in range(12)])


def test_loop_starts_over_until_stopped(clip: Path) -> None:
    source = VideoFileSource(clip, "dock", clock=FakeClock(), loop=True)
    stop = threading.Event()
    seen: list[Frame] = []
    with closing(source):
        for frame in source.frames(stop):
            seen.append(frame)
            if len(seen) == 2 * N:
                stop.set()  # iteration must end here, without another frame
    assert [decode(f.image) for f in seen] == list(range(N)) * 2
    assert [f.index for f in seen] == list(range(2 * N))  # the timeline keeps going
    assert seen[N].mono == pytest.approx(seen[0].mono + N / 10)


def test_start_s_begins_inside_the_clip_and_a_loop_starts_over_at_zero(clip: Path) -> None:
    source = VideoFileSource(clip, "dock", clock=FakeClock(), loop=True, start_s=1.0)
    stop = threading.Event()
    seen: list[Frame] = []
    with closing(source):
        for frame in source.frames(stop):
            seen.append(frame)
            if len(seen) == N:
                stop.set()
    assert [decode(f.image) for f in seen] == list(range(10, N)) + list(range(10))
    assert [f.index for f in seen] == list(range(N))  # numbered and stamped from 0


def test_start_s_past_the_end_is_refused(clip: Path) -> None:
    with pytest.raises(SourceError, match="pick a start inside the clip"):
        VideoFileSource(clip, "dock", clock=FakeClock(), start_s=3.0)  # 30 frames at 10 fps


def test_resize_changes_the_frame_shape(clip: Path) -> None:
    source = VideoFileSource(clip, "dock", clock=FakeClock(), resize=(80, 60))
    with closing(source):
        frames = list(source.frames(threading.Event()))
    assert {f.image.shape for f in frames} == {(60, 80, 3)}
    assert [decode(f.image) for f in frames] == list(range(N))


def test_closing_the_generator_early_ends_the_reader_thread(clip: Path) -> None:
    source = VideoFileSource(clip, "early", clock=FakeClock(), prefetch=2)
    with closing(source):
        frames = generator(source.frames(threading.Event()))
        first = [decode(next(frames).image), decode(next(frames).image)]
        assert live_threads("read-early"), "the reader should be running mid-clip"
        frames.close()
    assert first == [0, 1]
    assert live_threads("read-early") == []


def test_breaking_out_of_a_for_loop_ends_the_reader_thread(clip: Path) -> None:
    source = VideoFileSource(clip, "brk", clock=FakeClock(), prefetch=2)
    with closing(source):
        for frame in source.frames(threading.Event()):
            if frame.index == 3:
                break
    assert live_threads("read-brk") == []


def test_setting_stop_ends_iteration(clip: Path) -> None:
    source = VideoFileSource(clip, "stp", clock=FakeClock())
    stop = threading.Event()
    seen = []
    with closing(source):
        for frame in source.frames(stop):
            seen.append(frame.index)
            if frame.index == 4:
                stop.set()
    assert seen == [0, 1, 2, 3, 4]
    assert live_threads("read-stp") == []


def test_stop_set_before_start_yields_nothing(clip: Path) -> None:
    stop = threading.Event()
    stop.set()
    source = VideoFileSource(clip, "pre", clock=FakeClock())
    with closing(source):
        assert list(source.frames(stop)) == []
    assert live_threads("read-pre") == []


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        VideoFileSource(tmp_path / "nope.mp4", "dock", clock=FakeClock())


def test_a_directory_given_as_a_video_says_so(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"is a directory, not a video file.*type: images"):
        open_video(tmp_path)
    with pytest.raises(SourceError, match="is a directory"):
        VideoFileSource(tmp_path, "dock", clock=FakeClock())


def test_random_bytes_are_reported_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 8192, np.uint8).tobytes())
    with pytest.raises(SourceError, match=r"cannot open .*corrupt"):
        VideoFileSource(path, "dock", clock=FakeClock())


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(SourceError, match=r"cannot open|no decodable frame"):
        VideoFileSource(path, "dock", clock=FakeClock())


def test_truncated_mp4_is_a_clear_error(tmp_path: Path) -> None:
    # mp4v in mp4 keeps its index (moov atom) at the end: half a file cannot be opened
    path = write_video(tmp_path / "clip.mp4", fourcc="mp4v")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SourceError, match=str(cut)):
        VideoFileSource(cut, "dock", clock=FakeClock())


def test_truncated_avi_yields_the_readable_frames_and_warns(
    clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cut = tmp_path / "cut.avi"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    source = VideoFileSource(cut, "dock", clock=FakeClock())
    with caplog.at_level(logging.WARNING, "edge_app.sources.video"), closing(source):
        frames = list(source.frames(threading.Event()))
    assert 0 < len(frames) < N
    assert [decode(f.image) for f in frames] == list(range(len(frames)))
    assert any("could not be decoded" in r.getMessage() for r in caplog.records)


@pytest.mark.realworld
def test_real_gif_yields_every_frame(realworld: Path) -> None:
    path = realworld / "videos" / "face-demographics-walking-and-pause.gif"
    source = VideoFileSource(path, "gif", clock=FakeClock())
    with closing(source):
        frames = list(source.frames(threading.Event()))
    assert len(frames) == 41
    assert {f.size for f in frames} == {(480, 270)}


@pytest.mark.realworld
def test_real_mp4_reports_its_fps(realworld: Path) -> None:
    source = VideoFileSource(
        realworld / "videos" / "one-by-one-person-detection.mp4", "mp4", clock=FakeClock()
    )
    with closing(source):
        assert source.fps == pytest.approx(10.0)
        first = next(source.frames(threading.Event()))
    assert first.index == 0
    assert first.image.ndim == 3


# --- LiveSource ------------------------------------------------------------------------------


class Camera:
    """An ``opener`` over a video file standing in for a camera; counts how often it is opened."""

    def __init__(self, path: Path, fail_first: int = 0) -> None:
        self.path = path
        self.fail_first = fail_first
        self.opens = 0
        self.opened_3_times = threading.Event()

    def __call__(self) -> cv2.VideoCapture:
        self.opens += 1
        if self.opens >= 3:
            self.opened_3_times.set()
        if self.opens <= self.fail_first:
            return cv2.VideoCapture(str(self.path.parent / "nonexistent" / "cam.avi"))
        return cv2.VideoCapture(str(self.path))


class GatedCamera:
    """An ``opener``: a 1-frame stream, then (once ``gate`` is set) a 30-frame one, then nothing.

    While the gate is closed the only frame that can exist is frame 0 of the first stream, so
    what a busy consumer misses afterwards is deterministic.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.streams = [
            write_video(tmp_path / "one.avi", n=1),
            write_video(tmp_path / "rest.avi", n=N, first=1),
        ]
        self.gate = threading.Event()
        self.opens = 0

    def __call__(self) -> cv2.VideoCapture:
        self.opens += 1
        if self.opens == 2:
            self.gate.wait(WAIT_S)  # a camera that is slow to come back
        if self.opens <= len(self.streams):
            return cv2.VideoCapture(str(self.streams[self.opens - 1]))
        return cv2.VideoCapture(str(self.streams[0].parent / "gone.avi"))


def generator(frames: Iterator[Frame]) -> Generator[Frame, None, None]:
    """The sources' ``frames`` are generators; ``close()`` is how a consumer lets go early."""
    assert isinstance(frames, Generator)
    return frames


def consume_in_thread(
    source: LiveSource, stop: threading.Event
) -> tuple[threading.Thread, list[Frame]]:
    seen: list[Frame] = []

    def run() -> None:
        seen.extend(source.frames(stop))

    thread = threading.Thread(target=run, name="test-consumer", daemon=True)
    thread.start()
    return thread, seen


def test_live_source_delivers_and_reopens_when_the_stream_ends(clip: Path) -> None:
    camera = Camera(clip)
    source = LiveSource(
        "file", "live", clock=FakeClock(), backoff_min_s=0.01, backoff_max_s=0.02, opener=camera
    )
    stop = threading.Event()
    guard = threading.Timer(WAIT_S, stop.set)  # bounds the test if frames stop coming
    guard.start()
    seen: list[int] = []
    try:
        for frame in source.frames(stop):
            seen.append(decode(frame.image))
            # a content index lower than the one before: a new pass over the file, after a reopen
            if len(seen) > 1 and seen[-1] < seen[-2]:
                stop.set()
    finally:
        guard.cancel()
    assert len(seen) > 1
    assert seen[-1] < seen[-2], f"no frame after a reopen within {WAIT_S} s: {seen}"
    assert source.reconnects >= 1
    assert camera.opens >= 2
    assert live_threads("capture-live") == []


def test_live_source_retries_with_backoff_when_the_camera_cannot_open(clip: Path) -> None:
    camera = Camera(clip, fail_first=1_000)
    source = LiveSource(
        "file", "dead", clock=FakeClock(), backoff_min_s=0.01, backoff_max_s=0.02, opener=camera
    )
    stop = threading.Event()
    consumer, seen = consume_in_thread(source, stop)
    assert camera.opened_3_times.wait(WAIT_S), "the source gave up instead of retrying"
    stop.set()
    consumer.join(WAIT_S)
    assert not consumer.is_alive()
    assert seen == []
    assert source.reconnects == 0  # never connected, so never reconnected
    assert live_threads("capture-dead") == []


def test_live_source_recovers_after_failed_opens(clip: Path) -> None:
    camera = Camera(clip, fail_first=2)
    source = LiveSource(
        "file", "flaky", clock=FakeClock(), backoff_min_s=0.01, backoff_max_s=0.02, opener=camera
    )
    with closing(generator(source.frames(threading.Event()))) as frames:
        frame = next(frames)
    assert camera.opens >= 3
    assert frame.index == 0
    assert 0 <= decode(frame.image) < N


def test_slow_consumer_gets_only_the_latest_frame(tmp_path: Path) -> None:
    camera = GatedCamera(tmp_path)
    source = LiveSource(
        "file", "slow", clock=FakeClock(), backoff_min_s=0.01, backoff_max_s=0.05, opener=camera
    )
    with closing(generator(source.frames(threading.Event()))) as frames:
        first = next(frames)
        camera.gate.set()
        # the consumer is busy while the whole second stream is captured
        assert wait_until(lambda: source.reconnects >= 2), "the second stream was not captured"
        assert source.dropped == N - 1  # 1 + N captured: one delivered, the latest one held
        second = next(frames)
    assert decode(first.image) == 0
    assert decode(second.image) == N  # the latest frame, not the next one in line
    assert [first.index, second.index] == [0, 1]
    assert source.dropped == N - 1
    assert live_threads("capture-slow") == []


def test_live_source_resizes(clip: Path) -> None:
    source = LiveSource("file", "rs", clock=FakeClock(), resize=(80, 60), opener=Camera(clip))
    with closing(generator(source.frames(threading.Event()))) as frames:
        frame = next(frames)
    assert frame.image.shape == (60, 80, 3)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "rtsp://admin:s3cr3t@cam.local:554/Streaming/Channels/101",
            "rtsp://***@cam.local:554/Streaming/Channels/101",
        ),
        ("rtsp://admin:p@ss/w0rd:s3cr3t@10.0.0.7/live", "rtsp://***@10.0.0.7/live"),
        ("http://cam.local/mjpeg", "http://cam.local/mjpeg"),
        (
            "rtsp://cam.local:554?token=s3cr3t&password=admin",
            "rtsp://cam.local:554?token=***&password=***",
        ),
    ],
)
def test_describe_hides_url_credentials(url: str, shown: str) -> None:
    source = LiveSource(url, "cam", clock=FakeClock())
    described = source._describe()
    assert described == shown
    assert "s3cr3t" not in described
    assert "admin" not in described


def test_describe_of_a_device_index() -> None:
    assert LiveSource(2, "usb", clock=FakeClock())._describe() == "/dev/video2"


# --- ImageDirSource --------------------------------------------------------------------------


def write_images(folder: Path, names: dict[str, int]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, index in names.items():
        assert cv2.imwrite(str(folder / name), encode(index))
    return folder


def test_images_in_name_order_at_the_nominal_rate(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "imgs", {"c.png": 3, "a.png": 1, "b.bmp": 2, "d.JPG": 4})
    (folder / "notes.txt").write_text("not an image")
    source = ImageDirSource(folder, "stills", clock=FakeClock(100.0, 2_000.0), fps=2.0)
    with closing(source):
        frames = list(source.frames(threading.Event()))
    assert [decode(f.image) for f in frames] == [1, 2, 3, 4]
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.mono for f in frames] == pytest.approx([100.0, 100.5, 101.0, 101.5])
    assert [f.wall for f in frames] == pytest.approx([2_000.0, 2_000.5, 2_001.0, 2_001.5])
    assert source.dropped == 0


def test_unreadable_image_is_skipped_and_counted(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "imgs", {"a.png": 1, "c.png": 3})
    (folder / "b.jpg").write_bytes(os.urandom(512))
    source = ImageDirSource(folder, "stills", clock=FakeClock(), resize=(80, 60))
    frames = list(source.frames(threading.Event()))
    assert [decode(f.image) for f in frames] == [1, 3]
    assert [f.index for f in frames] == [0, 1]
    assert {f.image.shape for f in frames} == {(60, 80, 3)}
    assert source.dropped == 1


def test_stop_ends_an_image_directory(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "imgs", {f"{i:02d}.png": i for i in range(5)})
    stop = threading.Event()
    seen = []
    for frame in ImageDirSource(folder, "stills", clock=FakeClock()).frames(stop):
        seen.append(decode(frame.image))
        stop.set()
    assert seen == [0]


def test_image_directory_without_images(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(SourceError, match="no images in"):
        ImageDirSource(tmp_path, "stills", clock=FakeClock())


def test_missing_image_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        ImageDirSource(tmp_path / "nope", "stills", clock=FakeClock())


def test_a_file_given_as_an_image_directory_says_so(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"not really")
    with pytest.raises(SourceError, match=r"is a file, not a directory.*type: file"):
        ImageDirSource(tmp_path / "a.jpg", "stills", clock=FakeClock())


# --- open_source -----------------------------------------------------------------------------


def camera_config(source: dict[str, Any], resize: list[int] | None = None) -> CameraConfig:
    return CameraConfig.model_validate({"name": "dock", "source": source, "resize": resize})


def test_open_source_file(clip: Path) -> None:
    cfg = camera_config({"type": "file", "path": str(clip), "loop": True}, resize=[80, 64])
    source = open_source(cfg, FakeClock())
    assert isinstance(source, VideoFileSource)
    assert source.camera == "dock"
    stop = threading.Event()
    seen: list[Frame] = []
    with closing(source):
        for frame in source.frames(stop):
            seen.append(frame)
            if len(seen) == N + 1:
                stop.set()  # looping: there is a frame N+1 at all
    assert seen[0].image.shape == (64, 80, 3)
    assert decode(seen[N].image) == 0


def test_open_source_images(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "imgs", {"a.png": 1})
    source = open_source(
        camera_config({"type": "images", "path": str(folder), "fps": 5}), SystemClock()
    )
    assert isinstance(source, ImageDirSource)
    assert source.camera == "dock"
    assert [decode(f.image) for f in source.frames(threading.Event())] == [1]


@pytest.mark.parametrize(
    ("spec", "described"),
    [
        ({"type": "usb", "index": 3}, "/dev/video3"),
        ({"type": "url", "url": "rtsp://u:pw@cam:554/s"}, "rtsp://***@cam:554/s"),
    ],
)
def test_open_source_live(spec: dict[str, Any], described: str) -> None:
    source = open_source(camera_config(spec), FakeClock())
    assert isinstance(source, LiveSource)
    assert source.camera == "dock"
    assert source._describe() == described
    assert source.dropped == 0


def test_open_source_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        open_source(camera_config({"type": "file", "path": str(tmp_path / "x.mp4")}), FakeClock())
