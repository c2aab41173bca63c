"""Reading datasets: COCO JSON, Ultralytics YOLO txt, Pascal VOC XML, KITTI ``label_2``.

`load_dataset` finds the layout (`detect_layout`), reads the labels into a `DetectionDataset`
with boxes in original image pixels, and reports every problem with its location
(``labels/x.txt line 3: class id 91 not in 0..79``). With ``on_error="stop"`` the first problem
raises `DatasetError`; with ``"skip"`` (the default) the image concerned is dropped (never just the
box: a dropped box would turn a correct detection into a false positive) and the message goes to
``dataset.problems``. Notes that drop nothing (an image without a YOLO label file counts as an
image without objects) are listed there too, prefixed ``note:``.

Boxes slightly outside the image (by up to ``max(2 px, 2 %)`` of the side) are clipped to it;
boxes further out are errors, and so are boxes of zero width or height, as given or once clipped
(no detection can match one: it would cost recall silently), and negative ones (x2 < x1).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import DatasetError, InvalidInputError
from ..hints import arg as _arg
from ..meta import resolve_class_names
from .coco import find_coco_jsons, read_coco
from .common import ProblemLog, listdir
from .dataset import DetectionDataset, Sample
from .images import decode_image, is_image
from .kitti import find_kitti_root, read_kitti
from .voc import find_voc_root, read_voc
from .yolo import find_yolo_yaml, read_yolo

FORMATS = ("coco", "yolo", "voc", "kitti")

__all__ = ["FORMATS", "detect_layout", "drop_unreadable", "load_dataset"]


def _verify(samples: list[Sample], log: ProblemLog) -> list[Sample]:
    kept = []
    for s in samples:
        try:
            image = decode_image(s.path)
        except DatasetError as err:
            log.error(str(err))
            continue
        h, w = image.shape[:2]
        if (w, h) != (s.width, s.height):
            log.error(
                f"{log.rel(s.path)}: image is {w}x{h} but the annotations are for "
                f"{s.width}x{s.height}"
            )
            continue
        kept.append(s)
    return kept


def drop_unreadable(ds: DetectionDataset) -> DetectionDataset:
    """``ds`` without the samples whose image cannot be decoded (empty, truncated, corrupt) or
    does not have the annotated size; each one is listed in ``problems``.

    Readers take image sizes from headers and decode lazily, so such images surface only when
    read; a consumer that must not fail halfway (bench, ``on_error="skip"``) calls this first.
    Costs one decode per image.
    """
    log = ProblemLog(ds.root, "skip")
    log.problems = list(ds.problems)
    kept = _verify(ds.samples, log)
    if len(kept) == len(ds.samples):
        return ds
    return DetectionDataset(
        ds.name, ds.root, ds.format, ds.class_names, kept, log.problems,
        category_ids=ds.category_ids,
    )  # fmt: skip


def detect_layout(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Which format a dataset folder (or annotation file) is in.

    Returns ``(format, description of what was found)``. Looks for, in order: a COCO JSON
    (``annotations/instances_*.json``, or the path itself is a ``.json``), an Ultralytics
    ``data.yaml`` (or the path is a ``.yaml``), Pascal VOC ``Annotations/`` (also one or two
    levels down, as in ``VOCdevkit/VOC2007``), KITTI ``training/label_2``, YOLO ``images/`` +
    ``labels/`` folders. Raises `DatasetError` saying what it looked for and what is there.
    """
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"dataset path {root} does not exist")
    if root.is_file():
        if root.suffix.lower() == ".json":
            return "coco", f"COCO annotation file {root.name}"
        if root.suffix.lower() in (".yaml", ".yml"):
            return "yolo", f"Ultralytics dataset file {root.name}"
        raise DatasetError(
            f"{root}: expected a dataset folder, a COCO .json or an Ultralytics .yaml file, got "
            f"a {root.suffix or 'suffix-less'} file"
        )
    jsons = find_coco_jsons(root)
    if jsons:
        names = ", ".join(str(p.relative_to(root)) for p in jsons)
        return "coco", f"COCO annotations {names}"
    yaml_path = find_yolo_yaml(root)
    if yaml_path is not None:
        return "yolo", f"Ultralytics dataset file {yaml_path.name}"
    voc = find_voc_root(root)
    if voc is not None:
        n = len(list((voc / "Annotations").glob("*.xml")))
        return "voc", f"Pascal VOC {voc.relative_to(root) / 'Annotations'} ({n} XML files)"
    kitti = find_kitti_root(root)
    if kitti is not None:
        n = len(list((kitti / "label_2").glob("*.txt")))
        return "kitti", f"KITTI {kitti.relative_to(root) / 'label_2'} ({n} label files)"
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "yolo", "YOLO images/ and labels/ folders"
    if root.name == "images" and (root.parent / "labels").is_dir():
        return "yolo", "YOLO images/ folder with a sibling labels/"
    if "images" in root.parts and any(is_image(p) for p in listdir(root)):
        return "yolo", "YOLO images folder (labels/ beside images/)"
    present = ", ".join(p.name + ("/" if p.is_dir() else "") for p in listdir(root)[:12])
    raise DatasetError(
        f"no dataset layout recognised in {root}: looked for annotations/instances_*.json (COCO), "
        "data.yaml or images/ + labels/ (YOLO), Annotations/*.xml + JPEGImages/ (Pascal VOC), "
        f"training/image_2 + training/label_2 (KITTI); found: {present or 'nothing'}. Pass "
        f"{_arg('format')} and point at the folder that holds these"
    )


