"""Tiled inference: tile plans, the cut-aware merge, one batched call per frame, bad settings.

Real ONNX Runtime on the shipped sample model (192×192, synthetic road classes)."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest

import edgedet
from edgedet.assets import sample_model_path
from edgedet.batching import batched_model_path
from edgedet.boxes import box_iou
from edgedet.detections import Detections
from edgedet.errors import InvalidInputError
from edgedet.tiles import TiledDetector, TileSpec, merge_tiles, parse_tiles, plan_tiles
from edgedet.views import View


@pytest.fixture(scope="module")
def batched_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return batched_model_path(sample_model_path(), folder=tmp_path_factory.mktemp("batch"))


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    """A 192×192 synthetic scene (what the sample model was trained on) and its boxes."""
    from edgedet.data.synthetic import make_scenes

    for s in make_scenes(12, seed=1_000_003, imgsz=(192, 192)):
        if len(s.xyxy) >= 3:
            return s.image, s.xyxy
    raise AssertionError("no scene with 3 objects")  # pragma: no cover


def _windows(views: list[View]) -> np.ndarray:
    return np.array([v.window for v in views], np.int64)


# -- plans -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("hw", "grid"), [((1080, 1920), (2, 2)), ((375, 1242), (4, 1)), ((97, 101), (3, 2))])
def test_grid_covers_the_image_with_the_overlap(hw: tuple[int, int], grid: tuple[int, int]) -> None:
    views = plan_tiles(hw, TileSpec(grid=grid, overlap=0.2))
    assert len(views) == grid[0] * grid[1] + 1 and views[-1].window == (0, 0, hw[1], hw[0])
    tiles = _windows(views[:-1])
    cover = np.zeros(hw, bool)
    for x0, y0, x1, y1 in tiles:
        assert 0 <= x0 < x1 <= hw[1] and 0 <= y0 < y1 <= hw[0]
        cover[y0:y1, x0:x1] = True
    assert cover.all()
    # neighbours share at least ~20 % of a tile side
    xs = sorted({(x0, x1) for x0, _, x1, _ in tiles})
    for (a0, a1), (b0, _) in itertools.pairwise(xs):
        assert a1 - b0 >= 0.19 * (a1 - a0)


def test_size_spec_cuts_a_side_longer_than_the_image_to_one_row() -> None:
    views = plan_tiles((375, 1242), parse_tiles("640px", full_frame=False))
    assert {v.window[1] for v in views} == {0} and {v.window[3] for v in views} == {375}
    assert len(views) == 3  # 640-wide tiles stepping <= 512 px cover 1242


def test_tiles_larger_than_the_image_are_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"tiles of 2000x2000 px are not smaller than the 1242x375 image: nothing to tile"):
        plan_tiles((375, 1242), parse_tiles("2000px"))
    with pytest.raises(InvalidInputError, match=r"tiles 8x8 on a 120x100 image .* smaller than 32 px"):
        plan_tiles((100, 120), parse_tiles("8x8"))
    with pytest.raises(InvalidInputError, match="one tile is the whole image, nothing to tile"):
        plan_tiles((100, 120), parse_tiles("1x1"))


@pytest.mark.parametrize("text", ["2x", "abc", "0x2", "2x2x2", "px"])
def test_bad_tile_specs(text: str) -> None:
    with pytest.raises(InvalidInputError, match="tiles"):
        parse_tiles(text)


def test_bad_overlap() -> None:
    with pytest.raises(InvalidInputError, match=r"overlap must be in \[0, 0.9\)"):
        parse_tiles("2x2", overlap=0.95)


# -- the merge ---------------------------------------------------------------------------------


def _det(boxes: list[list[float]], scores: list[float], cls: list[int] | None = None) -> Detections:
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(cls if cls is not None else [0] * len(scores), np.int32),
    )


def test_cut_piece_is_dropped_when_another_view_saw_the_object_whole() -> None:
    hw = (100, 200)
    left = View((0, 0, 110, 100), hw, name="left")
    right = View((90, 0, 200, 100), hw, name="right")
    full = View((0, 0, 200, 100), hw)
    # an object at x 80..140: the left tile sees it cut at x=110, the full frame whole
    per_view = [_det([[80, 10, 110, 50]], [0.95]), _det([], []), _det([[80, 10, 140, 50]], [0.6])]
    out = merge_tiles(per_view, [left, right, full], iou_threshold=0.5, max_detections=10)
    assert len(out) == 1
    np.testing.assert_allclose(out.xyxy[0], [80, 10, 140, 50])
    # plain NMS would keep both: the piece overlaps the whole box by IoU 0.5 only
    assert box_iou(per_view[0].xyxy, per_view[2].xyxy)[0, 0] == pytest.approx(0.5)


def test_pieces_seen_by_no_view_whole_are_joined() -> None:
    hw = (100, 200)
    left = View((0, 0, 110, 100), hw)
    right = View((90, 0, 200, 100), hw)
    # an object at x 60..160, larger than the overlap: each tile sees a cut piece
    per_view = [_det([[60, 10, 110, 50]], [0.7]), _det([[90, 10, 160, 50]], [0.8])]
    out = merge_tiles(per_view, [left, right], iou_threshold=0.5, max_detections=10)
    assert len(out) == 1
    np.testing.assert_allclose(out.xyxy[0], [60, 10, 160, 50])
    assert out.scores[0] == pytest.approx(0.8)


def test_boxes_at_the_image_border_are_not_cut_and_classes_stay_apart() -> None:
    hw = (100, 200)
    left = View((0, 0, 110, 100), hw)
    full = View((0, 0, 200, 100), hw)
    per_view = [
        _det([[0, 0, 30, 40], [80, 10, 110, 50]], [0.9, 0.9], [0, 1]),  # 2nd is cut, class 1
        _det([[0, 0, 30, 40], [80, 10, 140, 50]], [0.8, 0.7], [0, 0]),  # whole box is class 0
    ]
    out = merge_tiles(per_view, [left, full], iou_threshold=0.5, max_detections=10)
    # the border box is a duplicate (NMS keeps one); the class-1 piece has no class-1 cover
    assert sorted(out.class_ids.tolist()) == [0, 0, 1]


def test_ios_merge_drops_another_views_loose_duplicate_but_nms_keeps_it() -> None:
    hw = (100, 200)
    tile = View((0, 0, 120, 100), hw)
    full = View((0, 0, 200, 100), hw)
    # the tile's tight box lies inside the full frame's loose box of the same object (IoU 0.4)
    per_view = [_det([[20, 20, 60, 60]], [0.9]), _det([[10, 10, 80, 70]], [0.5])]
    views = [tile, full]
    assert len(merge_tiles(per_view, views, iou_threshold=0.45, max_detections=10)) == 2
    out = merge_tiles(per_view, views, iou_threshold=0.45, max_detections=10, merge="ios")
    assert len(out) == 1 and out.scores[0] == pytest.approx(0.9)
    # two boxes of one view are left to NMS: neither is dropped by "ios"
    same_view = [_det([[20, 20, 60, 60], [10, 10, 80, 70]], [0.9, 0.5]), _det([], [])]
    assert len(merge_tiles(same_view, views, iou_threshold=0.45, max_detections=10, merge="ios")) == 2


# -- the wrapper on the real sample model ------------------------------------------------------


def test_tiles_find_what_the_shrunk_full_frame_misses(
    batched_path: Path, scene: tuple[np.ndarray, np.ndarray]
) -> None:
    image, gt = scene
    big = np.full((768, 768, 3), 114, np.uint8)
    big[:192, :192] = image  # the scene fills exactly the top-left tile of a 4x4 grid
    det = edgedet.load(batched_path)
    alone = det(image)
    full = det(big)
    tiled = TiledDetector(det, "4x4", overlap=0.0)(big)

    def found(d: Detections) -> int:
        return int((box_iou(gt, d.xyxy).max(axis=1) >= 0.5).sum()) if len(d) else 0

    assert found(alone) >= len(gt) - 1  # the model sees the scene at its own size
    assert found(tiled) >= found(alone)
    assert found(full) < found(tiled)


def test_batched_and_one_by_one_give_the_same_boxes_in_one_call(
    batched_path: Path, scene: tuple[np.ndarray, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    frame = np.tile(scene[0], (2, 3, 1))  # 384x576
    batched = TiledDetector(edgedet.load(batched_path), "2x2")
    assert batched.batched
    calls: list[int] = []
    inner = batched.detector
    real_infer = inner.infer
    inner.infer = lambda feeds: calls.append(next(iter(feeds.values())).shape[0]) or real_infer(feeds)
    a = batched(frame)
    assert calls == [5]  # 4 tiles + the full frame, one runtime call

    with caplog.at_level(logging.WARNING, logger="edgedet"):
        seq = TiledDetector(edgedet.load(sample_model_path()), "2x2")
        assert not seq.batched
        b = seq(frame)
        seq(frame)
    said = [r.getMessage() for r in caplog.records if "one by one" in r.getMessage()]
    assert len(said) == 1 and "fixed batch of 1" in said[0]
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_settings_reach_the_wrapped_detector_and_bad_ones_fail(batched_path: Path) -> None:
    tiled = TiledDetector(edgedet.load(batched_path), "2x2")
    tiled.score_threshold = 0.5
    assert tiled.detector.score_threshold == 0.5
    with pytest.raises(InvalidInputError, match="score_threshold"):
        tiled.score_threshold = 2.0
    with pytest.raises(InvalidInputError, match="batch=True, but the model has a fixed batch of 1"):
        TiledDetector(edgedet.load(sample_model_path()), "2x2", batch=True)
    too_big = TiledDetector(tiled.detector, "4000px")
    with pytest.raises(InvalidInputError, match="tiles of 4000x4000 px are not smaller"):
        too_big(np.zeros((300, 400, 3), np.uint8))


def test_predict_batch_and_scoring_go_through_the_wrapper(batched_path: Path) -> None:
    tiled = TiledDetector(edgedet.load(batched_path), "2x1")
    frames = [np.full((200, 400, 3), v, np.uint8) for v in (60, 120, 180)]
    out = tiled.predict_batch(frames, batch_size=2)
    assert len(out) == 3 and all(isinstance(d, Detections) for d in out)
    assert tiled.describe()["tiles"]["batched"] is True


def test_views_are_cut_into_calls_of_the_engine_profile_max_batch(
    batched_path: Path, scene: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    det = edgedet.load(batched_path)
    whole = TiledDetector(det, "2x2")(scene[0])
    # a dynamic-batch TensorRT engine reports the largest batch its profile takes
    monkeypatch.setattr(det.runtime, "max_batch", 2, raising=False)
    tiled = TiledDetector(det, "2x2")
    calls: list[int] = []
    real_infer = det.infer
    monkeypatch.setattr(det, "infer", lambda f: calls.append(next(iter(f.values())).shape[0]) or real_infer(f))
    out = tiled(scene[0])
    assert calls == [2, 2, 1]
    np.testing.assert_allclose(out.xyxy, whole.xyxy, atol=1e-3)


@pytest.mark.testdata
def test_a_model_without_a_batch_axis_runs_tiles_one_by_one_and_says_why_once(
    models_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from edgedet.wrap import ViewSettings, load_wrapped

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    # NanoDet's export folds the batch into rows: outputs [1600, 80] with no batch axis
    det = load_wrapped(models_dir / "nanodet_m_320.onnx", ViewSettings(tiles="2x2"), family="nanodet")
    assert isinstance(det, TiledDetector) and not det.batched
    frame = np.full((360, 640, 3), 90, np.uint8)
    with caplog.at_level(logging.WARNING, logger="edgedet"):
        det(frame)
        det(frame)
    said = [r.getMessage() for r in caplog.records if "one by one" in r.getMessage()]
    assert len(said) == 1 and "no leading batch axis" in said[0]
    assert not list(tmp_path.rglob("*.onnx"))  # no copy was written
