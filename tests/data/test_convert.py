"""Converting between formats, and COCO JSON writing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgedet.data import (
    ANY_CLASS,
    DatasetError,
    DetectionDataset,
    convert_dataset,
    load_dataset,
    write_coco_json,
)
from edgedet.errors import InvalidInputError


def _same(a: DetectionDataset, b: DetectionDataset, *, atol: float, keep_ignore: bool) -> None:
    assert len(a) == len(b)
    by_name = {s.path.name: s for s in b}
    assert set(by_name) == {s.path.name for s in a}
    for sa in a:
        sb = by_name[sa.path.name]
        assert (sa.width, sa.height) == (sb.width, sb.height)
        ga, gb = sa.gt, sb.gt
        if not keep_ignore:
            ga_x, ga_c = ga.xyxy[~ga.ignore], ga.class_ids[~ga.ignore]
        else:
            ga_x, ga_c = ga.xyxy, ga.class_ids
        gb_x, gb_c = gb.xyxy, gb.class_ids
        np.testing.assert_allclose(gb_x, ga_x, atol=atol)
        assert [b.class_names[c] if c >= 0 else None for c in gb_c] == [
            a.class_names[c] if c >= 0 else None for c in ga_c
        ]


@pytest.mark.testdata
@pytest.mark.parametrize("to", ["coco", "yolo", "voc"])
def test_coco_round_trip(datasets_dir: Path, tmp_path: Path, to: str) -> None:
    src = load_dataset(datasets_dir / "coco_tiny_val2017").subset(12, seed=1)
    out = convert_dataset(src, tmp_path / "out", to)
    assert out == tmp_path / "out" and not list(tmp_path.glob(".out.*"))
    back = load_dataset(out)
    assert back.format == to and back.problems == []
    if to == "yolo":  # no ignore regions in YOLO; class list is the full 80
        _same(src, back, atol=2e-3 * 640, keep_ignore=False)
    else:
        _same(src, back, atol=1e-2, keep_ignore=True)
        ign = {s.path.name: s.gt.ignore.tolist() for s in back}
        assert ign == {s.path.name: s.gt.ignore.tolist() for s in src}
    if to == "coco":
        assert back.category_ids == src.category_ids  # original COCO ids survive


@pytest.mark.testdata
def test_kitti_round_trip(datasets_dir: Path, tmp_path: Path) -> None:
    src = load_dataset(datasets_dir / "kitti_tiny").subset(10, seed=0)
    back = load_dataset(convert_dataset(src, tmp_path / "k", "kitti"))
    assert back.class_names == src.class_names or set(back.class_names) <= set(src.class_names)
    _same(src, back, atol=1e-2, keep_ignore=True)
    via_coco = load_dataset(convert_dataset(src, tmp_path / "c", "coco"))
    # a DontCare region becomes one crowd box per class in COCO
    n_dc = sum(int((s.gt.class_ids == ANY_CLASS).sum()) for s in src)
    assert sum(int(s.gt.ignore.sum()) for s in via_coco) == n_dc * len(src.class_names)


def test_convert_refuses_non_empty_target(tmp_path: Path) -> None:
    ds = DetectionDataset("x", tmp_path, "coco", ["a"], [])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(DatasetError, match="already exists and is not empty"):
        convert_dataset(ds, tmp_path / "out", "yolo")
    with pytest.raises(InvalidInputError, match="to must be one of"):
        convert_dataset(ds, tmp_path / "o2", "tfrecord")


def test_failed_conversion_leaves_nothing(tmp_path: Path) -> None:
    from edgedet.data import Annotation, Sample

    s = Sample(1, tmp_path / "missing.jpg", 10, 10, Annotation.empty())
    ds = DetectionDataset("x", tmp_path, "coco", ["a"], [s])
    with pytest.raises(FileNotFoundError):
        convert_dataset(ds, tmp_path / "out", "coco")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.testdata
def test_write_coco_json(datasets_dir: Path, tmp_path: Path) -> None:
    src = load_dataset(datasets_dir / "coco_tiny_val2017")
    path = write_coco_json(src, tmp_path / "gt.json")
    data = json.loads(path.read_text())
    assert len(data["images"]) == 80 and len(data["annotations"]) == 815
    assert data["images"][0]["file_name"] == "val2017/000000532481.jpg"
    assert sum(a["iscrowd"] for a in data["annotations"]) == 11
    a = data["annotations"][0]
    assert a["area"] == pytest.approx(2188.0865, abs=1e-3)  # the file's segmentation area, kept
    yolo = load_dataset(convert_dataset(src.subset(3), tmp_path / "y", "yolo"))
    s = yolo[0]
    assert s.gt.area is None
    np.testing.assert_allclose(
        s.gt.areas, np.prod(s.gt.xyxy[:, 2:] - s.gt.xyxy[:, :2], axis=1), rtol=1e-6
    )
    assert {c["id"] for c in data["categories"]} == set(src.category_ids or ())
