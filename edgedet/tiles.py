"""Tiled inference for small objects: overlapping crops of a large frame (plus the whole frame),
run as one batched runtime call, merged back into one set of boxes.

A 1920×1080 road frame letterboxed into a 416×416 input shrinks every object 4.6 times: a far
pedestrian 30 px tall becomes 6 px, below what the detector was trained to see. Each tile of a
2×2 grid shrinks it only about half as much. The whole frame is kept as one more view (default)
so that objects larger than a tile are still seen whole.

    >>> from edgedet.tiles import TiledDetector
    >>> det = TiledDetector(edgedet.load("yolox_nano.onnx", family="yolox"), tiles="2x2")
    >>> dets = det(frame)   # Detections in frame pixels

Tile settings (`TileSpec`, parsed from a string by `parse_tiles`):

- ``"CxR"``: a grid of C columns and R rows covering the frame, neighbours overlapping by
  ``overlap`` (a fraction of the tile side, default 0.2);
- ``"WxHpx"`` / ``"Spx"``: tiles of W×H (S×S) pixels, as many as it takes to cover the frame with
  at least that overlap. A side longer than the frame's is cut to the frame (one row or column);
  a tile larger than the frame both ways is an `InvalidInputError` (there is nothing to tile).

Merging (`merge_tiles`), in the original frame's pixels:

1. a box that touches a tile edge lying inside the frame (within ``margin`` pixels) is *cut*: the
   tile saw part of an object. A cut box mostly covered (``cut_coverage`` of its area) by an
   uncut box of the same class from another view is dropped: the object was seen whole there
   (in the neighbouring tile, thanks to the overlap, or in the full frame);
2. cut boxes left (objects larger than the overlap, seen whole by no view) that overlap a cut box
   of the same class from another view (intersection over the smaller box >= 0.3) are joined into
   their union, with the higher score;
3. what remains goes through the wrapped detector's NMS kind and IoU threshold (class-aware by
   default), or through weighted box fusion (``merge="wbf"``, `edgedet.fusion`, always per
   class), and is cut to its ``max_detections``;
4. with ``merge="ios"``, after that NMS, a box of the same class from another view that lies
   mostly inside a higher-scored one (intersection over the smaller box >= `IOS_THRESHOLD`) is
   dropped too, as SAHI's greedy merge does: a tile's tight box and the full frame's loose box of
   one object often overlap by less than the NMS IoU. Fewer duplicates, at the price of an
   occasional object hidden behind another of its class (docs/tiles.md has both measured).

Steps 1, 2 and 4 are written here (numpy) because no box library knows which edges of a box were
cut by a tile or which view a box came from; step 3 uses edgedet's NMS (`edgedet.boxes.nms`) or
ensemble-boxes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .boxes import box_area, nms
from .detections import Detections
from .errors import InvalidInputError
from .views import MultiViewDetector, View

#: Tile merges `merge_tiles` offers.
TILE_MERGES = ("nms", "ios", "wbf")
#: Smallest tile side a grid may make, in pixels.
MIN_TILE = 32
#: ``merge="ios"``: intersection over the smaller box above which another view's box is dropped.
IOS_THRESHOLD = 0.6


@dataclass(frozen=True)
class TileSpec:
    """How to cut a frame: a grid (``grid`` = (cols, rows)) or a tile size in pixels
    (``size`` = (w, h)); ``overlap`` in [0, 0.9); ``full_frame``: add the whole frame as a view."""

    grid: tuple[int, int] | None = None
    size: tuple[int, int] | None = None
    overlap: float = 0.2
    full_frame: bool = True

    def __post_init__(self) -> None:
        if (self.grid is None) == (self.size is None):
            raise InvalidInputError("a TileSpec needs either grid=(cols, rows) or size=(w, h)")
        pair = self.grid if self.grid is not None else self.size
        assert pair is not None  # for the type checker; checked just above
        if len(pair) != 2 or any(isinstance(v, bool) or int(v) != v or v < 1 for v in pair):
            raise InvalidInputError(f"tiles must be two whole numbers >= 1, got {pair!r}")
        if not isinstance(self.overlap, (int, float)) or not 0.0 <= float(self.overlap) < 0.9:
            raise InvalidInputError(f"tile overlap must be in [0, 0.9), got {self.overlap!r}")

    def describe(self) -> str:
        cut = (
            f"{self.grid[0]}x{self.grid[1]}" if self.grid else f"{self.size[0]}x{self.size[1]}px"  # type: ignore[index]
        )
        return f"{cut} overlap {self.overlap:g}" + (" + full frame" if self.full_frame else "")


_GRID = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")
_SIZE = re.compile(r"^\s*(\d+)(?:\s*[x×]\s*(\d+))?\s*px\s*$")


def parse_tiles(text: str | TileSpec, *, overlap: float = 0.2, full_frame: bool = True) -> TileSpec:
    """``"2x2"`` (grid: columns x rows), ``"640px"`` / ``"640x384px"`` (tile size) -> `TileSpec`.

    Raises `InvalidInputError` naming the forms it takes."""
    if isinstance(text, TileSpec):
        return text
    if not isinstance(text, str):
        raise InvalidInputError(
            f"tiles must be a string like '2x2' (grid) or '640px' (tile size), got {text!r}"
        )
    m = _GRID.match(text)
    if m:
        return TileSpec(grid=(int(m[1]), int(m[2])), overlap=overlap, full_frame=full_frame)
    m = _SIZE.match(text)
    if m:
        w = int(m[1])
        h = int(m[2]) if m[2] else w
        return TileSpec(size=(w, h), overlap=overlap, full_frame=full_frame)
    raise InvalidInputError(
        f"tiles {text!r}: expected a grid 'COLSxROWS' (e.g. 2x2, 3x1) or a tile size 'Spx' / "
        "'WxHpx' (e.g. 640px, 640x384px)"
    )


def _starts(length: int, tile: int, count: int) -> list[int]:
    """``count`` tile starts spreading tiles of ``tile`` px evenly over ``length`` px."""
    if count == 1:
        return [0]
    span = length - tile
    return [round(i * span / (count - 1)) for i in range(count)]


def plan_tiles(image_hw: tuple[int, int], spec: TileSpec) -> list[View]:
    """The tile views (and the full frame, last, if ``spec.full_frame``) of an image (h, w).

    Raises `InvalidInputError` when the tiles would be larger than the image both ways, or a
    grid's tile side smaller than `MIN_TILE` pixels."""
    h, w = int(image_hw[0]), int(image_hw[1])
    ov = float(spec.overlap)
    if spec.grid is not None:
        cols, rows = spec.grid
        if cols == rows == 1:
            raise InvalidInputError(
                f"tiles 1x1 on a {w}x{h} image: one tile is the whole image, nothing to tile; "
                "use a grid such as 2x2 (or no tiles)"
            )
        # side such that `count` tiles overlapping by `ov` of a side cover the length exactly
        tw = math.ceil(w / (cols - (cols - 1) * ov))
        th = math.ceil(h / (rows - (rows - 1) * ov))
        if min(tw, th) < MIN_TILE:
            raise InvalidInputError(
                f"tiles {cols}x{rows} on a {w}x{h} image give tiles of {min(tw, w)}x{min(th, h)} "
                f"px, smaller than {MIN_TILE} px: use fewer tiles for an image this small"
            )
        tw, th = min(tw, w), min(th, h)
    else:
        assert spec.size is not None  # TileSpec holds grid or size
        tw, th = spec.size
        if tw >= w and th >= h:
            raise InvalidInputError(
                f"tiles of {tw}x{th} px are not smaller than the {w}x{h} image: nothing to tile; "
                "use a smaller tile size (or no tiles)"
            )
        if min(tw, th) < MIN_TILE:
            raise InvalidInputError(f"tiles of {tw}x{th} px: a side must be >= {MIN_TILE} px")
        tw, th = min(tw, w), min(th, h)
        step_x, step_y = max(1, round(tw * (1 - ov))), max(1, round(th * (1 - ov)))
        cols = 1 if tw >= w else 1 + math.ceil((w - tw) / step_x)
        rows = 1 if th >= h else 1 + math.ceil((h - th) / step_y)
    views = []
    for r, y0 in enumerate(_starts(h, th, rows)):
        for c, x0 in enumerate(_starts(w, tw, cols)):
            views.append(View((x0, y0, x0 + tw, y0 + th), (h, w), name=f"tile r{r}c{c}"))
    if spec.full_frame:
        views.append(View((0, 0, w, h), (h, w), name="full"))
    return views


