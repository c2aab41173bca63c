"""``submit`` / ``wait_all`` for a runtime whose ``infer`` is thread-safe, on Python threads.

Why not the runtimes' own async APIs (ONNX Runtime ``run_async``, OpenVINO ``AsyncInferQueue``):
both call the Python callback from a native worker thread, which takes the GIL for it. Closing
the runtime then destroys the session / compiled model while holding the GIL, and that
destructor joins the same worker threads; a worker still on its way through the callback (or
releasing the Python objects it was handed) waits for the GIL, and the process hangs. This was
seen in edgedet's benchmarks and tests (``~CompiledModel`` -> ``~CPUStreamsExecutor`` ->
``join``; openvinotoolkit/openvino PR #37073 fixed only the queue's own destructor, and
ultralytics issue #25923 reports the compiled-model case on 2026.x). Here the native libraries
never call into Python: a small pool of Python threads calls ``infer`` (which releases the GIL in
both libraries, so requests still run in parallel) and then the callback. ``close`` waits for
the pool before the caller frees the session.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from edgedet.errors import InferenceError

Outputs = dict[str, np.ndarray]


class InferPool:
    """Requests in flight over ``infer(feeds) -> outputs``, at most ``workers`` at a time.

    ``submit`` returns at once; ``callback(outputs, userdata)`` runs on a pool thread after
    ``infer``; ``wait_all`` blocks until every submitted request has called back and raises
    `InferenceError` naming the first failure (of ``infer`` or of a callback), if any. The
    feeds' arrays are read when the request runs: do not modify them before its callback.
    """

    def __init__(self, infer: Callable[[Mapping[str, np.ndarray]], Outputs], workers: int) -> None:
        self._infer = infer
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, int(workers)), thread_name_prefix="edgedet-infer"
        )
        self._cv = threading.Condition()
        self._pending = 0
        self._errors: list[str] = []

    def submit(
        self,
        feeds: Mapping[str, np.ndarray],
        callback: Callable[[Outputs, Any], None],
        userdata: Any = None,
    ) -> None:
        with self._cv:
            self._pending += 1
        try:
            self._executor.submit(self._run, dict(feeds), callback, userdata)
        except BaseException:
            self._done()
            raise

    def _run(
        self, feeds: dict[str, np.ndarray], callback: Callable[[Outputs, Any], None], user: Any
    ) -> None:
        try:
            callback(self._infer(feeds), user)
        except BaseException as err:  # reported by wait_all, never swallowed
            with self._cv:
                self._errors.append(f"{type(err).__name__}: {err}")
        finally:
            self._done()

    def _done(self) -> None:
        with self._cv:
            self._pending -= 1
            self._cv.notify_all()

    def wait_all(self) -> None:
        with self._cv:
            self._cv.wait_for(lambda: self._pending == 0)
            errors, self._errors = self._errors, []
        if errors:
            raise InferenceError(f"{len(errors)} async inference(s) failed: {errors[0]}")

    def close(self) -> None:
        """Wait for every request (their errors are dropped: the runtime is going away)."""
        self._executor.shutdown(wait=True)
