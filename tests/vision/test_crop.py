"""Crop window around small motion: aspect ratio kept, inside the frame, boxes mapped back."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.domain import Detections
from edge_app.vision.crop import crop_box_map, motion_window, to_frame

FRAME = (768, 432)


@pytest.mark.parametrize(
    ("region", "model", "expected"),
    [
        # a 40 x 40 px region centred on (388.6, 214.4): grown to the 300 x 300 model input
        ((0.48, 0.45, 0.48 + 40 / 768, 0.45 + 40 / 432), (300, 300), (239, 64, 300, 300)),
        # near the top-left corner: shifted inside the frame, not shrunk
        ((0.0, 0.0, 0.05, 0.05), (300, 300), (0, 0, 300, 300)),
        # near the bottom-right corner
        ((0.95, 0.95, 1.0, 1.0), (300, 300), (468, 132, 300, 300)),
        # a wide model (2:1): the window is twice as wide as high, centred on (326.4, 183.6)
        ((0.4, 0.4, 0.45, 0.45), (320, 160), (166, 104, 320, 160)),
        # a 200 px tall region grows by the margin to 300 px, square, and is shifted down
        # into the frame (its centre is 143 px from the top)
        ((0.5, 0.1, 0.52, 0.1 + 200 / 432), (300, 300), (242, 0, 300, 300)),
    ],
)
def test_window_table(
    region: tuple[float, float, float, float],
    model: tuple[int, int],
    expected: tuple[int, int, int, int],
) -> None:
    assert motion_window(region, FRAME, model) == expected


@pytest.mark.parametrize("seed", range(20))
def test_window_keeps_the_aspect_holds_the_region_and_stays_inside(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x1, y1 = rng.uniform(0, 0.8, 2)
    w, h = rng.uniform(0.01, 0.2, 2)
    region = (float(x1), float(y1), float(x1 + w), float(y1 + h))
    model = (int(rng.integers(200, 400)), int(rng.integers(200, 400)))
    window = motion_window(region, FRAME, model, max_share=1.0)
    if window is None:  # only when the model's aspect cannot fit in the frame at that size
        return
    x, y, ww, wh = window
    assert abs(ww / wh - model[0] / model[1]) <= 1.0 / min(ww, wh) * 2  # within rounding
    assert ww >= model[0] - 1  # never upscaled
    assert min(x, y) >= 0
    assert x + ww <= FRAME[0]
    assert y + wh <= FRAME[1]
    assert x <= region[0] * FRAME[0] + 1
    assert region[2] * FRAME[0] - 1 <= x + ww
    assert y <= region[1] * FRAME[1] + 1
    assert region[3] * FRAME[1] - 1 <= y + wh


def test_large_motion_uses_the_whole_frame() -> None:
    assert motion_window((0.1, 0.1, 0.9, 0.9), FRAME, (300, 300)) is None
    # 300 x 300 is 27 % of the frame: refused when at most 20 % may be cropped
    assert motion_window((0.5, 0.5, 0.51, 0.51), FRAME, (300, 300), max_share=0.2) is None
    # a model input larger than the frame cannot be cropped for at all
    assert motion_window((0.5, 0.5, 0.51, 0.51), (200, 100), (300, 300)) is None


def test_bad_region_is_refused() -> None:
    with pytest.raises(ValueError, match="region"):
        motion_window((0.5, 0.5, 0.4, 0.6), FRAME, (300, 300))


def test_boxes_in_the_window_map_back_to_the_frame() -> None:
    window = (244, 64, 300, 300)
    box_map = crop_box_map(window, FRAME)
    whole = box_map.apply(np.array([[0.0, 0.0, 1.0, 1.0]], np.float32))
    np.testing.assert_allclose(whole[0], [244 / 768, 64 / 432, 544 / 768, 364 / 432], rtol=1e-6)
    found = Detections(
        np.array([[0.5, 0.5, 0.75, 1.0]], np.float32),
        np.array([0.9], np.float32),
        np.array([0], np.int32),
        ("person",),
    )
    mapped = to_frame(found, window, FRAME)
    # crop pixels (150, 150)-(225, 300) are frame pixels (394, 214)-(469, 364)
    np.testing.assert_allclose(
        mapped.xyxy[0], [394 / 768, 214 / 432, 469 / 768, 364 / 432], rtol=1e-6
    )
    assert mapped.labels == ("person",)
    assert mapped.scores[0] == pytest.approx(0.9)
    assert to_frame(Detections.empty(), window, FRAME).xyxy.shape == (0, 4)
