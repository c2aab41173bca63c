"""The synthetic road-scene generator: deterministic, tight boxes, both output formats."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgedet.data.synthetic import (
    CLASS_NAMES,
    MIN_BOX,
    generate,
    make_scenes,
    sample_validation_set,
)
from edgedet.errors import InvalidInputError


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", 6, seed=3, imgsz=(96, 128))
    b = generate(tmp_path / "b", 6, seed=3, imgsz=(96, 128))
    c = generate(tmp_path / "c", 6, seed=4, imgsz=(96, 128))
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_scenes_have_tight_boxes_in_frame() -> None:
    scenes = make_scenes(12, seed=0, imgsz=(128, 160))
    n = 0
    for sc in scenes:
        assert sc.image.shape == (128, 160, 3) and sc.image.dtype == np.uint8
        assert sc.xyxy.dtype == np.float32 and sc.class_ids.dtype == np.int32
        assert len(sc.xyxy) == len(sc.class_ids)
        if len(sc.xyxy):
            assert (
                (sc.xyxy[:, :2] >= 0).all()
                and (sc.xyxy[:, 2] <= 160).all()
                and (sc.xyxy[:, 3] <= 128).all()
            )
            sides = np.minimum(sc.xyxy[:, 2] - sc.xyxy[:, 0], sc.xyxy[:, 3] - sc.xyxy[:, 1])
            assert (sides >= MIN_BOX).all()
            assert set(sc.class_ids.tolist()) <= set(range(len(CLASS_NAMES)))
        n += len(sc.xyxy)
    assert n > 12  # several objects per scene on average


def test_class_imbalance_is_deliberate() -> None:
    cls = np.concatenate([s.class_ids for s in make_scenes(60, seed=1, imgsz=(128, 128))])
    counts = np.bincount(cls, minlength=len(CLASS_NAMES))
    assert counts[CLASS_NAMES.index("car")] > 2 * counts[CLASS_NAMES.index("cyclist")]


def test_generate_writes_coco_and_yolo(tmp_path: Path) -> None:
    out = generate(tmp_path / "d", 4, seed=0, imgsz=(96, 96))
    coco = json.loads((out / "annotations" / "instances.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(CLASS_NAMES)
    assert len(coco["images"]) == 4
    labels = sorted((out / "labels").glob("*.txt"))
    assert len(labels) == 4
    n_yolo = sum(len(p.read_text().splitlines()) for p in labels)
    assert n_yolo == len(coco["annotations"])
    assert (out / "data.yaml").is_file() and (out / "classes.txt").read_text().split() == list(
        CLASS_NAMES
    )
    from edgedet.data import load_dataset

    ds = load_dataset(out)
    assert ds.class_names == CLASS_NAMES and len(ds) == 4
    yolo = load_dataset(out / "data.yaml")
    assert yolo.num_objects() == ds.num_objects()


def test_sample_validation_set_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a = sample_validation_set(n=3)
    stamp = (a / "annotations" / "instances.json").stat().st_mtime_ns
    b = sample_validation_set(n=3)
    assert a == b and (b / "annotations" / "instances.json").stat().st_mtime_ns == stamp


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="formats must be a subset"):
        generate(tmp_path, 1, 0, formats=("voc",))
    with pytest.raises(InvalidInputError, match="imgsz must be"):
        make_scenes(1, 0, imgsz=(32, 32))
    with pytest.raises(InvalidInputError, match="number of scenes"):
        make_scenes(-1, 0)
