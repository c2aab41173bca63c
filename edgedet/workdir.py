"""Working folders that do not outlive their run, and output paths checked before the work.

Calibration, sensitivity, mixed precision, NNCF and bench runs keep intermediate files in a
hidden working folder (``.edgedet-calib-XXXX/`` beside the output, ``edgedet-bench-XXXX`` in the
temp folder). `make_work_dir` creates one and `remove_work_dir` removes it (callers do so in a
``finally``: an error or Ctrl-C cleans up). A run killed with SIGKILL cannot clean up, so each
working folder carries an owner marker, ``.edgedet-owner``, holding the owner's pid and an
exclusive ``flock`` for as long as the owning process lives (the kernel drops it when the process
dies, however it dies). Before creating its own folder, `make_work_dir` removes the folders of
the same prefix beside it whose marker it can lock (their owner is dead), and marker-less ones
(a kill between ``mkdtemp`` and the marker, or a version before markers) that are older than the
running process. A live run's folder is never touched: its marker is locked before it gets its
final name (locked under a temporary name, then renamed: the lock stays on the file).

Without ``fcntl`` (Windows) folders are still removed on errors, and leftovers are left alone.

`check_out_file` / `check_out_dir` turn an output path that cannot be written (read-only folder,
missing permission, an existing file where a folder is wanted, or the reverse) into an
`InvalidInputError` naming the path, before any work is done.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from edgedet.errors import InvalidInputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

MARKER = ".edgedet-owner"
_IMPORTED_AT = time.time()
_OWNED: dict[Path, int] = {}  # working folder -> fd of its locked marker


def _process_start() -> float:
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # psutil is an extra (bench); import time of this module is a bound
        return _IMPORTED_AT


def _owner_is_dead(folder: Path) -> bool:
    """True when ``folder``'s marker can be locked (its owner is gone), or it has no marker and
    is older than this process."""
    marker = folder / MARKER
    try:
        fd = os.open(marker, os.O_RDONLY)
    except FileNotFoundError:
        try:
            return folder.stat().st_mtime < _process_start()
        except OSError:
            return False
    except OSError:
        return False  # another user's folder: not ours to judge
    try:
        if fcntl is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # locked: its owner is alive
        return True
    finally:
        os.close(fd)


def sweep_stale(parent: Path, prefix: str) -> list[Path]:
    """Remove ``parent/prefix*`` working folders left by dead runs; returns what was removed."""
    removed: list[Path] = []
    try:
        candidates = [p for p in parent.iterdir() if p.name.startswith(prefix) and p.is_dir()]
    except OSError:
        return removed
    for folder in candidates:
        if folder in _OWNED or not _owner_is_dead(folder):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed


def make_work_dir(prefix: str, parent: str | Path | None = None) -> Path:
    """``tempfile.mkdtemp(prefix, dir=parent)`` with an owner marker, after removing dead runs'
    leftovers of the same prefix in ``parent`` (default: the temp folder)."""
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    sweep_stale(base, prefix)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    if fcntl is not None:
        tmp = folder / (MARKER + ".new")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.replace(tmp, folder / MARKER)  # visible only once locked
        _OWNED[folder] = fd
    return folder


def remove_work_dir(folder: str | Path) -> None:
    """Remove a folder made by `make_work_dir` (and release its marker)."""
    folder = Path(folder)
    fd = _OWNED.pop(folder, None)
    shutil.rmtree(folder, ignore_errors=True)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


@contextlib.contextmanager
def work_dir(prefix: str, parent: str | Path | None = None) -> Iterator[Path]:
    """`make_work_dir` as a context manager: removed on exit, errors and Ctrl-C included."""
    folder = make_work_dir(prefix, parent)
    try:
        yield folder
    finally:
        remove_work_dir(folder)


@contextlib.contextmanager
def temp_beside(out: Path) -> Iterator[Path]:
    """A temp file name in ``out``'s folder with ``out``'s suffix (so a runtime chosen by suffix
    reads it), removed on exit unless it was renamed to ``out`` in the block."""
    fd, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _probe(folder: Path, what: str, path: Path) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".edgedet-probe-", dir=folder)
    except OSError as err:
        raise InvalidInputError(
            f"cannot write {what} {path}: {err.strerror or err} (in {folder}); choose a "
            "writable location"
        ) from None
    os.close(fd)
    os.unlink(name)


def _make_parents(folder: Path, what: str, path: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InvalidInputError(
            f"cannot write {what} {path}: {folder} exists and is not a folder"
        ) from None
    except OSError as err:
        raise InvalidInputError(
            f"cannot write {what} {path}: cannot create {folder}: {err.strerror or err}"
        ) from None


def check_out_file(path: str | Path, what: str = "--out") -> Path:
    """Check that the file ``path`` can be written (its folder is created if missing)."""
    p = Path(path)
    if p.is_dir():
        raise InvalidInputError(f"{what} {p} is a folder; give a file name")
    _make_parents(p.parent, what, p)
    _probe(p.parent, what, p)
    return p


def check_out_dir(path: str | Path, what: str = "--out") -> Path:
    """Check that files can be written into the folder ``path`` (created if missing)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InvalidInputError(f"{what} {p} is an existing file; give a folder")
    _make_parents(p, what, p)
    _probe(p, what, p)
    return p
