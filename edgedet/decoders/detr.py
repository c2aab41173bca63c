"""DETR-style detectors (RT-DETR, D-FINE, DEIM, DETR): Q object queries, no NMS.

A DETR predicts a fixed set of Q queries per image, each a box and a class score vector; the
one-to-one matching it was trained with makes NMS unnecessary. The published validators
(lyuwenyu/RT-DETR ``PostProcessor``, D-FINE, DEIM, Ultralytics ``RTDETRDecoder.postprocess``)
take the top K=300 (query, class) pairs by score over all Q x C pairs: `edgedet.protocol.DETR`.

Layouts read (roles come from ``meta.options["outputs"]``, else from the conventional names,
else from the one-output rule; never by trying):

- **raw, separate**: boxes ``[B, Q, 4]`` and class logits ``[B, Q, C]`` (names
  ``pred_boxes``/``boxes``/``bboxes`` and ``pred_logits``/``logits``/``class_logits``; the
  lyuwenyu RT-DETR, D-FINE, DEIM and Hugging Face exports without their post-processor).
  ``C + 1`` logits against ``C`` class names means a trailing background ("no object") class,
  scored by a softmax (Facebook DETR) unless ``options["scores"]`` says otherwise.
- **raw, packed**: one output ``[B, Q, 4 + C]`` (boxes then scores; Ultralytics RT-DETR exports
  before the top-k moved into the graph, whose scores are already sigmoids).
- **post-processed** (top-k in the graph): ``boxes [B, K, 4]``, ``scores [B, K]``,
  ``labels [B, K]`` (lyuwenyu / D-FINE / DEIM deployment exports, boxes x1,y1,x2,y2 in the pixels
  of the ``orig_target_sizes`` input), or one ``[B, K, 6]`` of (cx, cy, w, h, score, class)
  (Ultralytics >= 8.4 RT-DETR, normalised boxes) when ``options["topk_in_graph"]`` says so.

Options (all optional, in ``meta.options``): ``outputs`` (role -> output name; roles
``packed``, ``boxes``, ``logits``, ``scores``, ``labels``), ``box_format`` (``cxcywh`` or
``xyxy``), ``box_units`` (``normalized``: fractions of the network input, or ``pixels``),
``scores`` (``sigmoid``, ``softmax`` with a trailing background class, or ``probs``: already
probabilities), ``num_queries`` (the query count the file must have), ``topk_in_graph``
(``true``/``false``/``"auto"``: a packed ``[B, K, 6]`` output is (box, score, class) rows).

An ``orig_target_sizes`` input ``[B, 2]`` (or the input named by ``options["size_input"]``) is fed
the network input size as (w, h) by `edgedet.Detector` (`size_input_name`), so the graph's boxes
come out in network-input pixels like every other decoder's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgedet import protocol
from edgedet.boxes import cxcywh_to_xyxy
from edgedet.errors import IncompatibleModelError
from edgedet.meta import ModelMeta

from .base import Candidates, Family, OutputSpecLike, output_mismatch, select_scores

NAME = "detr"

#: Conventional output names, first match wins.
_RAW_NAMES = {
    "boxes": ("pred_boxes", "boxes", "bboxes", "pred_bboxes"),
    "logits": ("pred_logits", "logits", "class_logits", "pred_scores"),
}
_POST_NAMES = {
    "boxes": ("boxes", "bboxes", "det_boxes"),
    "scores": ("scores", "det_scores"),
    "labels": ("labels", "det_classes", "classes"),
}
_ROLES = ("packed", "boxes", "logits", "scores", "labels")
_BOX_FORMATS = ("cxcywh", "xyxy")
_BOX_UNITS = ("normalized", "pixels")
_SCORE_MODES = ("sigmoid", "softmax", "probs")

#: Input names fed the network input size (w, h) per image when present (lyuwenyu RT-DETR,
#: D-FINE and DEIM deployment exports call it ``orig_target_sizes``).
SIZE_INPUT_NAMES = ("orig_target_sizes", "orig_sizes", "target_sizes")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # float64 exp of -|x| never overflows; same value as 1 / (1 + exp(-x))
    x = x.astype(np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class DetrDecoder:
    """Decodes one batch of DETR outputs to `Candidates` in network-input pixels (``nms_done``).

    ``layout`` is ``raw`` (per-query boxes and class scores: candidates are the (query, class)
    pairs above the threshold, one per query unless ``multi_label``) or ``topk`` (the graph already
    chose K (box, score, class) rows).
    """

    def __init__(
        self,
        *,
        roles: Mapping[str, str],
        layout: str,
        num_classes: int,
        input_hw: tuple[int, int],
        box_format: str,
        box_units: str,
        scores: str,
    ):
        self.roles = dict(roles)
        self.layout = layout
        self.num_classes = num_classes
        self.input_hw = input_hw
        self.box_format = box_format
        self.box_units = box_units
        self.scores = scores

    # -- pieces --------------------------------------------------------------------------------

    def _boxes(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) in the model's format/units -> float32 xyxy in network-input pixels."""
        boxes = boxes.astype(np.float32)
        if self.box_units == "normalized":
            if boxes.size and float(np.abs(boxes).max()) > 4.0:
                raise IncompatibleModelError(
                    f"DETR boxes reach {float(np.abs(boxes).max()):.4g}, far outside the "
                    "normalised [0, 1] range; if the model returns pixels set "
                    "options={'box_units': 'pixels'}"
                )
            h, w = self.input_hw
            boxes = boxes * np.asarray([w, h, w, h], np.float32)
        xyxy = cxcywh_to_xyxy(boxes) if self.box_format == "cxcywh" else boxes
        return np.ascontiguousarray(xyxy, dtype=np.float32)

    def _class_scores(self, raw: np.ndarray) -> np.ndarray:
        """(Q, D) logits/probabilities -> (Q, C) probabilities (background column dropped)."""
        if self.scores == "sigmoid":
            return _sigmoid(raw[:, : self.num_classes])
        if self.scores == "softmax":
            return _softmax(raw)[:, : self.num_classes]
        probs = raw[:, : self.num_classes].astype(np.float32)
        if probs.size and (float(probs.min()) < -1e-3 or float(probs.max()) > 1 + 1e-3):
            raise IncompatibleModelError(
                f"DETR scores span [{float(probs.min()):.4g}, {float(probs.max()):.4g}], not "
                "probabilities; if the model returns logits set options={'scores': 'sigmoid'} "
                "(or 'softmax' for a background class)"
            )
        return probs

    # -- call ----------------------------------------------------------------------------------

    def __call__(
        self,
        outputs: Mapping[str, np.ndarray],
        *,
        score_threshold: float,
        multi_label: bool = False,
        max_candidates: int = 30000,
    ) -> list[Candidates]:
        if self.layout == "raw":
            return self._raw(outputs, score_threshold, multi_label, max_candidates)
        return self._topk(outputs, score_threshold, max_candidates)

    def _raw(
        self,
        outputs: Mapping[str, np.ndarray],
        score_threshold: float,
        multi_label: bool,
        max_candidates: int,
    ) -> list[Candidates]:
        if "packed" in self.roles:
            packed = _batched(outputs[self.roles["packed"]], 3)
            boxes, logits = packed[..., :4], packed[..., 4:]
        else:
            boxes = _batched(outputs[self.roles["boxes"]], 3)
            logits = _batched(outputs[self.roles["logits"]], 3)
            if boxes.shape[:2] != logits.shape[:2]:
                raise IncompatibleModelError(
                    f"DETR outputs disagree on the query count: boxes {list(boxes.shape)}, "
                    f"logits {list(logits.shape)}"
                )
        results = []
        for b in range(boxes.shape[0]):
            probs = self._class_scores(logits[b])
            rows, cls, conf = select_scores(probs, score_threshold, multi_label, max_candidates)
            results.append(Candidates(self._boxes(boxes[b][rows]), conf, cls, nms_done=True))
        return results

    def _topk(
        self, outputs: Mapping[str, np.ndarray], score_threshold: float, max_candidates: int
    ) -> list[Candidates]:
        if "packed" in self.roles:
            packed = _batched(outputs[self.roles["packed"]], 3)
            boxes, scores, labels = packed[..., :4], packed[..., 4], packed[..., 5]
        else:
            boxes = _batched(outputs[self.roles["boxes"]], 3)
            scores = outputs[self.roles["scores"]].reshape(boxes.shape[:2])
            labels = outputs[self.roles["labels"]].reshape(boxes.shape[:2])
        results = []
        for b in range(boxes.shape[0]):
            s = scores[b].astype(np.float32)
            keep = np.nonzero(s > score_threshold)[0]
            if keep.size > max_candidates:
                keep = keep[np.argsort(-s[keep], kind="stable")[:max_candidates]]
            cls = np.rint(labels[b][keep]).astype(np.int32)
            if cls.size and (cls.min() < 0 or (self.num_classes and cls.max() >= self.num_classes)):
                raise IncompatibleModelError(
                    f"DETR labels span {int(cls.min())}..{int(cls.max())} but the model has "
                    f"{self.num_classes} class names"
                )
            results.append(Candidates(self._boxes(boxes[b][keep]), s[keep], cls, nms_done=True))
        return results


