"""Calibration sources: reproducible choice, deployment preprocessing, corrupt images, hashes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from edgedet.calibration.source import CalibrationSource, hash_image_list

from edgedet.errors import CalibrationError, InvalidInputError


def test_folder_source_skips_corrupt_and_warns(tiny_detector, image_dir: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="edgedet.calibration"):
        src = CalibrationSource(tiny_detector, images=image_dir, num=300)
    assert src.num_images == 12
    assert (
        len(src.report.skipped) == 1
        and "broken.jpg: not a decodable image" in src.report.skipped[0]
    )
    assert any("fewer than 100" in w for w in src.report.warnings)
    assert "skipped" in caplog.text and "fewer than 100" in caplog.text
    rec = src.record()
    assert rec["count"] == 12 and rec["requested"] == 300 and len(rec["images_sha256"]) == 64


def test_uses_deployment_preprocessing(tiny_detector, image_dir: Path) -> None:
    src = CalibrationSource(tiny_detector, images=image_dir, num=3, seed=None)
    feeds = src.get_next()
    assert feeds is not None
    expected, _ = tiny_detector.preprocess([src.load_image(src.entries[0])])
    np.testing.assert_array_equal(feeds["images"], expected["images"])
    assert sum(1 for _ in iter(src.get_next, None)) == 2  # the rest, then None
    src.rewind()
    assert src.get_next() is not None


def test_reproducible_choice_and_order_free_hash(tiny_detector, image_dir: Path) -> None:
    a = CalibrationSource(tiny_detector, images=image_dir, num=5, seed=3)
    b = CalibrationSource(tiny_detector, images=image_dir, num=5, seed=3)
    c = CalibrationSource(tiny_detector, images=image_dir, num=5, seed=4)
    assert [e.path for e in a.entries] == [e.path for e in b.entries]
    assert a.report.images_sha256 == b.report.images_sha256 != c.report.images_sha256
    assert hash_image_list(a.entries) == hash_image_list(list(reversed(a.entries)))


def test_corrupt_pick_is_topped_up(tiny_detector, image_dir: Path) -> None:
    files = sorted(image_dir.iterdir())  # broken.jpg sorts first
    src = CalibrationSource(tiny_detector, images=files, num=3, seed=None)
    assert src.num_images == 3 and len(src.report.skipped) == 1


def test_dataset_source(tiny_detector, image_dir: Path) -> None:
    class DS:
        def __init__(self) -> None:
            self.name = "fake"
            self.root = image_dir
            self.samples = [
                type("S", (), {"path": p})() for p in sorted(image_dir.glob("img_*.jpg"))
            ]

    src = CalibrationSource(tiny_detector, dataset=DS(), num=4, seed=1, batch_size=2)
    assert len(src) == 2 and src.num_images == 4
    batch = next(iter(src))
    assert batch["images"].shape == (2, 3, 32, 32)


def test_errors(tiny_detector, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="pass exactly one of images=FOLDER"):
        CalibrationSource(tiny_detector)
    with pytest.raises(InvalidInputError, match="is not a folder"):
        CalibrationSource(tiny_detector, images=tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="no images found"):
        CalibrationSource(tiny_detector, images=empty)
    (empty / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(CalibrationError, match="none of 1 images could be read"):
        CalibrationSource(tiny_detector, images=empty)
    with pytest.raises(InvalidInputError, match="num must be a positive int, got 0"):
        CalibrationSource(tiny_detector, images=empty, num=0)
