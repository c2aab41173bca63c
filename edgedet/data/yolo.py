"""Ultralytics YOLO txt: finding data.yaml, reading the label files (`read_yolo`) and writing
them (`write_yolo`)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import DatasetError, InvalidInputError, missing_extra
from ..hints import arg as _arg
from ..meta import resolve_class_names
from ..validate import (
    MAX_CLASSES_WITHOUT_NAMES,
    brief,
    clip,
    inside_root,
)
from .common import (
    ProblemLog,
    check_box,
    default_name,
    fmt_box,
    label_text,
    listdir,
    make_annotation,
    place_image,
)
from .dataset import DetectionDataset, Sample
from .images import image_size, is_image


def find_yolo_yaml(root: Path) -> Path | None:
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        if (root / name).is_file():
            return root / name
    yamls = [p for p in root.glob("*.y*ml") if p.suffix in (".yaml", ".yml")]
    return yamls[0] if len(yamls) == 1 else None


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
    root: Path, yaml_path: Path | None, split: str | None, log: ProblemLog | None = None
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
            found = [p.name for p in listdir(images) if p.is_dir()]
            raise DatasetError(f"{images}: no split folder {split!r}; found {found}")
        use = split
    elif any(is_image(p) for p in listdir(images)):
        folder, use = images, ""
    else:
        subs = [p for p in listdir(images) if p.is_dir()]
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


def read_yolo(
    path: Path, *, split: str | None, class_names: tuple[str, ...] | None, log: ProblemLog
) -> DetectionDataset:
    yaml_path: Path | None
    if path.is_file():
        yaml_path, root = path, path.parent
    else:
        root = path
        yaml_path = find_yolo_yaml(root)
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
        text = label_text(label, log)
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
                    f"{loc}: coordinates {fmt_box(values[:4])} are not normalised to 0..1 (YOLO "
                    "labels are fractions of the image size, not pixels)"
                )
                ok = False
                break
            box, why = check_box((nbox[0] * w, nbox[1] * h, nbox[2] * w, nbox[3] * h), w, h)
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
        Sample(i, img, w, h, make_annotation(boxes, classes, [False] * len(boxes)))
        for i, (img, w, h, boxes, classes) in enumerate(parsed)
    ]
    return DetectionDataset(default_name(root), root, "yolo", names, samples, log.problems)


def write_yolo(ds: DetectionDataset, tmp: Path, names: dict[int, str]) -> None:
    (tmp / "images").mkdir()
    (tmp / "labels").mkdir()
    for s in ds.samples:
        name = names[s.image_id]
        place_image(s.path, tmp / "images" / name)
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