def _batched(arr: np.ndarray, rank: int) -> np.ndarray:
    arr = np.asarray(arr)
    return arr[None] if arr.ndim == rank - 1 else arr


# -- building the decoder from the model's outputs ---------------------------------------------


def _choice(options: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str,
            specs: Sequence[OutputSpecLike]) -> str:  # fmt: skip
    value = options.get(key, default)
    if value not in choices:
        raise output_mismatch(
            NAME, f"options['{key}'] must be one of {', '.join(choices)}, got {value!r}", specs
        )
    return str(value)


def _find(names: Mapping[str, OutputSpecLike], candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if c in names), None)


def _roles(
    options: Mapping[str, Any], specs: Sequence[OutputSpecLike]
) -> tuple[dict[str, str], str]:
    """The output roles and the layout (``raw`` or ``topk``)."""
    names = {s.name: s for s in specs}
    explicit = dict(options.get("outputs", {}) or {})
    if explicit:
        bad = sorted(set(explicit) - set(_ROLES))
        if bad:
            raise output_mismatch(
                NAME, f"options['outputs'] has unknown roles {bad}; roles are {', '.join(_ROLES)}",
                specs,
            )
        unknown = sorted(str(v) for v in explicit.values() if v not in names)
        if unknown:
            raise output_mismatch(NAME, f"meta names outputs {unknown} the model lacks", specs)
        roles = {k: str(v) for k, v in explicit.items()}
    elif len(specs) == 1 and specs[0].name not in _RAW_NAMES["boxes"] and specs[0].shape[-1:] != (4,):
        roles = {"packed": specs[0].name}
    elif _find(names, _POST_NAMES["labels"]) is not None:
        roles = {role: n for role, c in _POST_NAMES.items() if (n := _find(names, c))}
    else:
        roles = {role: n for role, c in _RAW_NAMES.items() if (n := _find(names, c))}
    if "packed" in roles:
        if len(roles) > 1:
            raise output_mismatch(NAME, "'packed' cannot be combined with other roles", specs)
        return roles, "packed"
    if "labels" in roles:
        missing = sorted({"boxes", "scores"} - set(roles))
        if missing:
            raise output_mismatch(
                NAME, f"a post-processed DETR output (labels) needs {missing} outputs too", specs
            )
        return roles, "topk"
    if "boxes" not in roles:
        raise output_mismatch(
            NAME,
            "no box output: expected boxes [B, Q, 4] (named pred_boxes / boxes) with class logits "
            "[B, Q, C] (pred_logits / logits), one packed [B, Q, 4 + C] output, or boxes / scores "
            "/ labels; name them with options={'outputs': {...}}",
            specs,
        )
    if "logits" not in roles:
        raise output_mismatch(
            NAME,
            f"a box output '{roles['boxes']}' but no class logits output (expected "
            f"{' / '.join(_RAW_NAMES['logits'])} [B, Q, C], or name it with "
            "options={'outputs': {'logits': NAME}})",
            specs,
        )
    return roles, "raw"


