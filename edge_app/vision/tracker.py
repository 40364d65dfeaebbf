"""A ByteTrack-style IoU tracker driven by frame timestamps (deterministic on replay).

Each processed frame's detections are associated with the live tracks of the same class in
stages, each taking what the ones before left:

1. confident detections (``high_score`` and up) by IoU with the tracks' constant-velocity
   predictions, in tiers: tracks matched on the last ``JUMP_MISSES`` frames before tracks lost
   for longer (DeepSORT's matching cascade), established tracks before young ones (ByteTrack
   matches unconfirmed tracks last);
2. weak detections (``low_score`` up to ``high_score``) by IoU, for recent established tracks
   only and only of the track's size, so a person whose score dips keeps their track while a
   junk box can neither confirm a false positive nor hold a lost track in place;
3. the rest by centre distance (within ``max_jump`` box heights, same size and, with pixels,
   same colours), for tracks missed on at most ``JUMP_MISSES`` frames: at 5 fps a person
   walking briskly out of view moves further than their own width between two frames;
4. unmatched confident detections start tracks (not duplicates of a box matched now); a
   young one that is a recently lost established track (``TrackEvidence.reidentify``) is
   folded into it.

Matching is greedy on the affinity matrix (best pair first, ties broken by index), which is
deterministic and, for the handful of objects a camera sees, as good as the Hungarian method.

Given the frame's pixels and a ``TrackEvidence`` (``edge_app.vision.evidence``), a track that no
detection matched (*lost*) is not simply counted down: its region still looking as at its
last confident sighting, or motion in it, keeps it alive, and it is removed only once such
evidence has been gone for ``max_age_s`` (or it has gone ``max_lost_s`` without a detection).
Both apply to tracks *established* by ``min_hits`` detections (median score at least
``high_score``) only: a false positive seen once is not kept alive by the pixels it was found
on. Without pixels, tracks unseen for ``max_age_s`` are removed, as before.
"""

from __future__ import annotations

__all__ = ["JUMP_MISSES", "Track", "Tracker", "iou_matrix"]

import numpy as np
from numpy.typing import NDArray

from edge_app.domain import Detections
from edge_app.vision.evidence import TrackEvidence
from edge_app.vision.geometry import inside_share, similar_size
from edge_app.vision.track import Track

JUMP_MISSES = 2
"""Most processed frames in a row a track may have gone unmatched and still be matched by
centre distance: the fallback bridges a fast mover's jump between frames, not a long loss."""


def iou_matrix(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), x1 y1 x2 y2: (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter, dtype=np.float32)
    np.divide(inter, union, out=out, where=union > 0)
    return out


