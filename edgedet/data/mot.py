"""MOTChallenge sequence folders and text files: read and write, numpy only.

A sequence folder (MOT16/17/20 layout; ``edgedet.data.synthetic.generate_sequence`` writes one)::

    SEQ/seqinfo.ini        [Sequence] name, imDir, frameRate, seqLength, imWidth, imHeight, imExt
    SEQ/img1/000001.png    frames, numbered from 1
    SEQ/gt/gt.txt          frame,id,x,y,w,h,conf,class,visibility   (ground truth, optional)

Boxes in the text files are top-left corner, width and height in pixels of the frame; frames and
ids are 1-based. In ``gt.txt`` a row whose ``conf`` is 0 is ignored by evaluation (an object
mostly hidden, or a class not scored). A tracker's results file has the same first seven columns
(``conf`` is the detection score) and ``-1,-1,-1`` after them.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgedet.errors import DatasetError

#: Image suffixes a sequence's frame folder may hold.
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class MotBoxes:
    """The rows of one frame: ``xyxy`` float32 (N, 4) corners in pixels, ``ids`` int64 (N,),
    ``scores`` float32 (N,) (gt: its ``conf`` column, 1 = scored, 0 = ignored), ``classes``
    int32 (N,) (the file's class column, -1 where absent), ``visibility`` float32 (N,)."""

    xyxy: np.ndarray
    ids: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    visibility: np.ndarray

    @classmethod
    def empty(cls) -> MotBoxes:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32),
            np.zeros(0, np.int32), np.zeros(0, np.float32),
        )  # fmt: skip

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def select(self, mask: np.ndarray) -> MotBoxes:
        return MotBoxes(
            self.xyxy[mask], self.ids[mask], self.scores[mask], self.classes[mask],
            self.visibility[mask],
        )  # fmt: skip


@dataclass
class MotSequence:
    """A sequence folder read by `read_sequence`: ``frames`` are the image paths in order
    (frame ``k`` is ``frames[k - 1]``); ``gt`` maps a 1-based frame number to its rows (frames
    with none are absent), or is None when the folder has no ``gt/gt.txt``."""

    folder: Path
    name: str
    frames: list[Path]
    fps: float
    gt: dict[int, MotBoxes] | None = field(default=None)


def read_mot_file(path: str | Path) -> dict[int, MotBoxes]:
    """A MOTChallenge text file (gt or results) -> {frame: rows}. A line that is not at least
    six numbers (frame, id, x, y, w, h) raises `DatasetError` naming the file and line."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read MOT file {p}: {err}") from err
    rows: dict[int, list[list[float]]] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = line.replace(" ", "").split(",")
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            vals = []
        if len(vals) < 6 or not np.isfinite(vals[:6]).all() or vals[0] < 1:
            raise DatasetError(
                f"{p}:{n}: expected 'frame,id,x,y,w,h[,conf,class,visibility]' with numbers "
                f"and frame >= 1, got {line[:80]!r}"
            )
        conf = vals[6] if len(vals) > 6 else 1.0
        cls = vals[7] if len(vals) > 7 else -1.0
        vis = vals[8] if len(vals) > 8 else 1.0
        rows.setdefault(int(vals[0]), []).append([*vals[1:6], conf, cls, vis])
    out = {}
    for frame, r in rows.items():
        a = np.asarray(r, np.float64)
        xyxy = np.concatenate([a[:, 1:3], a[:, 1:3] + a[:, 3:5]], axis=1).astype(np.float32)
        out[frame] = MotBoxes(
            xyxy, a[:, 0].astype(np.int64), a[:, 5].astype(np.float32),
            a[:, 6].astype(np.int32), a[:, 7].astype(np.float32),
        )  # fmt: skip
    return out


def _atomic_text(path: Path, text: str) -> None:
    from edgedet.fileio import atomic_write_bytes

    atomic_write_bytes(path, text.encode())


def write_gt(
    path: str | Path, rows: Iterable[tuple[int, int, Sequence[float], float, int, float]]
) -> None:
    """Write ground-truth rows ``(frame, id, xyxy, conf, class, visibility)`` as ``gt.txt``."""
    lines = []
    for frame, tid, box, conf, cls, vis in rows:
        x1, y1, x2, y2 = (float(v) for v in box)
        lines.append(
            f"{frame},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{conf:g},{cls},{vis:.3f}"
        )
    _atomic_text(Path(path), "".join(line + "\n" for line in lines))


def results_lines(frame: int, xyxy: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> list[str]:
    """MOTChallenge results lines for one frame (1-based ``frame``; ``xyxy`` float (N, 4)
    corners in pixels; ``ids`` (N,) track ids; ``scores`` (N,))."""
    return [
        f"{frame},{int(i)},{b[0]:.2f},{b[1]:.2f},{b[2] - b[0]:.2f},{b[3] - b[1]:.2f},{s:.4f},-1,-1,-1"
        for b, i, s in zip(np.asarray(xyxy, np.float64), ids, np.asarray(scores, np.float64))
    ]


def write_seqinfo(
    folder: str | Path, name: str, length: int, fps: float, imgsz: tuple[int, int], ext: str
) -> None:
    """Write ``seqinfo.ini`` (``imgsz`` is (height, width))."""
    text = (
        "[Sequence]\n"
        f"name={name}\nimDir=img1\nframeRate={fps:g}\nseqLength={length}\n"
        f"imWidth={imgsz[1]}\nimHeight={imgsz[0]}\nimExt={ext}\n"
    )
    _atomic_text(Path(folder) / "seqinfo.ini", text)


def is_sequence(folder: str | Path) -> bool:
    """Whether ``folder`` looks like a MOTChallenge sequence (``seqinfo.ini`` or ``img1/``)."""
    p = Path(folder)
    return p.is_dir() and ((p / "seqinfo.ini").is_file() or (p / "img1").is_dir())


def read_sequence(folder: str | Path) -> MotSequence:
    """Read a sequence folder (see the module docstring); ``seqinfo.ini`` is optional (frame
    rate then 30). Missing frames or an unreadable ``gt.txt`` raise `DatasetError`."""
    p = Path(folder)
    if not is_sequence(p):
        raise DatasetError(f"{p} is not a MOTChallenge sequence folder (no seqinfo.ini, no img1/)")
    name, fps, im_dir = p.name, 30.0, "img1"
    ini = p / "seqinfo.ini"
    if ini.is_file():
        cfg = configparser.ConfigParser()
        try:
            cfg.read(ini)
            sec = cfg["Sequence"]
            name = sec.get("name", name)
            im_dir = sec.get("imDir", im_dir)
            fps = float(sec.get("frameRate", fps))
        except (configparser.Error, KeyError, ValueError) as err:
            raise DatasetError(f"{ini}: not a valid seqinfo.ini ({err})") from err
    frames = sorted(f for f in (p / im_dir).glob("*") if f.suffix.lower() in FRAME_SUFFIXES)
    if not frames:
        raise DatasetError(f"{p / im_dir} holds no frames ({', '.join(FRAME_SUFFIXES)})")
    gt_path = p / "gt" / "gt.txt"
    gt = read_mot_file(gt_path) if gt_path.is_file() else None
    if gt and max(gt) > len(frames):
        raise DatasetError(
            f"{gt_path} has rows for frame {max(gt)} but {p / im_dir} holds {len(frames)} frames"
        )
    return MotSequence(p, name, frames, fps if fps > 0 else 30.0, gt)
