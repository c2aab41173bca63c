"""The decoder protocol and the family registry.

A *family* is how one kind of detector is fed and read: a preset of preprocessing settings
(merged into `ModelMeta`) and a decoder that turns raw outputs into candidate boxes. Users add
their own family with `register_family` without touching edgedet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgedet.errors import IncompatibleModelError, InvalidInputError
from edgedet.meta import ModelMeta
from edgedet.protocol import EvalProtocol
from edgedet.validate import brief


@dataclass(frozen=True)
class Candidates:
    """Decoded boxes of one image, before NMS, in *network-input* pixels.

    xyxy float32 (N, 4); scores float32 (N,); class_ids int32 (N,). ``nms_done`` is True for
    end-to-end models whose graph already ran NMS.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    nms_done: bool = False

    @classmethod
    def empty(cls, nms_done: bool = False) -> Candidates:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), nms_done
        )


class OutputSpecLike(Protocol):
    name: str
    shape: tuple[int | None, ...]


class Decoder(Protocol):
    """Turns one batch of raw outputs into per-image `Candidates`."""

    num_classes: int

    def __call__(
        self,
        outputs: Mapping[str, np.ndarray],
        *,
        score_threshold: float,
        multi_label: bool = False,
        max_candidates: int = 30000,
    ) -> list[Candidates]:
        """``outputs`` maps output names to arrays with the batch first (when the model has a
        batch dimension). Returns one `Candidates` per image."""
        ...


DecoderFactory = Callable[[ModelMeta, Sequence[OutputSpecLike], tuple[int, int]], Decoder]


@dataclass(frozen=True)
class Family:
    """A detector family: its decoder and the preprocessing its published weights expect.

    ``preset`` holds `ModelMeta` fields (color, scale, mean, std, letterbox, pad_value,
    strides, class_names, options); ``make_decoder(meta, output_specs, input_hw)`` builds the
    decoder and must raise `IncompatibleModelError` when the outputs do not fit the family.
    ``protocol`` is how the family's authors validate it (`edgedet.protocol`): the default for
    every mAP edgedet reports; None means the user must give one (``--eval-conf/--eval-iou``).
    """

    name: str
    make_decoder: DecoderFactory
    preset: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    protocol: EvalProtocol | None = None


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family, *, replace: bool = False) -> None:
    """Add a family; registering a name twice raises unless ``replace=True``."""
    if family.name in _FAMILIES and not replace:
        raise InvalidInputError(f"family '{family.name}' is already registered")
    _FAMILIES[family.name] = family


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        raise InvalidInputError(
            f"unknown model family {brief(name)}; known families: {', '.join(sorted(_FAMILIES))}. "
            "Register your own with edgedet.decoders.register_family()"
        )
    return _FAMILIES[name]


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def meta_from_family(name: str, **overrides: Any) -> ModelMeta:
    """A ModelMeta from a family preset plus explicit overrides."""
    fam = get_family(name)
    base = ModelMeta(family=name)
    return base.replace(**{**fam.preset, **overrides})


def output_mismatch(
    family: str, why: str, specs: Sequence[OutputSpecLike]
) -> IncompatibleModelError:
    """The error for a model whose outputs do not fit a family's decoder."""
    got = ", ".join(f"{s.name}{list(s.shape)}" for s in specs)
    return IncompatibleModelError(
        f"model outputs do not fit family '{family}': {why}; the model has outputs [{got}]. "
        "Check --family (or the model's meta)"
    )


# -- shared numpy helpers for grid-based decoders --------------------------------------------


def grid_centers(
    input_hw: tuple[int, int], strides: Sequence[int], offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres and strides of all levels, flattened level by level, row-major.

    Returns ``(xy, stride)``: float32 (N, 2) in input pixels ``((col + offset) * s, (row +
    offset) * s)``, and float32 (N,) stride per cell. ``offset`` 0 gives the cell's top-left
    (YOLOX style), 0.5 its centre (YOLOv8 / NanoDet).
    """
    h, w = input_hw
    xys, ss = [], []
    for s in strides:
        gh, gw = -(-h // s), -(-w // s)
        ys, xs = np.meshgrid(
            np.arange(gh, dtype=np.float32), np.arange(gw, dtype=np.float32), indexing="ij"
        )
        xys.append(np.stack([(xs.ravel() + offset) * s, (ys.ravel() + offset) * s], axis=1))
        ss.append(np.full(gh * gw, s, np.float32))
    return np.concatenate(xys), np.concatenate(ss)


def select_scores_by_class(
    scores_cn: np.ndarray, score_threshold: float, multi_label: bool, max_candidates: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`select_scores` for a (C, N) score matrix (classes first, as YOLOv8 exports it), same
    result. One label per row: each row's best score is a max over C contiguous rows of N
    (vectorised across N) and the argmax runs only on the columns above the threshold, instead
    of an argmax over a strided transposed view of every column (6x faster on YOLOv8n's
    80 x 8400 scores, where about 100 columns pass 0.25)."""
    if multi_label:
        return select_scores(scores_cn.T, score_threshold, multi_label, max_candidates)
    best = scores_cn.max(axis=0)
    rows = np.nonzero(best > score_threshold)[0]
    cls = scores_cn[:, rows].argmax(axis=0)
    conf = best[rows]
    if conf.shape[0] > max_candidates:
        top = np.argpartition(-conf, max_candidates - 1)[:max_candidates]
        rows, cls, conf = rows[top], cls[top], conf[top]
    return rows, cls.astype(np.int32), conf.astype(np.float32)


def select_scores(
    scores: np.ndarray, score_threshold: float, multi_label: bool, max_candidates: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick candidates from a (N, C) score matrix.

    Returns ``(rows, class_ids, scores)``: with ``multi_label`` every (row, class) above the
    threshold, else each row's best class if above it; at most ``max_candidates``
    (the highest-scoring ones when there are more), in no particular order: NMS sorts.
    """
    if multi_label:
        rows, cls = np.nonzero(scores > score_threshold)
        conf = scores[rows, cls]
    else:
        cls = scores.argmax(axis=1)
        conf = scores[np.arange(scores.shape[0]), cls]
        rows = np.nonzero(conf > score_threshold)[0]
        cls, conf = cls[rows], conf[rows]
    if conf.shape[0] > max_candidates:
        top = np.argpartition(-conf, max_candidates - 1)[:max_candidates]
        rows, cls, conf = rows[top], cls[top], conf[top]
    return rows, cls.astype(np.int32), conf.astype(np.float32)
