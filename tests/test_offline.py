"""No network and no files in the home folder on edgedet's behalf: loading and running a model on
the real OpenVINO runtime (whose import normally starts OpenVINO's usage telemetry) attempts no
socket connection or DNS lookup and writes nothing under $HOME. Seen by Python audit hooks in a
fresh interpreter with a throw-away $HOME and no CI variables (CI variables switch the telemetry
off by themselves, which would hide a regression)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

_PROBE = """
    import sys
    events = []
    def hook(event, args):
        if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
            events.append(f"{event} {args[1:2]}")
        elif event == "open" and isinstance(args[0], str) and args[0].startswith(HOME) and (
            args[1] not in (None, "r", "rb") or args[2] & 0o3):
            events.append(f"write {args[0]}")
    sys.addaudithook(hook)
    import numpy as np
    import edgedet
    from edgedet.assets import sample_model_path
    from edgedet.runtimes.registry import probe
    assert probe("openvino")["available"]
    det = edgedet.load(sample_model_path(), runtime="openvino")
    det(np.zeros((96, 128, 3), np.uint8))
    det.close()
    import time
    time.sleep(0.5)  # the telemetry sender posts from a thread pool
    print("EVENTS", events)
    print("CLIENT", sys.modules.get("openvino_telemetry"))  # None: no telemetry client exists
"""


def test_openvino_use_sends_nothing_and_writes_nothing_in_home(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(tmp_path / "cache"))
    code = f"HOME = {str(home)!r}\n" + textwrap.dedent(_PROBE)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=env, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "EVENTS []" in res.stdout, res.stdout[-2000:]
    assert "CLIENT None" in res.stdout  # so no event could be built or sent
    assert list(home.iterdir()) == []  # no ~/intel/openvino_ga_cid, no ~/intel/stats


def test_block_leaves_an_already_loaded_client_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgedet.offline import TELEMETRY_MODULE, block_openvino_telemetry

    monkeypatch.delitem(sys.modules, TELEMETRY_MODULE, raising=False)
    assert block_openvino_telemetry() is True and sys.modules[TELEMETRY_MODULE] is None
    assert block_openvino_telemetry() is True  # idempotent
    client = type(sys)("openvino_telemetry")  # the application imported openvino first
    monkeypatch.setitem(sys.modules, TELEMETRY_MODULE, client)
    assert block_openvino_telemetry() is False and sys.modules[TELEMETRY_MODULE] is client
