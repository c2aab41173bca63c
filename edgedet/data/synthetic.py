"""Synthetic road scenes: a deterministic, seeded generator of labelled images.

This module exists for two jobs only: to make the sample model that ships inside edgedet
(``edgedet/assets/sample_roads.onnx``, see ``recipes/build_sample.py``) together with the small
validation split `edgedet bench` uses when it is given no data, and to test the trainer without
any download. It is not a benchmark of real-world accuracy.

A scene is a road seen from a car: sky gradient, horizon, buildings and trees, grass, a road that
converges to a vanishing point, lane marks, shadows and unlabelled clutter; then objects of six
classes (``CLASS_NAMES``) placed on the ground plane with perspective, so far objects are small
and near ones large, drawn far to near so that near objects occlude far ones; then lighting,
colour cast, noise and sometimes blur. Classes are imbalanced on purpose (many cars, few
cyclists). Every box is tight to the object's *visible* pixels (computed from an id map, not
from the shape's nominal extent); objects less than half visible or smaller than
``MIN_BOX`` pixels are not placed at all, so no unlabelled object is drawn.

The same ``seed`` gives the same scenes, byte for byte, on any machine (numpy's PCG64 and
OpenCV's integer drawing, no anti-aliasing).

Public API: `make_scenes` (in memory), `generate` (writes COCO JSON and a YOLO folder sharing one
``images/`` folder), `sample_validation_set` (the held-out split the sample is judged on).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgedet.errors import InvalidInputError

CLASS_NAMES: tuple[str, ...] = ("car", "truck", "pedestrian", "cyclist", "traffic_cone", "sign")
#: Relative frequency of each class (deliberately imbalanced).
CLASS_FREQ: tuple[float, ...] = (0.38, 0.11, 0.20, 0.06, 0.14, 0.11)
#: Smallest visible box side, in pixels, for a placed object.
MIN_BOX = 8
#: Seeds of the splits the sample uses (training and held-out validation differ).
SAMPLE_TRAIN_SEED = 1
SAMPLE_VAL_SEED = 1_000_003

# object size at the bottom of the image, as fractions of the image width: (width, height)
_SIZE = {
    0: (0.34, 0.22),  # car
    1: (0.42, 0.40),  # truck
    2: (0.075, 0.24),  # pedestrian
    3: (0.16, 0.24),  # cyclist
    4: (0.07, 0.10),  # traffic_cone
    5: (0.08, 0.26),  # sign (plate on a pole)
}


@dataclass
class Scene:
    """One generated image with its labels.

    ``image`` BGR uint8 (H, W, 3); ``xyxy`` float32 (N, 4) tight boxes in pixels (x2, y2
    exclusive: ``x2 = last column + 1``); ``class_ids`` int32 (N,).
    """

    image: np.ndarray
    xyxy: np.ndarray
    class_ids: np.ndarray
    extra: dict[str, float] = field(default_factory=dict)


# -- drawing primitives in object-local coordinates -----------------------------------------
# An object is a list of (kind, params, color); coordinates are fractions of the object box,
# x in [0, 1] left to right, y in [0, 1] top to bottom.

Prim = tuple[str, tuple[float, ...], tuple[int, ...]]


def _rand_color(rng: np.random.Generator, lo: int = 20, hi: int = 235) -> tuple[int, int, int]:
    c = rng.integers(lo, hi, size=3)
    return (int(c[0]), int(c[1]), int(c[2]))


def _car(rng: np.random.Generator) -> list[Prim]:
    body = _rand_color(rng)
    dark = (40, 40, 45)
    glass = tuple(int(v) for v in rng.integers(60, 110, 3))
    roof_l, roof_r = rng.uniform(0.12, 0.25), rng.uniform(0.75, 0.88)
    return [
        ("poly", (roof_l, 0.0, roof_r, 0.0, 0.95, 0.45, 0.05, 0.45), body),
        ("poly", (roof_l + 0.05, 0.08, roof_r - 0.05, 0.08, 0.86, 0.42, 0.14, 0.42), glass),
        ("rect", (0.0, 0.4, 1.0, 0.85), body),
        ("rect", (0.02, 0.5, 0.14, 0.6), (200, 230, 250)),
        ("rect", (0.86, 0.5, 0.98, 0.6), (200, 230, 250)),
        ("ellipse", (0.2, 0.83, 0.11, 0.17), dark),
        ("ellipse", (0.8, 0.83, 0.11, 0.17), dark),
    ]


def _truck(rng: np.random.Generator) -> list[Prim]:
    box = _rand_color(rng, 60, 245)
    cab = _rand_color(rng)
    dark = (35, 35, 35)
    return [
        ("rect", (0.0, 0.0, 1.0, 0.78), box),
        (
            "rect",
            (0.04, 0.05, 0.96, 0.09),
            (max(box[0] - 40, 0), max(box[1] - 40, 0), max(box[2] - 40, 0)),
        ),
        ("rect", (0.0, 0.72, 1.0, 0.88), cab),
        ("rect", (0.15, 0.86, 0.85, 0.92), dark),
        ("ellipse", (0.15, 0.9, 0.09, 0.1), dark),
        ("ellipse", (0.85, 0.9, 0.09, 0.1), dark),
    ]


def _pedestrian(rng: np.random.Generator) -> list[Prim]:
    skin = tuple(int(v) for v in rng.integers(60, 200, 3) * np.array([0.7, 0.85, 1.0]))
    shirt = _rand_color(rng)
    pants = _rand_color(rng, 10, 150)
    return [
        ("ellipse", (0.5, 0.09, 0.3, 0.09), skin),
        ("rect", (0.12, 0.17, 0.88, 0.56), shirt),
        ("rect", (0.0, 0.2, 0.14, 0.5), shirt),
        ("rect", (0.86, 0.2, 1.0, 0.5), shirt),
        ("rect", (0.15, 0.55, 0.46, 1.0), pants),
        ("rect", (0.54, 0.55, 0.85, 1.0), pants),
    ]


def _cyclist(rng: np.random.Generator) -> list[Prim]:
    frame = _rand_color(rng)
    shirt = _rand_color(rng)
    skin = (120, 150, 190)
    dark = (25, 25, 25)
    return [
        ("ring", (0.2, 0.78, 0.2, 0.22, 0.18), dark),
        ("ring", (0.8, 0.78, 0.2, 0.22, 0.18), dark),
        ("line", (0.2, 0.78, 0.5, 0.62, 0.1), frame),
        ("line", (0.5, 0.62, 0.8, 0.78, 0.1), frame),
        ("line", (0.35, 0.55, 0.7, 0.55, 0.1), frame),
        ("rect", (0.38, 0.12, 0.62, 0.5), shirt),
        ("ellipse", (0.5, 0.065, 0.12, 0.065), skin),
        ("line", (0.55, 0.2, 0.74, 0.5, 0.08), shirt),
    ]


def _cone(rng: np.random.Generator) -> list[Prim]:
    orange = (0, int(rng.integers(90, 150)), int(rng.integers(220, 256)))
    return [
        ("poly", (0.4, 0.0, 0.6, 0.0, 0.9, 0.9, 0.1, 0.9), orange),
        ("poly", (0.3, 0.33, 0.7, 0.33, 0.77, 0.55, 0.23, 0.55), (235, 235, 235)),
        ("rect", (0.0, 0.86, 1.0, 1.0), orange),
    ]


def _sign(rng: np.random.Generator) -> list[Prim]:
    kind = int(rng.integers(0, 3))
    pole = (110, 110, 115)
    prims: list[Prim] = [("rect", (0.42, 0.3, 0.58, 1.0), pole)]
    if kind == 0:  # round: red ring, white inside
        prims += [
            ("ellipse", (0.5, 0.2, 0.5, 0.2), (30, 30, 210)),
            ("ellipse", (0.5, 0.2, 0.34, 0.135), (240, 240, 240)),
        ]
    elif kind == 1:  # triangle
        prims += [
            ("poly", (0.5, 0.0, 1.0, 0.4, 0.0, 0.4), (30, 30, 210)),
            ("poly", (0.5, 0.1, 0.8, 0.34, 0.2, 0.34), (240, 240, 240)),
        ]
    else:  # blue square
        prims += [
            ("rect", (0.0, 0.0, 1.0, 0.38), (200, 110, 20)),
            ("rect", (0.3, 0.08, 0.7, 0.3), (245, 245, 245)),
        ]
    return prims


_MAKERS = (_car, _truck, _pedestrian, _cyclist, _cone, _sign)


def _render(
    prims: Sequence[Prim],
    box: tuple[float, float, float, float],
    img: np.ndarray | None,
    ids: np.ndarray,
    oid: int,
) -> None:
    """Draw an object's primitives into ``img`` (colours) and ``ids`` (object id)."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    sh = 4  # sub-pixel bits for cv2 drawing
    f = float(1 << sh)

    def px(u: float, v: float) -> tuple[int, int]:
        return (round((x0 + u * bw) * f), round((y0 + v * bh) * f))

    for kind, p, color in prims:
        targets: list[tuple[np.ndarray, tuple[int, ...]]] = [(ids, (oid,))]
        if img is not None:
            targets.append((img, color))
        for canvas, c in targets:
            if kind == "rect":
                pts = np.array(
                    [px(p[0], p[1]), px(p[2], p[1]), px(p[2], p[3]), px(p[0], p[3])], np.int32
                )
                cv2.fillPoly(canvas, [pts], c, lineType=cv2.LINE_8, shift=sh)
            elif kind == "poly":
                pts = np.array([px(p[i], p[i + 1]) for i in range(0, len(p), 2)], np.int32)
                cv2.fillPoly(canvas, [pts], c, lineType=cv2.LINE_8, shift=sh)
            elif kind == "ellipse":
                cx, cy = px(p[0], p[1])
                axes = (max(round(p[2] * bw * f), 1), max(round(p[3] * bh * f), 1))
                cv2.ellipse(canvas, (cx, cy), axes, 0, 0, 360, c, -1, cv2.LINE_8, sh)
            elif kind == "ring":
                cx, cy = px(p[0], p[1])
                axes = (max(round(p[2] * bw * f), 1), max(round(p[3] * bh * f), 1))
                thick = max(round(p[4] * min(bw, bh) * 0.5), 1)
                cv2.ellipse(canvas, (cx, cy), axes, 0, 0, 360, c, thick, cv2.LINE_8, sh)
            elif kind == "line":
                thick = max(round(p[4] * min(bw, bh)), 1)
                cv2.line(canvas, px(p[0], p[1]), px(p[2], p[3]), c, thick, cv2.LINE_8, sh)