class Tracker:
    """Associates detections frame to frame. Not thread-safe: one per camera.

    ``high_score`` (0..1): detections at or above it can start and match tracks;
    ``low_score``: weaker ones (down to this) only keep existing tracks alive;
    ``match_iou``: lowest IoU for a match; ``max_age_s``: seconds of frame time a track survives
    unseen; ``max_jump``: the distance fallback's reach, in track box heights (0: off);
    ``duplicate_share``: a new detection lying more than this share inside a box matched in the
    same frame is a duplicate and starts no track; ``evidence``: looks at the pixels of lost
    tracks (None: detections only); ``max_lost_s``: seconds of frame time an evidence-kept
    track survives without a detection; ``min_hits``: detections that establish a track.
    """

    def __init__(
        self,
        *,
        high_score: float = 0.5,
        low_score: float = 0.3,
        match_iou: float = 0.3,
        max_age_s: float = 2.0,
        max_jump: float = 1.0,
        duplicate_share: float = 0.7,
        evidence: TrackEvidence | None = None,
        max_lost_s: float = float("inf"),
        min_hits: int = 1,
    ) -> None:
        if not 0.0 <= low_score <= high_score <= 1.0:
            raise ValueError(
                f"need 0 <= low_score <= high_score <= 1, got {low_score}, {high_score}"
            )
        self.high_score, self.low_score = high_score, low_score
        self.match_iou, self.max_age_s, self.max_jump = match_iou, max_age_s, max_jump
        self.duplicate_share = duplicate_share
        self.evidence, self.max_lost_s, self.min_hits = evidence, max_lost_s, min_hits
        self._tracks: list[Track] = []
        self._next_id = 1

    @property
    def tracks(self) -> list[Track]:
        """The live tracks, oldest first (do not modify)."""
        return self._tracks

    def update(
        self, mono: float, detections: Detections, image: NDArray[np.uint8] | None = None
    ) -> tuple[list[Track], list[Track]]:
        """Feed one processed frame at ``mono`` seconds (``image``: its BGR pixels, for the
        evidence of lost tracks; None: detections only). Returns (live tracks, tracks removed
        now because they were unseen for longer than ``max_age_s``)."""
        evidence = self.evidence if image is not None else None
        if evidence is not None:
            assert image is not None
            evidence.begin(image, mono)
        for track in self._tracks:
            track.seen_now = False
        scores = detections.scores
        high = np.flatnonzero(scores >= self.high_score)
        low = np.flatnonzero((scores >= self.low_score) & (scores < self.high_score))
        unmatched, leftover_high = self._cascade(mono, detections, high, low)
        if self.max_jump > 0:
            unmatched, leftover_high = self._by_distance(
                mono, detections, unmatched, np.asarray(leftover_high, np.intp)
            )
        for i in self._births(detections, leftover_high):
            box = _box(detections.xyxy[i])
            track = Track(
                self._next_id, detections.labels[i], int(detections.class_ids[i]), box, mono, mono
            )
            track.hit(mono, box, float(scores[i]))
            self._next_id += 1
            self._tracks.append(track)
        absorbed: list[Track] = []
        if evidence is not None and evidence.config.reid_window_s > 0:
            absorbed = self._reidentify(evidence, mono)
        if evidence is not None:
            assert image is not None
            self._look(evidence, image, mono)
        for track in self._tracks:
            track.missed += not track.seen_now
            if track.seen_now and track.hits >= self.min_hits:
                track.established |= track.median_score >= self.high_score
        removed = [t for t in self._tracks if self._expired(t, mono)]
        if removed:
            self._tracks = [t for t in self._tracks if not self._expired(t, mono)]
        return self._tracks, removed + absorbed

    def _look(self, evidence: TrackEvidence, image: NDArray[np.uint8], mono: float) -> None:
        """Note confident sightings; keep lost, established tracks alive while the pixels
        say their object is still there (evidence seen on a frame after the track expired
        comes too late: it is someone else's)."""
        seen = [t.box for t in self._tracks if t.seen_now]
        for track in self._tracks:
            if track.seen_now:
                if track.scores[-1] >= self.high_score:
                    # A weak box may be loose (SSD's weak boxes often cover a whole wall):
                    # what the object looks like is taken from confident sightings only.
                    track.sighting, track.sighting_image = track.box, image
                    track.colour = track.signature = None
                    track.remembered = False
                continue
            if track.established and not track.remembered:
                evidence.remember(track)
                track.remembered = True
            track.sighting_image = None  # described (or never will be): let the frame go
            if not track.established or self._expired(track, mono):
                continue
            kind = evidence.present(track, mono, seen)
            if kind is not None:
                track.alive_mono, track.kept_by = mono, kind

    def _cascade(
        self, mono: float, dets: Detections, high: NDArray[np.intp], low: NDArray[np.intp]
    ) -> tuple[list[int], list[int]]:
        """IoU association in tiers, each taking what the tiers before left: tracks seen on
        the last frames before long-lost ones (DeepSORT's matching cascade: a stale box must
        not take the detection of the object beside it), established tracks before young ones
        (ByteTrack matches unconfirmed tracks last: a young duplicate must not take the
        object's confident box). Weak detections then keep only established tracks seen on
        the last frames (ByteTrack's second stage), so junk boxes can neither help a false
        positive reach ``min_hits`` nor hold on to a lost track while its object re-appears
        elsewhere. Returns the unmatched track positions and the confident detections left
        over."""
        tiers: list[list[int]] = [[], [], [], []]
        for i, track in enumerate(self._tracks):
            tiers[2 * (track.missed > JUMP_MISSES) + (not track.established)].append(i)
        left, unmatched = high, []
        for tier in tiers:
            rest, left_ids = self._associate(mono, dets, tier, left)
            left = np.asarray(left_ids, np.intp)
            unmatched += rest
        candidates = [i for i in tiers[0] if i in unmatched]
        # Of the object's size: SSD's weak boxes are often a part of it (a torso) or span
        # half the scene, and taking one would leave the track's box unfit for the next frame.
        rest, _ = self._associate(mono, dets, candidates, low, sized=True)
        unmatched = [i for i in unmatched if i not in candidates or i in rest]
        return sorted(unmatched), [int(i) for i in left]

    def _expired(self, track: Track, mono: float) -> bool:
        return mono - track.alive_mono > self.max_age_s or mono - track.last_mono > self.max_lost_s

    def _reidentify(self, evidence: TrackEvidence, mono: float) -> list[Track]:
        """Young tracks seen now (born since, not established) that are a lost established
        track come back: the lost track takes the sighting and the young one is dropped
        (it raised no event: a track starts events only once established). Tried on every
        frame until the young track is established, so a person stepping out from behind
        something is recognised once enough of them shows. Returns the dropped tracks."""
        window = evidence.config.reid_window_s
        lost = [
            t
            for t in self._tracks
            if not t.seen_now and t.remembered and t.established and mono - t.last_mono <= window
        ]
        if not lost:
            return []
        absorbed: list[Track] = []
        young = [t for t in self._tracks if t.seen_now and not t.established]
        for track in sorted(young, key=lambda t: -t.scores[-1]):
            same = [
                t for t in lost if t.class_id == track.class_id and t.last_mono < track.first_mono
            ]
            match = evidence.reidentify(track.box, same, mono) if same else None
            if match is None:
                continue
            lost.remove(match)
            match.hit(mono, track.box, track.scores[-1])
            match.hits += track.hits - 1
            match.resumed += 1
            absorbed.append(track)
        if absorbed:
            self._tracks = [t for t in self._tracks if t not in absorbed]
        return absorbed

    def _births(self, dets: Detections, candidates: list[int]) -> list[int]:
        """The unmatched confident detections that may start a track: not those lying mostly
        inside a box matched this frame. SSD models often report a second, partial box on a
        person in motion; born as a track, it would steal the person's identity a frame later
        and raise a second event for one visitor."""
        taken = [t.box for t in self._tracks if t.seen_now]
        born: list[int] = []
        for i in candidates:
            box = dets.xyxy[i]
            if taken and float(np.max(inside_share(box, np.array(taken, np.float32)))) > (
                self.duplicate_share
            ):
                continue
            born.append(i)
            taken.append(_box(box))
        return born

    def _associate(
        self,
        mono: float,
        dets: Detections,
        track_ids: list[int],
        det_ids: NDArray[np.intp],
        *,
        sized: bool = False,
    ) -> tuple[list[int], list[int]]:
        """Greedy IoU matching of ``det_ids`` to the tracks at ``track_ids`` (positions);
        returns the positions still unmatched on each side. ``sized``: only boxes of the
        track's size (``similar_size``) may match."""
        if not track_ids or not len(det_ids):
            return track_ids, [int(i) for i in det_ids]
        boxes = np.array([self._tracks[t].predicted(mono) for t in track_ids], np.float32)
        iou = iou_matrix(boxes, dets.xyxy[det_ids])
        same_class = (
            np.array([self._tracks[t].class_id for t in track_ids])[:, None]
            == (dets.class_ids[det_ids][None, :])
        )
        fits = same_class & (iou >= self.match_iou)
        if sized:
            fits &= similar_size(boxes, dets.xyxy[det_ids])
        iou = np.where(fits, iou, -1.0)
        return self._greedy(mono, dets, track_ids, det_ids, iou)

    def _by_distance(
        self,
        mono: float,
        dets: Detections,
        track_ids: list[int],
        det_ids: NDArray[np.intp],
    ) -> tuple[list[int], list[int]]:
        """Fallback for fast movers: match by centre distance, in predicted box heights.
        Only tracks missed on at most ``JUMP_MISSES`` frames: one lost for longer may have
        moved anywhere, and only its appearance can tell it from a newcomer (``_reidentify``)."""
        recent = [t for t in track_ids if self._tracks[t].missed <= JUMP_MISSES]
        if not recent or not len(det_ids):
            return track_ids, [int(i) for i in det_ids]
        stale = [t for t in track_ids if t not in recent]
        left, dets_left = self._by_distance_among(mono, dets, recent, det_ids)
        return sorted(left + stale), dets_left

    def _by_distance_among(
        self,
        mono: float,
        dets: Detections,
        track_ids: list[int],
        det_ids: NDArray[np.intp],
    ) -> tuple[list[int], list[int]]:
        boxes = np.array([self._tracks[t].predicted(mono) for t in track_ids], np.float32)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        det_boxes = dets.xyxy[det_ids]
        det_centres = (det_boxes[:, :2] + det_boxes[:, 2:]) / 2
        heights = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-3)[:, None]
        dist = np.linalg.norm(centres[:, None, :] - det_centres[None, :, :], axis=2) / heights
        same_class = (
            np.array([self._tracks[t].class_id for t in track_ids])[:, None]
            == (dets.class_ids[det_ids][None, :])
        )
        # A fast mover keeps its size: SSD's loose boxes over half the scene must not take over.
        fits = same_class & (dist <= self.max_jump) & similar_size(boxes, det_boxes)
        if self.evidence is not None:
            # ... and its looks: a track must not jump onto someone stepping out behind it.
            for ti, di in zip(*np.nonzero(fits), strict=True):
                track = self._tracks[track_ids[ti]]
                fits[ti, di] = self.evidence.looks_like(track, _box(det_boxes[di]))
        # Closeness as a score in 0..1 so the greedy matcher can take the best pair first.
        closeness = np.where(fits, 1.0 / (1.0 + dist), -1.0)
        return self._greedy(mono, dets, track_ids, det_ids, closeness.astype(np.float32))

    def _greedy(
        self,
        mono: float,
        dets: Detections,
        track_ids: list[int],
        det_ids: NDArray[np.intp],
        affinity: NDArray[np.float32],
    ) -> tuple[list[int], list[int]]:
        """Match the best (track, detection) pair first; negative affinity never matches."""
        free_t, free_d = set(range(len(track_ids))), set(range(len(det_ids)))
        # A stable sort of the flattened matrix breaks ties by index: deterministic.
        for flat in np.argsort(-affinity, axis=None, kind="stable"):
            ti, di = divmod(int(flat), len(det_ids))
            if affinity[ti, di] < 0:
                break
            if ti in free_t and di in free_d:
                free_t.discard(ti)
                free_d.discard(di)
                d = int(det_ids[di])
                self._tracks[track_ids[ti]].hit(mono, _box(dets.xyxy[d]), float(dets.scores[d]))
        return [track_ids[t] for t in sorted(free_t)], [int(det_ids[d]) for d in sorted(free_d)]


def _box(row: NDArray[np.float32]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in row)
    return x1, y1, x2, y2
