"""Tracks through detector dropouts: evidence on the pixels of lost tracks, re-identification,
the matching cascade (synthetic frames and detections, frame times)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.config import CameraConfig, TrackingConfig
from edge_app.domain import Detections, Frame, Phase
from edge_app.vision.appearance import ColourHistogram, open_appearance, patch
from edge_app.vision.evidence import TrackEvidence
from edge_app.vision.rules import RuleEngine
from edge_app.vision.tracker import Tracker
from tests.vision.test_rules import CTX, rule

H, W = 120, 200
BACKGROUND = np.random.default_rng(1).integers(40, 120, (H, W, 3), dtype=np.uint8)
RED_OVER_BLUE = ((30, 30, 220), (220, 60, 30))  # BGR: upper body, lower body
GREEN_OVER_YELLOW = ((40, 200, 40), (40, 220, 230))
PW, PH = 24, 60  # a person's sprite, pixels
Box = tuple[float, float, float, float]


def sprite(colours: tuple[tuple[int, int, int], tuple[int, int, int]]) -> NDArray[np.uint8]:
    """A person-like block: two colours, with a little texture so it is not flat."""
    out = np.zeros((PH, PW, 3), np.uint8)
    out[: PH // 2], out[PH // 2 :] = colours
    noise = np.random.default_rng(2).integers(-25, 25, out.shape)
    textured: NDArray[np.uint8] = np.clip(out.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return textured


RED, GREEN = sprite(RED_OVER_BLUE), sprite(GREEN_OVER_YELLOW)


def scene(*people: tuple[NDArray[np.uint8], int]) -> NDArray[np.uint8]:
    """The background with each sprite at left edge ``x`` (pixels), feet near the bottom."""
    image = BACKGROUND.copy()
    for person, x in people:
        left, right = max(x, 0), min(x + PW, W)
        image[H - PH - 5 : H - 5, left:right] = person[:, left - x : right - x]
    return image


def box(x: int) -> Box:
    left, right = max(x, 0), min(x + PW, W)
    return left / W, (H - PH - 5) / H, right / W, (H - 5) / H


def dets(*rows: tuple[float, Box]) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections(
        np.array([b for _, b in rows], np.float32),
        np.array([s for s, _ in rows], np.float32),
        np.zeros(len(rows), np.int32),
        ("person",) * len(rows),
    )


def tracker(**tracking: Any) -> Tracker:
    config = TrackingConfig.model_validate(tracking)
    return Tracker(
        high_score=0.5,
        low_score=config.low_score,
        max_age_s=1.0,
        evidence=TrackEvidence(config, open_appearance(config)),
        max_lost_s=config.max_lost_s,
        min_hits=2,
    )


def run(
    t: Tracker, steps: list[tuple[NDArray[np.uint8], Detections]], fps: float = 10.0
) -> list[tuple[list[int], list[int]]]:
    """(live track ids, removed track ids) after each frame."""
    out = []
    for i, (image, found) in enumerate(steps):
        live, removed = t.update(i / fps, found, image)
        out.append(([x.track_id for x in live], [x.track_id for x in removed]))
    return out


def test_a_person_standing_still_undetected_stays_one_track() -> None:
    """Seen 5 frames, then the detector is blind for 5 s while they stand: kept alive by
    appearance. Once they have gone the track ends max_age_s later. Without the pixels (the
    tracker as it was) it ended 1 s into the dropout."""
    standing = scene((RED, 80))
    steps = [(standing, dets((0.9, box(80))))] * 5 + [(standing, dets())] * 50
    steps += [(BACKGROUND, dets())] * 20
    t = tracker()
    history = run(t, steps)
    assert all(live == [1] for live, _ in history[:55])
    removed_at = next(i for i, (_, removed) in enumerate(history) if removed)
    assert 55 + 9 <= removed_at <= 55 + 11  # 1 s after the last evidence
    blind = Tracker(high_score=0.5, low_score=0.15, max_age_s=1.0)
    removed = [i for i, (_, r) in enumerate(run(blind, [(None, d) for _, d in steps])) if r]  # type: ignore[misc]
    assert removed == [15]


def test_the_evidence_is_named_and_motion_counts_too() -> None:
    t = tracker()
    steps = [(scene((RED, 80)), dets((0.9, box(80))))] * 3
    # Lost while shuffling on the spot: the region changes every frame (motion).
    steps += [(scene((RED, 80 + (i % 2) * 6)), dets()) for i in range(30)]
    run(t, steps)
    assert [(x.track_id, x.kept_by) for x in t.tracks] == [(1, "motion")]
    t2 = tracker(motion=False, appearance=False)
    history = run(t2, steps)
    assert history[-1][0] == []  # with both switched off it is counted down as before


def test_a_still_object_ends_after_max_lost_s_without_a_detection() -> None:
    standing = scene((RED, 80))
    steps = [(standing, dets((0.9, box(80))))] * 3 + [(standing, dets())] * 60
    history = run(tracker(max_lost_s=4.0), steps)
    removed_at = next(i for i, (_, removed) in enumerate(history) if removed)
    assert removed_at == 2 + 41  # last seen at frame 2, more than 4 s later


def test_a_false_positive_seen_once_is_not_kept_by_its_pixels() -> None:
    """min_hits: a box seen on one frame only is not established, so the static pixels it was
    found on do not keep it alive."""
    still = scene((RED, 80))
    steps = [(still, dets((0.9, box(80))))] + [(still, dets())] * 15
    history = run(tracker(), steps)
    assert [i for i, (_, removed) in enumerate(history) if removed] == [11]


def test_a_lost_box_inside_a_tracked_one_has_no_evidence_of_its_own() -> None:
    """A duplicate (or someone hidden behind a tracked person) is not kept alive by pixels
    that belong to the tracked object."""
    t = tracker()
    big = (0.3, 0.2, 0.7, 0.95)
    image = scene((RED, 80))
    steps = [(image, dets((0.8, box(80))))] * 3 + [(image, dets((0.8, box(80)), (0.9, big)))] * 3
    steps += [(image, dets((0.9, big)))] * 15
    history = run(t, steps)
    assert [x.track_id for x in t.tracks] == [2]
    assert [i for i, (_, removed) in enumerate(history) if 1 in removed] == [16]


def test_a_person_reappearing_beyond_reach_of_the_distance_fallback_resumes() -> None:
    """Walks right, vanishes for 0.8 s (the region shows background: no evidence), comes back
    2.5 box widths further on: re-identified by size, place and colours, same track.
    Someone in other colours at that place is a new track, and so is the same person with
    re-identification off."""
    walk = [(scene((RED, 30 + 3 * i)), dets((0.9, box(30 + 3 * i)))) for i in range(8)]
    gap = [(BACKGROUND, dets())] * 8
    back = [(scene((RED, 110 + 3 * i)), dets((0.9, box(110 + 3 * i)))) for i in range(5)]
    t = tracker()
    run(t, walk + gap + back)
    assert [(x.track_id, x.resumed, x.seen_now) for x in t.tracks] == [(1, 1, True)]
    other = [(scene((GREEN, 110 + 3 * i)), dets((0.9, box(110 + 3 * i)))) for i in range(5)]
    t = tracker()
    run(t, walk + gap + other)
    assert [(x.track_id, x.seen_now) for x in t.tracks] == [(1, False), (2, True)]
    off = tracker(reid_window_s=0)
    run(off, walk + gap + back)
    assert [(x.track_id, x.seen_now) for x in off.tracks] == [(1, False), (2, True)]


def test_someone_who_walked_out_is_not_the_next_person_entering_elsewhere() -> None:
    """Left at the right side moving right; a person in the same colours comes in at the left
    half a second later: a new track (it would have had to cross the frame unseen)."""
    out = [(scene((RED, 150 + 6 * i)), dets((0.9, box(150 + 6 * i)))) for i in range(8)]
    gap = [(BACKGROUND, dets())] * 5
    enter = [(scene((RED, -10 + 4 * i)), dets((0.9, box(-10 + 4 * i)))) for i in range(4)]
    t = tracker()
    run(t, out + gap + enter)
    assert [x.track_id for x in t.tracks if x.seen_now] == [2]


def test_a_stale_track_does_not_take_the_box_of_the_object_beside_it() -> None:
    """Matching cascade: a track lost for a while (its box stale) overlaps a detection more
    than the track seen a frame ago that walked up to it: the recent one still gets it."""
    t = Tracker(high_score=0.5, max_age_s=5.0, min_hits=1)
    t.update(0.0, dets((0.9, (0.40, 0.2, 0.60, 0.9))))  # a, then lost for 3 frames
    for i in range(1, 4):
        t.update(i / 10, dets())
    for i, x in enumerate((0.62, 0.58, 0.54)):  # b walks left towards where a was
        t.update(0.4 + i / 10, dets((0.9, (x, 0.2, x + 0.2, 0.9))))
    tracks, _ = t.update(0.7, dets((0.9, (0.42, 0.2, 0.62, 0.9))))
    assert [(x.track_id, x.seen_now) for x in tracks] == [(1, False), (2, True)]


def test_weak_boxes_keep_established_tracks_of_their_size_only() -> None:
    t = Tracker(high_score=0.5, low_score=0.15, max_age_s=5.0, min_hits=2)
    person = (0.4, 0.2, 0.5, 0.9)
    t.update(0.0, dets((0.9, person)))
    t.update(0.1, dets((0.9, person)))  # established
    tracks, _ = t.update(0.2, dets((0.2, (0.41, 0.2, 0.51, 0.9))))
    assert [(x.track_id, x.seen_now) for x in tracks] == [(1, True)]
    tracks, _ = t.update(0.3, dets((0.2, (0.40, 0.2, 0.48, 0.5))))  # a torso: not its size
    assert [(x.track_id, x.seen_now) for x in tracks] == [(1, False)]
    young = Tracker(high_score=0.5, low_score=0.15, max_age_s=5.0, min_hits=2)
    young.update(0.0, dets((0.9, person)))  # one hit: not established
    tracks, _ = young.update(0.1, dets((0.2, person)))
    assert [(x.track_id, x.hits) for x in tracks] == [(1, 1)]


def test_the_distance_fallback_wants_the_size_and_the_looks() -> None:
    """A fast mover jumps beyond IoU; the fallback takes a box of its size and colours, not a
    loose box over half the scene nor someone else stepping out behind it."""
    for jump, colours, expected in (
        (box(110), RED, [1]),
        ((0.05, 0.05, 0.95, 0.95), RED, [1, 2]),
        (box(110), GREEN, [1, 2]),
    ):
        t = tracker()
        run(t, [(scene((RED, 80)), dets((0.9, box(80))))] * 3)
        image = scene((colours, 110))
        t.update(0.3, dets((0.9, jump)), image)
        assert sorted(x.track_id for x in t.tracks) == expected, (jump, colours)


def test_colour_bands_tell_people_apart_and_flat_regions_have_none() -> None:
    bands, whole = ColourHistogram(), ColourHistogram(stripes=1, threshold=0.7)
    flipped = sprite((RED_OVER_BLUE[1], RED_OVER_BLUE[0]))  # same colours, other way up
    a = bands.describe(RED, (0, 0, 1, 1))
    b = bands.describe(flipped, (0, 0, 1, 1))
    assert a is not None
    assert b is not None
    assert bands.similarity(a, a) == pytest.approx(1.0)
    assert bands.similarity(a, b) < bands.threshold  # upper and lower body differ
    wa, wb = whole.describe(RED, (0, 0, 1, 1)), whole.describe(flipped, (0, 0, 1, 1))
    assert wa is not None
    assert wb is not None
    assert whole.similarity(wa, wb) > 0.9  # one band only sees the same colours
    assert bands.describe(np.full((50, 50, 3), 128, np.uint8), (0, 0, 1, 1)) is None
    assert patch(RED, (0.5, 0.5, 0.51, 0.51)) is None  # less than 2 x 2 pixels
    with pytest.raises(ValueError, match="stripes >= 1"):
        ColourHistogram(stripes=0)


def test_a_per_object_rule_raises_one_sequence_through_a_dropout() -> None:
    """The user-visible effect: one start and one end for a person the detector loses for
    4 s while they stand. With flat (featureless) frames there is nothing to go on, and the
    rule splits them into two sequences, as it did before."""

    def events(images: list[NDArray[np.uint8]]) -> list[Phase]:
        cam = CameraConfig.model_validate({"name": "dock", "source": {"type": "file", "path": "x"}})
        engine = RuleEngine(cam, [rule(per_object=True, min_frames=2, end_after_s=1.0)], CTX)
        found = [dets((0.9, box(80)))] * 5 + [dets()] * 40 + [dets((0.9, box(80)))] * 5
        out: list[Phase] = []
        for i, (image, d) in enumerate(zip(images, found, strict=True)):
            out += [
                e.phase for e in engine.update(Frame("dock", i, i / 10, 1e9 + i / 10, image), d)
            ]
        return out + [e.phase for e in engine.finish(5.0, 1e9 + 5.0)]

    standing = scene((RED, 80))
    assert events([standing] * 50) == [Phase.START, Phase.END]
    flat = np.full((H, W, 3), 90, np.uint8)
    assert events([flat] * 50) == [Phase.START, Phase.END, Phase.START, Phase.END]


def test_a_lost_track_holds_no_frame() -> None:
    """Only tracks seen now keep a reference to a frame (their last confident sighting, to be
    described if they get lost): a crowd of lost tracks must not pin a frame each."""
    t = tracker()
    standing = scene((RED, 80), (GREEN, 150))
    run(t, [(standing, dets((0.9, box(80)), (0.9, box(150))))] * 3)
    assert all(x.sighting_image is standing for x in t.tracks)
    t.update(0.3, dets((0.9, box(150))), standing)  # the first one is lost, still there
    lost, seen = t.tracks
    assert lost.sighting_image is None
    assert lost.colour is not None  # described first
    assert lost.kept_by == "appearance"
    assert seen.sighting_image is standing
