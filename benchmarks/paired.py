"""Bootstrap intervals for a bench run's configurations, computed in the parent process from
the detections each worker saved (so the bootstrap's memory never shows in a worker's peak RSS).

Configurations scored on the same images with the same class names and aliases form a group
(`pairing_key`); the first of the group that ran is its reference (put the float model first).
Every ok record gets ``accuracy.map50_95_ci``; every other member of a group also gets
``accuracy.vs_reference``: the difference and ratio of mAP50-95 to the reference with their
intervals, and the share of resamples in which it scored higher (`edgedet.eval.bootstrap`, the same
resamples for the whole group). A group whose bootstrap fails gets ``accuracy.interval_reason``
instead; the run's other results are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from edgedet.errors import EdgedetError, InvalidInputError

from .plot import point_label
from .records import get_path
from .runner import load_detections

if TYPE_CHECKING:
    from edgedet.eval.bootstrap import BootstrapResult


def pairing_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """Records with equal keys were scored on the same images in the same way, so their
    detections can be compared paired."""
    return (
        record.get("dataset_path"),
        record.get("images"),
        tuple(record.get("class_names") or ()),
        tuple(sorted((get_path(record, "config.aliases") or {}).items())),
    )


def config_label(record: Mapping[str, Any]) -> str:
    """Model, precision, runtime, input size and threads: enough to tell sweep rows apart."""
    size = record.get("imgsz")
    size_text = "x".join(map(str, size)) if isinstance(size, (list, tuple)) else size
    parts = [point_label(record), str(record.get("runtime")), f"imgsz {size_text}"]
    if record.get("threads"):
        parts.append(f"{record['threads']} threads")
    return " ".join(parts)


def paired_bootstrap(
    members: Sequence[Mapping[str, Any]], *, resamples: int, seed: int = 0
) -> BootstrapResult:
    """`bootstrap_map` over the saved detections of records with one `pairing_key`: models
    ``"0"``, ``"1"``... in the order given, ``"0"`` the reference.

    Raises:
        InvalidInputError: the records' detections do not cover the same images.
        EdgedetError / OSError: a detections file or the dataset cannot be read.
    """
    from edgedet.data import load_dataset
    from edgedet.eval.bootstrap import bootstrap_map

    ref = members[0]
    preds = {str(i): load_detections(r["detections_file"]) for i, r in enumerate(members)}
    if any(set(p) != set(preds["0"]) for p in preds.values()):
        raise InvalidInputError("the detections files do not cover the same images")
    return bootstrap_map(
        load_dataset(ref["dataset_path"]),
        preds,
        ref["class_names"],
        reference="0",
        resamples=resamples,
        seed=seed,
        aliases=get_path(ref, "config.aliases"),
        image_ids=sorted(preds["0"]),
    )


def add_intervals(records: Sequence[dict[str, Any]], *, resamples: int, seed: int = 0) -> list[str]:
    """Write the intervals described in the module docstring into the records (in place).
    Records need ``detections_file`` and ``class_names``. Returns messages about records that
    got no interval (no detections saved, or the bootstrap failed)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    notes: list[str] = []
    for r in records:
        if r.get("status") != "ok" or not isinstance(r.get("accuracy"), dict):
            continue
        if not r.get("detections_file") or not r.get("class_names"):
            notes.append(f"{config_label(r)}: no detections saved")
            continue
        groups.setdefault(pairing_key(r), []).append(r)
    for members in groups.values():
        ref = members[0]
        try:
            result = paired_bootstrap(members, resamples=resamples, seed=seed)
        except (EdgedetError, OSError, ValueError, MemoryError) as err:
            for r in members:
                r["accuracy"]["interval_reason"] = f"bootstrap failed: {err}"
                notes.append(f"{config_label(r)}: bootstrap failed: {err}")
            continue
        for i, r in enumerate(members):
            key = str(i)
            r["accuracy"]["map50_95_ci"] = {
                **result.intervals[key].to_dict(),
                "resamples": result.resamples,
                "seed": result.seed,
                "images": result.images,
                "method": "percentile bootstrap over images",
            }
            if i == 0:
                continue
            r["accuracy"]["vs_reference"] = {
                "reference": config_label(ref),
                "difference": result.differences[key].to_dict(),
                "ratio": result.ratios[key].to_dict(),
                "p_higher": result.p_higher[key],
                "resamples": result.resamples,
                "seed": result.seed,
                "images": result.images,
            }
    return notes
