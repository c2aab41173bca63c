"""Accuracy of a detector on a labelled dataset: COCO mAP and friends, plus precision / recall at
the score threshold you deploy with.

mAP, AP50, AP75, AP small/medium/large, AR@1/10/100 and per-class AP come from the COCO evaluator
itself, faster-coco-eval (default) or pycocotools, never from a re-implementation. The ground truth
is built in memory from the `DetectionDataset`: ignore regions become ``iscrowd: 1`` crowd
regions; ``area`` is the file's own area for COCO datasets (so small / medium / large match the
official evaluation of the same file) and the box area for other formats. Predictions go through
the `ClassMap` between the model's class names and the dataset's (`edgedet.data.map_classes`):
predictions of model classes with no dataset class are dropped and counted, ground truth of dataset
classes no model class stands for is left out, and both lists are in the report.

Run the detector at a low score threshold (0.001) for mAP: the COCO evaluator integrates the whole
precision/recall curve, and a deploy-level threshold (0.25) truncates it and lowers mAP.

Usage::

    report = evaluate(dataset, {image_id: detections, ...}, detector.class_names)
    report.map50_95, report.per_class_ap["person"], report.safety_recall["person"]
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..boxes import box_ioa, box_iou
from ..data.classmap import ClassMap, map_classes
from ..data.coco import coco_category_ids, coco_gt_dict
from ..data.dataset import ANY_CLASS, Annotation, DetectionDataset
from ..detections import Detections
from ..errors import InvalidInputError, missing_extra
from ..hints import arg

DEFAULT_SAFETY_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "motorcycle", "car", "bus", "truck", "traffic light", "stop sign",
)  # fmt: skip

BACKENDS = ("faster-coco-eval", "pycocotools")
_NAN = float("nan")


@dataclass(frozen=True)
class AccuracyReport:
    """What `evaluate` measured. NaN (None in `to_dict`) where a number is undefined (no ground
    truth in that area range, no detections above the deploy threshold).

    COCO numbers (IoU 0.50:0.95 unless named; up to 100 detections per image): ``map50_95``,
    ``map50``, ``map75``, ``map_small`` / ``map_medium`` / ``map_large`` (object area < 32²,
    < 96², above; ``Annotation.areas``), ``ar1`` / ``ar10`` / ``ar100`` (average recall with at
    most 1 / 10 / 100 detections per image), ``per_class_ap`` / ``per_class_ap50`` (dataset class name -> AP, for the evaluated,
    i.e. mapped, classes; None for a class with no ground truth in the evaluated images).

    At the deployment threshold (detections with score >= ``deploy_threshold``, greedy matching
    at IoU >= 0.5, see `match_at_threshold`): ``precision``, ``recall``, ``f1`` over all evaluated
    classes and images (counts summed, then divided); ``safety_recall``: recall per safety class
    present (None if it has no ground truth here).
    """

    map50_95: float
    map50: float
    map75: float
    map_small: float
    map_medium: float
    map_large: float
    ar1: float
    ar10: float
    ar100: float
    per_class_ap: dict[str, float | None]
    per_class_ap50: dict[str, float | None]
    precision: float
    recall: float
    f1: float
    deploy_threshold: float
    safety_recall: dict[str, float | None]
    images: int
    backend: str
    eval_score_threshold: float
    unmapped_model_classes: tuple[str, ...]
    unmapped_dataset_classes: tuple[str, ...]
    class_map: dict[str, str] = dataclasses.field(default_factory=dict)
    ground_truth_boxes: int = 0
    predictions: int = 0
    dropped_predictions: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN -> None, tuples -> lists)."""
        return _json_safe(dataclasses.asdict(self))

    def summary(self) -> str:
        """One line for logs: mAP50-95, mAP50, P/R at the deploy threshold."""
        return (
            f"mAP50-95 {_pct(self.map50_95)}  mAP50 {_pct(self.map50)}  "
            f"P {_pct(self.precision)} R {_pct(self.recall)} @ {self.deploy_threshold:g}  "
            f"({self.images} images, {self.backend})"
        )


