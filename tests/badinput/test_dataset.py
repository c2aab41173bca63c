"""Catalogue, entry point: datasets read by ``load_dataset`` (COCO, YOLO, VOC, KITTI), and
what ``bench`` and ``data convert`` do with the images they name.

A malformed label is listed in ``dataset.problems`` with its location (the image dropped) or,
when the whole file is unusable, raises `DatasetError`; never a raw Python error. Paths in
annotation files never leave the dataset folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgedet.data import convert_dataset, drop_unreadable, load_dataset
from edgedet.errors import DatasetError
from tests.badinput.helpers import Fails, canary, expect_error, nested, truncated_jpeg, write_jpeg


@dataclass(frozen=True)
class Listed:
    """Loads; ``images`` usable images remain and a problem contains ``fragment``."""

    fragment: str
    images: int


@dataclass(frozen=True)
class Reads:
    """Loads cleanly with ``images`` images (no problem other than notes)."""

    images: int
    check: Callable[[Any], bool] = lambda ds: True


def check(make: Callable[[Path], Path], expected: Any, tmp_path: Path, **kwargs: Any) -> Any:
    path = make(tmp_path)
    if isinstance(expected, Fails):
        err = expect_error(expected, load_dataset, path, **kwargs)
        assert "TOP-SECRET" not in str(err)
        return None
    ds = load_dataset(path, **kwargs)
    errors = [p for p in ds.problems if not p.startswith("note:")]
    assert not any("TOP-SECRET" in p for p in ds.problems)
    if isinstance(expected, Listed):
        assert any(expected.fragment in p for p in errors), ds.problems
        assert all(len(p) < 2000 for p in ds.problems)
    else:
        assert errors == [], errors
        assert expected.check(ds)
    assert len(ds) == expected.images, ds.problems
    return ds


# -- COCO --------------------------------------------------------------------------------------


def coco(mutate: Callable[[dict[str, Any], Path], Any] | None = None, raw: str | bytes | None = None) -> Callable[[Path], Path]:
    """A COCO folder with two 64×48 images, one box each; ``mutate`` edits the JSON."""

    def make(tmp: Path) -> Path:
        root = tmp / "coco"
        for name in ("a.jpg", "b.jpg"):
            write_jpeg(root / "val" / name)
        data: dict[str, Any] = {
            "images": [
                {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
                {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48},
            ],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 15], "iscrowd": 0},
                {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 10], "iscrowd": 0},
            ],
            "categories": [{"id": 1, "name": "thing"}],
        }
        if mutate is not None:
            data = mutate(data, tmp) or data
        path = root / "annotations" / "instances_val.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        if raw is not None:
            path.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
        else:
            path.write_text(json.dumps(data))
        return root

    return make


def ann(**changes: Any) -> Callable[[dict[str, Any], Path], None]:
    def mutate(d: dict[str, Any], _t: Path) -> None:
        d["annotations"][0].update(changes)

    return mutate


def img0(**changes: Any) -> Callable[[dict[str, Any], Path], None]:
    def mutate(d: dict[str, Any], _t: Path) -> None:
        d["images"][0].update(changes)

    return mutate


def key(name: str, value: Any) -> Callable[[dict[str, Any], Path], None]:
    def mutate(d: dict[str, Any], _t: Path) -> None:
        d[name] = value

    return mutate


def outside_file(kind: str) -> Callable[[dict[str, Any], Path], None]:
    def mutate(d: dict[str, Any], tmp: Path) -> None:
        write_jpeg(tmp / "outside" / "secret.jpg")
        d["images"][0]["file_name"] = (
            "../../outside/secret.jpg" if kind == "dotdot" else str(tmp / "outside" / "secret.jpg")
        )

    return mutate


def subfolder(d: dict[str, Any], tmp: Path) -> None:
    write_jpeg(tmp / "coco" / "val" / "sub" / "c.jpg")
    d["images"][0]["file_name"] = "sub/c.jpg"


COCO_ROWS: list[tuple[str, Callable[[Path], Path], Any]] = [
    ("clean", coco(), Reads(2)),
    ("file in a subfolder", coco(subfolder), Reads(2)),
    ("iscrowd 1 (ignore region)", coco(ann(iscrowd=1)), Reads(2, lambda ds: bool(ds[0].gt.ignore[0]))),
    ("iscrowd true", coco(ann(iscrowd=True)), Reads(2)),
    ("image missing on disk", coco(img0(file_name="nothere.jpg")), Listed("image file val/nothere.jpg not found", 1)),
    ("box outside the image", coco(ann(bbox=[50, 40, 100, 100])), Listed("lies outside the 64x48 image", 1)),
    ("negative w/h", coco(ann(bbox=[10, 10, -5, 5])), Listed("negative width or height", 1)),
    ("zero-size box (L5)", coco(ann(bbox=[10, 10, 0, 0])), Listed("has zero width or height", 1)),
    ("zero-width box (L5)", coco(ann(bbox=[10, 10, 0, 5])), Listed("has zero width or height", 1)),
    ("iscrowd 'no' (L5)", coco(ann(iscrowd="no")), Listed("iscrowd must be 0 or 1, got 'no'", 1)),
    ("iscrowd 2 (L5)", coco(ann(iscrowd=2)), Listed("iscrowd must be 0 or 1", 1)),
    ("ignore 'yes'", coco(ann(ignore="yes")), Listed("ignore must be 0 or 1", 1)),
    ("unknown category", coco(ann(category_id=12345)), Listed("category_id 12345 is not in 'categories'", 1)),
    ("duplicate image id", coco(img0(id=2)), Listed("duplicate image id 2", 0)),
    ("NaN bbox", coco(ann(bbox=[float("nan"), 1, 2, 3])), Listed("non-finite coordinates", 1)),
    ("1e308 bbox", coco(ann(bbox=[1e308, 1, 1e308, 3])), Listed("", 1)),
    ("5-element bbox", coco(ann(bbox=[1, 2, 3, 4, 5])), Listed("needs image_id, category_id and bbox", 1)),
    ("bbox 'abc'", coco(ann(bbox="abc")), Listed("needs image_id, category_id and bbox", 1)),
    ("width 'wide'", coco(img0(width="wide")), Listed("width/height are not integers", 1)),
    ("images [1, 2] (M6)", coco(key("images", [1, 2])), Listed("images[0]: needs an integer 'id' and a 'file_name'", 0)),
    ("annotation an int", coco(key("annotations", [7])), Listed("needs image_id, category_id and bbox", 2)),
    ("file_name ../ outside (M1b)", coco(outside_file("dotdot")), Listed("points outside the dataset folder", 1)),
    ("file_name absolute (M1b)", coco(outside_file("abs")), Listed("points outside the dataset folder", 1)),
    ("file_name a list", coco(img0(file_name=["a.jpg"])), Listed("not found", 1)),
    ("nested JSON 100k (M6)", coco(raw=nested(100_000)), Fails(DatasetError, "nested too deeply")),
    ("nested object 100k (M6)", coco(raw=nested(100_000, "object")), Fails(DatasetError, "nested too deeply")),
    ("JSON not UTF-8", coco(raw=b'{"images": [], "x": "\xff"}'), Fails(DatasetError, "cannot read")),
    ("not JSON", coco(raw="{broken"), Fails(DatasetError, "not valid JSON")),
    ("a JSON list", coco(raw="[1, 2]"), Fails(DatasetError, "not a COCO detection file")),
    ("empty categories", coco(key("categories", [])), Fails(DatasetError, "'categories' is empty")),
    ("categories [1]", coco(key("categories", [1])), Fails(DatasetError, "each category needs an integer 'id'")),
    ("duplicate category ids", coco(key("categories", [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}])), Fails(DatasetError, "duplicate category ids")),
    ("images a dict", coco(key("images", {"1": 2})), Fails(DatasetError, "'images' must be a list")),
    ("annotations not a list", coco(key("annotations", "x")), Fails(DatasetError, "'annotations' must be a list")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "make", "expected"), COCO_ROWS, ids=[r[0] for r in COCO_ROWS])
def test_coco(tmp_path: Path, case: str, make: Callable[[Path], Path], expected: Any) -> None:
    check(make, expected, tmp_path)


# -- YOLO --------------------------------------------------------------------------------------


def yolo(label: str | bytes = "0 0.5 0.5 0.2 0.2\n", yaml: str | None = "names: ['a', 'b']\n", extra: Callable[[Path], None] | None = None) -> Callable[[Path], Path]:
    """A YOLO folder: images/val/{a,b}.jpg, labels for both (``label`` is a.jpg's)."""

    def make(tmp: Path) -> Path:
        root = tmp / "yolo"
        for name in ("a", "b"):
            write_jpeg(root / "images" / "val" / f"{name}.jpg")
        (root / "labels" / "val").mkdir(parents=True)
        path = root / "labels" / "val" / "a.txt"
        path.write_bytes(label if isinstance(label, bytes) else label.encode())
        (root / "labels" / "val" / "b.txt").write_text("1 0.5 0.5 0.1 0.1\n")
        if yaml is not None:
            (root / "data.yaml").write_text("path: .\nval: images/val\n" + yaml)
        if extra is not None:
            extra(root)
        return root

    return make


def yolo_list(lines: list[str], content: bytes | None = None) -> Callable[[Path], Path]:
    """A YOLO set whose data.yaml ``val`` is a .txt list of image paths."""

    def extra(root: Path) -> None:
        write_jpeg(root.parent / "outside" / "secret.jpg")
        listing = root / "val.txt"
        listing.write_bytes(content if content is not None else "\n".join(lines).encode())
        (root / "data.yaml").write_text("path: .\nval: val.txt\nnames: ['a', 'b']\n")

    return yolo(extra=extra)


def yaml_names(value: str) -> Callable[[Path], Path]:
    return yolo(yaml=f"names: {value}\n")


YOLO_ROWS: list[tuple[str, Callable[[Path], Path], Any]] = [
    ("clean", yolo(), Reads(2)),
    ("empty label (no objects)", yolo(""), Reads(2)),
    ("polygon label", yolo("0 0.1 0.1 0.3 0.1 0.3 0.3\n"), Reads(2)),
    ("list file inside the root", yolo_list(["./images/val/a.jpg", "images/val/b.jpg"]), Reads(2)),
    ("class id nan (M6)", yolo("nan 0.5 0.5 0.2 0.2\n"), Listed("class id nan is not a non-negative integer", 1)),
    ("class id inf (M6)", yolo("inf 0.5 0.5 0.2 0.2\n"), Listed("class id inf is not a non-negative integer", 1)),
    ("class id -inf", yolo("-inf 0.5 0.5 0.2 0.2\n"), Listed("is not a non-negative integer", 1)),
    ("class id -1", yolo("-1 0.5 0.5 0.2 0.2\n"), Listed("class id -1 is not a non-negative integer", 1)),
    ("class id 1.5", yolo("1.5 0.5 0.5 0.2 0.2\n"), Listed("class id 1.5 is not", 1)),
    ("class id 2 of 2 names", yolo("2 0.5 0.5 0.2 0.2\n"), Listed("class id 2 not in 0..1", 1)),
    ("3 columns", yolo("0 0.5 0.5\n"), Listed("expected 'class cx cy w h'", 1)),
    ("pixel coordinates", yolo("0 320 240 50 50\n"), Listed("are not normalised", 1)),
    ("text class", yolo("car 0.5 0.5 0.2 0.2\n"), Listed("expected numbers", 1)),
    ("coordinate nan", yolo("0 nan 0.5 0.2 0.2\n"), Listed("non-finite coordinates", 1)),
    ("binary label", yolo(b"\xff\xfe\x00\x01"), Listed("cannot read label file as text", 1)),
    ("huge class id, no names (capped)", yolo("2000000 0.5 0.5 0.2 0.2\n", yaml=None), Listed("class id 2000000 without class names", 1)),
    ("1e12 class id, no names (capped)", yolo("1e12 0.5 0.5 0.2 0.2\n", yaml=None), Listed("without class names", 1)),
    ("names: 5 (M6)", yaml_names("5"), Fails(DatasetError, "bad 'names'")),
    ("names: a path (M1a)", lambda t: yaml_names(repr(str(canary(t))))(t), Fails(DatasetError, "a names file can be given only by the user")),
    ("names: nested", yaml_names("[[a], [b]]"), Fails(DatasetError, "bad 'names'")),
    ("names: {0: a, 2: b}", yaml_names("{0: a, 2: b}"), Fails(DatasetError, "ids 0..N-1")),
    ("yaml python object", yolo(yaml="names: !!python/object/apply:os.system ['true']\n"), Fails(DatasetError, "cannot read YAML")),
    ("yaml path: 5 (no such folder)", yolo(yaml="names: [a, b]\npath: 5\n"), Reads(2)),
    ("list file not UTF-8 (M6)", yolo_list([], content=b"images/val/a.jpg\n\xff\xfe\n"), Fails(DatasetError, "cannot read")),
    ("list line ../ outside (M1b)", yolo_list(["images/val/a.jpg", "../outside/secret.jpg"]), Listed("points outside the dataset folder", 1)),
    ("list line absolute outside (M1b)", lambda t: yolo_list(["images/val/a.jpg", str(t / "outside" / "secret.jpg")])(t), Listed("points outside the dataset folder", 1)),
    ("classes.txt not UTF-8", yolo(yaml=None, extra=lambda r: (r / "classes.txt").write_bytes(b"a\n\xff\n")), Fails(DatasetError, "cannot read class names")),
    ("zero-width box", yolo("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0 0.2\n"), Listed("a.txt line 2: box [32, 19.2, 32, 28.8] (x1 y1 x2 y2) has zero width or height", 1)),
    ("zero-height box", yolo("0 0.5 0.5 0.2 0\n"), Listed("a.txt line 1: box [25.6, 24, 38.4, 24] (x1 y1 x2 y2) has zero width or height", 1)),
    ("zero-area polygon", yolo("0 0.1 0.5 0.3 0.5 0.6 0.5\n"), Listed("a.txt line 1: box [6.4, 24, 38.4, 24] (x1 y1 x2 y2) has zero width or height", 1)),
    ("negative width", yolo("0 0.5 0.5 -0.2 0.2\n"), Listed("a.txt line 1: box [38.4, 19.2, 25.6, 28.8] has negative width or height", 1)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "make", "expected"), YOLO_ROWS, ids=[r[0] for r in YOLO_ROWS])
def test_yolo(tmp_path: Path, case: str, make: Callable[[Path], Path], expected: Any) -> None:
    ds = check(make, expected, tmp_path)
    if ds is not None and "capped" in case:
        assert len(ds.class_names) <= 2  # no millions of class_N names


# -- VOC and KITTI -----------------------------------------------------------------------------

VOC_XML = """<annotation><filename>{fname}</filename><size><width>64</width><height>48</height>
<depth>3</depth></size><object><name>car</name><difficult>0</difficult><bndbox><xmin>5</xmin>
<ymin>5</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"""

LAUGHS = """<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
]><annotation><filename>&lol7;</filename></annotation>"""


def voc(fname: str | Callable[[Path], str] = "a.jpg", xml: str | None = None) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        root = tmp / "voc"
        write_jpeg(root / "JPEGImages" / "a.jpg")
        write_jpeg(root / "JPEGImages" / "b.jpg")
        write_jpeg(tmp / "outside" / "secret.jpg")
        (root / "Annotations").mkdir(parents=True)
        name = fname(tmp) if callable(fname) else fname
        (root / "Annotations" / "a.xml").write_text(xml if xml is not None else VOC_XML.format(fname=name))
        (root / "Annotations" / "b.xml").write_text(VOC_XML.format(fname="b.jpg"))
        return root

    return make


def kitti(line: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        base = tmp / "kitti" / "training"
        for stem in ("000000", "000001"):
            write_jpeg(base / "image_2" / f"{stem}.png")
        (base / "label_2").mkdir(parents=True)
        (base / "label_2" / "000000.txt").write_text(line)
        (base / "label_2" / "000001.txt").write_text("Car 0 0 0 5 5 20 20 1 1 1 1 1 1 0\n")
        return tmp / "kitti"

    return make


OTHER_ROWS: list[tuple[str, Callable[[Path], Path], Any]] = [
    ("voc clean", voc(), Reads(2)),
    ("voc <filename> ../ outside (M1b)", voc("../../outside/secret.jpg"), Listed("points outside the dataset folder", 1)),
    ("voc <filename> absolute (M1b)", voc(lambda t: str(t / "outside" / "secret.jpg")), Listed("points outside the dataset folder", 1)),
    ("voc billion laughs", voc(xml=LAUGHS), Listed("not valid XML", 1)),
    ("voc XXE", voc(xml='<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><annotation><filename>&x;</filename></annotation>'), Listed("not valid XML", 1)),
    ("kitti clean", kitti("Car 0 0 0 5 5 20 20 1 1 1 1 1 1 0\n"), Reads(2)),
    ("kitti 7 fields", kitti("Car 0 0 0 5 5 20\n"), Listed("expected 15 fields", 1)),
    ("kitti bbox 'x'", kitti("Car 0 0 0 x 5 20 20 1 1 1 1 1 1 0\n"), Listed("bbox fields 5-8 are not numbers", 1)),
    ("kitti NaN", kitti("Car 0 0 0 nan 5 20 20 1 1 1 1 1 1 0\n"), Listed("non-finite coordinates", 1)),
    ("kitti binary", kitti("\udcff"[:0] + "Car\x00\x01"), Listed("expected 15 fields", 1)),
    ("voc zero-width box", voc(xml=VOC_XML.format(fname="a.jpg").replace("<xmin>5<", "<xmin>20<")), Listed("a.xml object 1 (car): box [20, 5, 20, 20] (x1 y1 x2 y2) has zero width or height", 1)),
    ("voc zero-height box", voc(xml=VOC_XML.format(fname="a.jpg").replace("<ymax>20<", "<ymax>5<")), Listed("a.xml object 1 (car): box [5, 5, 20, 5] (x1 y1 x2 y2) has zero width or height", 1)),
    ("voc negative width", voc(xml=VOC_XML.format(fname="a.jpg").replace("<xmin>5<", "<xmin>30<")), Listed("a.xml object 1 (car): box [30, 5, 20, 20] has negative width or height", 1)),
    ("kitti zero-width box", kitti("Car 0 0 0 5 5 20 20 1 1 1 1 1 1 0\nCar 0 0 0 10 5 10 20 1 1 1 1 1 1 0\n"), Listed("000000.txt line 2 (Car): box [10, 5, 10, 20] (x1 y1 x2 y2) has zero width or height", 1)),
    ("kitti zero once clipped", kitti("Pedestrian 0 0 0 64 5 65.5 20 1 1 1 1 1 1 0\n"), Listed("000000.txt line 1 (Pedestrian): box [64, 5, 65.5, 20] (x1 y1 x2 y2) has zero width or height once clipped to the 64x48 image", 1)),
    ("kitti negative height", kitti("Car 0 0 0 5 20 20 5 1 1 1 1 1 1 0\n"), Listed("000000.txt line 1 (Car): box [5, 20, 20, 5] has negative width or height", 1)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "make", "expected"), OTHER_ROWS, ids=[r[0] for r in OTHER_ROWS])
def test_voc_kitti(tmp_path: Path, case: str, make: Callable[[Path], Path], expected: Any) -> None:
    check(make, expected, tmp_path)


ZERO_AREA_STOP: list[tuple[str, Callable[[Path], Path], str]] = [
    ("yolo", yolo("1 0.5 0.5 0 0.2\n"), "labels/val/a.txt line 1: box"),
    ("voc", voc(xml=VOC_XML.format(fname="a.jpg").replace("<xmin>5<", "<xmin>20<")), "Annotations/a.xml object 1 (car): box"),
    ("kitti", kitti("Car 0 0 0 10 5 10 20 1 1 1 1 1 1 0\n"), "label_2/000000.txt line 1 (Car): box"),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "make", "where"), ZERO_AREA_STOP, ids=[r[0] for r in ZERO_AREA_STOP])
def test_zero_area_box_stops_with_its_place(
    tmp_path: Path, fmt: str, make: Callable[[Path], Path], where: str
) -> None:
    err = expect_error(Fails(DatasetError, "has zero width or height"), load_dataset, make(tmp_path), on_error="stop")
    assert where in str(err), err


# -- images read late: bench and convert -------------------------------------------------------


def _with_truncated(tmp: Path) -> Path:
    root = yolo()(tmp)
    truncated_jpeg(root / "images" / "val" / "b.jpg")
    return root


def _size_mismatch(tmp: Path) -> Path:
    return coco(img0(height=47))(tmp)


LATE_ROWS: list[tuple[str, Callable[[Path], Path], str]] = [
    ("truncated JPEG (M6)", _with_truncated, "truncated JPEG"),
    ("annotated w/h differ from the image (M6)", _size_mismatch, "image is 64x48 but the annotations are for 64x47"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "make", "fragment"), LATE_ROWS, ids=[r[0] for r in LATE_ROWS])
def test_unreadable_images_are_dropped_and_listed(tmp_path: Path, case: str, make: Callable[[Path], Path], fragment: str) -> None:
    ds = load_dataset(make(tmp_path))
    assert len(ds) == 2  # sizes come from headers: the problem shows only when decoded
    kept = drop_unreadable(ds)
    assert len(kept) == 1 and any(fragment in p for p in kept.problems), kept.problems


@pytest.mark.parametrize(("case", "make", "fragment"), LATE_ROWS, ids=[r[0] for r in LATE_ROWS])
def test_bench_skips_unreadable_images(tmp_path: Path, case: str, make: Callable[[Path], Path], fragment: str) -> None:
    """on_error="skip": one bad image is listed, the configuration still measures the rest."""
    from edgedet.benchmarks.runner import BenchConfig, run_config

    from tests.tiny_models import make_tiny_yolov5, tiny_meta

    data = make(tmp_path)
    names = ["thing"] if "w/h" in case else ["a", "b"]
    model = make_tiny_yolov5(tmp_path / "m.onnx", nc=len(names), meta=tiny_meta(len(names)).replace(class_names=tuple(names)))
    rec = run_config(BenchConfig(
        model=str(model), data=str(data), warmup=1, min_iterations=2, min_seconds=0.01,
        max_seconds=1.0, latency_images=1, throughput_requests=0,
    ))  # fmt: skip
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["images"] == 1
    assert any(fragment in p for p in rec["dataset_problems"]), rec["dataset_problems"]


def test_convert_never_copies_files_from_outside(tmp_path: Path) -> None:
    """M1b: a COCO file_name pointing at a local non-image file with w/h in the JSON."""
    secret = canary(tmp_path)

    def mutate(d: dict[str, Any], _t: Path) -> None:
        d["images"][0]["file_name"] = f"../../{secret.name}"

    ds = load_dataset(coco(mutate)(tmp_path))
    assert len(ds) == 1 and any("outside the dataset folder" in p for p in ds.problems)
    out = convert_dataset(ds, tmp_path / "out", "yolo")
    copied = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    assert not any(b"TOP-SECRET" in c for c in copied)


def test_convert_checks_image_headers(tmp_path: Path) -> None:
    """A file that is not an image never lands in the output, whatever the annotation says."""
    from edgedet.data import Annotation, DetectionDataset, Sample

    good = write_jpeg(tmp_path / "src" / "good.jpg")
    text = canary(tmp_path / "src") if (tmp_path / "src").is_dir() else None
    assert text is not None
    samples = [Sample(1, good, 64, 48, Annotation.empty()), Sample(2, text, 64, 48, Annotation.empty())]
    ds = DetectionDataset("x", tmp_path / "src", "coco", ["a"], samples)
    out = convert_dataset(ds, tmp_path / "out", "coco")
    assert sorted(p.name for p in (out / "images").iterdir()) == ["good.jpg"]
    assert any("not converted" in p and "canary_secret.txt" in p for p in ds.problems)