# -- the scene ---------------------------------------------------------------------------------


def _background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict[str, float]]:
    img: np.ndarray = np.empty((h, w, 3), np.float32)
    hor = h * rng.uniform(0.32, 0.48)
    top = rng.uniform([140, 90, 40], [255, 200, 160])
    low = rng.uniform([180, 170, 150], [255, 240, 230])
    t = np.clip(np.arange(h, dtype=np.float32) / max(hor, 1.0), 0, 1)[:, None]
    img[:] = (top[None, :] * (1 - t) + low[None, :] * t)[:, None, :]
    img = img.astype(np.uint8)
    hi = int(hor)
    # buildings and trees on the horizon
    for _ in range(int(rng.integers(2, 9))):
        bx = rng.uniform(-0.1, 1.0) * w
        bw = rng.uniform(0.05, 0.2) * w
        bh = rng.uniform(0.03, 0.25) * h
        if rng.random() < 0.6:
            col = tuple(int(v) for v in rng.integers(70, 200, 3))
            cv2.rectangle(img, (int(bx), int(hor - bh)), (int(bx + bw), hi), col, -1)
            for _ in range(int(rng.integers(0, 6))):  # windows
                wx, wy = bx + rng.uniform(0, bw), hor - rng.uniform(0, bh)
                cv2.rectangle(img, (int(wx), int(wy)), (int(wx + 2), int(wy + 2)), (60, 60, 60), -1)
        else:
            g = (int(rng.integers(20, 80)), int(rng.integers(80, 160)), int(rng.integers(20, 80)))
            cx = int(bx + bw / 2)
            cv2.ellipse(
                img,
                (cx, int(hor - bh * 0.7)),
                (max(int(bw / 2), 1), max(int(bh / 2), 1)),
                0,
                0,
                360,
                g,
                -1,
            )
            cv2.rectangle(img, (cx - 1, int(hor - bh * 0.3)), (cx + 1, hi), (30, 60, 90), -1)
    # ground
    grass = rng.uniform([20, 80, 40], [90, 170, 130])
    img[hi:] = grass.astype(np.uint8)
    # road polygon to the vanishing point
    vx = w * rng.uniform(0.3, 0.7)
    xl, xr = w * rng.uniform(-0.45, 0.1), w * rng.uniform(0.9, 1.45)
    road = int(rng.integers(60, 130))
    road_col = (road, road, road + int(rng.integers(-8, 9)))
    pts = np.array([[vx - 2, hor], [vx + 2, hor], [xr, h], [xl, h]], np.int32)
    cv2.fillPoly(img, [pts], road_col)
    # lane marks: solid edges, dashed centre
    white = (225, 225, 225)
    cv2.line(img, (int(vx), hi), (int(xl + 0.06 * w), h), white, 1)
    cv2.line(img, (int(vx), hi), (int(xr - 0.06 * w), h), white, 1)
    cxb = (xl + xr) / 2
    phase = rng.uniform(0, 1)
    for k in range(10):
        a = (k + phase) / 10.0
        b = a + 0.05
        ya, yb = hor + (h - hor) * a**2, hor + (h - hor) * b**2
        xa, xb = vx + (cxb - vx) * a**2, vx + (cxb - vx) * b**2
        thick = max(1, round(3 * b))
        cv2.line(img, (int(xa), int(ya)), (int(xb), int(yb)), white, thick)
    # shadows and unlabelled clutter on the ground (stones, bushes, puddles)
    for _ in range(int(rng.integers(0, 4))):
        sx, sy = rng.uniform(0, w), rng.uniform(hor, h)
        s = (sy - hor) / (h - hor)
        ax = (
            max(int(rng.uniform(0.05, 0.3) * w * s), 1),
            max(int(rng.uniform(0.01, 0.05) * h * s), 1),
        )
        region = img.copy()
        cv2.ellipse(region, (int(sx), int(sy)), ax, 0, 0, 360, (0, 0, 0), -1)
        img = cv2.addWeighted(img, 0.6, region, 0.4, 0)
    for _ in range(int(rng.integers(0, 6))):
        sx, sy = rng.uniform(0, w), rng.uniform(hor, h)
        s = (sy - hor) / (h - hor)
        r = max(int(rng.uniform(0.005, 0.02) * w * s), 1)
        cv2.circle(img, (int(sx), int(sy)), r, tuple(int(v) for v in rng.integers(30, 160, 3)), -1)
    return img, {"horizon": float(hor), "vx": float(vx), "xl": float(xl), "xr": float(xr)}


