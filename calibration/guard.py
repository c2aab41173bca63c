"""INT8 that protects itself without labels, and fidelity on held-out images.

`guard_without_labels` runs by default in ``edgedet calibrate`` when no labelled budget is
given. It checks the INT8 model on *held-out* unlabelled images (set aside from the calibration
pool, `CalibrationSource(holdout=...)`) with the label-free proxy of `sensitivity`: the
`detection_error` of the INT8 model's detections against the float model's, on the target
runtime. While that error is above ``bound``, it keeps the k layers the per-layer sensitivity
ranks first (proxy, on calibration images: the ranking never sees the held-out images) in float,
k = 0, 1, 2, 4, 8, 16, 32, and keeps the first candidate within the bound (else the one with
the smallest error, reported as not met). The bound is `DEFAULT_PROXY_BOUND`, chosen by
measurement (calibration/README.md, "Label-free guard").

`fidelity` scores the INT8 model's detections against the float model's detections taken as
ground truth (score >= `PSEUDO_GT_SCORE`) through the project's COCO evaluation
(`edgedet.eval.metrics.evaluate`): mAP50-95 overall and per class of how well INT8 reproduces float,
with no labels. It is not accuracy: a float model's mistakes count as truth here.

The INT8 builders (`Int8Builder`): `OrtBuilder` writes QDQ ONNX with ONNX Runtime's quantizer
(one calibration shared by every candidate and by the sensitivity analysis), `OpenVinoBuilder`
writes OpenVINO IR with NNCF (the sensitivity ranking still comes from ONNX Runtime's fake
quantization of the same float graph; node names are translated through output tensor names).
`builder_for(int8_format, ...)` picks one from a runtime's declared INT8 format
(`edgedet.runtimes.base.RuntimeCapabilities.int8_formats`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgedet.errors import CalibrationError, InvalidInputError

from .files import move_model
from .ort_int8 import PreparedModel, QuantizeResult
from .sensitivity import SensitivityReport, detection_error
from .source import CalibrationSource, decode
from .spec import CalibrationSpec

log = logging.getLogger("edgedet.calibration")

#: Float detections at or above this score are the ground truth of `fidelity` (the usual
#: deployment threshold; the proxy's `PROXY_SCORE` too).
PSEUDO_GT_SCORE = 0.25

#: `detection_error` on held-out images within which the label-free guard stops keeping layers
#: float. Chosen by measurement on YOLOX-nano, NanoDet-m and YOLOv8n (calibration/README.md,
#: "Label-free guard"): the all-INT8 YOLOX-nano models that lose mAP score 0.47 (ORT, 78% of
#: float) and 0.13 (OpenVINO, 97.5%); every candidate measured at or below 0.10 kept 98.9-105.7%
#: of float mAP50-95 on coco_tiny_val2017, within that set's resolution of 100%.
DEFAULT_PROXY_BOUND = 0.10

#: Layers kept float, tried in this order.
GUARD_STEPS = (0, 1, 2, 4, 8, 16, 32)

#: The range estimator the guard also tries when the all-INT8 model misses its bound and no
#: method was asked for: the mean over images of each image's min/max. The default (``mse``)
#: follows the few images whose activations reach far beyond the others' (measured on a scratch
#: RT-DETR, docs/detr.md: held-out proxy error 0.51 -> 0.14 on ONNX Runtime, 0.37 -> 0.11 on
#: OpenVINO).
FALLBACK_METHOD = "mean_minmax"


def _method(builder: Any) -> str | None:
    spec = getattr(builder, "spec", None)
    return getattr(spec, "method", None)


# -- held-out images ---------------------------------------------------------------------------


@dataclass
class HeldOutImages:
    """Decoded held-out images (BGR uint8, original size) and their files."""

    paths: list[Path]
    images: list[np.ndarray]
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, paths: Sequence[Path]) -> HeldOutImages:
        """Read ``paths``; unreadable files are skipped and listed."""
        kept: list[Path] = []
        images: list[np.ndarray] = []
        skipped: list[str] = []
        for p in paths:
            try:
                img = decode(Path(p).read_bytes())
            except OSError as err:
                img, why = None, str(err)
            else:
                why = "not a decodable image"
            if img is None:
                skipped.append(f"{p}: {why}")
                continue
            kept.append(Path(p))
            images.append(img)
        return cls(kept, images, skipped)

    def __len__(self) -> int:
        return len(self.images)


def detect_all(det: Any, images: Sequence[np.ndarray]) -> list[Any]:
    """``det`` (an `edgedet.Detector`) on every image, in order."""
    return [det(im) for im in images]


# -- fidelity ----------------------------------------------------------------------------------


def fidelity(
    reference: Sequence[Any],
    candidate: Sequence[Any],
    class_names: Sequence[str],
    images: HeldOutImages,
    *,
    min_score: float = PSEUDO_GT_SCORE,
) -> dict[str, Any]:
    """How well ``candidate`` detections reproduce ``reference`` ones (lists of `Detections`,
    one per image of ``images``, boxes in original-image pixels, class ids into
    ``class_names``): the reference detections with score >= ``min_score`` are the ground
    truth, the candidate's are scored against them by `edgedet.eval.metrics.evaluate` (COCO
    mAP50-95 / mAP50 overall and per class present in the reference). ``map50_95`` is None
    when the reference found nothing to score against."""
    from edgedet.data.dataset import Annotation, DetectionDataset, Sample
    from edgedet.eval.metrics import evaluate

    if not (len(reference) == len(candidate) == len(images)):
        raise InvalidInputError(
            f"fidelity needs one reference and one candidate result per image, got "
            f"{len(reference)}, {len(candidate)} for {len(images)} images"
        )
    samples = []
    boxes = 0
    for i, (ref, path, img) in enumerate(zip(reference, images.paths, images.images)):
        keep = ref.scores >= min_score
        boxes += int(keep.sum())
        gt = Annotation(ref.xyxy[keep], ref.class_ids[keep], np.zeros(int(keep.sum()), bool))
        samples.append(Sample(i + 1, path, int(img.shape[1]), int(img.shape[0]), gt))
    out: dict[str, Any] = {
        "images": len(images),
        "reference_boxes": boxes,
        "reference_min_score": min_score,
        "map50_95": None,
        "map50": None,
        "per_class_ap": {},
    }
    if boxes == 0:
        return out
    dataset = DetectionDataset("float detections", Path("."), "pseudo", class_names, samples)
    report = evaluate(
        dataset,
        {i + 1: c for i, c in enumerate(candidate)},
        class_names,
        deploy_threshold=min_score,
        image_ids=[s.image_id for s in samples],
    )
    out["map50_95"] = _finite(report.map50_95)
    out["map50"] = _finite(report.map50)
    out["per_class_ap"] = {
        k: _finite(v) for k, v in report.per_class_ap.items() if v is not None and _finite(v) is not None
    }
    out["recall_at_min_score"] = _finite(report.recall)
    out["precision_at_min_score"] = _finite(report.precision)
    return out


def _finite(v: Any) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 4)


# -- builders ----------------------------------------------------------------------------------


class Int8Builder(Protocol):
    """Builds one INT8 model of a float model with extra layers kept float."""

    suffix: str

    def build(self, out: Path, keep_float: Sequence[str] = ()) -> QuantizeResult: ...

    def rank(
        self, images: Sequence[np.ndarray], progress: Callable[[int, int], None] | None = None
    ) -> SensitivityReport: ...

    def close(self) -> None: ...


class OrtBuilder:
    """QDQ ONNX through ONNX Runtime; one calibration serves every build and the ranking."""

    suffix = ".onnx"

    def __init__(
        self,
        model: Path,
        source: CalibrationSource,
        spec: CalibrationSpec,
        meta: Any,
        *,
        threads: int | None = 2,
        work_dir: Path | None = None,
    ) -> None:
        self.model, self.source, self.spec, self.meta, self.threads = (
            Path(model), source, spec, meta, threads,
        )  # fmt: skip
        self.work = Path(tempfile.mkdtemp(prefix=".edgedet-guard-", dir=work_dir))
        self._prepared: PreparedModel | None = None

    @property
    def prepared(self) -> PreparedModel:
        if self._prepared is None:
            from .ort_int8 import prepare

            self._prepared = prepare(self.model, self.work)
        return self._prepared

    def build(self, out: Path, keep_float: Sequence[str] = ()) -> QuantizeResult:
        from .ort_int8 import quantize_onnx

        return quantize_onnx(
            self.model, self.source, self.spec, out, self.meta,
            keep_float=keep_float, prepared=self.prepared,
        )  # fmt: skip

    def rank(
        self, images: Sequence[np.ndarray], progress: Callable[[int, int], None] | None = None
    ) -> SensitivityReport:
        from .ort_int8 import calibration_errors
        from .sensitivity import layer_sensitivity

        with calibration_errors(self.model):  # it runs ORT's calibrator too
            return layer_sensitivity(
                self.model, self.source, self.spec, self.meta,
                images=images, threads=self.threads, prepared=self.prepared, progress=progress,
            )  # fmt: skip

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def with_spec(self, spec: CalibrationSpec) -> OrtBuilder:
        """The same builder with ``spec`` (e.g. another range estimator): it shares this one's
        work folder (``close`` either) and pre-processed graph, with its own range cache."""
        import copy
        import dataclasses

        other = copy.copy(self)
        other.spec = spec
        if self._prepared is not None:
            other._prepared = dataclasses.replace(
                self._prepared,
                cache=self.work / f"ranges_{spec.method}.json",
                calibrated_with=None,
                ranges=None,
                notes=list(self._prepared.notes),
            )
        return other

    #: what ONNX Runtime's activation ranges served (the calibration report says it)
    ranges_used_for = "the INT8 model"

    def activation_ranges(self) -> dict[str, Any] | None:
        """What ONNX Runtime's calibration measured and changed
        (`edgedet.calibration.ort_ranges.RangeStats`), or None when it did not run."""
        prepared = self._prepared
        if prepared is None or prepared.ranges is None:
            return None
        notes = [n for n in prepared.notes if n.startswith("activation ranges: ")]
        return {**prepared.ranges, "used_for": self.ranges_used_for, "notes": notes}


class OpenVinoBuilder(OrtBuilder):
    """OpenVINO IR through NNCF; ranked by ONNX Runtime's fake quantization of the same graph."""

    suffix = ".xml"
    ranges_used_for = (
        "the layer-sensitivity ranking (ONNX Runtime fake quantization); the OpenVINO IR's "
        "ranges are NNCF's"
    )

    def build(self, out: Path, keep_float: Sequence[str] = ()) -> QuantizeResult:
        from .nncf_int8 import quantize_openvino

        spec = self.spec
        if keep_float:
            names = original_names(self.prepared.path, self.model, keep_float)
            spec = spec.replace(exclude_names=tuple(dict.fromkeys([*spec.exclude_names, *names])))
        result = quantize_openvino(self.model, self.source, spec, out, self.meta)
        return result


