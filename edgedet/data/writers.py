"""Writing datasets: COCO JSON (also the ground truth the metrics feed to COCOeval), and
conversion between COCO, YOLO, VOC and KITTI folders.

What each target cannot express:
- YOLO has no ignore regions: ignore boxes are left out.
- VOC marks ignored objects ``<difficult>1</difficult>``; "any class" ignore regions (KITTI
  ``DontCare``) are left out.
- KITTI has only ``DontCare`` for ignore regions (for every class); class names with spaces are
  written with underscores (``traffic light`` -> ``traffic_light``).
- COCO writes ignore regions as ``iscrowd: 1``; an "any class" region becomes one crowd box per
  class.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from ..errors import DatasetError, InvalidInputError
from ..fileio import atomic_write_bytes
from .dataset import ANY_CLASS, DetectionDataset, Sample
from .images import image_size

TARGETS = ("coco", "yolo", "voc", "kitti")


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
        name = file_names[s.image_id] if file_names is not None else _relative(s.path, ds.root)
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


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


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


def _unique_names(samples: Sequence[Sample]) -> dict[int, str]:
    seen: dict[str, int] = {}
    for s in samples:
        seen[s.path.name] = seen.get(s.path.name, 0) + 1
    return {
        s.image_id: s.path.name if seen[s.path.name] == 1 else f"{s.image_id}_{s.path.name}"
        for s in samples
    }


def _readable_images(ds: DetectionDataset) -> DetectionDataset:
    """``ds`` without samples whose file is not an image of the annotated size.

    Checks each file's header (`image_size`: JPEG/PNG header, else a full decode) before it is
    linked or copied, so a text file named in an annotation never lands in the output. The
    samples dropped are appended to ``ds.problems`` (the caller's dataset sees them too).
    """
    kept = []
    for s in ds.samples:
        try:
            size = image_size(s.path)
        except DatasetError as err:
            ds.problems.append(f"not converted: {err}")
            continue
        if size != (s.width, s.height):
            ds.problems.append(
                f"not converted: {s.path}: image is {size[0]}x{size[1]} but the annotations are "
                f"for {s.width}x{s.height}"
            )
            continue
        kept.append(s)
    if len(kept) == len(ds.samples):
        return ds
    if not kept:
        raise DatasetError(
            f"no image of the dataset could be converted: {'; '.join(ds.problems[-3:])}"
        )
    return DetectionDataset(
        ds.name, ds.root, ds.format, ds.class_names, kept, ds.problems,
        category_ids=ds.category_ids,
    )  # fmt: skip


def _place(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _num(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def convert_dataset(ds: DetectionDataset, out_dir: str | os.PathLike[str], to: str) -> Path:
    """Write ``ds`` as a ``to`` dataset (``coco``, ``yolo``, ``voc``, ``kitti``) in ``out_dir``.

    The folder is built under a temporary name beside ``out_dir`` and renamed into place at the
    end, so a failed conversion leaves nothing half-written. ``out_dir`` must not exist or be
    empty. Images are hard-linked where possible, else copied. Layouts written:

    - coco: ``images/``, ``annotations/instances_data.json``
    - yolo: ``images/``, ``labels/``, ``data.yaml`` (train and val both ``images``), ``classes.txt``
    - voc: ``JPEGImages/``, ``Annotations/``, ``ImageSets/Main/all.txt``
    - kitti: ``training/image_2/``, ``training/label_2/``
    """
    if to not in TARGETS:
        raise InvalidInputError(f"convert_dataset: to must be one of {TARGETS}, got {to!r}")
    ds = _readable_images(ds)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out} already exists and is not empty; remove it or pick another")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # mkdir, not mkdtemp: the folder's mode follows the umask (mkdtemp's 0700 would survive
        # the rename and hide the dataset from other users and containers)
        tmp = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
        tmp.mkdir()
    except OSError as err:
        raise InvalidInputError(f"cannot write {out}: {err.strerror or err}") from None
    try:
        names = _unique_names(ds.samples)
        {"coco": _write_coco, "yolo": _write_yolo, "voc": _write_voc, "kitti": _write_kitti}[to](
            ds, tmp, names
        )
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_coco(ds: DetectionDataset, tmp: Path, names: dict[int, str]) -> None:
    (tmp / "images").mkdir()
    (tmp / "annotations").mkdir()
    for s in ds.samples:
        _place(s.path, tmp / "images" / names[s.image_id])
    data = coco_gt_dict(ds, file_names=names)
    (tmp / "annotations" / "instances_data.json").write_text(json.dumps(data))


def _write_yolo(ds: DetectionDataset, tmp: Path, names: dict[int, str]) -> None:
    (tmp / "images").mkdir()
    (tmp / "labels").mkdir()
    for s in ds.samples:
        name = names[s.image_id]
        _place(s.path, tmp / "images" / name)
        lines = []
        for box, cls, ign in zip(s.gt.xyxy.tolist(), s.gt.class_ids.tolist(), s.gt.ignore.tolist()):
            if ign:
                continue
            x1, y1, x2, y2 = box
            cx, cy = (x1 + x2) / 2 / s.width, (y1 + y2) / 2 / s.height
            w, h = (x2 - x1) / s.width, (y2 - y1) / s.height
            lines.append(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
        (tmp / "labels" / (Path(name).stem + ".txt")).write_text("".join(lines))
    # JSON strings are valid YAML scalars: no yaml dependency needed to write it.
    names_yaml = "".join(f"  {i}: {json.dumps(n)}\n" for i, n in enumerate(ds.class_names))
    (tmp / "data.yaml").write_text(f"train: images\nval: images\nnames:\n{names_yaml}")
    (tmp / "classes.txt").write_text("".join(f"{n}\n" for n in ds.class_names))


def _write_voc(ds: DetectionDataset, tmp: Path, names: dict[int, str]) -> None:
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (tmp / sub).mkdir(parents=True)
    stems = []
    for s in ds.samples:
        name = names[s.image_id]
        stems.append(Path(name).stem)
        _place(s.path, tmp / "JPEGImages" / name)
        objs = []
        for box, cls, ign in zip(s.gt.xyxy.tolist(), s.gt.class_ids.tolist(), s.gt.ignore.tolist()):
            if cls == ANY_CLASS:
                continue
            x1, y1, x2, y2 = (_num(v) for v in box)
            objs.append(
                f"  <object>\n    <name>{escape(ds.class_names[cls])}</name>\n"
                f"    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n"
                f"    <difficult>{int(ign)}</difficult>\n"
                f"    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
                f"<ymax>{y2}</ymax></bndbox>\n  </object>\n"
            )
        xml = (
            f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{escape(name)}</filename>\n"
            f"  <size><width>{s.width}</width><height>{s.height}</height><depth>3</depth></size>\n"
            f"{''.join(objs)}</annotation>\n"
        )
        (tmp / "Annotations" / (Path(name).stem + ".xml")).write_text(xml)
    (tmp / "ImageSets" / "Main" / "all.txt").write_text("".join(f"{s}\n" for s in stems))


def _write_kitti(ds: DetectionDataset, tmp: Path, names: dict[int, str]) -> None:
    img_dir, lab_dir = tmp / "training" / "image_2", tmp / "training" / "label_2"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir(parents=True)
    kitti_names = [n.replace(" ", "_") for n in ds.class_names]
    for s in ds.samples:
        name = names[s.image_id]
        _place(s.path, img_dir / name)
        lines, seen_ignore = [], set()
        for box, cls, ign in zip(s.gt.xyxy.tolist(), s.gt.class_ids.tolist(), s.gt.ignore.tolist()):
            coords = " ".join(f"{v:.2f}" for v in box)
            if ign:
                if coords in seen_ignore:
                    continue
                seen_ignore.add(coords)
                label = "DontCare"
            else:
                label = kitti_names[cls]
            lines.append(f"{label} 0.00 0 -10 {coords} -1 -1 -1 -1000 -1000 -1000 -10\n")
        (lab_dir / (Path(name).stem + ".txt")).write_text("".join(lines))
