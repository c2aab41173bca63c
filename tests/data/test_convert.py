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


def test_failed_conversion_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2
    import numpy as np

    from edgedet.data import Annotation, Sample, coco

    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "ok.png"), np.zeros((10, 10, 3), np.uint8))
    s = Sample(1, src / "ok.png", 10, 10, Annotation.empty())
    ds = DetectionDataset("x", src, "coco", ["a"], [s])

    def vanished(a: Path, b: Path) -> None:
        raise FileNotFoundError(a)

    monkeypatch.setattr(coco, "place_image", vanished)  # the COCO writer places each image
    with pytest.raises(FileNotFoundError):
        convert_dataset(ds, tmp_path / "out", "coco")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_conversion_with_no_readable_image_refused(tmp_path: Path) -> None:
    from edgedet.data import Annotation, Sample

    s = Sample(1, tmp_path / "missing.jpg", 10, 10, Annotation.empty())
    ds = DetectionDataset("x", tmp_path, "coco", ["a"], [s])
    with pytest.raises(DatasetError, match=r"no image of the dataset could be converted"):
        convert_dataset(ds, tmp_path / "out", "coco")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert any("missing.jpg: image file not found" in p for p in ds.problems)


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


def _boxes_strategy():  # type: ignore[no-untyped-def]
    from hypothesis import strategies as st

    coord = st.floats(0, 1, allow_nan=False)
    box = st.tuples(coord, coord, coord, coord, st.integers(0, 2), st.booleans())
    return st.lists(box, max_size=6)


@pytest.mark.parametrize("to", ["coco", "yolo", "voc", "kitti"])
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, to: str) -> None:
    """Any boxes inside the image survive a write and a read in every format."""
    import cv2
    from hypothesis import HealthCheck, given, settings

    from edgedet.data import Annotation, Sample

    base = tmp_path_factory.mktemp("prop")
    img = base / "a.png"
    cv2.imwrite(str(img), np.zeros((60, 80, 3), np.uint8))
    counter = iter(range(10**6))

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_boxes_strategy())
    def check(raw: list[tuple[float, float, float, float, int, bool]]) -> None:
        xyxy = np.array(
            [
                [min(a, c) * 80, min(b, d) * 60, max(a, c) * 80, max(b, d) * 60]
                for a, b, c, d, *_ in raw
            ],
            np.float32,
        ).reshape(-1, 4)
        # Every reader lists zero-size boxes as problems (they never match); YOLO / VOC / KITTI
        # files round coordinates (2 decimals in pixels), so a box under 0.02 px collapses there.
        least = 0.0 if to == "coco" else 0.02
        keep = (xyxy[:, 2] - xyxy[:, 0] > least) & (xyxy[:, 3] - xyxy[:, 1] > least)
        xyxy, raw = xyxy[keep], [r for r, k in zip(raw, keep) if k]
        cls = np.array([r[4] for r in raw], np.int32)
        ign = (
            np.array([r[5] for r in raw], bool)
            if to in ("coco", "voc")
            else np.zeros(len(raw), bool)
        )
        ds = DetectionDataset(
            "p", base, "coco", ["a", "b", "c"], [Sample(1, img, 80, 60, Annotation(xyxy, cls, ign))]
        )
        back = load_dataset(
            convert_dataset(ds, base / f"out{next(counter)}", to),
            class_names=["a", "b", "c"] if to != "coco" else None,
            on_error="stop",
        )
        g = back[0].gt
        assert len(g) == len(xyxy)
        free = list(range(len(g)))
        for box, c, ig in zip(xyxy, cls, ign):  # order may change: match each box once
            hit = next(
                (
                    k
                    for k in free
                    if np.allclose(g.xyxy[k], box, atol=0.01)
                    and g.class_ids[k] == c
                    and g.ignore[k] == ig
                ),
                None,
            )
            assert hit is not None, (box, c, ig, g.xyxy, g.class_ids, g.ignore)
            free.remove(hit)

    check()
