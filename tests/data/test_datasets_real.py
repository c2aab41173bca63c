"""Readers on the real datasets in ../shared/testdata/datasets."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edgedet.data import (
    ANY_CLASS,
    DatasetError,
    DetectionDataset,
    detect_layout,
    load_dataset,
)
from edgedet.meta import COCO80

pytestmark = pytest.mark.testdata


@pytest.fixture(scope="module")
def coco_tiny(datasets_dir: Path) -> DetectionDataset:
    return load_dataset(datasets_dir / "coco_tiny_val2017")


@pytest.fixture(scope="module")
def coco128(datasets_dir: Path) -> DetectionDataset:
    return load_dataset(datasets_dir / "coco128", class_names="coco")


@pytest.fixture(scope="module")
def kitti(datasets_dir: Path) -> DetectionDataset:
    return load_dataset(datasets_dir / "kitti_tiny")


def test_detect_layout(datasets_dir: Path) -> None:
    assert detect_layout(datasets_dir / "coco_tiny_val2017")[0] == "coco"
    fmt, what = detect_layout(datasets_dir / "coco128")
    assert fmt == "yolo" and "labels" in what
    fmt, what = detect_layout(datasets_dir / "kitti_tiny")
    assert fmt == "kitti" and "75 label files" in what
    json_file = datasets_dir / "coco_tiny_val2017" / "annotations" / "instances_val2017.json"
    assert detect_layout(json_file)[0] == "coco"


def test_coco_tiny(coco_tiny: DetectionDataset, datasets_dir: Path) -> None:
    ds = coco_tiny
    assert ds.format == "coco" and len(ds) == 80 and ds.problems == []
    assert ds.class_names == COCO80
    assert sum(len(s.gt) for s in ds) == 815
    n_crowd = sum(int(s.gt.ignore.sum()) for s in ds)
    assert n_crowd == 11 and ds.num_objects() == 815 - 11
    assert ds.category_ids is not None and ds.category_ids[:3] == (1, 2, 3)
    assert ds.category_ids[-1] == 90  # original COCO ids kept beside contiguous 0..79
    # bbox xywh -> xyxy: the first annotation of image 532481 is [250.82, 168.26, 70.11, 64.88]
    s = ds.by_id(532481)
    assert (s.width, s.height) == (640, 426)
    i = int(np.argmin(np.abs(s.gt.xyxy[:, 0] - 250.82)))
    np.testing.assert_allclose(
        s.gt.xyxy[i], [250.82, 168.26, 250.82 + 70.11, 168.26 + 64.88], atol=1e-3
    )
    assert s.gt.class_ids[i] == 0  # person
    image = ds.read_image(s)
    assert image.shape == (426, 640, 3) and image.dtype == np.uint8
    # loading the JSON file directly gives the same dataset
    direct = load_dataset(
        datasets_dir / "coco_tiny_val2017" / "annotations" / "instances_val2017.json"
    )
    assert direct.image_ids == ds.image_ids


def test_coco128(coco128: DetectionDataset) -> None:
    ds = coco128
    assert ds.format == "yolo" and len(ds) == 126 + 2
    assert ds.class_names == COCO80
    assert ds.num_objects() == 929
    no_label = [p for p in ds.problems if p.startswith("note:") and "no label file" in p]
    assert len(no_label) == 2 and "000000000250" in no_label[0]
    orphan = [p for p in ds.problems if "label file has no image" in p]
    assert len(orphan) == 2 and orphan[0].startswith("labels/train2017/000000000656.txt")
    empty = [s for s in ds if len(s.gt) == 0]
    assert {s.path.stem for s in empty} >= {"000000000250", "000000000508"}
    gray = next(s for s in ds if s.path.name == "000000000086.jpg")
    image = ds.read_image(gray)
    assert image.shape == (gray.height, gray.width, 3)
    # boxes are in pixels, inside the image
    for s in ds:
        assert np.all(s.gt.xyxy >= 0) and np.all(s.gt.xyxy[:, 2] <= s.width)
        assert np.all(s.gt.xyxy[:, 3] <= s.height)


def test_coco128_stop_raises_at_orphan_label(datasets_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"000000000656\.txt: label file has no image"):
        load_dataset(datasets_dir / "coco128", class_names="coco", on_error="stop")


def test_coco128_without_names(datasets_dir: Path) -> None:
    ds = load_dataset(datasets_dir / "coco128")
    assert ds.class_names[0] == "class_0" and len(ds.class_names) == 80
    assert any("class_names='coco'" in p for p in ds.problems)


def test_kitti(kitti: DetectionDataset) -> None:
    ds = kitti
    assert ds.format == "kitti" and len(ds) == 75 and ds.problems == []
    assert ds.class_names == (
        "Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc",
    )  # fmt: skip
    assert ds.class_counts() == {
        "Car": 209, "Van": 25, "Truck": 10, "Pedestrian": 36, "Person_sitting": 5,
        "Cyclist": 14, "Tram": 9, "Misc": 3,
    }  # fmt: skip
    dontcare = sum(int(((s.gt.class_ids == ANY_CLASS) & s.gt.ignore).sum()) for s in ds)
    assert dontcare == 188
    assert ds.num_objects() == 209 + 14 + 3 + 36 + 5 + 9 + 10 + 25
    s = ds[0]
    assert s.path.name == "000000.jpeg" and (s.width, s.height) == (1224, 370)
    np.testing.assert_allclose(s.gt.xyxy[0], [712.40, 143.00, 810.73, 307.92], atol=1e-3)
    assert ds.class_names[s.gt.class_ids[0]] == "Pedestrian"
    assert ds.read_image(s).shape == (370, 1224, 3)


def test_verify_images_on_real_data(datasets_dir: Path) -> None:
    t0 = time.perf_counter()
    ds = load_dataset(datasets_dir / "kitti_tiny", verify_images=True)
    assert len(ds) == 75 and ds.problems == []
    assert time.perf_counter() - t0 < 10


def test_subset_is_reproducible(coco_tiny: DetectionDataset) -> None:
    a = coco_tiny.subset(10, seed=3)
    b = coco_tiny.subset(10, seed=3)
    assert a.image_ids == b.image_ids and len(a) == 10
    assert a.image_ids != coco_tiny.subset(10, seed=4).image_ids
    # kept in dataset order
    order = {i: k for k, i in enumerate(coco_tiny.image_ids)}
    assert [order[i] for i in a.image_ids] == sorted(order[i] for i in a.image_ids)
    first = coco_tiny.subset(5, seed=None)
    assert first.image_ids == coco_tiny.image_ids[:5]
    assert len(coco_tiny.subset(1000)) == 80
    assert a.class_names == coco_tiny.class_names and a.category_ids == coco_tiny.category_ids


def test_loading_is_fast(datasets_dir: Path) -> None:
    t0 = time.perf_counter()
    for name in ("coco_tiny_val2017", "coco128", "kitti_tiny"):
        load_dataset(datasets_dir / name)
    assert time.perf_counter() - t0 < 3.0


@pytest.mark.parametrize("sub", ["images", "images/train2017"])
def test_coco128_from_its_images_folder(datasets_dir: Path, sub: str) -> None:
    ds = load_dataset(datasets_dir / "coco128" / sub, class_names="coco")
    assert ds.root == datasets_dir / "coco128" and len(ds) == 128
    assert ds.num_objects() == 929
    assert sum("label file has no image" in p for p in ds.problems) == 2