def _pct(v: float | None) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{100 * v:.1f}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _nan_if_missing(v: float) -> float:
    return _NAN if v < 0 else float(v)


# -- predictions -> COCO results --------------------------------------------------------------


def _lookup(class_map: ClassMap, n_model: int) -> np.ndarray:
    table = np.full(max(n_model, 1 + max(class_map.model_to_dataset, default=-1)), -1, np.int64)
    for m, d in class_map.model_to_dataset.items():
        table[m] = d
    return table


def coco_detections(
    predictions: Mapping[int, Detections],
    class_map: ClassMap,
    *,
    category_ids: Sequence[int] | None = None,
    score_threshold: float = 0.0,
) -> list[dict[str, Any]]:
    """Predictions as a COCO results list: ``{image_id, category_id, bbox [x, y, w, h], score}``.

    Model class ids go through ``class_map``; detections of unmapped model classes, or scoring
    under ``score_threshold``, are left out. ``category_ids[d]`` is the COCO category of dataset
    class ``d`` (default ``d + 1``; use `edgedet.data.coco_category_ids` for a dataset read from
    COCO JSON, whose official ids are kept).
    """
    out: list[dict[str, Any]] = []
    n_model = len(class_map.model_names) or 1 + max(class_map.model_to_dataset, default=0)
    table = _lookup(class_map, n_model)
    cats = np.asarray(
        category_ids if category_ids is not None else np.arange(1, table.max(initial=-1) + 2)
    )
    for image_id, det in predictions.items():
        if len(det) == 0:
            continue
        cls = det.class_ids.astype(np.int64)
        inside = (cls >= 0) & (cls < len(table))
        mapped = np.where(inside, table[np.clip(cls, 0, len(table) - 1)], -1)
        keep = (mapped >= 0) & (det.scores >= score_threshold)
        if not keep.any():
            continue
        xywh = det.xywh[keep].astype(np.float64)
        cat = cats[mapped[keep]]
        scores = det.scores[keep].astype(np.float64)
        iid = int(image_id)
        out.extend(
            {"image_id": iid, "category_id": int(c), "bbox": b, "score": s}
            for c, b, s in zip(cat.tolist(), xywh.tolist(), scores.tolist())
        )
    return out


# -- the COCO evaluator -----------------------------------------------------------------------


def _coco_api(backend: str) -> tuple[Any, Any]:
    if backend == "faster-coco-eval":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError as err:
            raise missing_extra(
                "faster-coco-eval", "bench", "evaluate(backend='faster-coco-eval')"
            ) from err
        return COCO, COCOeval_faster
    if backend == "pycocotools":
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
        except ImportError as err:
            raise missing_extra("pycocotools", "bench", "evaluate(backend='pycocotools')") from err
        return COCO, COCOeval
    raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")


def coco_bbox_eval(
    backend: str,
    gt: dict[str, Any],
    results: list[dict[str, Any]],
    cat_ids: Sequence[int],
    *,
    all_areas_only: bool = False,
) -> Any:
    """The backend's COCOeval for boxes over ``gt`` and ``results``, after its per-image
    ``evaluate()`` (call ``accumulate()`` / ``summarize()`` next). ``all_areas_only`` matches
    only the "all" area range (what `edgedet.eval.bootstrap` needs; a quarter of the work)."""
    coco_cls, eval_cls = _coco_api(backend)
    # Both libraries print progress to stdout; errors still raise.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_cls()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes rejects an empty list: an empty result set, built the same way
            coco_dt = coco_cls()
            coco_dt.dataset = {
                "images": gt["images"],
                "categories": gt["categories"],
                "annotations": [],
            }
            coco_dt.createIndex()
        ev = eval_cls(coco_gt, coco_dt, "bbox")
        ev.params.imgIds = [im["id"] for im in gt["images"]]
        ev.params.catIds = sorted(cat_ids)
        if all_areas_only:
            ev.params.areaRng = ev.params.areaRng[:1]
            ev.params.areaRngLbl = ev.params.areaRngLbl[:1]
        ev.evaluate()
    return ev