def _static(dim: Any) -> int | None:
    return int(dim) if isinstance(dim, int) else None


def _query_count(
    options: Mapping[str, Any], shapes: Mapping[str, tuple[Any, ...]], specs: Sequence[OutputSpecLike]
) -> None:
    """Every output agrees on Q (where static), and Q is ``options['num_queries']`` if given."""
    qs = {role: _static(shape[1]) for role, shape in shapes.items() if len(shape) >= 2}
    static = {r: q for r, q in qs.items() if q is not None}
    if len(set(static.values())) > 1:
        raise output_mismatch(NAME, f"outputs disagree on the query count: {static}", specs)
    want = options.get("num_queries")
    if want is not None:
        if isinstance(want, bool) or not isinstance(want, int) or want < 1:
            raise output_mismatch(
                NAME, f"options['num_queries'] must be a positive int, got {want!r}", specs
            )
        got = next(iter(static.values()), None)
        if got is not None and got != want:
            raise output_mismatch(
                NAME,
                f"the model has {got} queries but its meta says num_queries={want} (a different "
                "export or a truncated top-k?)",
                specs,
            )


def make_detr_decoder(
    meta: ModelMeta, specs: Sequence[OutputSpecLike], input_hw: tuple[int, int]
) -> DetrDecoder:
    """Read the layout from ``meta.options`` and the output shapes (see the module docstring);
    `IncompatibleModelError` naming what does not fit."""
    options = meta.options
    roles, kind = _roles(options, specs)
    by_name = {s.name: s for s in specs}
    shapes = {role: tuple(by_name[name].shape) for role, name in roles.items()}
    for role, shape in shapes.items():
        if role in ("scores", "labels"):
            ok = len(shape) in (1, 2) or (len(shape) == 3 and shape[-1] == 1)
        else:
            ok = len(shape) in (2, 3)
        if not ok:
            raise output_mismatch(NAME, f"output '{roles[role]}' ({role}) has rank {len(shape)}", specs)
    _query_count(options, shapes, specs)
    nc_names = len(meta.class_names)
    score_mode = options.get("scores")
    if kind == "packed":
        d = _static(shapes["packed"][-1])
        if d is None or d < 5:
            raise output_mismatch(
                NAME, "a packed output needs a static last axis of 4 + C (or 6 with top-k)", specs
            )
        topk = options.get("topk_in_graph", "auto")
        if topk not in (True, False, "auto"):
            raise output_mismatch(
                NAME, f"options['topk_in_graph'] must be true, false or 'auto', got {topk!r}", specs
            )
        if topk == "auto":
            if nc_names and d == 4 + nc_names and d == 6:
                raise output_mismatch(
                    NAME,
                    "a [B, K, 6] output with 2 classes is either (box, 2 scores) per query or "
                    "(box, score, class) rows; set options={'topk_in_graph': true or false}",
                    specs,
                )
            topk = d == 6 and nc_names != 2
        if topk:
            if d != 6:
                raise output_mismatch(NAME, "a top-k packed output must be [B, K, 6]", specs)
            kind = "topk"
            nc = nc_names
        else:
            kind = "raw"
            nc = d - 4
            if nc_names and nc != nc_names:
                raise output_mismatch(
                    NAME, f"packed output has {nc} score columns but the model has {nc_names} "
                    "class names", specs,
                )
        score_default = "probs"
    elif kind == "raw":
        if _static(shapes["boxes"][-1]) != 4:
            raise output_mismatch(NAME, f"box output '{roles['boxes']}' must be [B, Q, 4]", specs)
        d = _static(shapes["logits"][-1])
        if d is None:
            raise output_mismatch(NAME, "the logits output needs a static class axis", specs)
        if score_mode is None and nc_names and d == nc_names + 1:
            score_mode = "softmax"  # DETR's trailing "no object" class
        nc = d - 1 if score_mode == "softmax" else d
        if nc_names and nc != nc_names:
            raise output_mismatch(
                NAME, f"logits have {d} columns but the model has {nc_names} class names "
                f"(scores={score_mode or 'sigmoid'})", specs,
            )
        score_default = "sigmoid"
    else:  # post-processed boxes / scores / labels
        if _static(shapes["boxes"][-1]) != 4:
            raise output_mismatch(NAME, f"box output '{roles['boxes']}' must be [B, K, 4]", specs)
        nc = nc_names
        score_default = "probs"
    box_default = ("xyxy", "pixels") if kind == "topk" and "packed" not in roles else (
        "cxcywh", "normalized")  # fmt: skip
    return DetrDecoder(
        roles=roles,
        layout="raw" if kind == "raw" else "topk",
        num_classes=nc,
        input_hw=input_hw,
        box_format=_choice(options, "box_format", _BOX_FORMATS, box_default[0], specs),
        box_units=_choice(options, "box_units", _BOX_UNITS, box_default[1], specs),
        scores=_choice(
            {"scores": score_mode or score_default}, "scores", _SCORE_MODES, score_default, specs
        ),
    )


