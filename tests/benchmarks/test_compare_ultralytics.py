"""``benchmarks.compare_ultralytics``: the harness logic (round order, per-round ratio, detection
matching, report) and its error when Ultralytics is missing. Ultralytics itself is not an edgedet
dependency and no test needs it; the timed comparison is run by hand (docs/optimize.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from edgedet.benchmarks import compare_ultralytics as cu

from edgedet.errors import InvalidInputError, RuntimeUnavailableError

BOXES = np.array([[10, 10, 50, 60], [100, 20, 140, 90], [12, 11, 49, 61]], np.float32)
SCORES = np.array([0.9, 0.8, 0.3], np.float32)
CLASSES = np.array([0, 2, 5])


def test_matching_pairs_boxes_by_class_and_iou() -> None:
    same = cu.match_detections((BOXES, SCORES, CLASSES), (BOXES, SCORES, CLASSES))
    assert same == {"count_edgedet": 3, "count_ultralytics": 3, "matched": 3, "min_iou": 1.0,
                    "max_corner_px": 0.0, "max_score_diff": 0.0}  # fmt: skip
    moved = BOXES.copy()
    moved[1] += 2.0  # 2 px shift of the class-2 box
    other = CLASSES.copy()
    other[2] = 0  # the third box now has class 0: it must not pair with the other class-0 box twice
    m = cu.match_detections((BOXES, SCORES, CLASSES), (moved, SCORES - 0.01, other))
    assert m["matched"] == 2 and m["max_corner_px"] == pytest.approx(2.0)
    assert m["max_score_diff"] == pytest.approx(0.01, abs=1e-6)
    assert 0.8 < m["min_iou"] < 1.0
    fewer = cu.match_detections((BOXES, SCORES, CLASSES), (BOXES[:1], SCORES[:1], CLASSES[:1]))
    assert (fewer["count_ultralytics"], fewer["matched"]) == (1, 1)
    total = cu.summarize_matches([same, m, fewer])
    assert total["images_same_count"] == 2 and total["images_all_matched"] == 1
    assert total["matched"] == 6 and total["detections_edgedet"] == 9
    empty = cu.match_detections((BOXES[:0], SCORES[:0], CLASSES[:0]), (BOXES, SCORES, CLASSES))
    assert empty["matched"] == 0 and empty["min_iou"] is None


class FakeClock:
    """Stands in for the harness's ``time`` module: wall and process-CPU clocks that advance only
    when a stand-in tool "runs", so the timing logic is tested without timing anything."""

    def __init__(self) -> None:
        self.wall_ns = 0
        self.cpu_ns = 0

    def perf_counter_ns(self) -> int:
        return self.wall_ns

    def process_time_ns(self) -> int:
        return self.cpu_ns

    def spend(self, ms: float, cores: float) -> None:
        self.wall_ns += int(ms * 1e6)
        self.cpu_ns += int(ms * cores * 1e6)


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(cu, "time", fake)
    return fake


def _path(name: str, ms: float, calls: list[str], clock: FakeClock, cores: float = 2.0) -> cu.Path_:
    """A stand-in for one tool (the harness is under test, not the tools): each call takes
    ``ms`` on the fake clock using ``cores`` CPU cores, and returns fixed detections."""

    def run(frame: np.ndarray) -> cu.Dets:
        calls.append(name)
        clock.spend(ms, cores)
        return BOXES, SCORES, CLASSES

    return cu.Path_(name, run, lambda f: (0.1, ms, 0.1), lambda c, i: None,
                    lambda: {"conf": 0.25, "iou": 0.7})  # fmt: skip


def test_rounds_alternate_and_ratio_is_per_round(clock: FakeClock) -> None:
    calls: list[str] = []
    paths = [_path(cu.EDGEDET, 2.0, calls, clock), _path(cu.ULTRALYTICS, 4.0, calls, clock)]
    frames = [np.zeros((8, 8, 3), np.uint8)] * 3
    E, U = cu.EDGEDET, cu.ULTRALYTICS
    cu.run_setting(paths, frames, rounds=2, log=lambda s: None, interleave="pass")
    assert calls == [E, E, E, U, U, U, U, U, U, E, E, E]  # round 2 starts with the other
    calls.clear()
    result = cu.run_setting(paths, frames, rounds=2, log=lambda s: None, interleave="image")
    assert calls == [E, U, U, E, E, U, U, E, E, U, U, E]  # order alternates per image
    assert [r["order"] for r in result["rounds"]] == [[E, U], [U, E]]
    for rnd in result["rounds"]:
        ours = rnd["paths"][E]["e2e_ms"]["p50"]
        theirs = rnd["paths"][U]["e2e_ms"]["p50"]
        assert (ours, theirs) == (2.0, 4.0)
        assert rnd["ratio_p50_edgedet_over_ultralytics"] == 0.5
        assert rnd["ratio_per_image_median"] == 0.5
        assert rnd["paths"][E]["cpu_cores_used"] == pytest.approx(2.0)
        assert rnd["paths"][E]["split_p50_ms"]["infer"] == 2.0
        assert rnd["quiet"]
    assert result["detections"]["images_all_matched"] == 3
    record = {
        "model": "m.onnx", "versions": {"edgedet": "x"}, "images": 3, "images_folder": "imgs",
        "rounds": 2, "warmup": 0, "host": {}, "load_before": [0], "load_after": [0],
        "paths": {cu.EDGEDET: {}, cu.ULTRALYTICS: {}}, "process": {}, "notes": ["n1"],
        "settings": {"defaults": {**result, "thresholds": {p.name: p.thresholds() for p in paths}}},
    }  # fmt: skip
    text = cu.markdown(record)
    assert text.count("| defaults |") == 5 and "- n1" in text
    ratio = result["rounds"][1]["ratio_p50_edgedet_over_ultralytics"]
    median = result["rounds"][1]["ratio_per_image_median"]
    assert f"| defaults | 2 | {cu.EDGEDET} |" in text and f"{ratio:.3f} ({median:.3f})" in text
    result["rounds"][0]["quiet"], result["rounds"][1]["quiet"] = True, False
    text = cu.markdown(record)
    assert f"{ratio:.3f} ({median:.3f}) busy |" in text  # other processes took the cores
    quiet = result["rounds"][0]["ratio_p50_edgedet_over_ultralytics"]
    assert f"({quiet:.2f}) |" in text  # the range over quiet rounds only


@pytest.mark.skipif(importlib.util.find_spec("ultralytics") is not None,
                    reason="ultralytics is importable here")  # fmt: skip
def test_missing_ultralytics_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RuntimeUnavailableError, match="pip install ultralytics"):
        cu.import_ultralytics()
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    out = tmp_path / "out"
    assert cu.main([str(model), str(tmp_path), "--out", str(out)]) == 2
    assert "not an edgedet dependency" in capsys.readouterr().err
    assert not out.exists()  # nothing measured, nothing written


def test_bad_input_is_refused_before_work(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        cu.compare(tmp_path / "missing.onnx", tmp_path)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="--rounds"):
        cu.compare(model, tmp_path, rounds=0)
    out = tmp_path / "out"
    assert cu.main([str(tmp_path / "missing.onnx"), str(tmp_path), "--out", str(out)]) == 2
    assert not out.exists()


def test_round_where_a_path_got_less_cpu_is_not_quiet(clock: FakeClock) -> None:
    busy = _path(cu.EDGEDET, 3.0, [], clock, cores=2.0)
    starved = _path(cu.ULTRALYTICS, 3.0, [], clock, cores=1.2)  # another process took cores
    frames = [np.zeros((8, 8, 3), np.uint8)] * 4
    result = cu.run_setting([busy, starved], frames, rounds=1, log=lambda s: None)
    assert result["rounds"][0]["paths"][cu.ULTRALYTICS]["cpu_cores_used"] == pytest.approx(1.2)
    assert result["rounds"][0]["quiet"] is False
    fair = _path(cu.ULTRALYTICS, 3.0, [], clock, cores=1.9)  # within 10% of the most used
    result = cu.run_setting([busy, fair], frames, rounds=1, log=lambda s: None)
    assert result["rounds"][0]["quiet"] is True


def test_a_model_with_a_deploy_profile_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    (tmp_path / "m.deploy.json").write_text("{}")
    with pytest.raises(InvalidInputError, match="default path"):
        cu.edgedet_path(model)  # before anything is loaded
