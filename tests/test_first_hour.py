"""What a new user meets on the command line (issue 16): missing extras, install hints, flag
names in errors, sidecars through ``edgedet import``, exit codes, and predict's outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgedet
from edgedet import hints
from edgedet.cli import main
from edgedet.errors import IncompatibleModelError
from edgedet.meta import sidecar_path
from tests.tiny_models import make_tiny_yolov5, tiny_meta

#: Run the installed ``edgedet`` console script with ``torch`` (and its extra) made unimportable,
#: as on a device install without the train extra.
_NO_TORCH = """
import runpy, sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torch_pruning"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
sys.argv = ["edgedet", *sys.argv[1:]]
runpy.run_path(SCRIPT, run_name="__main__")
"""


def _console_script() -> str:
    script = Path(sys.executable).with_name("edgedet")
    found = str(script) if script.is_file() else shutil.which("edgedet")
    if found is None:
        pytest.skip("the edgedet console script is not installed beside this Python")
    return found


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "roads/"],
        ["prune", "m.onnx", "--images", "frames/", "--target-macs", "0.5", "--out", "p.onnx"],
        ["qat", "m.onnx", "--images", "frames/", "--out", "q.onnx"],
        ["distill", "m.onnx", "--teacher", "t.onnx", "--images", "frames/", "--out", "d.onnx"],
        ["export", "best.pt", "--out", "m.onnx"],
    ],
    ids=lambda a: a[0],
)
def test_train_commands_without_torch_say_what_to_install(argv: list[str], tmp_path: Path) -> None:
    code = _NO_TORCH.replace("SCRIPT", repr(_console_script()))
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"'edgedet {argv[0]}' needs the 'train' extra (torch" in proc.stderr
    assert "pip install" in proc.stderr and "[train]" in proc.stderr


def test_install_command_forms(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(hints, "_install_origin", lambda: None)
    both = hints.install_command("train")
    assert 'pip install -e ".[train]"' in both and ".whl[train]" in both
    monkeypatch.setattr(hints, "_install_origin", lambda: ("checkout", "/src/edgedet"))
    assert hints.install_command("bench") == 'pip install -e "/src/edgedet[bench]"'
    monkeypatch.setattr(hints, "_install_origin", lambda: ("wheel", "/w/edgedet-0.1.0-py3-none-any.whl"))
    assert hints.install_command("openvino") == 'pip install "/w/edgedet-0.1.0-py3-none-any.whl[openvino]"'
    assert "JetPack" in hints.install_command("tensorrt")


def test_install_origin_of_this_install() -> None:
    """This test venv is an editable install of the checkout: the hint names the checkout."""
    origin = hints._install_origin()
    if origin is None:
        pytest.skip("edgedet is not installed with a PEP 610 direct_url.json here")
    kind, where = origin
    assert kind in ("checkout", "wheel") and Path(where).exists()


def test_errors_name_the_flag_on_the_cli_and_the_keyword_in_python(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = make_tiny_yolov5(tmp_path / "plain.onnx", nc=2)
    images = tmp_path / "imgs"
    images.mkdir()
    cv2.imwrite(str(images / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    assert main(["predict", str(plain), str(images), "--save", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "pass --family ..." in err and "family=" not in err
    assert f"edgedet import {plain} --family F --out {tmp_path / 'plain_edgedet.onnx'}" in err
    with pytest.raises(IncompatibleModelError, match=r"pass family=\.\.\."):
        edgedet.load(plain)
    # a flag with another name than the keyword: class_names -> --names, 3 names for 2 classes
    assert main(["predict", str(plain), str(images), "--family", "yolov5", "--names", "a,b,c",
                 "--save", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "pass --names ..." in capsys.readouterr().err


def test_import_writes_a_sidecar_for_openvino_ir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ov = pytest.importorskip("openvino")
    onnx_path = make_tiny_yolov5(tmp_path / "tiny.onnx", nc=2)
    xml = tmp_path / "tiny.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml))
    assert main(["predict", str(xml), str(tmp_path), "--save", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"`edgedet import {xml} --family F`" in err  # the suggested command, runnable as written
    assert main(["info", str(xml)]) == 0
    assert f"`edgedet import {xml} --family F`" in " ".join(capsys.readouterr().out.split())
    assert main(["import", str(xml), "--family", "yolov5", "--names", "cone,sign"]) == 0
    assert "checked with openvino" in capsys.readouterr().out
    det = edgedet.load(xml)  # no flags now
    assert det.class_names == ("cone", "sign") and det.runtime_name == "openvino"
    det.close()
    # a family that does not fit: refused, and the sidecar that was there is kept as it was
    before = sidecar_path(xml).read_bytes()
    assert main(["import", str(xml), "--family", "yolox"]) == 2
    assert sidecar_path(xml).read_bytes() == before


def test_import_sidecar_for_an_engine_keeps_its_compatibility_keys(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not checked here")
    sidecar_path(engine).write_text(json.dumps({"tensorrt": {"version": "10.3"}}))
    assert main(["import", str(engine), "--family", "yolov8", "--names", "coco",
                 "--input-size", "640", "640"]) == 0  # fmt: skip
    data = json.loads(sidecar_path(engine).read_text())
    assert data["tensorrt"] == {"version": "10.3"} and data["meta"]["family"] == "yolov8"
    assert main(["import", str(engine), "--family", "yolov8", "--out", str(tmp_path / "x.json")]) == 2


def test_import_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["import", "--help"])
    out = capsys.readouterr().out
    options = [w.strip("[],|") for w in out.split() if w.startswith(("--", "[--")) and w != "--help"]
    lines = out.split("options:")[1].splitlines()
    for opt in {o.split()[0] for o in options if o.startswith("--")}:
        # an option's line starts with it, or with its pair (``--multi-label, --no-multi-label``)
        described = [ln for ln in lines if opt in [t.strip(",") for t in ln.split()[:3]]]
        assert described, opt
        i = lines.index(described[0])
        text = lines[i] + (lines[i + 1] if i + 1 < len(lines) else "")
        assert len(text.split()) > 2, f"{opt} has no description"


def test_predict_exits_nonzero_when_no_image_could_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = make_tiny_yolov5(tmp_path / "tiny.onnx", meta=tiny_meta())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a jpeg")
    (bad / "b.png").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["predict", str(tiny), str(bad), "--save", str(out)]) == 2
    assert "none of the 2 image(s) could be read" in capsys.readouterr().err
    assert not (out / "detections.json").exists()


def test_detections_json_schema_xyxy_and_coco_export(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    tiny = make_tiny_yolov5(tmp_path / "tiny.onnx", meta=tiny_meta())
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(images / f"i{i}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    out = tmp_path / "out"
    coco = tmp_path / "coco_results.json"
    argv = ["predict", str(tiny), str(images), "--save", str(out), "--conf", "0.01", "--coco-results", str(coco)]
    assert main(argv) == 0
    doc = json.loads((out / "detections.json").read_text())
    schema = json.loads((Path(edgedet.__file__).parent / "assets" / "detections.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert doc["detections"], "the tiny model at conf 0.01 finds boxes on noise"
    det = edgedet.load(tiny, score_threshold=0.01)
    first = det(cv2.imread(str(images / "i0.png")))
    mine = [d for d in doc["detections"] if d["file_name"] == "i0.png"]
    assert len(mine) == len(first)
    np.testing.assert_allclose([d["xyxy"] for d in mine], first.xyxy, atol=0.01)  # like the API
    assert [d["class_name"] for d in mine] == [det.class_names[c] for c in first.class_ids]
    results = json.loads(coco.read_text())
    assert len(results) == len(doc["detections"])
    x1, y1, x2, y2 = doc["detections"][0]["xyxy"]
    assert results[0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.02)
    assert results[0]["category_id"] == doc["detections"][0]["class_id"] + 1  # not COCO's classes


def test_coco_category_ids_for_coco_classes() -> None:
    from edgedet._predict_output import coco_results
    from edgedet.meta import COCO80

    rec = {"image_id": 0, "file_name": "a.jpg", "xyxy": [0, 0, 2, 2], "score": 0.5}
    ids = [coco_results([{**rec, "class_id": c}], COCO80)[0]["category_id"] for c in (0, 11, 79)]
    assert ids == [1, 13, 90]  # person, stop sign (12 is unused), toothbrush


@pytest.mark.parametrize("fps", [15.0, 25.0])
def test_saved_video_keeps_the_source_frame_rate(tmp_path: Path, fps: float) -> None:
    tiny = make_tiny_yolov5(tmp_path / "tiny.onnx", meta=tiny_meta())
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), fps, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), i * 50, np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert main(["predict", str(tiny), str(video), "--save", str(out)]) == 0
    cap = cv2.VideoCapture(str(out / "clip_pred.mp4"))
    try:
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(fps, rel=1e-3)
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    finally:
        cap.release()


def test_source_fps_falls_back_with_a_note(tmp_path: Path) -> None:
    from edgedet._predict_output import FALLBACK_FPS, source_fps

    fps, note = source_fps("rtsp://camera/stream")
    assert fps == FALLBACK_FPS and note and "not probed" in note
    fps, note = source_fps(tmp_path / "not-a-video.mp4")
    assert fps == FALLBACK_FPS and note and "reports no frame rate" in note


def test_bench_with_every_configuration_skipped_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgedet.runtimes.registry import probe

    if probe("tensorrt")["available"]:
        pytest.skip("TensorRT is installed here: the configuration would run")
    tiny = make_tiny_yolov5(tmp_path / "tiny.onnx", meta=tiny_meta())
    data = tmp_path / "data"
    data.mkdir()
    code = main(["bench", "--model", str(tiny), "--data", str(data), "--runtime", "tensorrt",
                 "--no-progress", "--no-plot", "--out", str(tmp_path / "b")])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1, captured.out
    assert "nothing was measured: every one of the 1 configuration(s) was skipped" in captured.err


def test_bench_console_table_fits_80_columns_with_a_legend() -> None:
    from edgedet.benchmarks.console_table import print_results
    from rich.console import Console

    from tests.benchmarks.synthetic_records import make_record

    records = [
        make_record("yolox_nano_416", "onnxruntime"),
        make_record("yolox_nano_416", "openvino", precision="int8"),
        make_record("yolox_nano_416", "tensorrt", status="skipped", map50_95=None, p50=None),
    ]
    records[2]["reason"] = "runtime 'tensorrt' is not installed"
    for r in records[:2]:
        r.update(throughput_fps=246.0, throughput_requests=4, threads=None, threads_used=2)
        r["accuracy"]["map50_95_ci"] = {"low": 0.267, "high": 0.351}
    records[2]["threads"] = None
    narrow = Console(width=80, record=True)
    print_results(records, narrow)
    text = narrow.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    rows = [ln for ln in text.splitlines() if ln.startswith("yolox_nano_416")]
    assert len(rows) == 3  # one line per configuration, nothing wrapped
    assert "0.300 (.267–.351)" in rows[0] and "10.0/11.0/13.0" in rows[0] and "246" in rows[0]
    assert "skipped [1]" in rows[2] and "[1] yolox_nano_416 tensorrt fp32: runtime" in text
    flat = " ".join(text.split())
    assert "4 requests in flight" in flat and "threads –: not set" in flat
    assert "Same in every row: imgsz" in flat
    wide = Console(width=240, record=True)
    print_results(records, wide, wide=True)
    header = next(ln for ln in wide.export_text().splitlines() if "RSS MB" in ln)
    for column in ("imgsz", "batch", "threads", "infer p50", "load s", "fps"):
        assert column in header


def test_frontier_labels_do_not_overlap_and_the_plot_says_what_the_bars_are(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from edgedet.benchmarks.plot import draw_frontier, plot_frontier

    from tests.benchmarks.synthetic_records import make_record

    # INT8 points right beside their float ones, as in a PTQ sweep (issue 16)
    points = [("yolox_nano", "onnxruntime", "fp32", 12.6, 0.305), ("yolox_nano", "openvino", "fp32", 12.9, 0.305),
              ("yolox_nano", "onnxruntime", "int8", 9.1, 0.304), ("yolox_nano", "openvino", "int8", 8.9, 0.303),
              ("nanodet_m", "onnxruntime", "fp32", 7.9, 0.247), ("nanodet_m", "openvino", "fp32", 8.0, 0.247),
              ("yolox_p70", "openvino", "int8", 6.6, 0.171)]  # fmt: skip
    records = []
    for model, runtime, precision, p50, m in points:
        r = make_record(model, runtime, map50_95=m, p50=p50, precision=precision)
        r["accuracy"]["map50_95_ci"] = {"low": m - 0.03, "high": m + 0.04, "resamples": 1000}
        records.append(r)
    drawn = draw_frontier(records)
    assert drawn is not None
    fig, ax, labels = drawn
    renderer = fig.canvas.get_renderer()
    boxes = [lab.get_window_extent(renderer) for lab in labels]
    assert len(boxes) == len(points)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    legend = ax.get_legend()
    entries = [t.get_text() for t in legend.get_texts()]
    assert entries[:2] == ["onnxruntime", "openvino"] and "95% bootstrap interval of mAP" in entries
    runtime_handles = legend.legend_handles[:2]
    assert all(h.get_markeredgecolor() == h.get_markerfacecolor() for h in runtime_handles)
    assert any("95% percentile bootstrap interval" in t.get_text() for t in fig.texts)
    assert plot_frontier(records, tmp_path / "f.png") == tmp_path / "f.png"