def size_input_name(meta: ModelMeta, input_specs: Sequence[OutputSpecLike]) -> str | None:
    """The input fed the network input size (w, h) per image, or None.

    ``meta.options["size_input"]`` names it; else an input called ``orig_target_sizes`` (or
    another of `SIZE_INPUT_NAMES`) of shape ``[B, 2]`` is one. `IncompatibleModelError` when the
    meta names an input the model lacks.
    """
    names = {s.name: s for s in input_specs}
    given = meta.options.get("size_input")
    if given is not None:
        if given not in names:
            raise IncompatibleModelError(
                f"meta options name the size input {given!r}, but the model's inputs are "
                f"{sorted(names)}"
            )
        return str(given)
    for cand in SIZE_INPUT_NAMES:
        spec = names.get(cand)
        if spec is not None and len(spec.shape) == 2 and spec.shape[-1] == 2:
            return cand
    return None


def size_feed(dtype: Any, batch: int, input_hw: tuple[int, int]) -> np.ndarray:
    """``[batch, 2]`` of the network input size as (w, h), in the input's dtype."""
    h, w = input_hw
    return np.tile(np.asarray([[w, h]], dtype=np.dtype(dtype)), (batch, 1))


FAMILY = Family(
    name=NAME,
    make_decoder=make_detr_decoder,
    # lyuwenyu RT-DETR / D-FINE / DEIM and Ultralytics RT-DETR resize to the square input without
    # keeping the aspect ratio (T.Resize / LetterBox(scale_fill=True)), RGB in [0, 1].
    preset={"color": "RGB", "scale": 1 / 255, "letterbox": "stretch", "pad_value": 114},
    protocol=protocol.DETR,
    description="DETR-style query detectors (RT-DETR, D-FINE, DEIM): boxes + logits, packed "
    "[B, Q, 4+C], or post-processed boxes/scores/labels; no NMS",
)
