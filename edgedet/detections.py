"""`Detections`: the boxes one image produced, in original-image pixels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidInputError


@dataclass(frozen=True, eq=False)
class Detections:
    """Detections of one image.

    Attributes:
        xyxy: float32 (N, 4), corners (x1, y1, x2, y2) in original-image pixels, x1 <= x2,
            y1 <= y2.
        scores: float32 (N,), confidence in [0, 1].
        class_ids: int32 (N,), index into the detector's ``class_names``.

    Arrays are converted to those dtypes on creation and checked for shape; a wrong shape raises
    `InvalidInputError` naming the expected and actual shapes. Index with an int, a slice, a
    boolean mask or an index array; an int gives a one-box `Detections`.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        scores = np.asarray(self.scores, dtype=np.float32)
        class_ids = np.asarray(self.class_ids)
        if xyxy.shape == (0,):  # np.asarray([]): no boxes
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise InvalidInputError(
                f"Detections.xyxy must have shape (N, 4), got {tuple(xyxy.shape)}"
            )
        n = xyxy.shape[0]
        if scores.shape != (n,):
            raise InvalidInputError(
                f"Detections.scores must have shape ({n},) to match xyxy, got {tuple(scores.shape)}"
            )
        if class_ids.shape != (n,):
            raise InvalidInputError(
                f"Detections.class_ids must have shape ({n},) to match xyxy, "
                f"got {tuple(class_ids.shape)}"
            )
        if class_ids.dtype.kind not in "biuf":
            raise InvalidInputError(
                f"Detections.class_ids must be integers, got dtype {class_ids.dtype}"
            )
        if (
            class_ids.size
            and class_ids.dtype.kind == "f"
            and (not np.all(np.isfinite(class_ids)) or np.any(class_ids != np.round(class_ids)))
        ):
            raise InvalidInputError("Detections.class_ids must be whole numbers")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids.astype(np.int32, copy=False))

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32)
        )

    @classmethod
    def concatenate(cls, parts: list[Detections]) -> Detections:
        """Stack several `Detections` (of one image) into one."""
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.class_ids for p in parts]),
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: Any) -> Detections:
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= int(index) < n:
                raise IndexError(f"detection index {index} out of range for {n} detections")
            index = [int(index)]
        return Detections(self.xyxy[index], self.scores[index], self.class_ids[index])

    def __iter__(self) -> Iterator[Detections]:
        for i in range(len(self)):
            yield self[i]

    @property
    def xywh(self) -> np.ndarray:
        """float32 (N, 4): top-left corner, width, height (the COCO box format)."""
        out = self.xyxy.copy()
        out[:, 2:] -= out[:, :2]
        return out

    @property
    def area(self) -> np.ndarray:
        """float32 (N,): box areas in pixels²."""
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    def filter_classes(self, class_ids: list[int] | np.ndarray) -> Detections:
        """Keep only boxes whose class is in ``class_ids``."""
        return self[np.isin(self.class_ids, np.asarray(class_ids))]

    def __repr__(self) -> str:
        return f"Detections(n={len(self)})"