def load_dataset(
    path: str | os.PathLike[str],
    *,
    format: str = "auto",
    split: str | None = None,
    on_error: str = "skip",
    class_names: Sequence[str] | str | Mapping[int, str] | None = None,
    verify_images: bool = False,
    name: str | None = None,
) -> DetectionDataset:
    """Read a labelled dataset.

    Args:
        path: the dataset folder, or a COCO ``.json`` / Ultralytics ``.yaml`` file.
        format: ``"auto"`` (see `detect_layout`), ``"coco"``, ``"yolo"``, ``"voc"``, ``"kitti"``.
        split: which part to read: COCO ``instances_<split>.json`` (``"val2017"``, ``"val"``);
            YOLO a key of data.yaml (``"val"``, default val, else train) or a subfolder of
            ``images/``; VOC ``ImageSets/Main/<split>.txt``; KITTI ``"training"`` (default).
        on_error: ``"skip"`` drops images with problems and lists them in ``problems``;
            ``"stop"`` raises `DatasetError` at the first.
        class_names: YOLO: overrides data.yaml / classes.txt (``"coco"`` for the 80 COCO
            names); VOC / KITTI: fixes the class list and its order (other names are problems);
            COCO: must match the JSON's categories if given.
        verify_images: decode every image now (slow) instead of lazily in ``read_image``.
        name: the dataset's name (default: the folder's name).
    """
    if format not in ("auto", *FORMATS):
        raise InvalidInputError(f"format must be 'auto' or one of {FORMATS}, got {format!r}")
    if on_error not in ("skip", "stop"):
        raise InvalidInputError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"dataset path {root} does not exist")
    fmt = detect_layout(root)[0] if format == "auto" else format
    names = resolve_class_names(class_names, allow_file=True) if class_names is not None else None
    folder = root.parent if root.is_file() else root
    log = ProblemLog(folder, on_error)
    reader: Callable[..., DetectionDataset] = {
        "coco": read_coco,
        "yolo": read_yolo,
        "voc": read_voc,
        "kitti": read_kitti,
    }[fmt]
    ds = reader(root, split=split, class_names=names, log=log)
    if verify_images:
        ds.samples = _verify(ds.samples, log)
        ds = DetectionDataset(
            ds.name, ds.root, ds.format, ds.class_names, ds.samples, log.problems,
            category_ids=ds.category_ids,
        )  # fmt: skip
    if name is not None:
        ds.name = name
    return ds
