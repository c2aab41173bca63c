"""One progress display for long steps (calibration, distillation, QAT): rich's bars.

`progress_tasks()` is a context manager that yields a task factory: ``task(label)`` adds a bar
and returns ``update(done, total, note="")``. On a terminal rich draws the bars live. Elsewhere
(a log file, CI) rich draws nothing until the end, so each task also writes one plain line to
stderr at every quarter, and a long run in a log still shows it is alive.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: ``update(done, total, note="")``: the callback a task returns.
Update = Callable[..., None]


@contextmanager
def progress_tasks(console: Any = None) -> Iterator[Callable[[str], Update]]:
    """Yield ``task(label) -> update(done, total, note="")`` over one rich `Progress`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        "{task.fields[note]}",
        console=console,
        transient=False,
    )
    live = progress.console.is_terminal

    def task(label: str) -> Update:
        tid = progress.add_task(label, total=None, note="")
        start, quarter = time.time(), [0]

        def update(done: int, total: int, note: str = "") -> None:
            progress.update(tid, completed=done, total=total, note=note)
            if live or total <= 0:
                return
            q = 4 * done // total
            if q > quarter[0] and done < total:
                quarter[0] = q
                sys.stderr.write(f"{label}: {done}/{total}, {time.time() - start:.0f} s {note}\n")
                sys.stderr.flush()

        return update

    with progress:
        yield task
