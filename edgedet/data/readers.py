"""Reading datasets: COCO JSON, Ultralytics YOLO txt, Pascal VOC XML, KITTI ``label_2``.

`load_dataset` finds the layout (`detect_layout`), reads the labels into a `DetectionDataset`
with boxes in original image pixels, and reports every problem with its location
(``labels/x.txt line 3: class id 91 not in 0..79``). With ``on_error="stop"`` the first problem
raises `DatasetError`; with ``"skip"`` (the default) the image concerned is dropped (never just the
box: a dropped box would turn a correct detection into a false positive) and the message goes to
``dataset.problems``. Notes that drop nothing (an image without a YOLO label file counts as an
image without objects) are listed there too, prefixed ``note:``.

Boxes slightly outside the image (by up to ``max(2 px, 2 %)`` of the side) are clipped to it;
boxes further out are errors.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, InvalidInputError, missing_extra
from ..hints import arg as _arg
from ..meta import resolve_class_names
from ..validate import (
    MAX_CLASSES_WITHOUT_NAMES,
    brief,
    clip,
    flag01,
    inside_root,
    parse_json,
    within,
)
from .dataset import ANY_CLASS, Annotation, DetectionDataset, Sample
from .images import decode_image, image_size, is_image

FORMATS = ("coco", "yolo", "voc", "kitti")
KITTI_CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc")
_KITTI_IGNORE = "dontcare"


class _Log:
    """Collects located problems; raises at the first error when ``on_error="stop"``."""

    def __init__(self, root: Path, on_error: str) -> None:
        self.root = root
        self.stop = on_error == "stop"
        self.problems: list[str] = []

    def rel(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)

    def error(self, message: str) -> None:
        if self.stop:
            raise DatasetError(
                f"{message} (on_error='stop'; pass on_error='skip' to drop such images and list "
                "them in dataset.problems)"
            )
        self.problems.append(message)

    def note(self, message: str) -> None:
        self.problems.append(f"note: {message}")


def _check_box(
    box: Sequence[float], width: int, height: int
) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """Validate an xyxy box in pixels: (clipped box, None) or (None, what is wrong)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None, f"box {_fmt(box)} has non-finite coordinates"
    if x2 < x1 or y2 < y1:
        return None, f"box {_fmt(box)} has negative width or height"
    tx, ty = max(2.0, 0.02 * width), max(2.0, 0.02 * height)
    if x1 < -tx or y1 < -ty or x2 > width + tx or y2 > height + ty:
        return None, (
            f"box {_fmt(box)} (x1 y1 x2 y2) lies outside the {width}x{height} image by more than 2%"
        )
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    return (x1, y1, x2, y2), None


def _fmt(box: Iterable[float]) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in box) + "]"


def _annotation(
    boxes: list[tuple[float, ...]],
    classes: list[int],
    ignore: list[bool],
    area: list[float] | None = None,
) -> Annotation:
    if not boxes:
        return Annotation.empty()
    return Annotation(
        np.asarray(boxes, np.float32),
        np.asarray(classes, np.int32),
        np.asarray(ignore, bool),
        None if area is None else np.asarray(area, np.float32),
    )


def _verify(samples: list[Sample], log: _Log) -> list[Sample]:
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
    log = _Log(ds.root, "skip")
    log.problems = list(ds.problems)
    kept = _verify(ds.samples, log)
    if len(kept) == len(ds.samples):
        return ds
    return DetectionDataset(
        ds.name, ds.root, ds.format, ds.class_names, kept, log.problems,
        category_ids=ds.category_ids,
    )  # fmt: skip


