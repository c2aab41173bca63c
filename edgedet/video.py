"""Video sources and the frame loops behind `Detector.stream` and `Detector.track`.

Sources (`open_source`): a video file, a folder of frames (or a MOTChallenge sequence folder,
whose ``img1/`` is read), a camera index, or a stream URL (``rtsp://``, ``http(s)://``,
``udp://``), all through OpenCV. Files and folders are *recorded* sources: every frame is
processed, none dropped. Cameras and URLs are *live*: a reader thread keeps at most
``queue_size`` frames, and when processing falls behind, ``drop="oldest"`` (their default)
discards the oldest waiting frame, counts it in `StreamResult.dropped` and logs a warning.

Two loops give the same detections in the same order:

- sequential (the default; deterministic, nothing runs in the background for a recorded
  source): read, preprocess, infer, postprocess, one frame after the other;
- pipelined (``pipelined=True``): capture, preprocess, inference and postprocess each run in
  their own thread, joined by bounded queues (one item between stages), so that one frame's
  inference overlaps the next frame's decoding and preprocessing and the previous frame's
  postprocess. One thread per stage keeps frames in order. ONNX Runtime, OpenVINO and OpenCV
  release the GIL while they work, which is where the overlap comes from.

Each `StreamResult` carries ``timestamp`` (wall-clock time of capture, ``time.time()``
seconds, for message headers) and ``latency`` (seconds from capture to the result being
ready, on the monotonic clock; time the caller spends between results is not in it).

A live source that stops delivering frames (a camera unplugged, a stream cut) ends the loop with
`SourceLostError` after the frames already read have been yielded; so does one that delivers
nothing for ``stall_timeout`` seconds. A recorded source ends normally at its last frame.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .detections import Detections
from .errors import EdgedetError, InvalidInputError, SourceLostError

if TYPE_CHECKING:
    from .detector import Detector
    from .tracking import Tracker, Tracks

log = logging.getLogger("edgedet")

LIVE_PREFIXES = ("rtsp://", "http://", "https://", "udp://")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: Frame rate assumed for a source that reports none (cameras are not probed).
DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class StreamResult:
    """One processed frame.

    Attributes:
        index: 0-based position of the frame in the source (dropped frames keep their numbers,
            so a gap in ``index`` is where frames were dropped).
        frame: the frame, BGR uint8 (H, W, 3), as read.
        detections: `Detections` in the frame's pixels. From `Detector.track`: only the boxes
            that belong to a confirmed track, aligned with ``tracks``.
        dropped: frames skipped just before this one (live sources with ``drop="oldest"``).
        timestamp: wall-clock time the frame was captured (``time.time()``, seconds).
        latency: seconds from capture to this result being ready (monotonic clock).
        tracks: from `Detector.track`: the `edgedet.tracking.Tracks` of ``detections`` (ids,
            ages, lost and ended ids); None from `Detector.stream`.
    """

    index: int
    frame: np.ndarray
    detections: Detections
    dropped: int = 0
    timestamp: float = 0.0
    latency: float = 0.0
    tracks: Tracks | None = None


@dataclass
class _Frame:
    index: int
    image: np.ndarray
    wall: float
    mono: float


class _Drops:
    """Frames the capture thread dropped, and how many of them the consumer has reported."""

    def __init__(self) -> None:
        self.total = 0  # written by the capture thread only
        self.reported = 0  # read and written by the consumer only

    def take(self) -> int:
        newly = self.total - self.reported
        self.reported += newly
        return newly


class _End:
    """End of a source; ``lost`` carries the error for a live source that went away."""

    def __init__(self, lost: EdgedetError | None = None) -> None:
        self.lost = lost


class _Failed:
    def __init__(self, err: BaseException) -> None:
        self.err = err


# -- sources ------------------------------------------------------------------------------------


class FrameSource:
    """Frames of one source, read one at a time: `read` returns a BGR uint8 frame or None at
    the end. ``live`` sources are cameras and URLs; ``fps`` the source's frame rate (its own
    report, else `DEFAULT_FPS`); ``name`` how messages name it."""

    live: bool = False
    fps: float = DEFAULT_FPS
    name: str = ""
    #: set when a reader thread could not be stopped (blocked in `read`): not closed under it
    abandoned: bool = False

    def read(self) -> np.ndarray | None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class CaptureSource(FrameSource):
    """A video file, camera or URL through ``cv2.VideoCapture``."""

    def __init__(self, source: int | str | Path, live: bool) -> None:
        import cv2

        self.live = live
        self.name = f"camera {source}" if isinstance(source, int) else str(source)
        self._cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
        if not self._cap.isOpened():
            raise InvalidInputError(f"OpenCV could not open video source {source!r}")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not live and np.isfinite(fps) and 0 < fps <= 1000:
            self.fps = fps

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        return frame if ok else None

    def close(self) -> None:
        self._cap.release()


class FolderSource(FrameSource):
    """Image files of a folder in name order (a MOTChallenge sequence: its frame folder and
    ``seqinfo.ini`` frame rate). A frame that cannot be read raises `InvalidInputError`."""

    def __init__(self, folder: Path) -> None:
        from .data.mot import is_sequence, read_sequence

        if is_sequence(folder):
            seq = read_sequence(folder)
            self.files, self.fps = seq.frames, seq.fps
        else:
            self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        if not self.files:
            raise InvalidInputError(f"no frames ({', '.join(FRAME_SUFFIXES)}) in {folder}")
        self.name = str(folder)
        self._next = 0

    def read(self) -> np.ndarray | None:
        import cv2

        if self._next >= len(self.files):
            return None
        path = self.files[self._next]
        self._next += 1
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise InvalidInputError(f"frame {path} cannot be read (missing or corrupt)")
        return img


class ReplaySource(FrameSource):
    """A recorded source played back as a live camera at ``fps`` frames per second in real time
    (frame k is released at start + k / fps; a late reader gets it at once, as from a camera's
    buffer): to measure capture-to-result latency and frame dropping without a camera. Its end
    counts as the camera going away (`SourceLostError`)."""

    live = True

    def __init__(self, source: int | str | Path | FrameSource, fps: float) -> None:
        if not float(fps) > 0:
            raise InvalidInputError(f"replay fps must be > 0, got {fps}")
        self._src = open_source(source)
        self.fps = float(fps)
        self.name = f"replay of {self._src.name} at {self.fps:g} fps"
        self._start: float | None = None
        self._k = 0

    def read(self) -> np.ndarray | None:
        image = self._src.read()
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._k / self.fps
        self._k += 1
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return image

    def close(self) -> None:
        self._src.close()


def is_live(source: int | str | Path) -> bool:
    """Cameras (an int) and stream URLs are live; files and folders are not."""
    return isinstance(source, int) or str(source).lower().startswith(LIVE_PREFIXES)


def open_source(source: int | str | Path | FrameSource) -> FrameSource:
    """The `FrameSource` for a camera index, URL, video file or frame folder (a `FrameSource`
    is returned as it is)."""
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, (bool, float)) or not isinstance(source, (int, str, Path)):
        raise InvalidInputError(
            f"video source must be a camera index, URL, file or folder, got {type(source).__name__}"
        )
    live = is_live(source)
    if not live and not isinstance(source, int):
        path = Path(source)
        if not path.exists():
            raise InvalidInputError(f"video source not found: {source}")
        if path.is_dir():
            return FolderSource(path)
    return CaptureSource(source, live)


# -- capture thread -----------------------------------------------------------------------------


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put, waking up to notice ``stop``; False when stopped first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _capture(
    src: FrameSource, out: queue.Queue[Any], stop: threading.Event, drops: _Drops | None
) -> None:
    """Read frames into ``out`` until the end, an error or ``stop``. With ``drops``, a full
    queue loses its oldest frame (counted in ``drops``); without, the reader waits."""
    index = 0
    try:
        while not stop.is_set():
            image = src.read()
            if image is None:
                lost = None
                if src.live:
                    lost = SourceLostError(
                        f"{src.name} stopped delivering frames after {index} frame(s)"
                    )
                _put(out, _End(lost), stop)
                return
            item = _Frame(index, image, time.time(), time.monotonic())
            index += 1
            if drops is not None:
                while True:
                    try:
                        out.put_nowait(item)
                        break
                    except queue.Full:
                        try:
                            if isinstance(out.get_nowait(), _Frame):
                                drops.total += 1
                        except queue.Empty:
                            pass
            elif not _put(out, item, stop):
                return
    except BaseException as err:  # reported by the consumer
        _put(out, _Failed(err), stop)


def _drain_and_join(
    src: FrameSource,
    reader: threading.Thread,
    stages: list[threading.Thread],
    queues: list[queue.Queue[Any]],
) -> None:
    """After ``stop`` is set: empty the queues until every thread has ended. Processing stages
    always end after their current item (waited for, so the runtime is never closed under one);
    a ``reader`` still blocked in the source's read after 0.5 s is left to finish on its own
    (a daemon) and the source is marked ``abandoned`` so that it is not released under it."""

    def drain() -> None:
        for q in queues:
            try:
                while True:
                    q.get_nowait()
            except queue.Empty:
                pass

    while any(t.is_alive() for t in stages):
        drain()
        for t in stages:
            t.join(timeout=0.02)
    deadline = time.monotonic() + 0.5
    while reader.is_alive() and time.monotonic() < deadline:
        drain()
        reader.join(timeout=0.02)
    if reader.is_alive():
        src.abandoned = True
        log.warning("%s: its reader is blocked; the capture is left open", src.name)


def _items(q: queue.Queue[Any], src: FrameSource, stall_timeout: float | None) -> Iterator[Any]:
    """The consumer's items from ``q`` until the source ends; a failure in a thread is raised
    here, and so is `SourceLostError` for a live source that went away or stayed silent for
    ``stall_timeout`` seconds."""
    while True:
        try:
            wait = stall_timeout if src.live else None
            item = q.get(timeout=wait)
        except queue.Empty:
            raise SourceLostError(
                f"{src.name} delivered no frame for {stall_timeout:g} s; treating it as lost"
            ) from None
        if isinstance(item, _Failed):
            raise item.err
        if isinstance(item, _End):
            if item.lost is not None:
                raise item.lost
            return
        yield item


# -- the loops ----------------------------------------------------------------------------------


def _check_options(drop: str | None, queue_size: int, src: FrameSource) -> str:
    policy = drop or ("oldest" if src.live else "never")
    if policy not in ("oldest", "never"):
        raise InvalidInputError(f"drop must be 'oldest' or 'never', got '{policy}'")
    if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
        raise InvalidInputError(f"queue_size must be an integer >= 1, got {queue_size!r}")
    return policy


def _result(fr: _Frame, dets: Detections, dropped: int = 0) -> StreamResult:
    return StreamResult(fr.index, fr.image, dets, dropped, fr.wall, time.monotonic() - fr.mono)


def _warn_drops(res: StreamResult) -> None:
    if res.dropped:
        log.warning(
            "stream: dropped %d frame(s) before frame %d because processing fell behind the "
            "live source",
            res.dropped,
            res.index,
        )


def stream(
    det: Detector,
    source: int | str | Path | FrameSource,
    *,
    drop: str | None = None,
    queue_size: int = 4,
    pipelined: bool = False,
    stall_timeout: float | None = 10.0,
) -> Iterator[StreamResult]:
    """Detect on every frame of ``source`` (see the module docstring); yields `StreamResult`."""
    src = open_source(source)
    try:
        policy = _check_options(drop, queue_size, src)
        if pipelined:
            loop = _pipelined(det, src, policy, queue_size, stall_timeout)
        elif src.live:
            loop = _sequential_live(det, src, policy, queue_size, stall_timeout)
        else:
            loop = _sequential_recorded(det, src)
        for res in loop:
            _warn_drops(res)
            yield res
    finally:
        if not src.abandoned:
            src.close()


def _sequential_recorded(det: Detector, src: FrameSource) -> Iterator[StreamResult]:
    index = 0
    while True:
        image = src.read()
        if image is None:
            return
        fr = _Frame(index, image, time.time(), time.monotonic())
        yield _result(fr, det(image))
        index += 1


def _sequential_live(
    det: Detector, src: FrameSource, policy: str, queue_size: int, stall_timeout: float | None
) -> Iterator[StreamResult]:
    frames: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
    stop = threading.Event()
    drops = _Drops() if policy == "oldest" else None
    reader = threading.Thread(
        target=_capture,
        args=(src, frames, stop, drops),
        daemon=True,
        name="edgedet-stream-reader",
    )
    reader.start()
    try:
        for item in _items(frames, src, stall_timeout):
            yield _result(item, det(item.image), drops.take() if drops else 0)
    finally:
        stop.set()
        _drain_and_join(src, reader, [], [frames])


def _stage(
    fn: Callable[[Any], Any], inq: queue.Queue[Any], outq: queue.Queue[Any], stop: threading.Event
) -> None:
    """One pipeline stage: apply ``fn`` to the payload of each ``(frame, payload)`` item (a bare
    frame from the capture queue: its image), pass ends and failures on."""
    while not stop.is_set():
        try:
            item = inq.get(timeout=0.05)
        except queue.Empty:
            continue
        if not isinstance(item, (_End, _Failed)):
            try:
                fr, payload = (item, item.image) if isinstance(item, _Frame) else item
                item = (fr, fn(payload))
            except BaseException as err:  # reported by the consumer
                item = _Failed(err)
        if not _put(outq, item, stop) or isinstance(item, (_End, _Failed)):
            return


def _pipelined(
    det: Detector, src: FrameSource, policy: str, queue_size: int, stall_timeout: float | None
) -> Iterator[StreamResult]:
    stop = threading.Event()
    drops = _Drops() if policy == "oldest" else None
    captured: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
    # one item waiting between stages (plus one in each stage's hands) is enough to keep them
    # all busy; more would only add latency
    prepped: queue.Queue[Any] = queue.Queue(maxsize=1)
    inferred: queue.Queue[Any] = queue.Queue(maxsize=1)
    done: queue.Queue[Any] = queue.Queue(maxsize=1)

    def pre(image: np.ndarray) -> Any:
        return det.preprocess([image])

    def infer(p: Any) -> Any:
        feeds, lbs = p
        return det.infer(feeds), lbs

    def post(p: Any) -> Detections:
        outputs, lbs = p
        return det.postprocess(outputs, lbs)[0]

    threads = [
        threading.Thread(
            target=_capture, args=(src, captured, stop, drops), daemon=True,
            name="edgedet-capture",
        ),
        threading.Thread(
            target=_stage, args=(pre, captured, prepped, stop), daemon=True, name="edgedet-pre"
        ),
        threading.Thread(
            target=_stage, args=(infer, prepped, inferred, stop), daemon=True, name="edgedet-infer"
        ),
        threading.Thread(
            target=_stage, args=(post, inferred, done, stop), daemon=True, name="edgedet-post"
        ),
    ]  # fmt: skip
    for t in threads:
        t.start()
    try:
        for fr, dets in _items(done, src, stall_timeout):
            yield _result(fr, dets, drops.take() if drops else 0)
    finally:
        stop.set()
        _drain_and_join(src, threads[0], threads[1:], [captured, prepped, inferred, done])


def stop_when_lost(results: Iterator[StreamResult]) -> Iterator[StreamResult]:
    """``results`` until a `SourceLostError`, which is logged as a warning instead of raised:
    for callers that keep what a camera gave before it went away (``edgedet predict``)."""
    try:
        yield from results
    except SourceLostError as err:
        log.warning("%s; keeping the frames processed before", err)


# -- tracking -----------------------------------------------------------------------------------

#: Score down to which `track` asks the detector for boxes: ByteTrack's low threshold.
TRACK_LOW_SCORE = 0.1


def track(
    det: Detector,
    source: int | str | Path | FrameSource,
    *,
    tracker: Tracker | None = None,
    drop: str | None = None,
    queue_size: int = 4,
    pipelined: bool = False,
    stall_timeout: float | None = 10.0,
    **tracker_options: Any,
) -> Iterator[StreamResult]:
    """`stream` plus ByteTrack: each result's ``detections`` are the tracked boxes and its
    ``tracks`` their ids and ages.

    The detector runs at score ``min(det.score_threshold, 0.1)`` on a copy of ``det`` (``det``
    itself is not changed) so that ByteTrack's second association sees the low-score boxes;
    ``det.score_threshold`` becomes the tracker's ``track_threshold`` (boxes that may start
    a track) unless given. Pass a ``tracker`` to keep ids across calls (after a
    `SourceLostError`, say); otherwise one is made from ``tracker_options`` (`Tracker`'s
    arguments) with the source's frame rate.
    """
    from .tracking import Tracker

    src = open_source(source)
    try:
        if tracker is None:
            tracker_options.setdefault("track_threshold", max(det.score_threshold, 1e-3))
            tracker_options.setdefault("frame_rate", src.fps)
            tracker = Tracker(**tracker_options)
        elif tracker_options:
            raise InvalidInputError(
                f"pass either tracker= or tracker options, not both ({sorted(tracker_options)})"
            )
        run = copy.copy(det)
        run.score_threshold = min(det.score_threshold, TRACK_LOW_SCORE)
        for res in stream(
            run, src, drop=drop, queue_size=queue_size, pipelined=pipelined,
            stall_timeout=stall_timeout,
        ):  # fmt: skip
            t0 = time.monotonic()
            tracked, tracks = tracker.update(res.detections)
            yield replace(
                res,
                detections=tracked,
                tracks=tracks,
                latency=res.latency + (time.monotonic() - t0),
            )
    finally:
        if not src.abandoned:
            src.close()