def _plan_objects(
    rng: np.random.Generator, h: int, w: int, geo: dict[str, float]
) -> list[tuple[int, tuple[float, float, float, float], float]]:
    """(class_id, box, depth) of the objects to try, box in pixels (may leave the frame)."""
    hor, vx, xl, xr = geo["horizon"], geo["vx"], geo["xl"], geo["xr"]
    n = int(rng.integers(2, 11))
    out = []
    freq = np.asarray(CLASS_FREQ) / np.sum(CLASS_FREQ)
    for _ in range(n):
        cid = int(rng.choice(len(CLASS_NAMES), p=freq))
        fw, fh = _SIZE[cid]
        jitter = rng.uniform(0.85, 1.15)
        ow, oh = fw * w * jitter, fh * w * jitter * rng.uniform(0.92, 1.08)
        smin = max(MIN_BOX / min(ow, oh), 0.04)
        if smin >= 1.05:
            continue
        # far objects more likely: s uniform in sqrt space
        s = smin + (1.1 - smin) * rng.uniform(0, 1) ** 1.5
        yb = hor + s * (h - hor)  # ground contact line
        left = vx + (xl - vx) * s
        right = vx + (xr - vx) * s
        if cid in (0, 1, 4):  # on the road
            xc = (
                rng.uniform(left + 0.3 * ow * s, right - 0.3 * ow * s)
                if right - left > ow * s
                else (left + right) / 2
            )
        elif cid == 5:  # beside the road
            side = rng.random() < 0.5
            xc = (
                left - rng.uniform(0.2, 1.5) * ow * s
                if side
                else right + rng.uniform(0.2, 1.5) * ow * s
            )
        else:  # pedestrians and cyclists: road edges, sidewalk, crossing
            xc = rng.uniform(left - 0.15 * (right - left), right + 0.15 * (right - left))
        bw, bh = ow * s, oh * s
        box = (xc - bw / 2, yb - bh, xc + bw / 2, yb)
        out.append((cid, box, s))
    out.sort(key=lambda t: t[2])  # far first
    return out