def _label_text(path: Path, log: _Log) -> str | None:
    """A label file's text, or None (problem logged) when it cannot be read as UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        log.error(f"{log.rel(path)}: cannot read label file as text: {err}")
        return None


def _listdir(path: Path) -> list[Path]:
    try:
        return sorted(path.iterdir())
    except OSError:
        return []


# -- layout detection -------------------------------------------------------------------------


def _coco_jsons(root: Path) -> list[Path]:
    found = sorted((root / "annotations").glob("instances_*.json"))
    if not found:
        found = sorted((root / "annotations").glob("*.json"))
    if not found:
        found = sorted(root.glob("instances_*.json"))
    return found


def _yolo_yaml(root: Path) -> Path | None:
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        if (root / name).is_file():
            return root / name
    yamls = [p for p in root.glob("*.y*ml") if p.suffix in (".yaml", ".yml")]
    return yamls[0] if len(yamls) == 1 else None


def _voc_root(root: Path) -> Path | None:
    if (root / "Annotations").is_dir():
        return root
    for sub in sorted(root.glob("*/Annotations")) + sorted(root.glob("*/*/Annotations")):
        if sub.is_dir():
            return sub.parent
    return None


def _kitti_root(root: Path) -> Path | None:
    if (root / "training" / "label_2").is_dir():
        return root / "training"
    if (root / "label_2").is_dir():
        return root
    return None


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
    jsons = _coco_jsons(root)
    if jsons:
        names = ", ".join(str(p.relative_to(root)) for p in jsons)
        return "coco", f"COCO annotations {names}"
    yaml_path = _yolo_yaml(root)
    if yaml_path is not None:
        return "yolo", f"Ultralytics dataset file {yaml_path.name}"
    voc = _voc_root(root)
    if voc is not None:
        n = len(list((voc / "Annotations").glob("*.xml")))
        return "voc", f"Pascal VOC {voc.relative_to(root) / 'Annotations'} ({n} XML files)"
    kitti = _kitti_root(root)
    if kitti is not None:
        n = len(list((kitti / "label_2").glob("*.txt")))
        return "kitti", f"KITTI {kitti.relative_to(root) / 'label_2'} ({n} label files)"
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "yolo", "YOLO images/ and labels/ folders"
    if root.name == "images" and (root.parent / "labels").is_dir():
        return "yolo", "YOLO images/ folder with a sibling labels/"
    if "images" in root.parts and any(is_image(p) for p in _listdir(root)):
        return "yolo", "YOLO images folder (labels/ beside images/)"
    present = ", ".join(p.name + ("/" if p.is_dir() else "") for p in _listdir(root)[:12])
    raise DatasetError(
        f"no dataset layout recognised in {root}: looked for annotations/instances_*.json (COCO), "
        "data.yaml or images/ + labels/ (YOLO), Annotations/*.xml + JPEGImages/ (Pascal VOC), "
        f"training/image_2 + training/label_2 (KITTI); found: {present or 'nothing'}. Pass "
        f"{_arg('format')} and point at the folder that holds these"
    )


# -- entry point ------------------------------------------------------------------------------


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
    log = _Log(folder, on_error)
    reader: Callable[..., DetectionDataset] = {
        "coco": _read_coco,
        "yolo": _read_yolo,
        "voc": _read_voc,
        "kitti": _read_kitti,
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


def _dataset_name(root: Path) -> str:
    return root.name or str(root)


# -- COCO -------------------------------------------------------------------------------------


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


def _read_coco(
    path: Path, *, split: str | None, class_names: tuple[str, ...] | None, log: _Log
) -> DetectionDataset:
    if path.is_file():
        json_path, root = path, path.parent
        if root.name == "annotations":
            root = root.parent
    else:
        root = path
        found = _coco_jsons(root)
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
        box, why = _check_box((bx, by, bx + bw, by + bh), iw, ih)
        if box is None:
            log.error(f"{loc}: {why}")
            bad.add(image_id)
            continue
        if bw == 0 or bh == 0:  # can never be matched: it would cost recall silently
            log.error(f"{loc}: box {_fmt((bx, by, bw, bh))} (x y w h) has zero width or height")
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
            _annotation(boxes[image_id], classes[image_id], ignore[image_id], areas[image_id]),
        )
        for image_id in order
        if image_id not in bad
    ]
    return DetectionDataset(
        _dataset_name(root), root, "coco", names, samples, log.problems, category_ids=cat_ids
    )


# -- YOLO -------------------------------------------------------------------------------------


def _img2label(path: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` in the path becomes ``/labels/``, suffix .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    text = str(path)
    if sa in text:
        text = sb.join(text.rsplit(sa, 1))
        return Path(text).with_suffix(".txt")
    return path.with_suffix(".txt")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError as err:
        raise missing_extra("pyyaml", "bench", f"reading {path.name}") from err
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise DatasetError(f"{path}: cannot read YAML: {err}") from err
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with path/train/val/names")
    return data


def _yolo_sources(
    root: Path, yaml_path: Path | None, split: str | None, log: _Log | None = None
) -> tuple[Path, list[Path], list[Path], tuple[str, ...] | None, str]:
    """(dataset root, image files, image folders, names from yaml, split used).

    Lines of a ``.txt`` image list that point outside the dataset root (absolute or ``..``)
    are listed in ``log`` and not read."""
    names: tuple[str, ...] | None = None
    if yaml_path is not None:
        data = _read_yaml(yaml_path)
        base = Path(str(data.get("path") or "."))
        if not base.is_absolute():
            base = (yaml_path.parent / base).resolve()
            if not base.is_dir():  # Ultralytics resolves `path` against its datasets dir
                base = yaml_path.parent
        if data.get("names") is not None:
            try:
                names = resolve_class_names(data["names"])
            except InvalidInputError as err:
                raise DatasetError(f"{yaml_path}: bad 'names': {err}") from err
        splits = [k for k in ("train", "val", "test") if data.get(k)]
        use = split or ("val" if "val" in splits else "train" if "train" in splits else None)
        if use is None or not data.get(use):
            raise DatasetError(
                f"{yaml_path}: split {use!r} not found; the file has {splits or 'no splits'}"
            )
        entries = data[use] if isinstance(data[use], list) else [data[use]]
        files: list[Path] = []
        dirs: list[Path] = []
        outside: list[str] = []
        for entry in entries:
            p = Path(str(entry))
            p = p if p.is_absolute() else base / p
            if p.is_dir():
                dirs.append(p)
                files += [f for f in sorted(p.rglob("*")) if is_image(f)]
            elif p.is_file() and p.suffix == ".txt":
                try:
                    listing = p.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as err:
                    raise DatasetError(f"{yaml_path}: {use}: cannot read {p} as UTF-8 text: {err}") from err
                for line in listing.splitlines():
                    line = line.strip()
                    if line:
                        q = inside_root(p.parent, line, boundary=base)
                        if q is None:
                            outside.append(f"{p.name}: {brief(line, 80)}")
                        else:
                            files.append(q)
            else:
                raise DatasetError(
                    f"{yaml_path}: {use}: {entry!r} -> {p} is neither a folder of images nor a "
                    ".txt list of images"
                )
        for entry in outside:
            if log is None:
                raise DatasetError(f"{yaml_path}: {entry} points outside the dataset folder")
            log.error(f"{entry}: image path points outside the dataset folder {base}; not read")
        return base, files, dirs, names, use
    images = root / "images"
    if not images.is_dir():
        parts = root.parts
        if "images" not in parts:
            raise DatasetError(f"{root}: no images/ folder (YOLO layout is images/ + labels/)")
        # pointed at images/ or at a split folder inside it: the dataset root is above images/
        idx = len(parts) - 1 - parts[::-1].index("images")
        base = Path(*parts[:idx]) if idx else Path(".")
        if split is None:
            files = [f for f in sorted(root.rglob("*")) if is_image(f)]
            return base, files, [root], None, root.name
        root, images = base, Path(*parts[: idx + 1])
    if split is not None:
        folder = images / split
        if not folder.is_dir():
            found = [p.name for p in _listdir(images) if p.is_dir()]
            raise DatasetError(f"{images}: no split folder {split!r}; found {found}")
        use = split
    elif any(is_image(p) for p in _listdir(images)):
        folder, use = images, ""
    else:
        subs = [p for p in _listdir(images) if p.is_dir()]
        val = [p for p in subs if p.name.startswith("val")]
        if len(subs) == 1:
            folder = subs[0]
        elif len(val) == 1:
            folder = val[0]
        else:
            raise DatasetError(
                f"{images}: several split folders {[p.name for p in subs]}; choose one with split="
            )
        use = folder.name
    files = [f for f in sorted(folder.rglob("*")) if is_image(f)]
    return root, files, [folder], None, use


def _classes_txt(root: Path, label_dirs: list[Path]) -> tuple[str, ...] | None:
    for cand in [root / "classes.txt", *(d / "classes.txt" for d in label_dirs)]:
        if cand.is_file():
            try:
                text = cand.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise DatasetError(f"{cand}: cannot read class names as UTF-8 text: {err}") from err
            try:
                return resolve_class_names([ln.strip() for ln in text.splitlines() if ln.strip()])
            except InvalidInputError as err:
                raise DatasetError(f"{cand}: {err}") from err
    return None


def _read_yolo(
    path: Path, *, split: str | None, class_names: tuple[str, ...] | None, log: _Log
) -> DetectionDataset:
    yaml_path: Path | None
    if path.is_file():
        yaml_path, root = path, path.parent
    else:
        root = path
        yaml_path = _yolo_yaml(root)
    root, files, dirs, yaml_names, _use = _yolo_sources(root, yaml_path, split, log)
    log.root = root
    label_dirs = [_img2label(d / "x").parent for d in dirs]
    names = class_names or yaml_names or _classes_txt(root, label_dirs)

    parsed: list[tuple[Path, int, int, list[tuple[float, ...]], list[int]]] = []
    max_class = -1
    for img in files:
        label = _img2label(img)
        try:
            w, h = image_size(img)
        except DatasetError as err:
            log.error(str(err))
            continue
        boxes: list[tuple[float, ...]] = []
        classes: list[int] = []
        if not label.is_file():
            log.note(f"{log.rel(img)}: no label file {log.rel(label)}; counted as no objects")
            parsed.append((img, w, h, boxes, classes))
            continue
        text = _label_text(label, log)
        if text is None:
            continue
        ok = True
        for lineno, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            loc = f"{log.rel(label)} line {lineno}"
            try:
                cls_f = float(fields[0])
                values = [float(v) for v in fields[1:]]
            except ValueError:
                log.error(f"{loc}: expected numbers 'class cx cy w h', got {line.strip()!r}")
                ok = False
                break
            if not math.isfinite(cls_f) or cls_f != int(cls_f) or cls_f < 0:
                log.error(f"{loc}: class id {clip(fields[0], 40)} is not a non-negative integer")
                ok = False
                break
            cls = int(cls_f)
            if names is not None and cls >= len(names):
                log.error(f"{loc}: class id {cls} not in 0..{len(names) - 1}")
                ok = False
                break
            if names is None and cls >= MAX_CLASSES_WITHOUT_NAMES:
                log.error(
                    f"{loc}: class id {cls} without class names (edgedet names at most "
                    f"{MAX_CLASSES_WITHOUT_NAMES} classes class_0..; give names in data.yaml, "
                    "classes.txt or class_names=)"
                )
                ok = False
                break
            if len(values) == 4:
                cx, cy, bw, bh = values
                nbox = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
            elif len(values) >= 6 and len(values) % 2 == 0:  # polygon: box around it
                xs, ys = values[0::2], values[1::2]
                nbox = (min(xs), min(ys), max(xs), max(ys))
            else:
                log.error(
                    f"{loc}: expected 'class cx cy w h' (5 numbers) or a polygon, got "
                    f"{len(fields)} numbers"
                )
                ok = False
                break
            if max(abs(v) for v in nbox) > 1.5:
                log.error(
                    f"{loc}: coordinates {_fmt(values[:4])} are not normalised to 0..1 (YOLO "
                    "labels are fractions of the image size, not pixels)"
                )
                ok = False
                break
            box, why = _check_box((nbox[0] * w, nbox[1] * h, nbox[2] * w, nbox[3] * h), w, h)
            if box is None:
                log.error(f"{loc}: {why}")
                ok = False
                break
            boxes.append(box)
            classes.append(cls)
            max_class = max(max_class, cls)
        if ok:
            parsed.append((img, w, h, boxes, classes))

    expected = {_img2label(f) for f in files}
    for image_dir, d in zip(dirs, label_dirs):
        for label in sorted(d.rglob("*.txt")) if d.is_dir() else []:
            if label.name != "classes.txt" and label not in expected:
                log.error(f"{log.rel(label)}: label file has no image in {log.rel(image_dir)}")

    if names is None:
        names = tuple(f"class_{i}" for i in range(max_class + 1))
        log.note(
            f"no class names (no data.yaml names, no classes.txt, no {_arg('class_names')}): using "
            f"class_0..class_{max_class}; pass {_arg('class_names', repr('coco'))} for COCO-numbered labels"
        )
    samples = [
        Sample(i, img, w, h, _annotation(boxes, classes, [False] * len(boxes)))
        for i, (img, w, h, boxes, classes) in enumerate(parsed)
    ]
    return DetectionDataset(_dataset_name(root), root, "yolo", names, samples, log.problems)


# -- Pascal VOC -------------------------------------------------------------------------------


def _xml_text(node: ET.Element | None, tag: str) -> str | None:
    if node is None:
        return None
    child = node.find(tag)
    return child.text.strip() if child is not None and child.text else None


def _read_voc(
    path: Path, *, split: str | None, class_names: tuple[str, ...] | None, log: _Log
) -> DetectionDataset:
    voc = _voc_root(path)
    if voc is None:
        raise DatasetError(f"{path}: no Pascal VOC Annotations/ folder found")
    log.root = voc
    ann_dir, img_dir = voc / "Annotations", voc / "JPEGImages"
    if split is not None:
        listing = voc / "ImageSets" / "Main" / f"{split}.txt"
        if not listing.is_file():
            raise DatasetError(f"{voc}: split {split!r} needs {log.rel(listing)}, not found")
        try:
            text = listing.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise DatasetError(f"{log.rel(listing)}: cannot read as UTF-8 text: {err}") from err
        stems = [ln.split()[0] for ln in text.splitlines() if ln.strip()]
        xmls = [ann_dir / f"{s}.xml" for s in stems]
    else:
        xmls = sorted(ann_dir.glob("*.xml"))

    records = []
    for xml_path in xmls:
        loc = log.rel(xml_path)
        if not xml_path.is_file():
            log.error(f"{loc}: annotation file not found")
            continue
        try:
            tree = ET.parse(xml_path).getroot()
        except ET.ParseError as err:
            log.error(f"{loc}: not valid XML ({err})")
            continue
        fname = _xml_text(tree, "filename") or f"{xml_path.stem}.jpg"
        inside = inside_root(img_dir, fname, boundary=voc)
        if inside is None:
            log.error(
                f"{loc}: <filename> {brief(fname, 80)} points outside the dataset folder "
                "(absolute or '..'); not read"
            )
            continue
        img = inside
        if not img.is_file():
            alt = [p for p in img_dir.glob(f"{xml_path.stem}.*") if is_image(p)]
            if not alt:
                log.error(f"{loc}: image {log.rel(img)} not found")
                continue
            img = alt[0]
        size = tree.find("size")
        try:
            w, h = (
                int(float(_xml_text(size, "width") or 0)),
                int(float(_xml_text(size, "height") or 0)),
            )
            if w <= 0 or h <= 0:
                w, h = image_size(img)
        except ValueError:
            log.error(f"{loc}: <size> width/height are not numbers")
            continue
        except DatasetError as err:
            log.error(str(err))
            continue
        objects = []
        ok = True
        for k, obj in enumerate(tree.findall("object"), 1):
            cname = _xml_text(obj, "name")
            bnd = obj.find("bndbox")
            try:
                raw = [float(_xml_text(bnd, t) or "nan") for t in ("xmin", "ymin", "xmax", "ymax")]
            except ValueError:
                raw = [math.nan] * 4
            if not cname:
                log.error(f"{loc} object {k}: no <name>")
                ok = False
                break
            box, why = _check_box(raw, w, h)
            if box is None:
                log.error(f"{loc} object {k} ({cname}): {why}")
                ok = False
                break
            difficult = (_xml_text(obj, "difficult") or "0") not in ("0", "false", "False")
            objects.append((cname, box, difficult))
        if ok:
            records.append((img, w, h, objects))

    if class_names is not None:
        names = class_names
    else:
        names = tuple(sorted({o[0] for r in records for o in r[3]}))
    index = {n: i for i, n in enumerate(names)}
    samples: list[Sample] = []
    for img, w, h, objects in records:
        unknown = sorted({o[0] for o in objects if o[0] not in index})
        if unknown:
            log.error(
                f"{log.rel(ann_dir / (img.stem + '.xml'))}: class {unknown} not in class_names"
            )
            continue
        samples.append(
            Sample(
                len(samples),
                img,
                w,
                h,
                _annotation(
                    [o[1] for o in objects], [index[o[0]] for o in objects], [o[2] for o in objects]
                ),
            )
        )
    return DetectionDataset(_dataset_name(voc), voc, "voc", names, samples, log.problems)


# -- KITTI ------------------------------------------------------------------------------------


def _read_kitti(
    path: Path, *, split: str | None, class_names: tuple[str, ...] | None, log: _Log
) -> DetectionDataset:
    if split is not None and (path / split).is_dir():
        base = path / split
    else:
        found = _kitti_root(path)
        if found is None:
            raise DatasetError(f"{path}: no KITTI training/label_2 folder found")
        base = found
    label_dir, image_dir = base / "label_2", base / "image_2"
    if not label_dir.is_dir():
        raise DatasetError(
            f"{base}: no label_2 folder (KITTI 'testing' has no labels; use split='training')"
        )
    root = path
    log.root = root
    images = {p.stem: p for p in _listdir(image_dir) if is_image(p)}
    labels = sorted(label_dir.glob("*.txt"))
    records = []
    for label in labels:
        loc = log.rel(label)
        img = images.get(label.stem)
        if img is None:
            log.error(f"{loc}: label file has no image in {log.rel(image_dir)}")
            continue
        try:
            w, h = image_size(img)
        except DatasetError as err:
            log.error(str(err))
            continue
        text = _label_text(label, log)
        if text is None:
            continue
        objects = []
        ok = True
        for lineno, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in (15, 16):
                log.error(
                    f"{loc} line {lineno}: expected 15 fields (type ... rotation_y), got {len(fields)}"
                )
                ok = False
                break
            try:
                raw = [float(v) for v in fields[4:8]]
            except ValueError:
                log.error(f"{loc} line {lineno}: bbox fields 5-8 are not numbers: {fields[4:8]}")
                ok = False
                break
            box, why = _check_box(raw, w, h)
            if box is None:
                log.error(f"{loc} line {lineno} ({fields[0]}): {why}")
                ok = False
                break
            objects.append((fields[0], box))
        if ok:
            records.append((img, w, h, objects))
    for stem, img in sorted(images.items()):
        if not (label_dir / f"{stem}.txt").is_file():
            try:
                size = image_size(img)
            except DatasetError as err:
                log.error(str(err))
                continue
            log.note(f"{log.rel(img)}: no label file; counted as no objects")
            records.append((img, *size, []))

    if class_names is not None:
        names = class_names
    else:
        found_names = {o[0] for r in records for o in r[3] if o[0].lower() != _KITTI_IGNORE}
        names = tuple(c for c in KITTI_CLASSES if c in found_names) + tuple(
            sorted(found_names - set(KITTI_CLASSES))
        )
    index = {n: i for i, n in enumerate(names)}
    records.sort(key=lambda r: r[0].name)
    samples: list[Sample] = []
    for img, w, h, objects in records:
        unknown = sorted(
            {o[0] for o in objects if o[0] not in index and o[0].lower() != _KITTI_IGNORE}
        )
        if unknown:
            log.error(
                f"{log.rel(label_dir / (img.stem + '.txt'))}: class {unknown} not in class_names"
            )
            continue
        ign = [o[0].lower() == _KITTI_IGNORE for o in objects]
        cls = [ANY_CLASS if g else index[o[0]] for o, g in zip(objects, ign)]
        samples.append(
            Sample(len(samples), img, w, h, _annotation([o[1] for o in objects], cls, ign))
        )
    return DetectionDataset(_dataset_name(root), root, "kitti", names, samples, log.problems)
