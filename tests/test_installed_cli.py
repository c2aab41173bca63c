"""The INSTALLED ``edgedet`` console script, run from a folder outside the repository.

Tests run from the repository root, where ``calibration``, ``benchmarks`` and ``runtimes``
resolve as top-level packages by accident; an installed ``edgedet`` only has
``edgedet.calibration`` etc. Running the console script (and the installed interpreter) with
the working directory in a temporary folder, and without PYTHONPATH, catches imports that only
work from the repository root. Nothing is installed here: the script is the one of the
interpreter running the tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "edgedet" / "assets" / "sample_roads.onnx"
#: Source folders installed as edgedet subpackages (pyproject's package-dir).
PACKAGE_DIRS = ("edgedet", "calibration", "benchmarks", "runtimes")
_BARE = re.compile(r"^\s*(?:from|import)\s+(calibration|benchmarks|runtimes)\b", re.MULTILINE)


def _script() -> Path:
    found = Path(sys.executable).parent / "edgedet"
    if found.is_file():
        return found
    which = shutil.which("edgedet")
    if which is None:
        pytest.skip("no installed edgedet console script next to the interpreter or on PATH")
    return Path(which)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # only what is installed
    return env


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    assert REPO not in cwd.resolve().parents and cwd.resolve() != REPO
    return subprocess.run(
        argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def test_no_bare_sibling_imports() -> None:
    """``from calibration.x import`` works only from the repository root; the installed names
    are ``edgedet.calibration`` (or a relative import inside the sibling package)."""
    found = []
    for folder in PACKAGE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            for m in _BARE.finditer(path.read_text()):
                line = path.read_text()[: m.start()].count("\n") + 1
                found.append(f"{path.relative_to(REPO)}:{line}: {m.group(0).strip()}")
    assert not found, "bare sibling imports:\n" + "\n".join(found)


def test_installed_script_outside_the_repository(tmp_path: Path) -> None:
    script = _script()
    res = _run([str(script), "runtimes"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "onnxruntime" in res.stdout
    if SAMPLE.is_file():
        res = _run([str(script), "info", str(SAMPLE)], tmp_path)
        assert res.returncode == 0, res.stderr
        assert "edgedet" in res.stdout


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLE.is_file(), reason="the sample model is not built")
def test_installed_bench_on_the_sample(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    res = _run(
        [str(_script()), "bench", "--runtime", "onnxruntime", "--images", "3", "--warmup", "1",
         "--min-iterations", "2", "--min-seconds", "0", "--requests", "0", "--bootstrap", "0",
         "--no-plot", "--no-progress", "--out", str(out)],
        tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    (record,) = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert record["status"] == "ok" and record["protocol"]["iou_threshold"] == 0.7
    assert "## Evaluation protocol" in (out / "results.md").read_text()


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.skipif(not SAMPLE.is_file(), reason="the sample model is not built")
def test_compression_reports_keep_latency_and_tail_outside_the_repository(tmp_path: Path) -> None:
    """What prune/distill/qat report from outside the repository: the latency of both models
    and the decode-tail Q/DQ count (both were lost silently when imported as ``calibration.``)."""
    pytest.importorskip("torch")
    from edgedet.data.synthetic import sample_validation_set

    val = sample_validation_set(tmp_path / "val", n=3)
    code = textwrap.dedent(f"""
        import json, onnx
        from edgedet.train.compress import evaluate_pair
        from edgedet.train.qat import tail_quantizers
        pair = evaluate_pair({str(SAMPLE)!r}, {str(SAMPLE)!r}, {str(val)!r}, None)
        print(json.dumps({{"after": pair["eval_after"], "protocol": pair["protocol"],
                           "tail": tail_quantizers(onnx.load({str(SAMPLE)!r}))}}))
    """)
    res = _run([sys.executable, "-c", code], tmp_path)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["after"]["e2e_p50_ms"] > 0 and got["after"]["infer_p50_ms"] > 0
    assert got["tail"] == 0  # a float model: no Q/DQ anywhere, counted (not -1 "unknown")
    assert got["protocol"]["iou_threshold"] == 0.7
