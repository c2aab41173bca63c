"""How far to trust an mAP measured on a few images: bootstrap confidence intervals.

An mAP50-95 from 80 validation images moves by a point or two if you draw another 80, so "the
INT8 model keeps 99.2% of float" or "QAT beats PTQ by 0.4 points" needs an interval. The images
are resampled with replacement ``resamples`` times; each resample is scored as COCO would score
a dataset holding those images (an image drawn twice counts twice), and the interval is the
percentile interval of those scores (Efron & Tibshirani, *An Introduction to the Bootstrap*,
ch. 13). For several models on the same images the resamples are shared (a paired bootstrap),
so the interval of a *difference* leaves out what the images have in common, which is most of
the spread: two models that agree image by image have a narrow difference interval even when
each mAP's own interval is wide.

Why the accumulation is written here: COCOeval's per-image matching (which detection matches
which box at each IoU) does not depend on the resample, only its accumulation over images does.
pycocotools runs the matching once (its ``evaluateImg`` results); the accumulation is then redone
for all resamples at once with each image weighted by how often it was drawn, in numpy, instead
of calling the evaluator a thousand times (0.25 s each on 80 images). The weighted accumulation
is COCOeval.accumulate's algorithm (same sort, same cumulative sums, same interpolation at the
101 recall points); on the unresampled set and on materialised resamples the tests check it
against pycocotools' own numbers, to 1e-12. One caveat: detections of *equal* score on the same
image and class are ranked by COCOeval in input order, so a resample's mAP then depends on how
an image's copies are laid out; here the copies' tied detections are interleaved, a different
but equally valid order (up to 1.4 points apart with scores rounded to tenths in a test; the
fp32 and int8 scores of the models in this repository never tie). Scores written in fp16 may.

Usage::

    result = bootstrap_map(dataset, {"fp32": dets_a, "int8": dets_b}, detector.class_names)
    result.intervals["int8"]            # MapInterval(estimate, low, high)
    result.differences["int8"]          # int8 - fp32, paired
    result.ratios["int8"]               # int8 / fp32, paired ("keeps 99.2% [97.9, 100.6]")
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.classmap import ClassMap
from ..data.dataset import DetectionDataset
from ..detections import Detections
from ..errors import InvalidInputError
from .metrics import coco_inputs

DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class MapInterval:
    """A statistic on the whole set (``estimate``) and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    confidence: float

    def to_dict(self) -> dict[str, float | None]:
        return {
            k: (None if not math.isfinite(v) else float(v))
            for k, v in (
                ("estimate", self.estimate),
                ("low", self.low),
                ("high", self.high),
                ("confidence", self.confidence),
            )
        }

    def __str__(self) -> str:
        return f"{self.estimate:.4f} [{self.low:.4f}, {self.high:.4f}]"


@dataclass(frozen=True)
class BootstrapResult:
    """Intervals of mAP50-95 per model and, against ``reference``, of the paired difference
    (model - reference), the ratio (model / reference) and the share of resamples in which the
    model scored higher (``p_higher``; 0.5 means no evidence either way)."""

    reference: str
    intervals: dict[str, MapInterval]
    differences: dict[str, MapInterval]
    ratios: dict[str, MapInterval]
    p_higher: dict[str, float]
    resamples: int
    images: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "resamples": self.resamples,
            "images": self.images,
            "seed": self.seed,
            "map50_95": {k: v.to_dict() for k, v in self.intervals.items()},
            "difference": {k: v.to_dict() for k, v in self.differences.items()},
            "ratio": {k: v.to_dict() for k, v in self.ratios.items()},
            "p_higher": dict(self.p_higher),
        }


@dataclass(frozen=True)
class _Category:
    """One category's per-image matching, detections in COCOeval's accumulation order."""

    image_of: np.ndarray  # [D] int: index of the image each detection is on
    tps: np.ndarray  # [T, D] bool: true positive at each IoU threshold
    fps: np.ndarray  # [T, D] bool: false positive (neither matched nor ignored)
    positives: np.ndarray  # [I] int: non-ignored ground-truth boxes per image