def _lighting_table(rng: np.random.Generator) -> np.ndarray:
    """A lighting (gain, colour cast, offset, gamma) as a per-channel table, float64 (256, 3)."""
    gain = rng.uniform(0.6, 1.3)
    cast = rng.uniform(0.9, 1.1, 3)
    offset = rng.uniform(-20, 20)
    gamma = rng.uniform(0.8, 1.25)
    v = np.arange(256, dtype=np.float64)[:, None]
    lut: np.ndarray = 255.0 * (np.clip(v * gain * cast[None, :] + offset, 0, 255) / 255.0) ** gamma
    return lut


def _lit_noisy(
    img: np.ndarray, lut: np.ndarray, sigma: np.float32, rng: np.random.Generator
) -> np.ndarray:
    """``img`` through the lighting table ``lut``, plus Gaussian sensor noise of ``sigma``."""
    f = np.empty(img.shape, np.float32)
    for c in range(3):
        f[:, :, c] = lut[:, c].astype(np.float32)[img[:, :, c]]
    f += rng.standard_normal(f.shape, dtype=np.float32) * sigma
    out: np.ndarray = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    return out


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Lighting (gain, colour cast, offset, gamma) through a per-channel table, sensor noise,
    sometimes blur."""
    lut = _lighting_table(rng)
    sigma = np.float32(rng.uniform(1.0, 7.0))
    out = _lit_noisy(img, lut, sigma, rng)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (3, 3), 0)
    return out


def make_scene(rng: np.random.Generator, imgsz: tuple[int, int] = (256, 256)) -> Scene:
    """One scene drawn with ``rng`` (see the module docstring)."""
    h, w = int(imgsz[0]), int(imgsz[1])
    img, geo = _background(rng, h, w)
    plan = _plan_objects(rng, h, w, geo)
    prims = [_MAKERS[cid](rng) for cid, _, _ in plan]
    keep = list(range(len(plan)))
    ids = np.zeros((h, w), np.int32)
    # drop objects until every kept one is at least half visible and large enough
    while True:
        ids[:] = 0
        full: dict[int, int] = {}
        for k in keep:
            solo = np.zeros((h, w), np.uint8)
            _render(prims[k], plan[k][1], None, solo, 1)
            full[k] = int(np.count_nonzero(solo))
            _render(prims[k], plan[k][1], None, ids, k + 1)
        counts = np.bincount(ids.ravel(), minlength=len(plan) + 1)
        worst, worst_frac = None, 1.0
        boxes: dict[int, tuple[int, int, int, int]] = {}
        for k in keep:
            vis = int(counts[k + 1])
            frac = vis / max(full[k], 1)
            ok = vis > 0
            if ok:
                ys, xs = np.nonzero(ids == k + 1)
                bx = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
                boxes[k] = bx
                ok = min(bx[2] - bx[0], bx[3] - bx[1]) >= MIN_BOX
            if not ok:
                frac = -1.0
            if frac < 0.5 and frac < worst_frac:
                worst, worst_frac = k, frac
        if worst is None:
            break
        keep.remove(worst)
    for k in keep:
        _render(prims[k], plan[k][1], img, ids, k + 1)
    img = _finish(rng, img)
    xyxy = np.array([boxes[k] for k in keep], np.float32).reshape(-1, 4)
    cls = np.array([plan[k][0] for k in keep], np.int32)
    return Scene(img, xyxy, cls, {"horizon": geo["horizon"]})


def iter_scenes(n: int, seed: int, imgsz: tuple[int, int] = (256, 256)) -> Iterator[Scene]:
    """``n`` scenes from ``seed``; scene ``i`` depends only on (seed, i)."""
    if n < 0:
        raise InvalidInputError(f"number of scenes must be >= 0, got {n}")
    if len(imgsz) != 2 or min(imgsz) < 64:
        raise InvalidInputError(f"imgsz must be (height, width) with both >= 64, got {imgsz!r}")
    for i in range(n):
        rng = np.random.Generator(np.random.PCG64([int(seed), i]))
        yield make_scene(rng, imgsz)


def make_scenes(n: int, seed: int, imgsz: tuple[int, int] = (256, 256)) -> list[Scene]:
    """``n`` scenes in memory (see `iter_scenes`)."""
    return list(iter_scenes(n, seed, imgsz))


def generate(
    out_dir: str | Path,
    n: int,
    seed: int,
    imgsz: tuple[int, int] = (256, 256),
    formats: Sequence[str] = ("coco", "yolo"),
    image_ext: str = ".png",
) -> Path:
    """Write ``n`` scenes to ``out_dir`` and return it.

    Layout: ``images/<id>.png``; ``annotations/instances.json`` (COCO, category ids 1..6 in
    `CLASS_NAMES` order) when "coco" is in ``formats``; ``labels/<id>.txt`` (YOLO: class cx cy w h,
    normalised) plus ``data.yaml`` and ``classes.txt`` when "yolo" is. PNG keeps pixels exact
    (``image_ext=".jpg"`` is smaller).
    """
    bad = sorted(set(formats) - {"coco", "yolo"})
    if bad or not formats:
        raise InvalidInputError(
            f"formats must be a subset of ('coco', 'yolo'), got {tuple(formats)!r}"
        )
    if image_ext not in (".png", ".jpg"):
        raise InvalidInputError(f"image_ext must be '.png' or '.jpg', got {image_ext!r}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if "yolo" in formats:
        (out / "labels").mkdir(exist_ok=True)
    images: list[dict[str, object]] = []
    anns: list[dict[str, object]] = []
    h, w = int(imgsz[0]), int(imgsz[1])
    for i, sc in enumerate(iter_scenes(n, seed, imgsz)):
        name = f"{i:06d}"
        params = (
            [cv2.IMWRITE_JPEG_QUALITY, 95]
            if image_ext == ".jpg"
            else [cv2.IMWRITE_PNG_COMPRESSION, 3]
        )
        ok, buf = cv2.imencode(image_ext, sc.image, params)
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
            raise InvalidInputError(f"could not encode scene {i}")
        (out / "images" / f"{name}{image_ext}").write_bytes(buf.tobytes())
        images.append({"id": i + 1, "file_name": f"{name}{image_ext}", "width": w, "height": h})
        lines = []
        for box, c in zip(sc.xyxy.tolist(), sc.class_ids.tolist()):
            x0, y0, x1, y1 = box
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(c) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
            lines.append(
                f"{c} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
            )
        if "yolo" in formats:
            (out / "labels" / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
    if "coco" in formats:
        (out / "annotations").mkdir(exist_ok=True)
        coco = {
            "info": {
                "description": f"edgedet synthetic road scenes, seed {seed}, n {n}, imgsz {h}x{w}"
            },
            "images": images,
            "annotations": anns,
            "categories": [
                {"id": k + 1, "name": nm, "supercategory": "road"}
                for k, nm in enumerate(CLASS_NAMES)
            ],
        }
        (out / "annotations" / "instances.json").write_text(json.dumps(coco))
    if "yolo" in formats:
        names = "\n".join(f"  {k}: {nm}" for k, nm in enumerate(CLASS_NAMES))
        (out / "data.yaml").write_text(f"path: .\ntrain: images\nval: images\nnames:\n{names}\n")
        (out / "classes.txt").write_text("".join(nm + "\n" for nm in CLASS_NAMES))
    return out


def sample_validation_set(
    out_dir: str | Path | None = None,
    n: int = 200,
    seed: int = SAMPLE_VAL_SEED,
    imgsz: tuple[int, int] = (192, 192),
) -> Path:
    """The held-out synthetic split the shipped sample model is judged on, written to disk.

    Its seed differs from the training split's (`SAMPLE_TRAIN_SEED`). With ``out_dir`` None it
    goes to a per-user cache folder (``$XDG_CACHE_HOME/edgedet/sample_val_<seed>_<n>``, reused
    when complete). Returns the dataset folder (COCO JSON + YOLO labels).
    """
    if out_dir is None:
        import os

        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgedet"
        out = base / f"sample_val_{seed}_{n}_{imgsz[0]}x{imgsz[1]}"
        if (out / ".complete").is_file():
            return out
    else:
        out = Path(out_dir)
    generate(out, n, seed, imgsz)
    (out / ".complete").write_text("ok\n")
    return out


# -- sequences: objects with identities moving across frames ----------------------------------


@dataclass
class SequenceFrame:
    """One frame of a synthetic sequence with its ground truth.

    ``image`` BGR uint8 (H, W, 3); ``xyxy`` float32 (N, 4) tight boxes of the visible pixels
    (x2, y2 exclusive); ``class_ids`` int32 (N,); ``track_ids`` int32 (N,), an object's id, the
    same in every frame it appears in (1-based); ``visibility`` float32 (N,) in (0, 1], the
    fraction of the object's in-frame pixels not hidden by nearer objects; ``scored`` bool
    (N,), whether evaluation counts the object: at least half visible and ``MIN_BOX`` pixels
    on its shorter side, the rule the sample detector was trained with (the others are drawn
    and listed so that evaluation can ignore detections of them).
    """

    image: np.ndarray
    xyxy: np.ndarray
    class_ids: np.ndarray
    track_ids: np.ndarray
    visibility: np.ndarray
    scored: np.ndarray


@dataclass
class _Mover:
    """One object of a sequence: where it is at frame t (ground-plane depth ``s`` and position
    ``u`` across the road, 0 = left edge, 1 = right edge), from frame ``start``."""

    tid: int
    cid: int
    prims: list[Prim]
    size: tuple[float, float]  # width, height in pixels at s = 1
    start: int
    s0: float
    u0: float
    vs: float
    vu: float

    def at(self, t: int) -> tuple[float, float] | None:
        if t < self.start:
            return None
        s = self.s0 + self.vs * (t - self.start)
        return (s, self.u0 + self.vu * (t - self.start)) if 0.04 <= s <= 1.2 else None


def _plan_movers(
    rng: np.random.Generator, w: int, frames: int, objects: int
) -> list[_Mover]:
    """``objects`` movers: vehicles drive along the road (towards or away from the camera),
    pedestrians and cyclists cross it, cones and signs stand still; a third start later."""
    freq = np.asarray(CLASS_FREQ) / np.sum(CLASS_FREQ)
    out = []
    for k in range(objects):
        cid = int(rng.choice(len(CLASS_NAMES), p=freq))
        fw, fh = _SIZE[cid]
        jitter = rng.uniform(0.85, 1.15)
        size = (fw * w * jitter, fh * w * jitter * rng.uniform(0.92, 1.08))
        start = 0 if rng.random() < 0.67 else int(rng.integers(1, max(frames // 2, 2)))
        s0 = float(rng.uniform(0.15, 0.95))
        vs = vu = 0.0
        if cid in (0, 1):  # vehicles in a lane
            u0 = float(rng.uniform(0.2, 0.8))
            vs = float(rng.uniform(0.006, 0.02) * (1 if rng.random() < 0.6 else -1))
        elif cid in (2, 3):  # crossing, a cyclist faster
            u0 = float(rng.uniform(-0.1, 1.1))
            speed = rng.uniform(0.006, 0.015) * (2.0 if cid == 3 else 1.0)
            vu = float(speed * (1 if u0 < 0.5 else -1))
            vs = float(rng.uniform(-0.002, 0.002))
        elif cid == 4:  # cone on the road
            u0 = float(rng.uniform(0.1, 0.9))
        else:  # sign beside the road
            u0 = float(rng.choice([-0.25, 1.25]) + rng.uniform(-0.1, 0.1))
        out.append(_Mover(k + 1, cid, _MAKERS[cid](rng), size, start, s0, u0, vs, vu))
    return out


def make_sequence(
    frames: int, seed: int, imgsz: tuple[int, int] = (192, 192), objects: int = 8
) -> list[SequenceFrame]:
    """A seeded sequence of ``frames`` road frames from a parked camera, with ``objects``
    objects that keep their id while they move (see `SequenceFrame`).

    The background and lighting are fixed for the sequence; sensor noise is new every frame.
    Objects move on the ground plane with the perspective of `make_scene`, occlude each other
    (near over far), enter late, and leave the frame or shrink below `MIN_BOX`. The same
    (``seed``, ``frames``, ``imgsz``, ``objects``) gives the same frames, byte for byte.
    """
    if frames < 1 or objects < 0:
        raise InvalidInputError(f"need frames >= 1 and objects >= 0, got {frames}, {objects}")
    if len(imgsz) != 2 or min(imgsz) < 64:
        raise InvalidInputError(f"imgsz must be (height, width) with both >= 64, got {imgsz!r}")
    h, w = int(imgsz[0]), int(imgsz[1])
    rng = np.random.Generator(np.random.PCG64([int(seed), 7_000_001]))
    background, geo = _background(rng, h, w)
    lut = _lighting_table(rng)
    sigma = np.float32(rng.uniform(1.0, 5.0))
    movers = _plan_movers(rng, w, frames, objects)
    hor, vx, xl, xr = geo["horizon"], geo["vx"], geo["xl"], geo["xr"]
    out = []
    for t in range(frames):
        placed = []
        for m in movers:
            pos = m.at(t)
            if pos is None:
                continue
            s, u = pos
            yb = hor + s * (h - hor)
            left, right = vx + (xl - vx) * s, vx + (xr - vx) * s
            xc = left + u * (right - left)
            bw, bh = m.size[0] * s, m.size[1] * s
            placed.append((s, m, (xc - bw / 2, yb - bh, xc + bw / 2, yb)))
        placed.sort(key=lambda p: p[0])  # far first: near objects occlude far ones
        img = background.copy()
        ids = np.zeros((h, w), np.int32)
        full = {}
        for _, m, box in placed:
            solo = np.zeros((h, w), np.uint8)
            _render(m.prims, box, None, solo, 1)
            full[m.tid] = int(np.count_nonzero(solo))
            _render(m.prims, box, img, ids, m.tid)
        counts = np.bincount(ids.ravel(), minlength=len(movers) + 1)
        rows = []
        for _, m, _box in placed:
            if counts[m.tid] == 0:
                continue
            ys, xs = np.nonzero(ids == m.tid)
            bx = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            vis = counts[m.tid] / max(full[m.tid], 1)
            big = min(bx[2] - bx[0], bx[3] - bx[1]) >= MIN_BOX
            rows.append((bx, m.cid, m.tid, vis, big and vis >= 0.5))
        frame_rng = np.random.Generator(np.random.PCG64([int(seed), 7_000_001, t]))
        out.append(
            SequenceFrame(
                _lit_noisy(img, lut, sigma, frame_rng),
                np.array([r[0] for r in rows], np.float32).reshape(-1, 4),
                np.array([r[1] for r in rows], np.int32),
                np.array([r[2] for r in rows], np.int32),
                np.array([r[3] for r in rows], np.float32),
                np.array([r[4] for r in rows], bool),
            )
        )
    return out


def generate_sequence(
    out_dir: str | Path,
    frames: int,
    seed: int,
    imgsz: tuple[int, int] = (192, 192),
    objects: int = 8,
    fps: float = 10.0,
) -> Path:
    """Write `make_sequence` as a MOTChallenge sequence folder and return it.

    Layout: ``seqinfo.ini``, ``img1/000001.png`` ... (frames are 1-based, as in MOTChallenge),
    ``gt/gt.txt`` with one line per object and frame,
    ``frame,id,x,y,w,h,conf,class,visibility`` (box: top-left corner, width, height, in pixels;
    ``class`` = the `CLASS_NAMES` index + 1; ``conf`` 1 for a scored object, 0 for one mostly
    hidden or too small, which evaluation ignores: `SequenceFrame`), and ``classes.txt``. Read it back with
    `edgedet.data.mot.read_sequence`.
    """
    from edgedet.data.mot import write_gt, write_seqinfo

    out = Path(out_dir)
    (out / "img1").mkdir(parents=True, exist_ok=True)
    seq = make_sequence(frames, seed, imgsz, objects)
    rows = []
    for t, fr in enumerate(seq, start=1):
        ok, buf = cv2.imencode(".png", fr.image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
            raise InvalidInputError(f"could not encode frame {t}")
        (out / "img1" / f"{t:06d}.png").write_bytes(buf.tobytes())
        for box, cid, tid, vis, scored in zip(
            fr.xyxy, fr.class_ids, fr.track_ids, fr.visibility, fr.scored
        ):
            rows.append((t, int(tid), box, int(scored), int(cid) + 1, float(vis)))
    write_gt(out / "gt" / "gt.txt", rows)
    write_seqinfo(out, f"synth-{seed}", frames, fps, imgsz, ".png")
    (out / "classes.txt").write_text("".join(nm + "\n" for nm in CLASS_NAMES))
    return out