def builder_for(
    int8_format: str,
    model: Path,
    source: CalibrationSource,
    spec: CalibrationSpec,
    meta: Any,
    *,
    threads: int | None = 2,
    work_dir: Path | None = None,
) -> OrtBuilder:
    """The builder writing ``int8_format`` (``"qdq_onnx"`` or ``"openvino_ir"``, see
    `edgedet.runtimes.base.INT8_FORMATS`)."""
    classes: dict[str, type[OrtBuilder]] = {"qdq_onnx": OrtBuilder, "openvino_ir": OpenVinoBuilder}
    if int8_format not in classes:
        raise CalibrationError(
            f"no INT8 builder writes {int8_format!r}; edgedet builds {', '.join(classes)}"
        )
    return classes[int8_format](model, source, spec, meta, threads=threads, work_dir=work_dir)


def original_names(prepared: Path, original: Path, names: Sequence[str]) -> list[str]:
    """Node names of ``original`` (an ONNX file) standing for nodes ``names`` of ``prepared``
    (its pre-processed copy, `ort_int8.prepare`), matched by their first output tensor; nodes
    with no counterpart are left out (logged)."""
    import onnx

    from .tail import ensure_node_names

    prep = onnx.load(str(prepared), load_external_data=False)
    orig = onnx.load(str(original), load_external_data=False)
    ensure_node_names(orig)
    by_output = {n.output[0]: n.name for n in orig.graph.node if n.output}
    wanted = set(names)
    found: list[str] = []
    for node in prep.graph.node:
        if node.name in wanted and node.output:
            if node.output[0] in by_output:
                found.append(by_output[node.output[0]])
            else:
                log.warning("layer %s has no counterpart in %s; not kept float", node.name, original)
    return found