def _per_image_matching(inputs: Any) -> tuple[list[_Category], np.ndarray, int]:
    """Run pycocotools' per-image evaluation once; returns the categories, the recall
    thresholds and the number of images (in COCOeval's image order)."""
    from .metrics import coco_bbox_eval

    ev = coco_bbox_eval(
        "pycocotools",
        inputs.ground_truth,
        inputs.results,
        inputs.scored_category_ids,
        all_areas_only=True,  # mAP50-95 is the "all" range; the others are not needed
    )
    p = ev.params
    n_img, n_area = len(p.imgIds), len(p.areaRng)
    n_iou = len(p.iouThrs)
    max_det = p.maxDets[-1]
    cats: list[_Category] = []
    for k in range(len(p.catIds)):
        base = k * n_area * n_img  # the one area range, "all"
        scores, matched, ignored, image_of = [], [], [], []
        positives = np.zeros(n_img, np.int64)
        for i in range(n_img):
            e = ev.evalImgs[base + i]
            if e is None:
                continue
            scores.append(np.asarray(e["dtScores"][:max_det], np.float64))
            matched.append(np.asarray(e["dtMatches"][:, :max_det]).reshape(n_iou, -1))
            ignored.append(np.asarray(e["dtIgnore"][:, :max_det]).reshape(n_iou, -1))
            image_of.append(np.full(len(scores[-1]), i, np.int64))
            positives[i] = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
        if not scores:
            empty = np.zeros((n_iou, 0), bool)
            cats.append(_Category(np.zeros(0, np.int64), empty, empty, positives))
            continue
        order = np.argsort(-np.concatenate(scores), kind="mergesort")  # as COCOeval.accumulate
        dtm = np.concatenate(matched, axis=1)[:, order]
        dt_ignore = np.concatenate(ignored, axis=1)[:, order].astype(bool)
        cats.append(
            _Category(
                np.concatenate(image_of)[order],
                np.logical_and(dtm, ~dt_ignore),
                np.logical_and(np.logical_not(dtm), ~dt_ignore),
                positives,
            )
        )
    return cats, np.asarray(p.recThrs, np.float64), n_img


def _first_level_at_least(thresholds: np.ndarray, npig: np.ndarray) -> np.ndarray:
    """[B, R] the smallest integer j with ``j / npig >= threshold``, computed the way COCOeval
    compares (float division), so the recall points it picks are the same ones."""
    j = np.ceil(thresholds[None, :] * npig[:, None]).astype(np.int64)
    n = npig[:, None].astype(np.float64)
    j = np.where((j - 1 >= 0) & ((j - 1) / n >= thresholds[None, :]), j - 1, j)
    return np.where(j / n < thresholds[None, :], j + 1, j)


def _weighted_map(
    cats: Sequence[_Category], rec_thrs: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """mAP50-95 for each row of ``weights`` ([B, I] how often each image was drawn), as
    COCOeval.accumulate + summarize would compute it on the dataset those rows describe
    (area "all", 100 detections per image). Returns [B]; NaN where no category has ground
    truth."""
    n_b = weights.shape[0]
    total = np.zeros(n_b)
    counted = np.zeros(n_b)
    n_r = len(rec_thrs)
    for c in cats:
        npig = weights @ c.positives  # [B]
        present = npig > 0
        if not present.any():
            continue
        n_t, n_d = c.tps.shape
        if n_d == 0:  # ground truth, no detections: precision 0 at every recall point
            counted += present * n_t * n_r
            continue
        w = weights[:, c.image_of].astype(np.int64)  # [B, D]
        tp_int = np.cumsum(w[:, None, :] * c.tps[None], axis=2)  # [B, T, D]
        tp = tp_int.astype(np.float64)
        fp = np.cumsum(w[:, None, :] * c.fps[None], axis=2).astype(np.float64)
        pr = tp / (fp + tp + np.spacing(1))
        pr = np.maximum.accumulate(pr[:, :, ::-1], axis=2)[:, :, ::-1]  # envelope from the right
        # The first detection whose recall reaches each threshold: recall = tp / npig, so it is
        # the first with tp >= j (the smallest level j with j / npig >= threshold). tp counts are
        # integers, so they search exactly after an offset per (b, t) row.
        level = _first_level_at_least(rec_thrs, np.maximum(npig, 1))  # [B, R]
        span = int(tp_int.max()) + 2 + int(level.max())
        rows = np.arange(n_b * n_t, dtype=np.int64).reshape(n_b, n_t) * span
        flat = (tp_int + rows[:, :, None]).ravel()
        idx = np.searchsorted(flat, (level[:, None, :] + rows[:, :, None]).ravel(), side="left")
        idx = (
            idx.reshape(n_b, n_t, n_r) - (np.arange(n_b * n_t).reshape(n_b, n_t) * n_d)[:, :, None]
        )
        q = np.where(idx < n_d, np.take_along_axis(pr, np.minimum(idx, n_d - 1), axis=2), 0.0)
        total += np.where(present, q.sum(axis=(1, 2)), 0.0)
        counted += present * n_t * n_r
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, total / np.maximum(counted, 1), np.nan)


