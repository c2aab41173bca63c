"""Nothing leaves the machine on edgedet's behalf: OpenVINO's usage telemetry is switched off.

``import openvino`` (through ``openvino.tools.ovc``) and NNCF create an ``openvino_telemetry``
client that, unless a consent file ``~/intel/openvino_telemetry`` says ``0`` or a CI variable
(``CI=true``, ``TF_BUILD``, ``JENKINS_URL``) is set, writes ``~/intel/openvino_ga_cid`` and
``~/intel/stats`` and POSTs a usage event to Google Analytics on every import (read in
``openvino_telemetry/utils/opt_in_checker.py`` and ``openvino/tools/ovc/__init__.py``, OpenVINO
2026.4).

edgedet does not write the consent file (that would change the user's home and every other
OpenVINO program of the user) nor set ``CI`` (that changes other tools' behaviour). It marks the
``openvino_telemetry`` module as absent in ``sys.modules`` before OpenVINO or NNCF is imported:
both handle a missing ``openvino_telemetry`` package (OpenVINO falls back to its own
``telemetry_stub``, NNCF sends nothing), so no event is built, no file is written, and no socket
is opened. `edgedet/__init__.py` calls `block_openvino_telemetry` on import, which every import
of an edgedet module (runtimes, calibration, train, benchmarks) goes through.

In-process consequence: after ``import edgedet``, ``import openvino_telemetry`` raises
``ImportError``. An application that wants OpenVINO's telemetry imports ``openvino`` (which then
loads ``openvino_telemetry``) before edgedet: edgedet leaves an already-loaded client alone.
"""

from __future__ import annotations

import sys

TELEMETRY_MODULE = "openvino_telemetry"


def block_openvino_telemetry() -> bool:
    """Mark ``openvino_telemetry`` as not installed for this process unless it is already loaded.

    Returns True when telemetry is off for edgedet's later OpenVINO / NNCF imports."""
    if TELEMETRY_MODULE in sys.modules:
        return sys.modules[TELEMETRY_MODULE] is None
    sys.modules[TELEMETRY_MODULE] = None  # type: ignore[assignment]  # import now raises ImportError
    return True
