"""Readers on small hand-written fixtures: VOC, and every located error."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedet.data import (
    ANY_CLASS,
    Annotation,
    DatasetError,
    detect_layout,
    load_dataset,
)
from edgedet.errors import InvalidInputError


def _img(path: Path, w: int = 64, h: int = 48, ext: str = ".jpg") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((h, w, 3), 90, np.uint8)
    cv2.rectangle(image, (5, 5), (30, 30), (0, 200, 0), -1)
    ok, buf = cv2.imencode(ext, image)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _yolo(root: Path, labels: dict[str, str | None], *, names: list[str] | None = None) -> Path:
    for stem, text in labels.items():
        _img(root / "images" / f"{stem}.jpg")
        (root / "labels").mkdir(parents=True, exist_ok=True)
        if text is not None:
            (root / "labels" / f"{stem}.txt").write_text(text)
    if names is not None:
        (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root


def _coco(root: Path, images: list[dict], anns: list[dict], cats=None) -> Path:
    for im in images:
        if not im.get("_missing"):
            _img(root / "images" / im["file_name"], im.get("width", 64), im.get("height", 48))
    data = {
        "images": [{k: v for k, v in im.items() if not k.startswith("_")} for im in images],
        "annotations": anns,
        "categories": cats or [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}],
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_val.json").write_text(json.dumps(data))
    return root


def _voc(root: Path, objects: dict[str, list[tuple]]) -> Path:
    for stem, objs in objects.items():
        _img(root / "JPEGImages" / f"{stem}.jpg")
        body = "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
            f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for n, b, d in objs
        )
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>64</width>"
            f"<height>48</height><depth>3</depth></size>{body}</annotation>"
        )
    return root


# -- YOLO -------------------------------------------------------------------------------------


def test_yolo_boxes_and_empty_label_file(tmp_path: Path) -> None:
    root = _yolo(tmp_path, {"a": "1 0.5 0.5 0.25 0.5\n", "b": ""}, names=["person", "car"])
    ds = load_dataset(root)
    assert ds.format == "yolo" and ds.class_names == ("person", "car") and ds.problems == []
    np.testing.assert_allclose(ds[0].gt.xyxy, [[24, 12, 40, 36]], atol=1e-4)
    assert ds[0].gt.class_ids.tolist() == [1]
    assert len(ds[1].gt) == 0  # an empty label file is an image without objects


def test_yolo_data_yaml(tmp_path: Path) -> None:
    root = _yolo(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n"})
    (root / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [dog]\n")
    ds = load_dataset(root / "data.yaml")
    assert ds.class_names == ("dog",) and len(ds) == 1
    ds2 = load_dataset(root, split="train")
    assert len(ds2) == 1
    with pytest.raises(DatasetError, match="split 'test' not found"):
        load_dataset(root, split="test")


def test_yolo_unknown_class_id(tmp_path: Path) -> None:
    root = _yolo(
        tmp_path,
        {"a": "0 0.5 0.5 0.1 0.1\n5 0.5 0.5 0.1 0.1\n", "b": "0 0.5 0.5 0.2 0.2\n"},
        names=["x", "y"],
    )
    ds = load_dataset(root)
    assert len(ds) == 1 and ds[0].path.stem == "b"
    assert ds.problems == ["labels/a.txt line 2: class id 5 not in 0..1"]
    with pytest.raises(
        DatasetError, match=r"labels/a\.txt line 2: class id 5 not in 0\.\.1.*on_error='skip'"
    ):
        load_dataset(root, on_error="stop")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.1", r"line 1: expected 'class cx cy w h' \(5 numbers\)"),
        ("0 a 0.5 0.1 0.1", r"line 1: expected numbers"),
        ("0 320 240 50 50", r"line 1: coordinates .* are not normalised"),
        ("0 1.2 0.5 0.2 0.2", r"line 1: box .* lies outside the 64x48 image"),
        ("-1 0.5 0.5 0.2 0.2", r"line 1: class id -1 is not a non-negative integer"),
        ("0 0.5 0.5 -0.2 0.2", r"line 1: box .* negative width"),
    ],
)
def test_yolo_bad_lines(tmp_path: Path, line: str, message: str) -> None:
    root = _yolo(tmp_path, {"a": line + "\n"}, names=["x"])
    with pytest.raises(DatasetError, match=message):
        load_dataset(root, on_error="stop")
    assert len(load_dataset(root)) == 0


def test_yolo_slightly_outside_is_clipped(tmp_path: Path) -> None:
    root = _yolo(tmp_path, {"a": "0 0.505 0.5 1.0 0.5\n"}, names=["x"])
    ds = load_dataset(root, on_error="stop")
    np.testing.assert_allclose(ds[0].gt.xyxy, [[0.32, 12, 64, 36]], atol=1e-3)


def test_yolo_image_without_label_and_label_without_image(tmp_path: Path) -> None:
    root = _yolo(tmp_path, {"a": None, "b": "0 0.5 0.5 0.1 0.1\n"}, names=["x"])
    (root / "labels" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    ds = load_dataset(root)
    assert len(ds) == 2
    assert ds.problems[0] == "note: images/a.jpg: no label file labels/a.txt; counted as no objects"
    assert ds.problems[1] == "labels/ghost.txt: label file has no image in images"


def test_yolo_split_folders(tmp_path: Path) -> None:
    _img(tmp_path / "images" / "train" / "a.jpg")
    _img(tmp_path / "images" / "val" / "b.jpg")
    _img(tmp_path / "images" / "val" / "c.jpg")
    (tmp_path / "labels" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    ds = load_dataset(tmp_path)  # picks val
    assert [s.path.name for s in ds] == ["b.jpg", "c.jpg"]
    assert len(load_dataset(tmp_path, split="train")) == 1
    with pytest.raises(DatasetError, match="no split folder 'test'"):
        load_dataset(tmp_path, split="test")


def test_corrupt_image_is_lazy_then_verified(tmp_path: Path) -> None:
    root = _yolo(tmp_path, {"a": "0 0.5 0.5 0.1 0.1\n", "b": ""}, names=["x"])
    data = (root / "images" / "a.jpg").read_bytes()
    (root / "images" / "a.jpg").write_bytes(data[: len(data) // 2])  # header intact, truncated
    ds = load_dataset(root)
    assert len(ds) == 2  # not decoded yet
    with pytest.raises(DatasetError, match=r"a\.jpg: corrupt image: truncated JPEG"):
        ds.read_image(ds[0])
    verified = load_dataset(root, verify_images=True)
    assert [s.path.name for s in verified] == ["b.jpg"]
    assert "truncated JPEG" in verified.problems[0]
    with pytest.raises(DatasetError, match="truncated JPEG"):
        load_dataset(root, verify_images=True, on_error="stop")


def test_garbage_and_empty_image(tmp_path: Path) -> None:
    root = _yolo(tmp_path, {"a": "", "b": ""}, names=["x"])
    (root / "images" / "a.jpg").write_bytes(b"not an image at all")
    (root / "images" / "b.jpg").write_bytes(b"")
    ds = load_dataset(root)
    assert len(ds) == 0
    assert any("a.jpg: corrupt image: OpenCV cannot decode it" in p for p in ds.problems)
    assert any("b.jpg: image file is empty" in p for p in ds.problems)


def test_read_image_missing_file_and_size_mismatch(tmp_path: Path) -> None:
    root = _yolo(tmp_path, {"a": ""}, names=["x"])
    ds = load_dataset(root)
    _img(root / "images" / "a.jpg", w=32, h=32)
    with pytest.raises(
        DatasetError, match=r"a\.jpg: image is 32x32 but the annotations are for 64x48"
    ):
        ds.read_image(0)
    (root / "images" / "a.jpg").unlink()
    with pytest.raises(DatasetError, match=r"a\.jpg: image file not found"):
        ds.read_image(ds[0])


def test_png_and_grayscale(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "g.png"), np.zeros((20, 30), np.uint8))
    (tmp_path / "labels").mkdir()
    ds = load_dataset(tmp_path, class_names=["x"])
    assert (ds[0].width, ds[0].height) == (30, 20)
    assert ds.read_image(ds[0]).shape == (20, 30, 3)


# -- COCO -------------------------------------------------------------------------------------


def _ann(i: int, image_id: int, cat: int, bbox: list[float], crowd: int = 0) -> dict:
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, "iscrowd": crowd}


def test_coco_fixture(tmp_path: Path) -> None:
    images = [
        {"id": 7, "file_name": "a.jpg", "width": 64, "height": 48},
        {"id": 9, "file_name": "b.jpg", "width": 64, "height": 48},
    ]
    anns = [_ann(1, 7, 1, [1, 2, 10, 20]), _ann(2, 7, 3, [0, 0, 64, 48], crowd=1)]
    ds = load_dataset(_coco(tmp_path, images, anns))
    assert ds.class_names == ("person", "car")  # sorted by category id, contiguous 0..K-1
    assert ds.category_ids == (1, 3)
    assert ds.image_ids == [7, 9]
    s = ds.by_id(7)
    np.testing.assert_allclose(s.gt.xyxy, [[1, 2, 11, 22], [0, 0, 64, 48]])
    assert s.gt.class_ids.tolist() == [0, 1] and s.gt.ignore.tolist() == [False, True]
    assert len(ds.by_id(9).gt) == 0  # images without annotations are kept


def test_coco_errors_are_located(tmp_path: Path) -> None:
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48},
        {"id": 3, "file_name": "c.jpg", "width": 64, "height": 48},
        {"id": 4, "file_name": "gone.jpg", "width": 64, "height": 48, "_missing": True},
    ]
    anns = [
        _ann(10, 1, 1, [1, 1, 5, 5]),
        _ann(11, 2, 42, [1, 1, 5, 5]),
        _ann(12, 3, 1, [100, 1, 50, 5]),
        _ann(13, 99, 1, [1, 1, 5, 5]),
    ]
    ds = load_dataset(_coco(tmp_path, images, anns))
    assert ds.image_ids == [1]
    text = "\n".join(ds.problems)
    assert (
        "annotations/instances_val.json images[3] (id 4): image file images/gone.jpg not found"
        in text
    )
    assert "annotations[1] (id 11, image 2): category_id 42 is not in 'categories'" in text
    assert "annotations[2] (id 12, image 3): box [100, 1, 150, 6]" in text
    assert "annotations[3] (id 13, image 99): image id 99 is not in 'images'" in text
    with pytest.raises(
        DatasetError, match=r"images\[3\] \(id 4\): image file images/gone\.jpg not found"
    ):
        load_dataset(tmp_path, on_error="stop")


def test_coco_missing_size_read_from_file(tmp_path: Path) -> None:
    ds = load_dataset(
        _coco(tmp_path, [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}], [])
    )
    data = json.loads((tmp_path / "annotations" / "instances_val.json").read_text())
    del data["images"][0]["width"], data["images"][0]["height"]
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(data))
    ds = load_dataset(tmp_path)
    assert (ds[0].width, ds[0].height) == (64, 48)


def test_coco_empty_and_invalid_json(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    f = tmp_path / "annotations" / "instances_val.json"
    f.write_text("")
    with pytest.raises(DatasetError, match=r"instances_val\.json: empty file; expected COCO JSON"):
        load_dataset(tmp_path)
    f.write_text('{"images": [,]}')
    with pytest.raises(DatasetError, match=r"not valid JSON \(line 1, column"):
        load_dataset(tmp_path)
    f.write_text('{"images": []}')
    with pytest.raises(DatasetError, match="not a COCO detection file"):
        load_dataset(tmp_path)


def test_coco_several_files_need_split(tmp_path: Path) -> None:
    _coco(tmp_path, [{"id": 1, "file_name": "a.jpg"}], [])
    j = tmp_path / "annotations"
    (j / "instances_train.json").write_text((j / "instances_val.json").read_text())
    (j / "instances_test.json").write_text((j / "instances_val.json").read_text())
    assert len(load_dataset(tmp_path)) == 1  # the one 'val' file is preferred
    (j / "instances_val.json").rename(j / "instances_other.json")
    with pytest.raises(
        DatasetError, match=r"several COCO annotation files .*choose one with split="
    ):
        load_dataset(tmp_path)
    assert len(load_dataset(tmp_path, split="train")) == 1


def test_coco_class_names_must_match(tmp_path: Path) -> None:
    _coco(tmp_path, [{"id": 1, "file_name": "a.jpg"}], [])
    with pytest.raises(
        InvalidInputError, match="COCO datasets take their class names from the JSON"
    ):
        load_dataset(tmp_path, class_names=["a", "b"])


def test_coco_image_folder_not_found(tmp_path: Path) -> None:
    _coco(tmp_path, [{"id": 1, "file_name": "a.jpg"}], [])
    (tmp_path / "images" / "a.jpg").rename(tmp_path / "a_moved.jpg")
    with pytest.raises(DatasetError, match=r"cannot find the image folder: looked for 'a\.jpg'"):
        load_dataset(tmp_path)


# -- VOC --------------------------------------------------------------------------------------


def test_voc(tmp_path: Path) -> None:
    root = _voc(
        tmp_path / "VOC2007",
        {"x1": [("dog", (1, 2, 30, 40), 0), ("person", (5, 5, 10, 10), 1)], "x2": []},
    )
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("x2\n")
    assert detect_layout(tmp_path)[0] == "voc"
    ds = load_dataset(tmp_path)
    assert ds.format == "voc" and ds.class_names == ("dog", "person") and len(ds) == 2
    np.testing.assert_allclose(ds[0].gt.xyxy, [[1, 2, 30, 40], [5, 5, 10, 10]])
    assert ds[0].gt.ignore.tolist() == [False, True]  # difficult -> ignore
    assert [s.path.name for s in load_dataset(tmp_path, split="val")] == ["x2.jpg"]


def test_voc_errors(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 2, 300, 40), 0)], "b": [("cat", (1, 1, 5, 5), 0)]})
    (root / "Annotations" / "c.xml").write_text("<annotation><object>")
    ds = load_dataset(root, class_names=["dog"])
    assert len(ds) == 0
    text = "\n".join(ds.problems)
    assert "Annotations/a.xml object 1 (dog): box [1, 2, 300, 40]" in text
    assert "Annotations/b.xml: class ['cat'] not in class_names" in text
    assert "Annotations/c.xml: not valid XML" in text


# -- KITTI ------------------------------------------------------------------------------------


def test_kitti_fixture(tmp_path: Path) -> None:
    base = tmp_path / "training"
    _img(base / "image_2" / "000000.png", ext=".png")
    _img(base / "image_2" / "000001.png", ext=".png")
    (base / "label_2").mkdir()
    (base / "label_2" / "000000.txt").write_text(
        "Car 0.00 0 -1.5 1.0 2.0 30.0 40.0 1.5 1.6 3.9 1.0 1.7 10.0 -1.6\n"
        "DontCare -1 -1 -10 40.0 5.0 60.0 20.0 -1 -1 -1 -1000 -1000 -1000 -10\n"
        "Misc 0.00 0 -1.5 3.0 3.0 8.0 8.0 1.5 1.6 3.9 1.0 1.7 10.0 -1.6\n"
    )
    (base / "label_2" / "000002.txt").write_text("Car 0 0 0 1 1 5 5 1 1 1 1 1 1 1\n")
    ds = load_dataset(tmp_path)
    assert ds.class_names == ("Car", "Misc")
    assert len(ds) == 2
    g = ds[0].gt
    assert g.class_ids.tolist() == [0, ANY_CLASS, 1] and g.ignore.tolist() == [False, True, False]
    assert len(ds[1].gt) == 0
    assert "training/label_2/000002.txt: label file has no image" in ds.problems[0]
    assert ds.problems[1].startswith("note: training/image_2/000001.png: no label file")
    (base / "label_2" / "000000.txt").write_text("Car 0 0 0 1 1 5 5\n")
    with pytest.raises(DatasetError, match=r"000000\.txt line 1: expected 15 fields"):
        load_dataset(tmp_path, on_error="stop")


# -- API misuse --------------------------------------------------------------------------------


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(InvalidInputError, match="format must be 'auto' or one of"):
        load_dataset(tmp_path, format="pascal")
    with pytest.raises(InvalidInputError, match="on_error must be 'skip' or 'stop'"):
        load_dataset(tmp_path, on_error="ignore")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.md").write_text("hi")
    with pytest.raises(DatasetError, match=r"no dataset layout recognised .*found: readme\.md"):
        detect_layout(tmp_path / "junk")


def test_annotation_validation() -> None:
    with pytest.raises(
        InvalidInputError, match=r"Annotation.xyxy must have shape \(N, 4\), got \(2, 3\)"
    ):
        Annotation(np.zeros((2, 3)), np.zeros(2), np.zeros(2))
    with pytest.raises(InvalidInputError, match=r"may be -1 .* only on ignore regions"):
        Annotation(np.zeros((1, 4)), np.array([-1]), np.array([False]))
    assert len(Annotation.empty()) == 0


def test_data_yaml_needs_pyyaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    root = _yolo(tmp_path, {"a": ""})
    (root / "data.yaml").write_text("train: images\nval: images\nnames: [dog]\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    from edgedet.errors import RuntimeUnavailableError

    with pytest.raises(
        RuntimeUnavailableError, match=r"reading data\.yaml needs the pyyaml package"
    ):
        load_dataset(root)


def test_bad_data_yaml(tmp_path: Path) -> None:
    root = _yolo(tmp_path, {"a": ""})
    (root / "data.yaml").write_text("train: images\nval: nowhere\nnames: [dog]\n")
    with pytest.raises(DatasetError, match=r"val: 'nowhere' -> .* is neither a folder of images"):
        load_dataset(root)
    (root / "data.yaml").write_text("- just\n- a list\n")
    with pytest.raises(DatasetError, match="expected a mapping with path/train/val/names"):
        load_dataset(root / "data.yaml")


def test_binary_label_file(tmp_path: Path) -> None:
    root = _yolo(tmp_path, {"a": "", "b": ""}, names=["x"])
    (root / "labels" / "a.txt").write_bytes(b"\xff\xfe\x00garbage")
    ds = load_dataset(root)
    assert [s.path.name for s in ds] == ["b.jpg"]
    assert ds.problems[0].startswith("labels/a.txt: cannot read label file as text")
