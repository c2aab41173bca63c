"""KITTI ``label_2``: finding the layout, reading (`read_kitti`) and writing (`write_kitti`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from .common import (
    ProblemLog,
    check_box,
    default_name,
    label_text,
    listdir,
    make_annotation,
    place_image,
)
from .dataset import ANY_CLASS, DetectionDataset, Sample
from .images import image_size, is_image

KITTI_CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc")


_KITTI_IGNORE = "dontcare"


def find_kitti_root(root: Path) -> Path | None:
    if (root / "training" / "label_2").is_dir():
        return root / "training"
    if (root / "label_2").is_dir():
        return root
    return None


def read_kitti(
    path: Path, *, split: str | None, class_names: tuple[str, ...] | None, log: ProblemLog
) -> DetectionDataset:
    if split is not None and (path / split).is_dir():
        base = path / split
    else:
        found = find_kitti_root(path)
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
    images = {p.stem: p for p in listdir(image_dir) if is_image(p)}
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
        text = label_text(label, log)
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
            box, why = check_box(raw, w, h)
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
            Sample(len(samples), img, w, h, make_annotation([o[1] for o in objects], cls, ign))
        )
    return DetectionDataset(default_name(root), root, "kitti", names, samples, log.problems)


def write_kitti(ds: DetectionDataset, tmp: Path, names: dict[int, str]) -> None:
    img_dir, lab_dir = tmp / "training" / "image_2", tmp / "training" / "label_2"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir(parents=True)
    kitti_names = [n.replace(" ", "_") for n in ds.class_names]
    for s in ds.samples:
        name = names[s.image_id]
        place_image(s.path, img_dir / name)
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