def _cut_flags(xyxy: np.ndarray, view: View, margin: float) -> np.ndarray:
    """bool (N,): the box touches one of the view's window edges that lie inside the image."""
    x0, y0, x1, y1 = view.window
    left, top, right, bottom = view.interior_edges()
    cut = np.zeros(len(xyxy), bool)
    if left:
        cut |= xyxy[:, 0] <= x0 + margin
    if top:
        cut |= xyxy[:, 1] <= y0 + margin
    if right:
        cut |= xyxy[:, 2] >= x1 - margin
    if bottom:
        cut |= xyxy[:, 3] >= y1 - margin
    return cut


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection areas of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    return wh[..., 0] * wh[..., 1]  # type: ignore[no-any-return]


def merge_tiles(
    per_view: list[Detections],
    views: list[View],
    *,
    iou_threshold: float,
    max_detections: int,
    class_aware: bool = True,
    merge: str = "nms",
    margin: float = 2.0,
    cut_coverage: float = 0.6,
    image_hw: tuple[int, int] | None = None,
) -> Detections:
    """Merge tile views' detections (original pixels) into one set; see the module docstring.

    Returns `Detections` sorted by score, at most ``max_detections``."""
    if merge not in TILE_MERGES:
        raise InvalidInputError(f"tile merge must be one of {TILE_MERGES}, got {merge!r}")
    parts = [(d, v, i) for i, (d, v) in enumerate(zip(per_view, views)) if len(d)]
    if not parts:
        return Detections.empty()
    xyxy = np.concatenate([d.xyxy for d, _, _ in parts]).astype(np.float32)
    scores = np.concatenate([d.scores for d, _, _ in parts]).astype(np.float32)
    cls = np.concatenate([d.class_ids for d, _, _ in parts]).astype(np.int32)
    src = np.concatenate([np.full(len(d), i, np.int32) for d, _, i in parts])
    cut = np.concatenate([_cut_flags(d.xyxy, v, margin) for d, v, _ in parts])
    keep = np.ones(len(xyxy), bool)
    if cut.any():
        ci = np.flatnonzero(cut)
        ui = np.flatnonzero(~cut)
        areas = np.maximum(box_area(xyxy), 1e-6)
        same = np.zeros((len(ci), 0), bool)
        # 1. a cut box covered by an uncut one of its class from another view: drop it
        if len(ui):
            inter = _intersection(xyxy[ci], xyxy[ui])
            same = (cls[ci][:, None] == cls[ui][None, :]) & (src[ci][:, None] != src[ui][None, :])
            covered = ((inter / areas[ci][:, None] >= cut_coverage) & same).any(axis=1)
            keep[ci[covered]] = False
        # 2. cut pieces of one object seen by neighbouring tiles: join into their union
        left = ci[keep[ci]]
        order = left[np.argsort(-scores[left], kind="stable")]
        for a in order:
            if not keep[a]:
                continue
            others = order[(order != a) & keep[order]]
            if not len(others):
                continue
            inter = _intersection(xyxy[a : a + 1], xyxy[others])[0]
            ios = inter / np.minimum(areas[a], areas[others])
            hit = others[(ios >= 0.3) & (cls[others] == cls[a]) & (src[others] != src[a])]
            if len(hit):
                group = np.concatenate([[a], hit])
                xyxy[a] = [*xyxy[group, :2].min(axis=0), *xyxy[group, 2:].max(axis=0)]
                scores[a] = scores[group].max()
                keep[hit] = False
    xyxy, scores, cls, src = xyxy[keep], scores[keep], cls[keep], src[keep]
    if merge == "wbf":
        from .fusion import fuse

        groups = [
            Detections(xyxy[src == i], scores[src == i], cls[src == i]) for i in np.unique(src)
        ]
        if image_hw is None:
            image_hw = views[0].image_hw
        return fuse(
            groups,
            image_hw,
            iou_threshold=iou_threshold,
            conf_type="max",  # a tile sees only part of the frame: no penalty for the others
            max_detections=max_detections,
        )
    idx = nms(xyxy, scores, iou_threshold, cls if class_aware else None, max_det=max_detections)
    if merge == "ios":
        idx = idx[_cross_view_ios(xyxy[idx], scores[idx], cls[idx], src[idx], IOS_THRESHOLD)]
    return Detections(xyxy[idx], scores[idx], cls[idx])


