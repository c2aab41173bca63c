"""Writing files so that a crash never leaves half of one: `atomic_write_bytes`. Used for
models, sidecars, reports, records, checkpoints and dataset files alike, so it lives apart from
any one of them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask both reads and
    sets, which would briefly widen the mode of files other threads create)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass  # not Linux: fall back to the set-and-restore below
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    Writes a temporary file in the same directory, fsyncs it, then renames it over ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the final file the mode a plain open() would (umask).
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
