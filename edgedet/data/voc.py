"""Pascal VOC XML: finding the layout, reading (`read_voc`) and writing (`write_voc`)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape

from ..errors import DatasetError
from ..validate import (
    brief,
    inside_root,
)
from .common import (
    ProblemLog,
    check_box,
    default_name,
    fmt_num,
    make_annotation,
    place_image,
)
from .dataset import ANY_CLASS, DetectionDataset, Sample
from .images import image_size, is_image


def find_voc_root(root: Path) -> Path | None:
    if (root / "Annotations").is_dir():
        return root
    for sub in sorted(root.glob("*/Annotations")) + sorted(root.glob("*/*/Annotations")):
        if sub.is_dir():
            return sub.parent
    return None


def _xml_text(node: ET.Element | None, tag: str) -> str | None:
    if node is None:
        return None
    child = node.find(tag)
    return child.text.strip() if child is not None and child.text else None


def read_voc(
    path: Path, *, split: str | None, class_names: tuple[str, ...] | None, log: ProblemLog
) -> DetectionDataset:
    voc = find_voc_root(path)
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
            box, why = check_box(raw, w, h)
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
                make_annotation(
                    [o[1] for o in objects], [index[o[0]] for o in objects], [o[2] for o in objects]
                ),
            )
        )
    return DetectionDataset(default_name(voc), voc, "voc", names, samples, log.problems)


def write_voc(ds: DetectionDataset, tmp: Path, names: dict[int, str]) -> None:
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (tmp / sub).mkdir(parents=True)
    stems = []
    for s in ds.samples:
        name = names[s.image_id]
        stems.append(Path(name).stem)
        place_image(s.path, tmp / "JPEGImages" / name)
        objs = []
        for box, cls, ign in zip(s.gt.xyxy.tolist(), s.gt.class_ids.tolist(), s.gt.ignore.tolist()):
            if cls == ANY_CLASS:
                continue
            x1, y1, x2, y2 = (fmt_num(v) for v in box)
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