def _cross_view_ios(
    xyxy: np.ndarray, scores: np.ndarray, cls: np.ndarray, src: np.ndarray, threshold: float
) -> np.ndarray:
    """bool (N,): kept after dropping, class by class in score order, each box of another view
    whose intersection with a kept box is >= ``threshold`` of the smaller one's area."""
    keep = np.ones(len(xyxy), bool)
    areas = np.maximum(box_area(xyxy), 1e-6)
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        for k, a in enumerate(idx):
            if not keep[a]:
                continue
            rest = idx[k + 1 :]
            rest = rest[keep[rest] & (src[rest] != src[a])]
            if len(rest):
                inter = _intersection(xyxy[a : a + 1], xyxy[rest])[0]
                ios = inter / np.minimum(areas[a], areas[rest])
                keep[rest[ios >= threshold]] = False
    return keep


class TiledDetector(MultiViewDetector):
    """A `Detector` run on overlapping tiles of each frame (and the whole frame), merged.

    Args:
        detector: an `edgedet.Detector` (any runtime), or another wrapper with its surface.
        tiles: a `TileSpec` or its string (``"2x2"``, ``"640px"``; see `parse_tiles`).
        overlap: fraction of a tile side shared with its neighbour (when ``tiles`` is a string).
        full_frame: also run the whole frame (objects larger than a tile stay whole).
        merge: ``"nms"`` (the detector's NMS kind and IoU threshold), ``"ios"`` (that NMS, then
            other views' boxes mostly inside a kept one dropped) or ``"wbf"`` (weighted box
            fusion, needs the ``ensemble`` extra).
        batch: None: one batched runtime call per frame when the model takes a batch (dynamic
            batch axis), else one call per view with a warning, once; False: always one by one.
        margin: pixels (original frame) within which a box touches a tile edge (a cut box).
        why_sequential: the reason shown (once) when the views run one by one.

    Returns `Detections` in the original frame's pixels; thresholds, NMS and ``max_detections``
    are the wrapped detector's settings (set them on this object or on it).
    """

    kind = "tiles"

    def __init__(
        self,
        detector: Any,
        tiles: str | TileSpec = "2x2",
        *,
        overlap: float = 0.2,
        full_frame: bool = True,
        merge: str = "nms",
        batch: bool | None = None,
        margin: float = 2.0,
        why_sequential: str | None = None,
    ):
        if merge not in TILE_MERGES:
            raise InvalidInputError(f"tile merge must be one of {TILE_MERGES}, got {merge!r}")
        if merge == "wbf":
            from .fusion import require_ensemble_boxes

            require_ensemble_boxes()
        self.spec = parse_tiles(tiles, overlap=overlap, full_frame=full_frame)
        self.merge_method = merge
        self.margin = float(margin)
        super().__init__(detector, batch=batch, why_sequential=why_sequential)

    def views(self, image_hw: tuple[int, int]) -> list[View]:
        return plan_tiles(image_hw, self.spec)

    def merge(
        self, per_view: list[Detections], views: list[View], image_hw: tuple[int, int]
    ) -> Detections:
        return merge_tiles(
            per_view,
            views,
            iou_threshold=self.detector.iou_threshold,
            max_detections=self.detector.max_detections,
            class_aware=getattr(self.detector, "nms", "class_aware") != "agnostic",
            merge=self.merge_method,
            margin=self.margin,
            image_hw=image_hw,
        )

    def settings(self) -> dict[str, Any]:
        return {
            "tiles": self.spec.describe(),
            "grid": list(self.spec.grid) if self.spec.grid else None,
            "size": list(self.spec.size) if self.spec.size else None,
            "overlap": self.spec.overlap,
            "full_frame": self.spec.full_frame,
            "merge": self.merge_method,
            "batched": self.batched,
        }
