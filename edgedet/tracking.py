"""Multi-object tracking over `Detections`: ByteTrack, from the ``supervision`` package.

The one module that imports ``supervision`` (lazily, in `Tracker.__init__`; the ``track``
extra). The algorithm is supervision's ``ByteTrack`` (a port of the ByteTrack reference: a
Kalman filter per track, a first association of high-score boxes by IoU, a second of the
low-score boxes against the tracks left, SciPy's ``linear_sum_assignment`` for both), used as it
is. edgedet only converts its `Detections` in and reads track ids, ages and states out.

Why supervision 0.30.x: it is the last release line that ships ``ByteTrack`` (deprecated there,
removed in 0.31 in favour of Roboflow's ``trackers`` package) and it is torch-free and needs no
GUI OpenCV. ``trackers`` (>= 2.2) and TrackEval require the ``opencv-python`` wheel, which would
overwrite the ``opencv-python-headless`` edgedet installs and needs libGL on a headless robot;
boxmot requires torch. The extra pins ``supervision>=0.30,<0.31``.

ByteTrack is class-agnostic: a track may match a box of another class (a cyclist seen as a
pedestrian keeps its id); each returned box keeps the class the detector gave it in that frame.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .detections import Detections
from .errors import InvalidInputError, missing_extra


@dataclass(frozen=True)
class Tracks:
    """Track information of one frame, aligned with that frame's tracked `Detections`.

    Attributes:
        ids: int64 (N,), track id of each box (>= 1; an id is never reused by a `Tracker`).
        ages: int32 (N,), frames since the track was first seen, counting this one (1 = new).
        lost: int64 (M,), ids of tracks not seen in this frame that are still kept and may
            come back (for up to ``lost_frames`` frames).
        ended: int64 (K,), ids of tracks dropped in this frame (lost for too long).
    """

    ids: np.ndarray
    ages: np.ndarray
    lost: np.ndarray
    ended: np.ndarray

    @classmethod
    def empty(cls) -> Tracks:
        e = np.zeros(0, np.int64)
        return cls(e, np.zeros(0, np.int32), e, e)

    def __len__(self) -> int:
        return int(self.ids.shape[0])


class Tracker:
    """ByteTrack over `Detections` of consecutive frames of one camera.

    Args:
        track_threshold: boxes scoring at least this take part in the first association and
            may start tracks (ByteTrack's high threshold); boxes between 0.1 and it are used
            only to continue tracks. Feed the tracker boxes down to score 0.1 (`Detector.track`
            does) or the second association has nothing to work with.
        match_threshold: the first association's cost limit (1 - IoU, fused with the score).
        lost_frames: how long a track that is not seen is kept to be found again, in frames
            at 30 fps (scaled by ``frame_rate``).
        frame_rate: the source's frame rate.
        min_hits: frames a track must be seen before it gets an id and is reported.

    `update` takes one frame's `Detections` and returns ``(tracked, tracks)``: the boxes that
    belong to a confirmed track (a subset of the input, in input order, boxes unchanged) and
    their `Tracks`. Not thread-safe: one tracker per camera.
    """

    def __init__(
        self,
        *,
        track_threshold: float = 0.25,
        match_threshold: float = 0.8,
        lost_frames: int = 30,
        frame_rate: float = 30.0,
        min_hits: int = 1,
    ) -> None:
        for name, v in (("track_threshold", track_threshold), ("match_threshold", match_threshold)):
            if not 0.0 < float(v) <= 1.0:
                raise InvalidInputError(f"{name} must be in (0, 1], got {v}")
        if int(lost_frames) < 0 or int(min_hits) < 1 or not float(frame_rate) > 0:
            raise InvalidInputError(
                f"need lost_frames >= 0, min_hits >= 1, frame_rate > 0; got {lost_frames}, "
                f"{min_hits}, {frame_rate}"
            )
        try:
            import supervision as sv
        except ImportError as err:
            raise missing_extra("supervision", "track", "tracking") from err
        if not hasattr(sv, "ByteTrack"):
            raise missing_extra(
                f"supervision<0.31 (found {getattr(sv, '__version__', '?')}, which has no "
                "ByteTrack)",
                "track",
                "tracking",
            )
        self._sv = sv
        with warnings.catch_warnings():
            # supervision marks ByteTrack deprecated in favour of a package edgedet cannot
            # install (see the module docstring); the warning would repeat on every stream.
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            self._bt: Any = sv.ByteTrack(
                track_activation_threshold=float(track_threshold),
                lost_track_buffer=int(lost_frames),
                minimum_matching_threshold=float(match_threshold),
                frame_rate=float(frame_rate),
                minimum_consecutive_frames=int(min_hits),
            )
        self.frames = 0
        self._last_removed: set[int] = set()

    def update(self, detections: Detections) -> tuple[Detections, Tracks]:
        """Advance one frame (see the class docstring)."""
        sv = self._sv
        n = len(detections)
        svd = sv.Detections(
            xyxy=detections.xyxy.astype(np.float32).reshape(n, 4),
            confidence=detections.scores.astype(np.float32),
            class_id=np.arange(n),  # carries each box's index through the tracker
        )
        out = self._bt.update_with_detections(svd)
        self.frames += 1
        index = np.asarray(out.class_id, np.int64).reshape(-1)
        ids = np.asarray(out.tracker_id, np.int64).reshape(-1)
        order = np.argsort(index, kind="stable")
        index, ids = index[order], ids[order]
        frame_id = int(self._bt.frame_id)
        start = {
            int(t.external_track_id): int(t.start_frame)
            for t in self._bt.tracked_tracks
            if t.is_activated
        }
        ages = np.array([frame_id - start.get(int(i), frame_id) + 1 for i in ids], np.int32)
        # supervision removes a dropped track from its lost list one frame late, so it shows
        # up as removed in two consecutive frames: report it once, and never as lost again.
        removed = {
            int(t.external_track_id)
            for t in self._bt.removed_tracks
            if t.is_activated and int(t.external_track_id) >= 1
        }
        ended = np.array(sorted(removed - self._last_removed), np.int64)
        gone = removed | self._last_removed
        self._last_removed = removed
        lost = np.array(
            sorted(
                int(t.external_track_id)
                for t in self._bt.lost_tracks
                if t.is_activated and int(t.external_track_id) not in gone
            ),
            np.int64,
        )
        return detections[index], Tracks(ids, ages, lost, ended)

    def reset(self) -> None:
        """Forget every track (a new scene or camera); ids start again from 1."""
        self._bt.reset()
        self.frames = 0
        self._last_removed = set()