def _interval(estimate: float, samples: np.ndarray, confidence: float) -> MapInterval:
    finite = samples[np.isfinite(samples)]
    if not finite.size:
        return MapInterval(estimate, math.nan, math.nan, confidence)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return MapInterval(float(estimate), float(low), float(high), confidence)


def resample_weights(n_images: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n_images] int: how often each image is drawn in each resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(resamples, n_images))
    return np.stack([np.bincount(row, minlength=n_images) for row in draws])


def bootstrap_map(
    dataset: DetectionDataset,
    predictions: Mapping[str, Mapping[int, Detections]],
    model_class_names: Sequence[str],
    *,
    reference: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
    aliases: Mapping[str, str] | None = None,
    class_map: ClassMap | None = None,
    image_ids: Sequence[int] | None = None,
    unmapped_ground_truth: str = "drop",
) -> BootstrapResult:
    """Bootstrap intervals of mAP50-95 for one or more models scored on the same images.

    Args:
        dataset: the labelled images.
        predictions: ``{model name: {image_id: Detections}}``, each as for `edgedet.eval.metrics.
            evaluate` (original pixels, class ids indexing ``model_class_names``; run at score
            0.001). All models share ``model_class_names``.
        reference: the model differences and ratios are taken against (default: the first).
        resamples: bootstrap resamples (with 1000, the ends of one model's 95% interval on 80
            COCO images moved by up to 0.7 points of mAP between seeds; more resamples, less).
        confidence: the interval's coverage (percentile interval).
        seed: the resampling seed; the same seed gives the same intervals.
        aliases, class_map, image_ids, unmapped_ground_truth: as for `evaluate`; image_ids
            defaults to the reference model's keys.

    Raises:
        InvalidInputError: no models, an unknown reference, resamples < 1, confidence outside
            (0, 1), or predictions `evaluate` would reject.
        RuntimeUnavailableError: pycocotools is not installed (``edgedet[bench]``).
    """
    if not predictions:
        raise InvalidInputError("bootstrap_map needs predictions of at least one model")
    names = list(predictions)
    ref = names[0] if reference is None else reference
    if ref not in predictions:
        raise InvalidInputError(f"reference {ref!r} is not one of the models {names}")
    if int(resamples) < 1:
        raise InvalidInputError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < float(confidence) < 1.0:
        raise InvalidInputError(f"confidence must be in (0, 1), got {confidence}")
    ids = list(image_ids) if image_ids is not None else [int(i) for i in predictions[ref]]
    weights: np.ndarray | None = None
    estimates: dict[str, float] = {}
    samples: dict[str, np.ndarray] = {}
    n_img = 0
    for name in names:
        inputs = coco_inputs(
            dataset, predictions[name], model_class_names, aliases=aliases,
            class_map=class_map, image_ids=ids, unmapped_ground_truth=unmapped_ground_truth,
        )  # fmt: skip
        cats, rec_thrs, n_img = _per_image_matching(inputs)
        if weights is None:
            weights = resample_weights(n_img, int(resamples), seed)
        estimates[name] = float(_weighted_map(cats, rec_thrs, np.ones((1, n_img), np.int64))[0])
        # Chunks of resamples keep the [B, T, D] cumulative sums to a few hundred MB.
        chunk = max(1, 4_000_000 // max(1, 10 * max((len(c.image_of) for c in cats), default=1)))
        samples[name] = np.concatenate(
            [
                _weighted_map(cats, rec_thrs, weights[s : s + chunk])
                for s in range(0, len(weights), chunk)
            ]
        )
    conf = float(confidence)
    intervals = {n: _interval(estimates[n], samples[n], conf) for n in names}
    differences: dict[str, MapInterval] = {}
    ratios: dict[str, MapInterval] = {}
    p_higher: dict[str, float] = {}
    for name in names:
        if name == ref:
            continue
        diff = samples[name] - samples[ref]
        differences[name] = _interval(estimates[name] - estimates[ref], diff, conf)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = samples[name] / samples[ref]
            point = estimates[name] / estimates[ref] if estimates[ref] > 0 else math.nan
        ratios[name] = _interval(point, np.where(samples[ref] > 0, ratio, np.nan), conf)
        finite = np.isfinite(diff)
        p_higher[name] = (
            float(((diff[finite] > 0) + 0.5 * (diff[finite] == 0)).mean())
            if finite.any()
            else math.nan
        )
    return BootstrapResult(
        ref, intervals, differences, ratios, p_higher, int(resamples), n_img, int(seed)
    )