def _run_cocoeval(
    backend: str, gt: dict[str, Any], results: list[dict[str, Any]], cat_ids: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(12 COCO stats, precision array [T, R, K, A, M], catIds in K order)."""
    ev = coco_bbox_eval(backend, gt, results, cat_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
        ev.summarize()
    stats = np.asarray(ev.stats, dtype=np.float64)[:12]
    return stats, np.asarray(ev.eval["precision"]), [int(c) for c in ev.params.catIds]


def _class_ap(precision: np.ndarray, k: int, iou_index: int | None) -> float | None:
    p = precision[:, :, k, 0, -1] if iou_index is None else precision[iou_index, :, k, 0, -1]
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else None


# -- precision / recall at the deployment threshold --------------------------------------------


def match_at_threshold(
    det_xyxy: np.ndarray,
    det_scores: np.ndarray,
    gt_xyxy: np.ndarray,
    ignore_xyxy: np.ndarray,
    iou_threshold: float = 0.5,
) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one image and one class.

    Detections, highest score first, each take the unmatched ground-truth box they overlap most
    if that IoU >= ``iou_threshold``; a detection that matches none but covers an ignore region by
    >= ``iou_threshold`` of its own area (COCO's crowd rule) counts as neither TP nor FP.
    """
    order = np.argsort(-np.asarray(det_scores), kind="stable")
    det = np.asarray(det_xyxy, np.float64)[order]
    gt = np.asarray(gt_xyxy, np.float64).reshape(-1, 4)
    ign = np.asarray(ignore_xyxy, np.float64).reshape(-1, 4)
    iou = box_iou(det, gt, dtype=np.float64) if len(gt) and len(det) else np.zeros((len(det), len(gt)))
    ioa = box_ioa(det, ign, dtype=np.float64) if len(ign) and len(det) else np.zeros((len(det), 0))
    matched = np.zeros(len(gt), bool)
    tp = fp = 0
    for d in range(len(det)):
        if len(gt):
            cand = np.where(matched, -1.0, iou[d])
            j = int(np.argmax(cand))
            if cand[j] >= iou_threshold:
                matched[j] = True
                tp += 1
                continue
        if ioa.shape[1] and ioa[d].max() >= iou_threshold:
            continue
        fp += 1
    return tp, fp, len(gt) - tp


# -- evaluate ---------------------------------------------------------------------------------


def _check_predictions(
    dataset: DetectionDataset,
    predictions: Mapping[int, Detections],
    image_ids: Sequence[int] | None,
    n_model: int,
) -> list[int]:
    if not isinstance(predictions, Mapping):
        raise InvalidInputError(
            f"predictions must be a mapping image_id -> Detections, got {type(predictions).__name__}"
        )
    ids = [int(i) for i in (image_ids if image_ids is not None else predictions.keys())]
    unknown = [i for i in ids if i not in dataset]
    if unknown:
        raise InvalidInputError(
            f"{len(unknown)} image id(s) are not in dataset {dataset.name!r}: {unknown[:5]}; use "
            "the sample.image_id of the dataset's samples as keys"
        )
    if len(set(ids)) != len(ids):
        raise InvalidInputError("image_ids contains duplicates")
    if not ids:
        raise InvalidInputError("nothing to evaluate: no predictions and no image_ids given")
    for i in ids:
        det = predictions.get(i)
        if det is None:
            continue
        if not isinstance(det, Detections):
            raise InvalidInputError(
                f"predictions[{i}] must be a Detections, got {type(det).__name__}"
            )
        if len(det) and (det.class_ids.min() < 0 or det.class_ids.max() >= n_model):
            raise InvalidInputError(
                f"predictions[{i}] has class id {int(det.class_ids.max())} (or negative) but "
                f"model_class_names has {n_model} names (ids 0..{n_model - 1})"
            )
    return ids


def _unmapped_as_ignore(
    dataset: DetectionDataset, ids: Sequence[int], evaluated: Sequence[int]
) -> DetectionDataset:
    """A view of the images ``ids`` where boxes of classes outside ``evaluated`` are ignore
    regions for every class."""
    keep = np.zeros(len(dataset.class_names), bool)
    keep[list(evaluated)] = True
    samples = []
    for i in ids:
        s = dataset.by_id(i)
        g = s.gt
        other = (g.class_ids >= 0) & ~keep[np.clip(g.class_ids, 0, None)]
        if other.any():
            gt = Annotation(
                g.xyxy, np.where(other, ANY_CLASS, g.class_ids), g.ignore | other, g.area
            )
            s = dataclasses.replace(s, gt=gt)
        samples.append(s)
    return DetectionDataset(
        dataset.name, dataset.root, dataset.format, dataset.class_names, samples,
        category_ids=dataset.category_ids,
    )  # fmt: skip


@dataclass(frozen=True)
class CocoInputs:
    """What the COCO evaluator is given for one set of predictions (see `coco_inputs`)."""

    dataset: DetectionDataset  # with unmapped classes as ignore regions when asked for
    image_ids: list[int]
    detections: dict[int, Detections]  # after eval_score_threshold
    class_map: ClassMap
    model_names: tuple[str, ...]
    evaluated: list[int]  # dataset class ids scored
    category_of: Sequence[int]  # dataset class id -> COCO category id
    ground_truth: dict[str, Any]  # COCO dict
    results: list[dict[str, Any]]  # COCO results list
    min_score: float | None

    @property
    def scored_category_ids(self) -> list[int]:
        """The COCO category ids of the evaluated classes (what COCOeval scores)."""
        return [self.category_of[d] for d in self.evaluated]


def coco_inputs(
    dataset: DetectionDataset,
    predictions: Mapping[int, Detections],
    model_class_names: Sequence[str],
    *,
    aliases: Mapping[str, str] | None = None,
    class_map: ClassMap | None = None,
    image_ids: Sequence[int] | None = None,
    eval_score_threshold: float | None = None,
    unmapped_ground_truth: str = "drop",
) -> CocoInputs:
    """Check predictions and build the COCO ground truth and results `evaluate` scores (same
    arguments as `evaluate`); shared with `edgedet.eval.bootstrap`, so both score the same thing."""
    if unmapped_ground_truth not in ("drop", "ignore"):
        raise InvalidInputError(
            f"unmapped_ground_truth must be 'drop' or 'ignore', got {unmapped_ground_truth!r}"
        )
    model_names = tuple(str(n) for n in model_class_names)
    cmap = (
        class_map
        if class_map is not None
        else map_classes(model_names, dataset.class_names, aliases)
    )
    if not cmap.model_to_dataset:
        raise InvalidInputError(
            f"no model class matches a dataset class: model has {list(model_names[:8])}..., "
            f"dataset {dataset.name!r} has {list(dataset.class_names[:8])}; pass "
            + arg("aliases", "{'model name': 'dataset name', ...}", "MODEL_CLASS=DATASET_CLASS")
        )
    ids = _check_predictions(dataset, predictions, image_ids, len(model_names))
    dets: dict[int, Detections] = {i: predictions.get(i) or Detections.empty() for i in ids}
    min_score = eval_score_threshold
    if eval_score_threshold is not None:
        dets = {i: d[d.scores >= eval_score_threshold] for i, d in dets.items()}
    else:
        scores = [float(d.scores.min()) for d in dets.values() if len(d)]
        min_score = min(scores) if scores else 0.0

    evaluated = sorted(set(cmap.model_to_dataset.values()))
    if unmapped_ground_truth == "ignore" and len(evaluated) < len(dataset.class_names):
        dataset = _unmapped_as_ignore(dataset, ids, evaluated)
    cat_of = coco_category_ids(dataset)
    gt = coco_gt_dict(dataset, image_ids=ids, classes=evaluated, file_names=dict.fromkeys(ids, ""))
    results = coco_detections(dets, cmap, category_ids=cat_of)
    return CocoInputs(
        dataset, ids, dets, cmap, model_names, evaluated, cat_of, gt, results, min_score
    )


def evaluate(
    dataset: DetectionDataset,
    predictions: Mapping[int, Detections],
    model_class_names: Sequence[str],
    *,
    aliases: Mapping[str, str] | None = None,
    class_map: ClassMap | None = None,
    safety_classes: Sequence[str] = DEFAULT_SAFETY_CLASSES,
    deploy_threshold: float = 0.25,
    backend: str = "faster-coco-eval",
    image_ids: Sequence[int] | None = None,
    eval_score_threshold: float | None = None,
    unmapped_ground_truth: str = "drop",
) -> AccuracyReport:
    """Score predictions against a dataset's ground truth.

    Args:
        dataset: the labelled images.
        predictions: ``{sample.image_id: Detections}`` in original image pixels, class ids
            indexing ``model_class_names``.
        model_class_names: the detector's class names, matched to ``dataset.class_names`` by
            `map_classes` (case-insensitive, built-in KITTI / VOC synonyms) with ``aliases``
            (model name -> dataset name, e.g. ``{"person": "Pedestrian"}``); or pass a ready
            ``class_map``.
        safety_classes: names (model or dataset names) whose recall at ``deploy_threshold`` is
            reported in ``safety_recall``.
        deploy_threshold: score threshold for precision / recall / F1 / safety recall.
        backend: ``"faster-coco-eval"`` or ``"pycocotools"``; they agree to 1e-6 on our fixtures.
        image_ids: the images to evaluate (default: the keys of ``predictions``); an image in it
            without predictions counts as one with no detections.
        eval_score_threshold: drop detections scoring below it before evaluating. When None,
            nothing is dropped and the report records the lowest score present.
        unmapped_ground_truth: what becomes of ground-truth boxes of dataset classes that no
            model class stands for (``unmapped_dataset_classes``): ``"drop"`` (default) leaves
            them out, so a detection on one is a false positive; ``"ignore"`` turns them into
            ignore regions for every class, as KITTI's own evaluation does with ``Van`` for
            ``Car`` (a COCO "car" on a KITTI van then counts neither way).

    Raises:
        InvalidInputError: unknown image ids, class ids outside ``model_class_names``, or no
            model class matching any dataset class.
        RuntimeUnavailableError: the backend library is not installed (``edgedet[bench]``).
    """
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not 0.0 <= float(deploy_threshold) <= 1.0:
        raise InvalidInputError(f"deploy_threshold must be in [0, 1], got {deploy_threshold}")
    inputs = coco_inputs(
        dataset,
        predictions,
        model_class_names,
        aliases=aliases,
        class_map=class_map,
        image_ids=image_ids,
        eval_score_threshold=eval_score_threshold,
        unmapped_ground_truth=unmapped_ground_truth,
    )
    dataset, ids, dets, cmap = inputs.dataset, inputs.image_ids, inputs.detections, inputs.class_map
    model_names, evaluated, cat_of = inputs.model_names, inputs.evaluated, inputs.category_of
    stats, precision, k_order = _run_cocoeval(
        backend, inputs.ground_truth, inputs.results, inputs.scored_category_ids
    )
    cat_to_class = {cat_of[d]: d for d in evaluated}
    per_ap: dict[str, float | None] = {}
    per_ap50: dict[str, float | None] = {}
    for k, cat in enumerate(k_order):
        name = dataset.class_names[cat_to_class[cat]]
        per_ap[name] = _class_ap(precision, k, None)
        per_ap50[name] = _class_ap(precision, k, 0)

    # Precision / recall at one fixed score threshold are not among COCOeval's outputs (it
    # integrates over all thresholds), so they are counted here: per image and class, greedy
    # matching at IoU 0.5, ignore regions absorb unmatched detections as in COCOeval.
    table = _lookup(cmap, len(model_names))
    tp = np.zeros(len(dataset.class_names), np.int64)
    fp = np.zeros_like(tp)
    fn = np.zeros_like(tp)
    dropped = 0
    n_pred = 0
    is_evaluated = np.zeros(len(dataset.class_names), bool)
    is_evaluated[evaluated] = True
    for i in ids:
        det = dets[i]
        mapped = table[det.class_ids.astype(np.int64)] if len(det) else np.zeros(0, np.int64)
        dropped += int((mapped < 0).sum())
        n_pred += int((mapped >= 0).sum())
        sample = dataset.by_id(i)
        g = sample.gt
        above = (det.scores >= deploy_threshold) & (mapped >= 0)
        present = np.union1d(mapped[above], g.class_ids[~g.ignore])
        for d in present[is_evaluated[present]].tolist():
            sel = above & (mapped == d)
            gt_mask = (g.class_ids == d) & ~g.ignore
            ign_mask = g.ignore & ((g.class_ids == d) | (g.class_ids == ANY_CLASS))
            if not sel.any():
                fn[d] += int(gt_mask.sum())
                continue
            if not gt_mask.any() and not ign_mask.any():
                fp[d] += int(sel.sum())
                continue
            t, f, n = match_at_threshold(
                det.xyxy[sel], det.scores[sel], g.xyxy[gt_mask], g.xyxy[ign_mask]
            )
            tp[d] += t
            fp[d] += f
            fn[d] += n
    t_all, f_all, n_all = int(tp.sum()), int(fp.sum()), int(fn.sum())
    prec = t_all / (t_all + f_all) if t_all + f_all else _NAN
    rec = t_all / (t_all + n_all) if t_all + n_all else _NAN
    f1 = (
        2 * prec * rec / (prec + rec)
        if prec + rec > 0
        else (_NAN if math.isnan(prec + rec) else 0.0)
    )

    safety: dict[str, float | None] = {}
    model_index = {n.strip().lower(): i for i, n in reversed(list(enumerate(model_names)))}
    data_index = {n.strip().lower(): i for i, n in reversed(list(enumerate(dataset.class_names)))}
    for name in safety_classes:
        key = name.strip().lower()
        d_id: int | None = None
        if key in model_index and model_index[key] in cmap.model_to_dataset:
            d_id = cmap.model_to_dataset[model_index[key]]
        elif key in data_index and data_index[key] in evaluated:
            d_id = data_index[key]
        if d_id is None:
            continue
        n_gt = int(tp[d_id] + fn[d_id])
        safety[name] = float(tp[d_id] / n_gt) if n_gt else None

    return AccuracyReport(
        map50_95=_nan_if_missing(stats[0]),
        map50=_nan_if_missing(stats[1]),
        map75=_nan_if_missing(stats[2]),
        map_small=_nan_if_missing(stats[3]),
        map_medium=_nan_if_missing(stats[4]),
        map_large=_nan_if_missing(stats[5]),
        ar1=_nan_if_missing(stats[6]),
        ar10=_nan_if_missing(stats[7]),
        ar100=_nan_if_missing(stats[8]),
        per_class_ap=per_ap,
        per_class_ap50=per_ap50,
        precision=prec,
        recall=rec,
        f1=f1,
        deploy_threshold=float(deploy_threshold),
        safety_recall=safety,
        images=len(ids),
        backend=backend,
        eval_score_threshold=float(inputs.min_score or 0.0),
        unmapped_model_classes=cmap.unmapped_model,
        unmapped_dataset_classes=cmap.unmapped_dataset,
        class_map={
            model_names[m]: dataset.class_names[d] for m, d in cmap.model_to_dataset.items()
        },
        ground_truth_boxes=sum(1 for a in inputs.ground_truth["annotations"] if not a["iscrowd"]),
        predictions=n_pred,
        dropped_predictions=dropped,
    )
