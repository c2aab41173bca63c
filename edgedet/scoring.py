"""One way to score a detector on a labelled dataset: `score`.

Every command that reports an mAP (bench, calibrate, train's validation, export, prune, distill,
qat) calls `score` with a `Detector` (for a torch module, `torch_detector` wraps it in the torch
runtime) and an `EvalProtocol`, so the same model on the same images gets the same number from
every command. The detections are made by the detector itself, with the protocol's thresholds
applied for the pass and the detector's own settings restored afterwards; the mAP comes from
`edgedet.eval.metrics.evaluate` (faster-coco-eval or pycocotools).

    >>> from edgedet.scoring import score
    >>> result = score(edgedet.load("yolox_nano.onnx", family="yolox"), "coco_val/")
    >>> result.map50_95, result.protocol.describe(), result.report.per_class_ap["person"]
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidInputError
from .protocol import EvalProtocol, protocol_of


@dataclass
class ScoreResult:
    """What `score` measured.

    ``report``: the `edgedet.eval.metrics.AccuracyReport` (mAP50-95, per-class AP, P/R at the deploy
    threshold...). ``detections``: ``{image_id: Detections}`` in original-image pixels, class ids
    indexing ``class_names``, as the mAP saw them (for paired bootstrap intervals).
    ``protocol``: the `EvalProtocol` used. ``seconds``: wall time of the prediction pass.
    """

    report: Any
    detections: dict[int, Any] = field(repr=False)
    protocol: EvalProtocol
    class_names: tuple[str, ...]
    images: int
    seconds: float

    @property
    def map50_95(self) -> float:
        return float(self.report.map50_95)

    @property
    def map50(self) -> float:
        return float(self.report.map50)

    def to_dict(self) -> dict[str, Any]:
        """The report's numbers plus ``protocol`` (JSON-safe; detections left out)."""
        return {**self.report.to_dict(), "protocol": self.protocol.to_dict()}


def as_dataset(data: Any, class_names: Any = None) -> Any:
    """A `DetectionDataset` from a path (``class_names`` for YOLO folders without names), or
    ``data`` itself when it already is one."""
    if isinstance(data, (str, Path)):
        from .data import load_dataset

        return load_dataset(data, class_names=class_names) if class_names else load_dataset(data)
    return data


@contextlib.contextmanager
def applied(detector: Any, protocol: EvalProtocol, *, deploy: bool = False) -> Iterator[Any]:
    """Run ``detector`` with ``protocol``'s mAP settings (``deploy``: its deployment settings)
    inside the block; its own settings (score / IoU threshold, max detections, NMS kind,
    multi-label) come back afterwards."""
    names = ("score_threshold", "iou_threshold", "max_detections", "nms", "multi_label")
    saved = {n: getattr(detector, n) for n in names}
    settings = protocol.deploy_settings() if deploy else protocol.detector_settings()
    try:
        for key, value in settings.items():
            setattr(detector, key, value)
        check = getattr(detector, "_validate_settings", None)
        if check is not None:
            check()
        yield detector
    finally:
        for key, value in saved.items():
            setattr(detector, key, value)


def check_classes(
    class_names: Sequence[str],
    dataset: Any,
    *,
    aliases: Mapping[str, str] | None = None,
    data_flag: str = "--val",
) -> None:
    """Raise `InvalidInputError` naming ``data_flag`` when no model class matches a class of
    ``dataset`` (nothing could be scored)."""
    from .data.classmap import map_classes

    cmap = map_classes(tuple(class_names), dataset.class_names, aliases)
    if not cmap.model_to_dataset:
        raise InvalidInputError(
            f"{data_flag} {dataset.name!r}: none of its classes "
            f"{list(dataset.class_names[:8])} matches a class of the model "
            f"{list(class_names[:8])}{'...' if len(class_names) > 8 else ''}; give {data_flag} a "
            "dataset labelled with the model's classes (or map names with --alias MODEL=DATA "
            "where the command has it)"
        )


def predict(
    detector: Any,
    dataset: Any,
    *,
    samples: Sequence[Any] | None = None,
    batch: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, Any]:
    """``{image_id: Detections}`` of ``detector`` (as it is set) over ``samples`` (default: all
    of ``dataset``), ``batch`` images per call (a fixed-batch model uses its own batch)."""
    chosen = list(dataset.samples if samples is None else samples)
    step = max(1, int(getattr(detector, "fixed_batch", None) or batch))
    out: dict[int, Any] = {}
    for start in range(0, len(chosen), step):
        chunk = chosen[start : start + step]
        images = [dataset.read_image(s) for s in chunk]
        dets = detector.predict_batch(images, batch_size=step) if step > 1 else [detector(images[0])]
        for s, d in zip(chunk, dets):
            out[s.image_id] = d
        if progress is not None:
            progress(min(start + step, len(chosen)), len(chosen))
    return out


