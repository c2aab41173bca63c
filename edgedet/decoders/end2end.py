"""End-to-end models whose graph already ran NMS.

Two layouts:
- one output ``[B, K, 6]`` of (x1, y1, x2, y2, score, class) in input pixels (Ultralytics
  YOLOv10 / YOLO26 ``end2end`` exports, many ``--nms`` exports); rows with score 0 are padding;
- separate outputs for boxes ``[B, K, 4]``, scores ``[B, K]``, classes ``[B, K]`` and optionally a
  count ``[B, 1]`` (TensorRT EfficientNMS style). Roles come from ``meta.options["outputs"]``
  (``{"boxes": name, "scores": name, "classes": name, "count": name}``), else from the
  conventional names ``det_boxes``/``boxes``, ``det_scores``/``scores``, ``det_classes``/``labels``/
  ``classes``, ``num_dets``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edgedet import protocol
from edgedet.meta import ModelMeta

from .base import Candidates, Family, OutputSpecLike, output_mismatch

_CONVENTIONAL = {
    "boxes": ("det_boxes", "boxes", "bboxes"),
    "scores": ("det_scores", "scores"),
    "classes": ("det_classes", "classes", "labels", "class_ids"),
    "count": ("num_dets", "num_detections", "count"),
}


class End2EndDecoder:
    def __init__(self, roles: dict[str, str], num_classes: int):
        self.roles = roles
        self.num_classes = num_classes

    def __call__(
        self,
        outputs: Mapping[str, np.ndarray],
        *,
        score_threshold: float,
        multi_label: bool = False,
        max_candidates: int = 30000,
    ) -> list[Candidates]:
        if "packed" in self.roles:
            packed = outputs[self.roles["packed"]]
            packed = packed[None] if packed.ndim == 2 else packed
            boxes, scores, classes = packed[..., :4], packed[..., 4], packed[..., 5]
            counts = None
        else:
            boxes = outputs[self.roles["boxes"]]
            scores = outputs[self.roles["scores"]]
            classes = outputs[self.roles["classes"]]
            if boxes.ndim == 2:
                boxes, scores, classes = boxes[None], scores[None], classes[None]
            scores, classes = scores.reshape(boxes.shape[:2]), classes.reshape(boxes.shape[:2])
            counts = outputs[self.roles["count"]].reshape(-1) if "count" in self.roles else None
        results = []
        for b in range(boxes.shape[0]):
            k = int(counts[b]) if counts is not None else boxes.shape[1]
            s = scores[b, :k].astype(np.float32)
            keep = np.nonzero(s > score_threshold)[0][:max_candidates]
            results.append(
                Candidates(
                    boxes[b, keep].astype(np.float32),
                    s[keep],
                    classes[b, keep].astype(np.int32),
                    nms_done=True,
                )
            )
        return results


def make_end2end_decoder(
    meta: ModelMeta, specs: Sequence[OutputSpecLike], input_hw: tuple[int, int]
) -> End2EndDecoder:
    nc = len(meta.class_names)
    names = {s.name: s for s in specs}
    explicit = dict(meta.options.get("outputs", {}))
    if explicit:
        bad_roles = sorted(set(explicit) - {"packed", *_CONVENTIONAL})
        if bad_roles:
            raise output_mismatch(
                "end2end",
                f"options['outputs'] has unknown output roles {bad_roles}; roles are 'packed' "
                "or 'boxes', 'scores', 'classes' and optionally 'count'",
                specs,
            )
        if "packed" not in explicit and not {"boxes", "scores", "classes"} <= set(explicit):
            raise output_mismatch(
                "end2end",
                "options['outputs'] must name 'boxes', 'scores' and 'classes' (and optionally "
                f"'count'), or 'packed'; got {sorted(explicit)}",
                specs,
            )
        unknown = [v for v in explicit.values() if v not in names]
        if unknown:
            raise output_mismatch("end2end", f"meta names outputs {unknown} the model lacks", specs)
        return End2EndDecoder(explicit, nc)
    if len(specs) == 1 and specs[0].shape and specs[0].shape[-1] == 6:
        return End2EndDecoder({"packed": specs[0].name}, nc)
    roles: dict[str, str] = {}
    for role, candidates in _CONVENTIONAL.items():
        for cand in candidates:
            if cand in names:
                roles[role] = cand
                break
    if not {"boxes", "scores", "classes"} <= set(roles):
        raise output_mismatch(
            "end2end",
            "expected one [B, K, 6] output or boxes/scores/classes outputs (name them with "
            "options={'outputs': {...}})",
            specs,
        )
    return End2EndDecoder(roles, nc)


FAMILY = Family(
    name="end2end",
    make_decoder=make_end2end_decoder,
    preset={"color": "RGB", "scale": 1 / 255, "letterbox": "center", "pad_value": 114},
    protocol=protocol.END2END,
    description="models with NMS in the graph: [B, K, 6] or boxes/scores/classes outputs",
)