# -- the guard ---------------------------------------------------------------------------------


@dataclass
class GuardResult:
    """What `guard_without_labels` kept, and every candidate it tried."""

    result: QuantizeResult
    kept_float: list[str]
    tries: list[dict[str, Any]]
    met: bool
    bound: float
    heldout_images: int
    candidate_detections: list[Any] = field(default_factory=list, repr=False)
    sensitivity: SensitivityReport | None = None
    #: the builder whose range estimator was kept (``fallback`` when it won)
    builder: Any = field(default=None, repr=False)
    method: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "bound": self.bound,
            "met": self.met,
            "method": self.method,
            "kept_float": list(self.kept_float),
            "heldout_images": self.heldout_images,
            "tries": list(self.tries),
            "sensitivity": self.sensitivity.to_dict()["layers"][:20] if self.sensitivity else None,
        }


def guard_without_labels(
    builder: Int8Builder,
    out: Path,
    heldout: HeldOutImages,
    reference: Sequence[Any],
    load_int8: Callable[[Path], Any],
    rank_images: Sequence[np.ndarray],
    *,
    bound: float = DEFAULT_PROXY_BOUND,
    steps: Sequence[int] = GUARD_STEPS,
    progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
    fallback: Int8Builder | None = None,
) -> GuardResult:
    """Keep layers float until the INT8 model's `detection_error` against the float model's
    ``reference`` detections on the held-out images is at most ``bound``.

    ``load_int8(path)`` opens a candidate as a `Detector` on the target runtime;
    ``rank_images`` (calibration images, not held-out ones) feed the sensitivity ranking, which
    only runs when the all-INT8 model misses the bound. The kept model is renamed to ``out``.

    ``fallback``: the same builder with another range estimator (`FALLBACK_METHOD`). When the
    all-INT8 model misses the bound, the fallback's all-INT8 model is tried too, and the one with
    the smaller held-out error goes on (ranking and layers kept float); the tries say which.
    """
    if not heldout.images:
        raise CalibrationError("the label-free guard needs held-out images; none were readable")
    if bound < 0 or not np.isfinite(bound):
        raise InvalidInputError(f"--proxy-bound must be a finite number >= 0, got {bound}")

    def _try(b: Int8Builder, path: Path, keep: list[str]) -> tuple[float, QuantizeResult, list[Any]]:
        cand = b.build(path, keep)
        det = load_int8(cand.path)
        try:
            dets = detect_all(det, heldout.images)
        finally:
            det.close()
        return detection_error(reference, dets), cand, dets

    def _row(k: int, err: float, ok: bool, b: Int8Builder) -> dict[str, Any]:
        log.warning(
            "label-free guard: %d layer(s) float (%s) -> held-out proxy error %.4f (%s %.3f)",
            k, _method(b), err, "<=" if ok else ">", bound,
        )  # fmt: skip
        return {"kept_float": k, "method": _method(b), "proxy_error": round(err, 5), "ok": ok}

    out = Path(out)
    work = Path(tempfile.mkdtemp(prefix=".edgedet-guard-", dir=out.parent))
    try:
        tries: list[dict[str, Any]] = []
        built: list[tuple[float, QuantizeResult, list[str], list[Any], Int8Builder]] = []
        ranking: list[str] | None = None
        sens: SensitivityReport | None = None
        for k in steps:
            if k > 0 and ranking is None:
                sens = builder.rank(rank_images, progress("layer sensitivity") if progress else None)
                ranking = sens.ranking()
            if ranking is not None and k > len(ranking):
                break
            keep = list(ranking[:k]) if ranking is not None else []
            err, cand, dets = _try(builder, work / f"k{k}{builder.suffix}", keep)
            ok = err <= bound
            tries.append(_row(k, err, ok, builder))
            built.append((err, cand, keep, dets, builder))
            if ok:
                break
            if k == 0 and fallback is not None:
                alt_err, alt, alt_dets = _try(fallback, work / f"k0_alt{fallback.suffix}", [])
                ok = alt_err <= bound
                tries.append(_row(0, alt_err, ok, fallback))
                built.append((alt_err, alt, [], alt_dets, fallback))
                if alt_err < err:
                    builder = fallback  # its estimator goes on: ranking and later candidates
                if ok:
                    break
        if not built:
            raise CalibrationError("the label-free guard built no candidate (empty steps)")
        err, cand, keep, dets, by = built[-1] if tries[-1]["ok"] else min(built, key=lambda b: b[0])
        move_model(cand.path, out)
        kept = QuantizeResult(out, cand.meta, cand.record, cand.exclusion)
        return GuardResult(
            kept, keep, tries, bool(err <= bound), bound, len(heldout), dets, sens,
            builder=by, method=_method(by),
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
