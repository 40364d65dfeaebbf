"""The allocator setting the daemon applies at start (edge_app/malloc.py)."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from edge_app.malloc import MMAP_THRESHOLD_BYTES, tune_malloc


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_frame_buffers_go_back_to_the_os_after_tuning() -> None:
    assert tune_malloc() is True
    assert MMAP_THRESHOLD_BYTES <= 640 * 360 * 3  # a downscaled frame is above it
    # 40 frame-sized buffers (40 MB), each followed by a small long-lived block, as in a frame
    # loop. Untuned, glibc serves the frames from the heap (its threshold rose on the first
    # free) and the small blocks pin them there: RSS stays 40 MB up after they are freed
    # (measured: +37.8 MB). Tuned, they were mmapped and go back to the OS on free.
    warm = np.ones((432, 768, 3), np.uint8)
    del warm  # the free that raises an untuned threshold
    before = _rss_bytes()
    buffers, pins = [], []
    for _ in range(40):
        buffers.append(np.ones((432, 768, 3), np.uint8))
        pins.append(np.ones(1000, np.uint8))
    grown = _rss_bytes()
    del buffers
    after = _rss_bytes()
    assert grown - before > 30 * 2**20
    assert after - before < 8 * 2**20
    assert len(pins) == 40
