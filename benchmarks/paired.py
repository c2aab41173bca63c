"""Paired bootstrap between the configurations of one bench run: how sure is "the INT8 model
keeps 99.2% of float" on these images?

Configurations scored on the same images with the same class names form a group; the first one
that ran is the group's reference (put the float model first). For every other configuration
the accuracy section gains ``vs_reference``: the difference and ratio of mAP50-95 to the
reference with their intervals, and the share of resamples in which it scored higher
(`edgedet.bootstrap.bootstrap_map`, the same resamples for every configuration of the group).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .records import get_path
from .runner import load_detections


def _group_key(record: dict[str, Any]) -> tuple[Any, ...]:
    return (
        record.get("dataset_path"),
        record.get("images"),
        tuple(record.get("class_names") or ()),
        tuple(sorted((get_path(record, "config.aliases") or {}).items())),
    )


def add_paired_intervals(
    records: Sequence[dict[str, Any]], *, resamples: int, seed: int = 0
) -> list[str]:
    """Write ``accuracy.vs_reference`` into each ok record that has a reference (see the module
    docstring); records need ``detections_file`` and ``class_names``. Returns messages about
    records that could not be compared (missing detections file)."""
    from edgedet.bootstrap import bootstrap_map
    from edgedet.data import load_dataset

    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    notes: list[str] = []
    for r in records:
        if r.get("status") != "ok" or not isinstance(r.get("accuracy"), dict):
            continue
        if not r.get("detections_file") or not r.get("class_names"):
            notes.append(f"{r.get('model_name')} {r.get('runtime')}: no detections saved")
            continue
        groups.setdefault(_group_key(r), []).append(r)
    for members in groups.values():
        if len(members) < 2:
            continue
        ref = members[0]
        dataset = load_dataset(ref["dataset_path"])
        preds = {str(i): load_detections(r["detections_file"]) for i, r in enumerate(members)}
        result = bootstrap_map(
            dataset,
            preds,
            ref["class_names"],
            reference="0",
            resamples=resamples,
            seed=seed,
            aliases=get_path(ref, "config.aliases"),
            image_ids=sorted(preds["0"]),
        )
        label = f"{ref.get('model_name')} {ref.get('runtime')} {ref.get('precision')}"
        for i, r in enumerate(members[1:], start=1):
            key = str(i)
            r["accuracy"]["vs_reference"] = {
                "reference": label,
                "difference": result.differences[key].to_dict(),
                "ratio": result.ratios[key].to_dict(),
                "p_higher": result.p_higher[key],
                "resamples": result.resamples,
                "seed": result.seed,
            }
    return notes
