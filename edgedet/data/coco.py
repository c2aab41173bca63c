"""COCO JSON: finding the annotation files, reading them (`read_coco`), the ground truth the
metrics feed to COCOeval (`coco_gt_dict`), and writing a COCO folder (`write_coco`)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DatasetError, InvalidInputError
from ..fileio import atomic_write_bytes
from ..validate import (
    brief,
    flag01,
    inside_root,
    parse_json,
    within,
)
from .common import (
    ProblemLog,
    check_box,
    default_name,
    fmt_box,
    make_annotation,
    place_image,
    relative_to_root,
)
from .dataset import ANY_CLASS, DetectionDataset, Sample
from .images import image_size


def find_coco_jsons(root: Path) -> list[Path]:
    found = sorted((root / "annotations").glob("instances_*.json"))
    if not found:
        found = sorted((root / "annotations").glob("*.json"))
    if not found:
        found = sorted(root.glob("instances_*.json"))
    return found


def _pick_by_split(found: list[Path], split: str | None, what: str, where: Path) -> Path:
    if split is not None:
        exact = [p for p in found if p.stem in (split, f"instances_{split}")]
        loose = [p for p in found if split in p.stem]
        hits = exact or loose
        if len(hits) != 1:
            raise DatasetError(
                f"{where}: split {split!r} matches {len(hits)} {what} "
                f"({', '.join(p.name for p in found)}); pass one of their names as split="
            )
        return hits[0]
    if len(found) == 1:
        return found[0]
    val = [p for p in found if "val" in p.stem]
    if len(val) == 1:
        return val[0]
    raise DatasetError(
        f"{where}: several {what} ({', '.join(p.name for p in found)}); choose one with split="
    )


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read: {err}") from err
    if not text.strip():
        raise DatasetError(f"{path}: empty file; expected COCO JSON with images/annotations")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from err
    except (RecursionError, MemoryError):
        try:
            parse_json(text, "the file")  # the same failure, as a bounded ValueError
        except ValueError as err:
            raise DatasetError(f"{path}: {err}") from err
        raise  # pragma: no cover - parse_json raised above


def _find_coco_images(root: Path, json_path: Path, images: list[dict[str, Any]]) -> Path:
    tag = json_path.stem.removeprefix("instances_")
    bases = list(dict.fromkeys([root, json_path.parent.parent, json_path.parent]))
    subs = [tag, f"images/{tag}", "images", "."]
    candidates = list(dict.fromkeys(b / s for b in bases for s in subs))
    probe = [
        str(im["file_name"])
        for im in images[:8]
        if isinstance(im, dict) and isinstance(im.get("file_name"), str) and im["file_name"]
    ]
    best, best_hits = None, 0
    for cand in candidates:
        if not cand.is_dir():
            continue
        hits = sum((cand / f).is_file() for f in probe if inside_root(cand, f) is not None)
        if hits > best_hits:
            best, best_hits = cand, hits
    if best is not None:
        return best.resolve() if best.name == "." else best
    if not probe:
        return next((c for c in candidates if c.is_dir()), root)
    looked = ", ".join(str(c) for c in candidates if c.is_dir()) or str(root)
    raise DatasetError(
        f"{json_path}: cannot find the image folder: looked for {probe[0]!r} in {looked}; put "
        f"the images in {root / tag} or {root / 'images'}"
    )


def read_coco(
    path: Path, *, split: str | None, class_names: tuple[str, ...] | None, log: ProblemLog
) -> DetectionDataset:
    if path.is_file():
        json_path, root = path, path.parent
        if root.name == "annotations":
            root = root.parent
    else:
        root = path
        found = find_coco_jsons(root)
        if not found:
            raise DatasetError(
                f"{root}: no COCO annotations found: looked for annotations/instances_*.json"
            )
        json_path = _pick_by_split(found, split, "COCO annotation files", root)
    log.root = root
    data = _load_json(json_path)
    where = log.rel(json_path)
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DatasetError(
            f"{where}: not a COCO detection file: expected a JSON object with 'images', "
            f"'annotations' and 'categories', got {keys}"
        )
    cats = data["categories"]
    if not isinstance(cats, list) or not cats:
        raise DatasetError(f"{where}: 'categories' is empty; expected a list of {{id, name}}")
    try:
        cats = sorted(cats, key=lambda c: int(c["id"]))
        cat_ids = [int(c["id"]) for c in cats]
        names = tuple(str(c["name"]) for c in cats)
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"{where}: each category needs an integer 'id' and a 'name'") from err
    if len(set(cat_ids)) != len(cat_ids):
        raise DatasetError(f"{where}: duplicate category ids in 'categories'")
    if class_names is not None and tuple(class_names) != names:
        raise InvalidInputError(
            f"{where}: class_names given ({len(class_names)} names) differ from the file's "
            f"categories ({len(names)}: {', '.join(names[:5])}...); COCO datasets take their "
            "class names from the JSON, so leave class_names out"
        )
    cat_index = {c: i for i, c in enumerate(cat_ids)}
    images = data["images"]
    if not isinstance(images, list):
        raise DatasetError(f"{where}: 'images' must be a list")
    image_dir = _find_coco_images(root, json_path, images)
    # file_name may go into subfolders of the dataset but never out of it
    boundary = root if within(root, image_dir) else image_dir

    info: dict[int, tuple[Path, int, int]] = {}
    order: list[int] = []
    bad: set[int] = set()
    for i, im in enumerate(images):
        try:
            image_id, file_name = int(im["id"]), str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            log.error(f"{where} images[{i}]: needs an integer 'id' and a 'file_name'")
            continue
        if image_id in info or image_id in bad:
            log.error(f"{where} images[{i}]: duplicate image id {image_id}")
            bad.add(image_id)
            continue
        img_path = inside_root(image_dir, file_name, boundary=boundary)  # type: ignore[assignment]
        if img_path is None:
            log.error(
                f"{where} images[{i}] (id {image_id}): file_name {brief(file_name, 80)} points "
                "outside the dataset folder (absolute or '..'); not read"
            )
            bad.add(image_id)
            continue
        if not img_path.is_file():
            log.error(
                f"{where} images[{i}] (id {image_id}): image file {log.rel(img_path)} not found"
            )
            bad.add(image_id)
            continue
        try:
            w, h = int(im.get("width") or 0), int(im.get("height") or 0)
            if w <= 0 or h <= 0:
                w, h = image_size(img_path)
        except (TypeError, ValueError):
            log.error(f"{where} images[{i}] (id {image_id}): width/height are not integers")
            bad.add(image_id)
            continue
        except DatasetError as err:
            log.error(str(err))
            bad.add(image_id)
            continue
        info[image_id] = (img_path, w, h)
        order.append(image_id)

    boxes: dict[int, list[tuple[float, ...]]] = {i: [] for i in order}
    classes: dict[int, list[int]] = {i: [] for i in order}
    ignore: dict[int, list[bool]] = {i: [] for i in order}
    areas: dict[int, list[float]] = {i: [] for i in order}
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise DatasetError(f"{where}: 'annotations' must be a list")
    for i, ann in enumerate(anns):
        loc = f"{where} annotations[{i}]"
        try:
            image_id = int(ann["image_id"])
            category = int(ann["category_id"])
            bx, by, bw, bh = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            log.error(f"{loc}: needs image_id, category_id and bbox [x, y, w, h]")
            # drop its image, not just the box (a lost box makes a true detection false)
            with contextlib.suppress(KeyError, TypeError, ValueError):
                bad.add(int(ann["image_id"]))
            continue
        loc = f"{loc} (id {ann.get('id', '?')}, image {image_id})"
        if image_id in bad:
            continue
        if image_id not in info:
            log.error(f"{loc}: image id {image_id} is not in 'images'")
            continue
        if category not in cat_index:
            log.error(f"{loc}: category_id {category} is not in 'categories'")
            bad.add(image_id)
            continue
        _, iw, ih = info[image_id]
        if bw == 0 or bh == 0:  # can never be matched: it would cost recall silently
            log.error(f"{loc}: box {fmt_box((bx, by, bw, bh))} (x y w h) has zero width or height")
            bad.add(image_id)
            continue
        box, why = check_box((bx, by, bx + bw, by + bh), iw, ih)
        if box is None:
            log.error(f"{loc}: {why}")
            bad.add(image_id)
            continue
        try:
            crowd = flag01(ann.get("iscrowd", 0), "iscrowd") or flag01(ann.get("ignore", 0), "ignore")
        except ValueError as err:
            log.error(f"{loc}: {err}")
            bad.add(image_id)
            continue
        boxes[image_id].append(box)
        classes[image_id].append(cat_index[category])
        ignore[image_id].append(crowd)
        try:
            area = float(ann.get("area", -1))
        except (TypeError, ValueError):
            area = -1.0
        # the file's area (segmentation area in COCO) decides small/medium/large, as in the
        # official evaluation; the box area where the file has none
        areas[image_id].append(area if area >= 0 else (box[2] - box[0]) * (box[3] - box[1]))

    samples = [
        Sample(
            image_id,
            info[image_id][0],
            info[image_id][1],
            info[image_id][2],
            make_annotation(boxes[image_id], classes[image_id], ignore[image_id], areas[image_id]),
        )
        for image_id in order
        if image_id not in bad
    ]
    return DetectionDataset(
        default_name(root), root, "coco", names, samples, log.problems, category_ids=cat_ids
    )


def coco_category_ids(ds: DetectionDataset) -> tuple[int, ...]:
    """The COCO category id of each dataset class: the original ids for datasets read from COCO
    JSON, else ``class index + 1``."""
    if ds.category_ids is not None:
        return ds.category_ids
    return tuple(range(1, len(ds.class_names) + 1))


def coco_gt_dict(
    ds: DetectionDataset,
    *,
    image_ids: Sequence[int] | None = None,
    classes: Collection[int] | None = None,
    file_names: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """The dataset (or some of its images / classes) as a COCO detection dict.

    ``classes`` keeps only those dataset class ids (categories and boxes); ``area`` is
    ``Annotation.area`` where the source gave one (COCO's segmentation areas, so small / medium /
    large match the official evaluation), else the box area. Ignore regions become
    ``iscrowd: 1``.
    """
    cat_ids = coco_category_ids(ds)
    keep = list(range(len(ds.class_names))) if classes is None else sorted(set(classes))
    keep_set = set(keep)
    samples = ds.samples if image_ids is None else [ds.by_id(i) for i in image_ids]
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for s in samples:
        name = file_names[s.image_id] if file_names is not None else relative_to_root(s.path, ds.root)
        images.append({"id": s.image_id, "file_name": name, "width": s.width, "height": s.height})
        xyxy = s.gt.xyxy.astype(float).tolist()
        areas = s.gt.areas.astype(float).tolist()
        for box, area, cls, ign in zip(xyxy, areas, s.gt.class_ids.tolist(), s.gt.ignore.tolist()):
            targets = keep if cls == ANY_CLASS else ([cls] if cls in keep_set else [])
            x1, y1, x2, y2 = box
            for k in targets:
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": s.image_id,
                        "category_id": cat_ids[k],
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": area,
                        "iscrowd": int(ign),
                    }
                )
    categories = [{"id": cat_ids[k], "name": ds.class_names[k]} for k in keep]
    return {"images": images, "annotations": anns, "categories": categories}


def write_coco_json(
    ds: DetectionDataset,
    path: str | os.PathLike[str],
    *,
    image_ids: Sequence[int] | None = None,
    file_names: Mapping[int, str] | None = None,
) -> Path:
    """Write the dataset's ground truth as COCO JSON (atomically); ``file_name`` is relative to
    the dataset root unless ``file_names`` says otherwise. Returns the path."""
    out = Path(path)
    data = coco_gt_dict(ds, image_ids=image_ids, file_names=file_names)
    atomic_write_bytes(out, json.dumps(data).encode())
    return out


def write_coco(ds: DetectionDataset, tmp: Path, names: dict[int, str]) -> None:
    (tmp / "images").mkdir()
    (tmp / "annotations").mkdir()
    for s in ds.samples:
        place_image(s.path, tmp / "images" / names[s.image_id])
    data = coco_gt_dict(ds, file_names=names)
    (tmp / "annotations" / "instances_data.json").write_text(json.dumps(data))
