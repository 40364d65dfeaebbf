"""The allocator setting the daemon applies at start (edge_app/malloc.py)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app.malloc import MMAP_THRESHOLD_BYTES

REPO = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: whether a new buffer is mmapped depends on the free chunks the
# heap already holds, and earlier tests in this process (decoders, detectors, frame loops)
# leave a different amount of them depending on which tests ran before.
CHILD = """
import json
import numpy as np
from edge_app.malloc import tune_malloc

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

tuned = tune_malloc()
warm = np.ones((432, 768, 3), np.uint8)
del warm  # the free that raises an untuned threshold
before = rss()
buffers, pins = [], []
for _ in range(40):
    buffers.append(np.ones((432, 768, 3), np.uint8))
    pins.append(np.ones(1000, np.uint8))
grown = rss()
del buffers
after = rss()
print(json.dumps({"tuned": tuned, "grown": grown - before, "after": after - before}))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_frame_buffers_go_back_to_the_os_after_tuning() -> None:
    assert MMAP_THRESHOLD_BYTES <= 640 * 360 * 3  # a downscaled frame is above it
    # 40 frame-sized buffers (40 MB), each followed by a small long-lived block, as in a frame
    # loop. Untuned, glibc serves the frames from the heap (its threshold rose on the first
    # free) and the small blocks pin them there: RSS stays 40 MB up after they are freed
    # (measured: +37.8 MB). Tuned, they were mmapped and go back to the OS on free.
    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO)},
        timeout=60,
    )
    result = json.loads(out.stdout)
    assert result["tuned"] is True
    assert result["grown"] > 30 * 2**20
    assert result["after"] < 8 * 2**20