def score(
    detector: Any,
    dataset: Any,
    protocol: EvalProtocol | None = None,
    *,
    samples: Sequence[Any] | None = None,
    batch: int = 1,
    aliases: Mapping[str, str] | None = None,
    safety_classes: Sequence[str] | None = None,
    deploy_threshold: float | None = None,
    backend: str = "faster-coco-eval",
    data_flag: str = "--val",
    progress: Callable[[int, int], None] | None = None,
) -> ScoreResult:
    """Score ``detector`` on ``dataset`` under ``protocol``.

    Args:
        detector: an `edgedet.Detector` (any runtime; `torch_detector` for a torch module).
        dataset: a `DetectionDataset` or a dataset folder/file path.
        protocol: the `EvalProtocol`; default: the detector's (`protocol_of`: its meta's, else
            its family's published validator).
        samples: the dataset samples to score (default: all).
        batch: images per inference call.
        aliases / safety_classes / deploy_threshold / backend: as `edgedet.eval.metrics.evaluate`;
            ``deploy_threshold`` defaults to the protocol's ``deploy_score_threshold``.
        data_flag: the command-line flag that named ``dataset``, for error messages.

    Raises:
        InvalidInputError: an empty dataset, or no model class among the dataset's classes
            (the message names ``data_flag``).
    """
    from .eval.metrics import DEFAULT_SAFETY_CLASSES, evaluate

    proto = protocol if protocol is not None else protocol_of(detector)
    ds = as_dataset(dataset)
    chosen = list(ds.samples if samples is None else samples)
    if not chosen:
        raise InvalidInputError(f"{data_flag} {ds.name!r}: the dataset has no images to score")
    check_classes(detector.class_names, ds, aliases=aliases, data_flag=data_flag)
    t0 = time.perf_counter()
    with applied(detector, proto):
        dets = predict(detector, ds, samples=chosen, batch=batch, progress=progress)
    seconds = time.perf_counter() - t0
    report = evaluate(
        ds,
        dets,
        detector.class_names,
        aliases=aliases,
        safety_classes=(
            tuple(safety_classes) if safety_classes is not None else DEFAULT_SAFETY_CLASSES
        ),
        deploy_threshold=(
            proto.deploy_score_threshold if deploy_threshold is None else deploy_threshold
        ),
        backend=backend,
        image_ids=[s.image_id for s in chosen],
    )
    return ScoreResult(report, dets, proto, tuple(detector.class_names), len(chosen), seconds)


def torch_detector(
    module: Any,
    meta: Any,
    *,
    input_name: str | None = None,
    output_names: Sequence[str] = ("output",),
    device: str | None = None,
) -> Any:
    """A `Detector` over an ``nn.Module`` through the torch runtime, fed and decoded as the
    module's ONNX export would be (``meta``: its `ModelMeta`, with ``input_size``).

    The module takes ``[B, 3, H, W]`` float32 and returns the export's outputs (e.g. an edgedet
    model wrapped in `edgedet.train.models.net.ExportModel`: ``output [B, N, 4 + nc]``). The
    batch axis stays dynamic, so `score` may run several images per call."""
    from .detector import Detector
    from .runtimes.base import TensorSpec
    from .runtimes.torch_runtime import TorchRuntime

    if meta.input_size is None:
        raise InvalidInputError("torch_detector needs meta.input_size (h, w)")
    h, w = meta.input_size
    name = input_name or meta.input_name or "images"
    rt = TorchRuntime(
        module,
        device=device,
        input_name=name,
        output_names=tuple(output_names),
        input_shape=(1, 3, h, w),  # static for the dry run that gives the output shapes
    )
    # Then a dynamic batch axis, as an export with dynamic_batch=True has.
    rt.inputs = (TensorSpec(name, (None, 3, h, w), rt.inputs[0].dtype),)
    rt.outputs = tuple(TensorSpec(s.name, (None, *s.shape[1:]), s.dtype) for s in rt.outputs)
    return Detector(rt, meta)
