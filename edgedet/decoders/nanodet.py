"""NanoDet (GFL head): per level (strides 8/16/32), class scores ``[N_l, nc]`` after sigmoid and
box distributions ``[N_l, 4 × (reg_max + 1)]`` (left, top, right, bottom; softmax over bins,
expected bin × stride = distance from the cell centre).

Output *names* of public NanoDet exports are unreliable (the shared NanoDet-m file swaps them), so
outputs are matched to roles by shape: the level by the cell count, the role by the width
(``nc`` for scores, ``4 × (reg_max + 1)`` for boxes). A batch axis, when present, comes first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edgedet import protocol
from edgedet.meta import COCO80, ModelMeta

from .base import Candidates, Family, OutputSpecLike, grid_centers, output_mismatch, select_scores


def _softmax_expectation(logits: np.ndarray, bins: int) -> np.ndarray:
    """(K, 4*bins) logits -> (K, 4) expected bin index."""
    x = logits.reshape(-1, 4, bins)
    x = np.exp(x - x.max(axis=2, keepdims=True))
    x /= x.sum(axis=2, keepdims=True)
    return x @ np.arange(bins, dtype=np.float32)


class NanoDetDecoder:
    def __init__(
        self,
        cls_names: list[str],
        box_names: list[str],
        num_classes: int,
        bins: int,
        input_hw: tuple[int, int],
        strides: Sequence[int],
        center_offset: float,
    ):
        self.cls_names, self.box_names = cls_names, box_names
        self.num_classes, self.bins = num_classes, bins
        self.center, self.stride = grid_centers(input_hw, strides, offset=center_offset)

    def __call__(
        self,
        outputs: Mapping[str, np.ndarray],
        *,
        score_threshold: float,
        multi_label: bool = False,
        max_candidates: int = 30000,
    ) -> list[Candidates]:
        # Each output is (N_l, C) or (B, N_l, C). Candidates are picked level by level and only
        # they are stacked: concatenating every cell's scores first copied ~1 MB a frame.
        cls = [_batched(outputs[n]) for n in self.cls_names]
        box = [_batched(outputs[n]) for n in self.box_names]
        offsets = np.cumsum([0] + [c.shape[1] for c in cls[:-1]])
        results = []
        for b in range(cls[0].shape[0]):
            rows_l, cid_l, conf_l, logits_l = [], [], [], []
            for scores_l, dists_l, off in zip(cls, box, offsets):
                r, k, p = select_scores(scores_l[b], score_threshold, multi_label, max_candidates)
                rows_l.append(r + off)
                cid_l.append(k)
                conf_l.append(p)
                logits_l.append(dists_l[b][r])
            rows, cid, conf = np.concatenate(rows_l), np.concatenate(cid_l), np.concatenate(conf_l)
            logits = np.concatenate(logits_l).astype(np.float32)  # fp16: softmax in float32
            if conf.shape[0] > max_candidates:
                top = np.argpartition(-conf, max_candidates - 1)[:max_candidates]
                rows, cid, conf, logits = rows[top], cid[top], conf[top], logits[top]
            dist = _softmax_expectation(logits, self.bins) * self.stride[rows, None]
            c = self.center[rows]
            xyxy = np.concatenate([c - dist[:, :2], c + dist[:, 2:]], axis=1).astype(np.float32)
            results.append(Candidates(xyxy, conf, cid))
        return results


def _batched(arr: np.ndarray) -> np.ndarray:
    return arr[None] if arr.ndim == 2 else arr


def make_nanodet_decoder(
    meta: ModelMeta, specs: Sequence[OutputSpecLike], input_hw: tuple[int, int]
) -> NanoDetDecoder:
    strides = list(meta.strides)
    cells = {-(-input_hw[0] // s) * -(-input_hw[1] // s): s for s in strides}
    reg_max = int(meta.options.get("reg_max", 7))
    box_width = 4 * (reg_max + 1)
    nc = len(meta.class_names) or None
    by_level: dict[int, dict[str, str]] = {s: {} for s in strides}
    for spec in specs:
        dims = [d for d in spec.shape]
        if len(dims) == 3:  # a batch axis first, static (any size) or dynamic
            dims = dims[1:]
        if len(dims) != 2 or dims[0] is None or dims[1] is None:
            raise output_mismatch("nanodet", f"output '{spec.name}' is not [N, C]", specs)
        n, width = int(dims[0]), int(dims[1])
        if n not in cells:
            raise output_mismatch(
                "nanodet",
                f"output '{spec.name}' has {n} rows, which is no level of a "
                f"{input_hw[1]}x{input_hw[0]} input with strides {strides}",
                specs,
            )
        role = "box" if width == box_width and width != nc else "cls"
        if role == "cls" and nc is not None and width != nc:
            raise output_mismatch(
                "nanodet",
                f"output '{spec.name}' has width {width}: neither {nc} classes nor "
                f"4×(reg_max+1)={box_width} box bins",
                specs,
            )
        if role in by_level[cells[n]]:
            raise output_mismatch("nanodet", f"two '{role}' outputs for stride {cells[n]}", specs)
        by_level[cells[n]][role] = spec.name
    missing = [s for s in strides if set(by_level[s]) != {"cls", "box"}]
    if missing:
        raise output_mismatch("nanodet", f"no score and box outputs for strides {missing}", specs)
    cls_names = [by_level[s]["cls"] for s in strides]
    num_classes = nc or next(int(sp.shape[-1]) for sp in specs if sp.name == cls_names[0])  # type: ignore[arg-type]
    return NanoDetDecoder(
        cls_names,
        [by_level[s]["box"] for s in strides],
        num_classes,
        reg_max + 1,
        input_hw,
        strides,
        float(meta.options.get("center_offset", 0.5)),
    )


FAMILY = Family(
    name="nanodet",
    make_decoder=make_nanodet_decoder,
    preset={
        "color": "BGR",
        "scale": 1.0,
        "mean": (103.53, 116.28, 123.675),
        "std": (57.375, 57.12, 58.395),
        "letterbox": "center",
        "pad_value": 0,
        "strides": (8, 16, 32),
        "class_names": COCO80,
        "options": {"reg_max": 7, "center_offset": 0.5},
    },
    protocol=protocol.NANODET,
    description="NanoDet / NanoDet-m (GFL head) with per-level score and distribution outputs",
)
