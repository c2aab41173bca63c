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

import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..errors import DatasetError, InvalidInputError
from .coco import write_coco
from .dataset import DetectionDataset, Sample
from .images import image_size
from .kitti import write_kitti
from .voc import write_voc
from .yolo import write_yolo

TARGETS = ("coco", "yolo", "voc", "kitti")


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
        {"coco": write_coco, "yolo": write_yolo, "voc": write_voc, "kitti": write_kitti}[to](
            ds, tmp, names
        )
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
