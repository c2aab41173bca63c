"""Matching a model's class names to a dataset's.

A COCO model evaluated on KITTI predicts ``person`` where KITTI says ``Pedestrian``. `map_classes`
pairs model classes with dataset classes by name, case-insensitively, in this order of priority:

1. the same name (``car`` = ``Car``);
2. the caller's ``aliases``, written **model name -> dataset name**
   (``{"person": "Pedestrian", "bicycle": "Cyclist"}``); entries whose model name the model
   does not have, or whose dataset name the dataset does not have, are skipped, so one alias
   table can serve several models;
3. the built-in `DEFAULT_ALIASES`, written **dataset name -> model name** because several
   dataset names may stand for one model class (KITTI ``Pedestrian`` and ``Person_sitting`` are
   both COCO ``person``). Pass ``defaults=False`` to turn them off.

The mapping is one-to-one: a model class gets at most one dataset class and the other way round
(the first match in the order above wins; ties go to the earlier class). Everything left over is
listed in ``unmapped_model`` / ``unmapped_dataset``; evaluation drops predictions of unmapped model
classes and ground truth of unmapped dataset classes, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import InvalidInputError

#: Built-in synonyms, dataset name -> model name, lower-case: KITTI and Pascal VOC names to COCO.
DEFAULT_ALIASES: Mapping[str, str] = {
    # KITTI -> COCO
    "pedestrian": "person",
    "person_sitting": "person",
    "cyclist": "bicycle",
    "tram": "train",
    # Pascal VOC -> COCO
    "aeroplane": "airplane",
    "motorbike": "motorcycle",
    "sofa": "couch",
    "tvmonitor": "tv",
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    # common spellings
    "people": "person",
    "bike": "bicycle",
    "motorbikes": "motorcycle",
    "traffic_light": "traffic light",
    "stop_sign": "stop sign",
}


@dataclass(frozen=True)
class ClassMap:
    """Which model class stands for which dataset class.

    Attributes:
        model_to_dataset: model class id -> dataset class id (one-to-one).
        unmapped_model: model class names with no dataset class.
        unmapped_dataset: dataset class names no model class stands for.
        model_names / dataset_names: the two name lists the map was built from.
    """

    model_to_dataset: dict[int, int]
    unmapped_model: tuple[str, ...]
    unmapped_dataset: tuple[str, ...]
    model_names: tuple[str, ...] = field(default=(), compare=False)
    dataset_names: tuple[str, ...] = field(default=(), compare=False)

    @property
    def dataset_to_model(self) -> dict[int, int]:
        return {d: m for m, d in self.model_to_dataset.items()}

    def describe(self) -> str:
        """One line per pair, e.g. ``person -> Pedestrian``; for logs and reports."""
        lines = [
            f"{self.model_names[m] if self.model_names else m} -> "
            f"{self.dataset_names[d] if self.dataset_names else d}"
            for m, d in sorted(self.model_to_dataset.items())
        ]
        return "\n".join(lines)


def _key(name: str) -> str:
    return " ".join(str(name).strip().lower().split())


def map_classes(
    model_names: Sequence[str],
    dataset_names: Sequence[str],
    aliases: Mapping[str, str] | None = None,
    *,
    defaults: bool = True,
) -> ClassMap:
    """Pair model classes with dataset classes by name (see the module docstring for the rules).

    >>> cm = map_classes(["person", "bicycle", "car"], ["Car", "Pedestrian", "Van"])
    >>> cm.model_to_dataset
    {0: 1, 2: 0}
    >>> cm.unmapped_model, cm.unmapped_dataset
    (('bicycle',), ('Van',))
    """
    if isinstance(model_names, str) or isinstance(dataset_names, str):
        raise InvalidInputError("map_classes takes sequences of class names, not one string")
    if aliases is not None and not isinstance(aliases, Mapping):
        raise InvalidInputError(
            f"aliases must be a mapping of model name -> dataset name, got {type(aliases).__name__}"
        )
    model = [_key(n) for n in model_names]
    data = [_key(n) for n in dataset_names]
    model_index: dict[str, int] = {}
    for i, k in enumerate(model):
        model_index.setdefault(k, i)
    data_index: dict[str, int] = {}
    for i, k in enumerate(data):
        data_index.setdefault(k, i)

    pairs: dict[int, int] = {}
    used_data: set[int] = set()

    def pair(m: int | None, d: int | None) -> None:
        if m is None or d is None or m in pairs or d in used_data:
            return
        pairs[m] = d
        used_data.add(d)

    # 1. same name
    for m, k in enumerate(model):
        pair(m, data_index.get(k))
    # 2. caller's aliases, model -> dataset
    for mk, dk in (aliases or {}).items():
        pair(model_index.get(_key(mk)), data_index.get(_key(dk)))
    # 3. built-in aliases, dataset -> model
    if defaults:
        for dk, mk in DEFAULT_ALIASES.items():
            pair(model_index.get(_key(mk)), data_index.get(_key(dk)))

    ordered = dict(sorted(pairs.items()))
    return ClassMap(
        model_to_dataset=ordered,
        unmapped_model=tuple(str(n) for i, n in enumerate(model_names) if i not in pairs),
        unmapped_dataset=tuple(str(n) for i, n in enumerate(dataset_names) if i not in used_data),
        model_names=tuple(str(n) for n in model_names),
        dataset_names=tuple(str(n) for n in dataset_names),
    )
