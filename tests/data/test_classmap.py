"""Class maps between a model's names and a dataset's."""

from __future__ import annotations

import pytest

from edgedet.data import DEFAULT_ALIASES, KITTI_CLASSES, map_classes
from edgedet.errors import InvalidInputError
from edgedet.meta import COCO80


def test_same_names_case_insensitive() -> None:
    cm = map_classes(["Person", "CAR", "dog"], ["car", "person"])
    assert cm.model_to_dataset == {0: 1, 1: 0}
    assert cm.unmapped_model == ("dog",) and cm.unmapped_dataset == ()
    assert cm.dataset_to_model == {1: 0, 0: 1}


def test_kitti_defaults() -> None:
    cm = map_classes(COCO80, KITTI_CLASSES)
    pairs = {COCO80[m]: KITTI_CLASSES[d] for m, d in cm.model_to_dataset.items()}
    assert pairs == {
        "person": "Pedestrian",  # DEFAULT_ALIASES lists pedestrian before person_sitting
        "bicycle": "Cyclist",
        "car": "Car",
        "train": "Tram",
        "truck": "Truck",
    }
    assert set(cm.unmapped_dataset) == {"Van", "Person_sitting", "Misc"}
    assert "dog" in cm.unmapped_model and len(cm.unmapped_model) == 75
    assert "person -> Pedestrian" in cm.describe()


def test_user_aliases_model_to_dataset_win_over_defaults() -> None:
    cm = map_classes(
        COCO80,
        KITTI_CLASSES,
        {"person": "person_sitting", "car": "Van", "not a model class": "Car"},
    )
    pairs = {COCO80[m]: KITTI_CLASSES[d] for m, d in cm.model_to_dataset.items()}
    assert pairs["person"] == "Person_sitting"
    assert pairs["car"] == "Car"  # an exact name beats an alias
    assert "Pedestrian" in cm.unmapped_dataset and "Van" in cm.unmapped_dataset


def test_no_defaults_and_voc_names() -> None:
    assert map_classes(COCO80, KITTI_CLASSES, defaults=False).model_to_dataset.keys() == {2, 7}
    voc = ("aeroplane", "motorbike", "tvmonitor", "diningtable", "pottedplant", "sofa")
    cm = map_classes(COCO80, voc)
    assert len(cm.model_to_dataset) == 6 and cm.unmapped_dataset == ()
    assert all(k == k.lower() for k in DEFAULT_ALIASES)


def test_one_to_one() -> None:
    cm = map_classes(["person", "pedestrian"], ["Pedestrian"])
    assert cm.model_to_dataset == {1: 0} and cm.unmapped_model == ("person",)


def test_bad_arguments() -> None:
    with pytest.raises(InvalidInputError, match="sequences of class names, not one string"):
        map_classes("person", ["person"])
    with pytest.raises(
        InvalidInputError, match="aliases must be a mapping of model name -> dataset"
    ):
        map_classes(["a"], ["a"], [("a", "b")])  # type: ignore[arg-type]
