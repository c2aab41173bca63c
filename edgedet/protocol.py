"""`EvalProtocol`: how detections are produced for an mAP, and what a deployed `Detector` uses.

One small frozen value per model family, chosen to reproduce that family's *published*
validator, so an edgedet mAP can be compared with the number its authors print. Every command
that reports an mAP (bench, calibrate, train, export, prune, distill, qat) scores through
`edgedet.scoring.score` with one of these, and writes `EvalProtocol.to_dict()` into its record or
report.

Where a protocol comes from, first match wins (`resolve_protocol`):

1. command-line flags (``--eval-conf``, ``--eval-iou``, ``--max-det``,
   ``--multi-label/--no-multi-label``; `add_protocol_arguments`), on top of
2. the model's meta (``ModelMeta.eval_protocol``, optional), else
3. the family's default (``Family.protocol`` in `edgedet.decoders`).

Fields (mAP side): ``score_threshold`` (candidates below it are dropped before NMS; COCO mAP
integrates the whole precision/recall curve, so it is low), ``iou_threshold`` (NMS IoU),
``multi_label`` (a box may yield one candidate per class above the threshold, as Ultralytics and
NanoDet validate), ``max_detections`` (kept per image after NMS; None: no cap, as YOLOX's
evaluator), ``nms`` (``class_aware``, ``agnostic`` or ``none`` for end-to-end models).
Deployment side (what `Detector` uses at run time, one label per box): ``deploy_score_threshold``,
``deploy_iou_threshold``. ``source`` says where the numbers come from.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInputError

#: NMS kinds a protocol may name (a subset of `edgedet.boxes.NMS_METHODS`): validators use plain
#: greedy NMS, per class or class-agnostic, or none for models with NMS in the graph.
PROTOCOL_NMS = ("class_aware", "agnostic", "none")

#: The command-line flag of each field, for error messages.
FLAGS: dict[str, str] = {
    "score_threshold": "--eval-conf",
    "iou_threshold": "--eval-iou",
    "max_detections": "--max-det",
    "multi_label": "--multi-label/--no-multi-label",
    "nms": "--eval-nms",
    "deploy_score_threshold": "--conf",
    "deploy_iou_threshold": "--iou",
}

#: ``max_detections=None`` (no cap) is run with this many boxes at most, the decoders' own
#: candidate cap, so nothing a validator would keep is cut.
UNCAPPED = 30000


@dataclass(frozen=True)
class EvalProtocol:
    """How to turn a model's outputs into detections for mAP, and the deployment thresholds.

    All thresholds are in [0, 1]; boxes are kept when their score is above ``score_threshold``
    (the decoders' ``>``). Validated on creation; an out-of-range value raises
    `InvalidInputError` naming the command-line flag that sets it.
    """

    score_threshold: float = 0.001
    iou_threshold: float = 0.7
    multi_label: bool = True
    max_detections: int | None = 300
    nms: str = "class_aware"
    deploy_score_threshold: float = 0.25
    deploy_iou_threshold: float = 0.45
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("score_threshold", "deploy_score_threshold"):
            _check_range(name, getattr(self, name), low_open=False)
        for name in ("iou_threshold", "deploy_iou_threshold"):
            # IoU 0 would suppress every overlapping box; a validator never uses it.
            _check_range(name, getattr(self, name), low_open=True)
        if self.max_detections is not None:
            if isinstance(self.max_detections, bool) or int(self.max_detections) != self.max_detections:
                raise InvalidInputError(
                    f"max_detections ({FLAGS['max_detections']}) must be a whole number, got "
                    f"{self.max_detections!r}"
                )
            if not 1 <= int(self.max_detections) <= UNCAPPED:
                raise InvalidInputError(
                    f"max_detections ({FLAGS['max_detections']}) must be in 1..{UNCAPPED}, got "
                    f"{self.max_detections}"
                )
            object.__setattr__(self, "max_detections", int(self.max_detections))
        if not isinstance(self.multi_label, bool):
            raise InvalidInputError(
                f"multi_label ({FLAGS['multi_label']}) must be true or false, got "
                f"{self.multi_label!r}"
            )
        if self.nms not in PROTOCOL_NMS:
            raise InvalidInputError(
                f"nms ({FLAGS['nms']}) must be one of {', '.join(PROTOCOL_NMS)}, got {self.nms!r}"
            )
        for name in ("score_threshold", "iou_threshold", "deploy_score_threshold",
                     "deploy_iou_threshold"):  # fmt: skip
            object.__setattr__(self, name, float(getattr(self, name)))

    # -- use -------------------------------------------------------------------------------

    def detector_settings(self) -> dict[str, Any]:
        """Keyword arguments of `edgedet.load` / `Detector` for the mAP pass."""
        return {
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
            "max_detections": self.max_detections or UNCAPPED,
            "nms": self.nms,
            "multi_label": self.multi_label,
        }

    def deploy_settings(self) -> dict[str, Any]:
        """Keyword arguments of `edgedet.load` / `Detector` at run time (one label per box)."""
        return {
            "score_threshold": self.deploy_score_threshold,
            "iou_threshold": self.deploy_iou_threshold,
            "max_detections": self.max_detections or UNCAPPED,
            "nms": self.nms,
            "multi_label": False,
        }

    def replace(self, **changes: Any) -> EvalProtocol:
        """A copy with fields changed (validated again); None values are ignored."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise InvalidInputError(f"unknown evaluation protocol field(s) {unknown}")
        return dataclasses.replace(self, **changes) if changes else self

    def describe(self) -> str:
        """One line for logs and reports."""
        nms = "no NMS" if self.nms == "none" else f"{self.nms} NMS IoU {self.iou_threshold:g}"
        cap = "no cap" if self.max_detections is None else f"{self.max_detections} dets"
        label = "multi-label" if self.multi_label else "one label per box"
        return f"score > {self.score_threshold:g}, {nms}, {label}, {cap}"

    # -- (de)serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "evaluation protocol") -> EvalProtocol:
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"{where}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


def _check_range(name: str, value: Any, *, low_open: bool) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{name} ({FLAGS[name]}) must be a number, got {value!r}") from err
    ok = (0.0 < v <= 1.0) if low_open else (0.0 <= v <= 1.0)
    if not ok or isinstance(value, bool):
        span = "(0, 1]" if low_open else "[0, 1]"
        raise InvalidInputError(f"{name} ({FLAGS[name]}) must be in {span}, got {value!r}")


# -- the published validators ------------------------------------------------------------------

#: Ultralytics (YOLOv8 / YOLO11 and the ``ultralytics`` package's other detect heads):
#: ``ultralytics/cfg/default.yaml`` ``iou: 0.7``, ``max_det: 300``, ``conf:`` "defaults:
#: predict=0.25, val=0.001"; ``ultralytics/models/yolo/detect/val.py``
#: ``DetectionValidator.postprocess`` runs ``ops.non_max_suppression(..., multi_label=True,
#: agnostic=single_cls or agnostic_nms)``, i.e. multi-label, class-aware. Prediction
#: (``predict.py``) uses conf 0.25, the same IoU 0.7, one label per box.
ULTRALYTICS = EvalProtocol(
    score_threshold=0.001,
    iou_threshold=0.7,
    multi_label=True,
    max_detections=300,
    nms="class_aware",
    deploy_score_threshold=0.25,
    deploy_iou_threshold=0.7,
    source="Ultralytics DetectionValidator (cfg/default.yaml: conf 0.001 for val, iou 0.7, "
    "max_det 300; detect/val.py: multi_label=True)",
)

#: YOLOv5 / YOLOv7 objectness exports (``[B, N, 5+nc]``), as ``ultralytics/yolov5`` ``val.py``
#: validates them: ``run(conf_thres=0.001, iou_thres=0.6, max_det=300)`` and
#: ``non_max_suppression(..., multi_label=True, agnostic=single_cls)``. (The ``ultralytics``
#: package's YOLOv5u models are anchor-free ``[B, 4+nc, N]`` exports: family ``yolov8``.)
#: Deployment: ``detect.py`` ``conf_thres=0.25, iou_thres=0.45``.
YOLOV5 = EvalProtocol(
    score_threshold=0.001,
    iou_threshold=0.6,
    multi_label=True,
    max_detections=300,
    nms="class_aware",
    deploy_score_threshold=0.25,
    deploy_iou_threshold=0.45,
    source="ultralytics/yolov5 val.py (conf_thres 0.001, iou_thres 0.6, max_det 300, "
    "multi_label=True)",
)

#: Megvii YOLOX: ``yolox/exp/yolox_base.py`` ``self.nmsthre = 0.65``; the README's evaluation
#: line passes ``--conf 0.001`` (``tools/eval.py`` sets ``exp.test_conf`` from it; the class
#: default ``test_conf = 0.01`` is not what the published table used). ``yolox/utils/boxes.py``
#: ``postprocess`` keeps each box's best class (obj x cls >= conf), class-aware ``batched_nms``,
#: and no cap on the number of boxes. Deployment: ``tools/demo.py`` README line
#: ``--conf 0.25 --nms 0.45``.
YOLOX = EvalProtocol(
    score_threshold=0.001,
    iou_threshold=0.65,
    multi_label=False,
    max_detections=None,
    nms="class_aware",
    deploy_score_threshold=0.25,
    deploy_iou_threshold=0.45,
    source="Megvii YOLOX COCOEvaluator (README eval --conf 0.001; exp/yolox_base.py nmsthre "
    "0.65; utils/boxes.py postprocess: best class per box, no cap)",
)

#: NanoDet (RangiLyu/nanodet): ``nanodet/model/head/gfl_head.py`` ``get_bboxes_single`` runs
#: ``multiclass_nms(..., score_thr=0.05, nms_cfg=dict(type='nms', iou_threshold=0.6),
#: max_num=100)``, mmdetection's multi-label NMS (every class above the threshold). Its demo
#: draws boxes above 0.35 (``demo/demo.py`` ``score_thres=0.35``).
NANODET = EvalProtocol(
    score_threshold=0.05,
    iou_threshold=0.6,
    multi_label=True,
    max_detections=100,
    nms="class_aware",
    deploy_score_threshold=0.35,
    deploy_iou_threshold=0.6,
    source="NanoDet GFLHead.get_bboxes_single (multiclass_nms score_thr 0.05, IoU 0.6, "
    "max_num 100)",
)

#: Models with NMS in the graph (YOLOv10, RT-DETR, exports with ``nms=True``): no NMS here,
#: the graph's own boxes up to 300, as Ultralytics' ``YOLOv10DetectionValidator.postprocess``
#: returns the predictions unchanged (``max_det`` 300).
END2END = EvalProtocol(
    score_threshold=0.001,
    iou_threshold=0.7,
    multi_label=False,
    max_detections=300,
    nms="none",
    deploy_score_threshold=0.25,
    deploy_iou_threshold=0.7,
    source="end-to-end (NMS in the graph): boxes as the model returns them, as Ultralytics' "
    "YOLOv10 validator",
)

#: DETR-style detectors (lyuwenyu/RT-DETR, D-FINE, DEIM): their ``PostProcessor`` takes
#: ``scores = sigmoid(logits)`` and ``torch.topk(scores.flatten(1), num_top_queries=300)`` over all
#: (query, class) pairs, with no score threshold and no NMS, and COCO-evaluates all 300. Here:
#: every (query, class) pair scoring above 0 (``multi_label``), the best 300 kept, no NMS.
#: Deployment: one label per query, score above 0.4 (D-FINE / DEIM ``tools/inference``
#: ``draw(..., thrh=0.4)``; lyuwenyu's RT-DETR references draw above 0.6).
DETR = EvalProtocol(
    score_threshold=0.0,
    iou_threshold=0.7,
    multi_label=True,
    max_detections=300,
    nms="none",
    deploy_score_threshold=0.4,
    deploy_iou_threshold=0.7,
    source="DETR PostProcessor (lyuwenyu/RT-DETR, D-FINE, DEIM): top 300 over queries x "
    "classes by sigmoid score, no threshold, no NMS",
)

#: Ultralytics RT-DETR (``RTDETRDecoder.postprocess`` keeps the top ``max_det`` = 300 (query,
#: class) pairs in the graph; ``models/rtdetr/val.py`` ``RTDETRValidator.postprocess`` keeps those
#: scoring above ``conf`` = 0.001, cfg/default.yaml), no NMS. Prediction: conf 0.25.
ULTRALYTICS_RTDETR = dataclasses.replace(
    DETR,
    score_threshold=0.001,
    deploy_score_threshold=0.25,
    source="Ultralytics RTDETRValidator (top 300 queries x classes, conf 0.001, no NMS)",
)

#: edgedet's own models: an anchor-free head with YOLOv8's box/class layout, TAL assignment and
#: DFL (`edgedet.train`), so they are validated as Ultralytics validates that head (IoU 0.7,
#: multi-label, 300 boxes). Before this protocol `edgedet train` validated at IoU 0.6 and bench
#: at 0.45; the same model now gets one number everywhere.
EDGEDET = dataclasses.replace(
    ULTRALYTICS,
    source="edgedet's own head (YOLOv8-style anchor-free, DFL): scored as Ultralytics' "
    "DetectionValidator (conf 0.001, IoU 0.7, multi-label, 300)",
)


# -- resolution -------------------------------------------------------------------------------


def family_protocol(family: str) -> EvalProtocol:
    """The default protocol of a registered family; raises naming the flags when it has none."""
    from .decoders import get_family

    fam = get_family(family)
    proto = getattr(fam, "protocol", None)
    if proto is None:
        raise InvalidInputError(
            f"model family '{family}' has no evaluation protocol, so edgedet cannot know how its "
            "authors score it: pass --eval-conf and --eval-iou (and --max-det, "
            "--multi-label/--no-multi-label), or register the family with "
            "Family(..., protocol=EvalProtocol(...))"
        )
    if not isinstance(proto, EvalProtocol):
        raise InvalidInputError(
            f"model family '{family}' has protocol {proto!r}; expected an EvalProtocol"
        )
    return proto


def resolve_protocol(
    meta: Any = None,
    *,
    family: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> EvalProtocol:
    """The protocol to score a model with: ``overrides`` (flag values, None = not given) on top
    of the model meta's ``eval_protocol``, else its family's default.

    ``meta`` is a `ModelMeta` (or None with ``family``). When the family has no protocol and the
    overrides give at least the score and IoU thresholds, those are used with the class
    defaults for the rest.
    """
    given = {k: v for k, v in dict(overrides or {}).items() if v is not None}
    carried = getattr(meta, "eval_protocol", None) if meta is not None else None
    if carried:
        base = (
            carried
            if isinstance(carried, EvalProtocol)
            else EvalProtocol.from_dict(carried, where="model meta eval_protocol")
        )
        return base.replace(**given)
    name = family or (getattr(meta, "family", None) if meta is not None else None)
    if name is None:
        raise InvalidInputError("no model family to take an evaluation protocol from")
    try:
        base = family_protocol(name)
    except InvalidInputError:
        if {"score_threshold", "iou_threshold"} <= set(given):
            return EvalProtocol(source="command-line flags", **given)
        raise
    return base.replace(**given)


def deploy_thresholds(meta: Any) -> tuple[float, float]:
    """(score, NMS IoU) a `Detector` of ``meta`` uses at run time when not told: its protocol's
    deployment thresholds, or 0.25 / 0.45 for a family without a protocol."""
    try:
        proto = resolve_protocol(meta)
    except InvalidInputError:
        proto = EvalProtocol()
    return proto.deploy_score_threshold, proto.deploy_iou_threshold


def protocol_of(detector: Any) -> EvalProtocol:
    """The default protocol of a loaded `Detector` (its meta's, else its family's)."""
    return resolve_protocol(detector.meta)


# -- command-line flags ------------------------------------------------------------------------


def _flag_type(field_name: str, kind: type) -> Any:
    """An argparse ``type`` that checks one protocol field as `EvalProtocol` would, so an
    out-of-range value fails while parsing, naming the flag."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}"
            ) from None
        try:
            EvalProtocol(**{field_name: value})
        except InvalidInputError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """``--eval-conf``, ``--eval-iou``, ``--max-det``, ``--multi-label/--no-multi-label``: the
    mAP protocol overrides shared by bench, calibrate, train, export, prune, distill and qat.
    Unset flags keep the model's protocol (its meta's, else its family's)."""
    g = parser.add_argument_group(
        "evaluation protocol",
        "how detections are made for mAP; defaults reproduce the model family's published "
        "validator (see `edgedet info MODEL`)",
    )
    g.add_argument("--eval-conf", type=_flag_type("score_threshold", float), default=None,
                   metavar="S",
                   help="score threshold of the mAP pass (Ultralytics/YOLOX: 0.001, NanoDet 0.05)")
    g.add_argument("--eval-iou", type=_flag_type("iou_threshold", float), default=None,
                   metavar="IOU",
                   help="NMS IoU of the mAP pass (Ultralytics 0.7, YOLOX 0.65, NanoDet 0.6)")
    g.add_argument("--max-det", type=_flag_type("max_detections", int), default=None,
                   metavar="N",
                   help="boxes kept per image in the mAP pass (Ultralytics 300)")
    g.add_argument("--multi-label", dest="multi_label", action=argparse.BooleanOptionalAction,
                   default=None, help="one candidate per class above the threshold (mAP pass)")  # fmt: skip


def protocol_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The protocol fields given on the command line (see `add_protocol_arguments`)."""
    return {
        "score_threshold": getattr(args, "eval_conf", None),
        "iou_threshold": getattr(args, "eval_iou", None),
        "max_detections": getattr(args, "max_det", None),
        "multi_label": getattr(args, "multi_label", None),
    }
