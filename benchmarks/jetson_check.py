"""On-device check of edgedet's TensorRT / Jetson path: run it on the Jetson (or GPU desktop).

edgedet's TensorRT code is tested in CI against a fake of TensorRT and its CUDA bindings (no GPU there).
This script checks, on real hardware, what only hardware can show, each check labelled with the
finding of the TensorRT review it covers (issue #15)::

    .venv/bin/python -m edgedet.benchmarks.jetson_check --out jetson_check.json

It builds tiny ONNX models in a temporary folder (nothing is downloaded), prints one line per
check (PASS / FAIL / SKIP with the reason) and writes every measurement to ``--out``. Exit
status 0 only when no check failed. Takes about a minute on an Orin (engine builds).

Checks: ``environment`` (``dpkg -l | grep nvinfer``, TensorRT, L4T, board, nvpmodel,
``jetson_clocks --show``; 5, 20), ``target`` (SM count, memory, board in the engine identity; 11),
``fp16`` / ``fp32`` builds compared with ONNX Runtime if installed (1, 5, 14), ``dynamic_batch``
(6), ``dynamic_hw`` (7), ``ultralytics_header`` (3), ``plugin_fresh_process`` (an
EfficientNMS_TRT engine built here, loaded in a new process; 2), ``dla`` (a fixed-batch DLA
build and its per-layer device placement from the engine inspector; 9), ``calibrator`` (the
implicit INT8 calibrator where the TensorRT has one; 13), ``device_index`` (12), ``power`` (rails,
what the total is taken from, throttling vs clocks locked, during 5 s of inference; 8, 10, 20).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Result = dict[str, Any]


def _run(cmd: list[str] | str, shell: bool = False) -> str:
    try:
        proc = subprocess.run(
            cmd, shell=shell, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unavailable: {err}"
    return (proc.stdout + proc.stderr).strip()


# -- tiny models -----------------------------------------------------------------------------------


def _save(graph: Any, path: Path, opset: int = 17, check: bool = True) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if check:
        onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def conv_model(path: Path, batch: int | str = "N", hw: tuple[Any, Any] = (64, 64)) -> Path:
    """images [B,3,H,W] -> Conv 3->8 (3x3) -> Relu -> Conv 8->4 -> Sigmoid: output [B,4,H,W]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, *hw])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 4, *hw])
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 8, 1, 1)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"]),
        helper.make_node("Sigmoid", ["c2"], ["output"]),
    ]
    return _save(helper.make_graph(nodes, "conv", [x], [y], inits), path)


def nms_plugin_model(path: Path) -> Path:
    """boxes [1,100,4] + scores [1,100,2] -> EfficientNMS_TRT (a TensorRT plugin op)."""
    from onnx import TensorProto, helper

    ins = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 100, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 100, 2]),
    ]
    outs = [
        helper.make_tensor_value_info("num_dets", TensorProto.INT32, [1, 1]),
        helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, [1, 10, 4]),
        helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, [1, 10]),
        helper.make_tensor_value_info("det_classes", TensorProto.INT32, [1, 10]),
    ]
    node = helper.make_node(
        "EfficientNMS_TRT", ["boxes", "scores"],
        ["num_dets", "det_boxes", "det_scores", "det_classes"],
        plugin_version="1", background_class=-1, max_output_boxes=10, score_threshold=0.25,
        iou_threshold=0.45, score_activation=0, box_coding=0,
    )  # fmt: skip
    return _save(helper.make_graph([node], "nms", ins, outs), path, check=False)


# -- checks ----------------------------------------------------------------------------------------


class Checker:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.cache = work / "engines"
        self.results: dict[str, Result] = {}

    def run(self, name: str, findings: str, fn: Callable[[], Result]) -> None:
        started = time.perf_counter()
        try:
            res = fn()
        except _Skip as skip:
            res = {"status": "SKIP", "reason": str(skip)}
        except Exception as err:
            res = {
                "status": "FAIL",
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=6),
            }
        res.setdefault("status", "PASS")
        res["findings"] = findings
        res["seconds"] = round(time.perf_counter() - started, 2)
        self.results[name] = res
        detail = res.get("reason") or res.get("error") or res.get("summary") or ""
        print(f"{res['status']:4}  {name:22} [{findings}] {detail}", flush=True)

    def trt(self, model: Path, **kwargs: Any) -> Any:
        from edgedet.runtimes.tensorrt_runtime import TensorRTRuntime

        return TensorRTRuntime(model, cache_dir=self.cache, **kwargs)


class _Skip(Exception):
    pass


def check_environment() -> Result:
    import tensorrt as trt
    from edgedet.benchmarks import system
    from edgedet.runtimes.registry import probe

    info = probe("tensorrt")
    res = {
        "dpkg_nvinfer": _run("dpkg -l | grep nvinfer", shell=True),
        "tensorrt_python": str(trt.__version__),
        "l4t": _run(["cat", "/etc/nv_tegra_release"]),
        "board": _run(["cat", "/proc/device-tree/model"]).replace("\x00", ""),
        "nvpmodel": system.power_mode() if system.is_jetson() else None,
        "jetson_clocks": _run(["jetson_clocks", "--show"]) if shutil.which("jetson_clocks") else None,
        "python": platform.python_version(),
        "probe": info,
    }
    if not info.get("available"):
        res.update(status="FAIL", error=f"edgedet says tensorrt is unavailable: {info}")
    res["summary"] = f"TensorRT {trt.__version__}; {res['board'] or platform.machine()}"
    return res


def check_target() -> Result:
    from edgedet.runtimes.trt_engine import current_target

    t = current_target(0)
    res = {"target": t.__dict__, "summary": t.describe()}
    if not t.sm_count or not t.memory_mb:
        res.update(status="FAIL", error="SM count / memory not read: Orin modules not told apart")
    return res


def check_precision(c: Checker, precision: str) -> Result:
    model = conv_model(c.work / f"conv_{precision}.onnx", batch=1)
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
    with c.trt(model, precision=precision.upper()) as rt:  # upper case: finding 14
        out = rt.infer({"images": x})["output"]
        res: Result = {"describe": rt.describe(), "record": dict(rt._record)}
    res["summary"] = f"built {res['describe']['precision']}"
    if res["describe"]["precision"] != precision:
        res.update(status="FAIL", error=f"asked {precision}, engine says {res['describe']['precision']}")
    from edgedet.runtimes.registry import runtime_class

    from edgedet.errors import RuntimeUnavailableError

    try:
        ort_runtime = runtime_class("onnxruntime")
    except RuntimeUnavailableError:
        res["reference"] = "onnxruntime not installed: output not compared"
        return res
    with ort_runtime(model) as ref_rt:
        ref = ref_rt.infer({"images": x})[ref_rt.outputs[0].name]
    err = float(np.abs(out - ref).max())
    res["max_abs_error_vs_onnxruntime"] = err
    res["summary"] += f", max |err| vs ORT {err:.2e}"
    if err > (2e-2 if precision == "fp16" else 1e-3):
        res.update(status="FAIL", error=f"output differs from ONNX Runtime by {err:g}")
    return res


def check_dynamic_batch(c: Checker) -> Result:
    model = conv_model(c.work / "conv_dyn.onnx", batch="N")
    with c.trt(model) as rt:
        outs = {b: rt.infer({"images": np.zeros((b, 3, 64, 64), np.float32)})["output"].shape
                for b in (1, 4, 8)}  # fmt: skip
        return {"max_batch": rt.max_batch, "shapes": {k: list(v) for k, v in outs.items()},
                "summary": f"batches 1/4/8 ran, max_batch={rt.max_batch}"}  # fmt: skip


def check_dynamic_hw(c: Checker) -> Result:
    model = conv_model(c.work / "conv_hw.onnx", batch="N", hw=("H", "W"))
    with c.trt(model, input_size=(96, 128), max_batch=2) as rt:
        shape = rt.infer({"images": np.zeros((2, 3, 96, 128), np.float32)})["output"].shape
        return {"output_shape": list(shape), "summary": f"input_size reached the build: {shape}"}


def check_ultralytics_header(c: Checker) -> Result:
    from edgedet.meta import read_meta

    model = conv_model(c.work / "conv_ul.onnx", batch=1)
    with c.trt(model) as rt:
        plan = rt.engine_path.read_bytes()
    header = json.dumps({"task": "detect", "imgsz": [64, 64], "names": {"0": "a"}, "batch": 1})
    ul = c.work / "ultralytics.engine"
    ul.write_bytes(len(header).to_bytes(4, "little") + header.encode() + plan)
    meta = read_meta(ul)
    with c.trt(ul) as rt:
        rt.infer({"images": np.zeros((1, 3, 64, 64), np.float32)})
    return {"meta": None if meta is None else meta.to_dict(), "summary": "header stripped, ran"}


def check_plugin_fresh_process(c: Checker) -> Result:
    model = nms_plugin_model(c.work / "nms.onnx")
    with c.trt(model, precision="fp32") as rt:
        engine = rt.engine_path
    code = (
        "import sys, numpy as np\n"
        "from edgedet.runtimes.tensorrt_runtime import TensorRTRuntime\n"
        f"rt = TensorRTRuntime({str(model)!r}, cache_dir={str(c.cache)!r}, precision='fp32')\n"
        "print('cache_hit', rt.cache_hit)\n"
        "out = rt.infer({'boxes': np.random.rand(1, 100, 4).astype(np.float32),"
        " 'scores': np.random.rand(1, 100, 2).astype(np.float32)})\n"
        "print('num_dets', int(out['num_dets'].ravel()[0]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    res = {"engine": str(engine), "stdout": proc.stdout[-2000:], "stderr": proc.stderr[-2000:]}
    if proc.returncode != 0 or "cache_hit True" not in proc.stdout:
        res.update(status="FAIL", error="a new process could not load the cached plugin engine")
    else:
        res["summary"] = "plugin engine loaded from the cache in a new process"
    return res


def check_dla(c: Checker) -> Result:
    import tensorrt as trt
    from edgedet.runtimes.trt_engine import build_serialized_engine

    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    if int(builder.num_DLA_cores) == 0:
        raise _Skip("this device / TensorRT has no DLA core")
    model = conv_model(c.work / "conv_dla.onnx", batch="N")
    with c.trt(model, device="dla:0", max_batch=2) as rt:
        rt.infer({"images": np.zeros((2, 3, 64, 64), np.float32)})
        res: Result = {"describe": rt.describe(), "inputs": [s.describe() for s in rt.inputs]}
    # Layer placement: rebuild with detailed profiling and read the engine inspector
    # (ICudaEngine.create_engine_inspector, LayerInformationFormat.JSON; docs "Engine Inspector").
    result = build_serialized_engine(
        model.read_bytes(), where=str(model), dla_core=0, max_batch=2, detailed_profile=True
    )
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    runtime.DLA_core = 0
    engine = runtime.deserialize_cuda_engine(result.engine_bytes)
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    res["engine_information"] = info[:20000]
    on_dla = info.count("DLA")
    res["summary"] = f"fixed batch; 'DLA' appears {on_dla}x in the inspector output"
    if on_dla == 0:
        res.update(status="FAIL", error="no layer runs on the DLA: everything fell back to the GPU")
    return res


def check_calibrator(c: Checker) -> Result:
    import tensorrt as trt
    from edgedet.calibration.trt_int8 import make_entropy_calibrator
    from edgedet.runtimes.trt_engine import build_serialized_engine, has_implicit_calibrator

    from edgedet.meta import ModelMeta

    if not has_implicit_calibrator():
        raise _Skip(f"TensorRT {trt.__version__} has no implicit calibrator (removed in 11)")

    class Source:
        batch_size = 2
        report = type("R", (), {"images_sha256": "0" * 64})()

        def __iter__(self) -> Any:
            rng = np.random.default_rng(0)
            for _ in range(4):
                yield {"images": rng.uniform(0, 1, (2, 3, 64, 64)).astype(np.float32)}

    from edgedet.runtimes.cuda_binding import load_backend

    cuda = load_backend()
    cuda.init()
    ctx = cuda.primary_context(0)
    ctx.push()
    try:
        model = conv_model(c.work / "conv_cal.onnx", batch="N")
        cal = make_entropy_calibrator(Source(), ModelMeta(family="yolov8"),  # type: ignore[arg-type]
                                      cache_dir=c.work, model_stem="conv")  # fmt: skip
        result = build_serialized_engine(model.read_bytes(), where=str(model), max_batch=2,
                                         calibrator=cal)  # fmt: skip
    finally:
        cuda.pop()
        ctx.release()
    served = cal.logic.batches_served
    res = {"precision": result.precision, "batches_served": served,
           "summary": f"int8 engine, {served} calibration batches"}  # fmt: skip
    if served != 4:
        res.update(status="FAIL", error=f"TensorRT pulled {served} of 4 calibration batches")
    return res


def check_device_index() -> Result:
    from edgedet.runtimes.cuda_binding import load_backend

    cuda = load_backend()
    cuda.init()
    if cuda.device_count() < 2:
        raise _Skip("one GPU: device_index needs a multi-GPU machine")
    raise _Skip("multi-GPU: run build_engine(..., device_index=1) and check the sidecar by hand")


def check_power(c: Checker) -> Result:
    from edgedet.benchmarks.system import PowerMonitor, is_jetson

    if not is_jetson():
        raise _Skip("not a Jetson")
    model = conv_model(c.work / "conv_power.onnx", batch=1, hw=(256, 256))
    with c.trt(model) as rt:
        x = np.zeros((1, 3, 256, 256), np.float32)
        mon = PowerMonitor(interval_s=0.05).start()
        end = time.perf_counter() + 5.0
        runs = 0
        while time.perf_counter() < end:
            rt.infer({"images": x})
            runs += 1
        power = mon.stop()
    tegra = _run("timeout 3 tegrastats --interval 1000 | head -n 2", shell=True)
    res = {"power": power, "tegrastats": tegra, "inferences": runs}
    res["summary"] = (f"{power.get('mean_power_mw', 0):.0f} mW from {power.get('total_from')}; "
                      f"throttled={power.get('throttled')} clocks_locked={power.get('clocks_locked')}")  # fmt: skip
    if not power.get("measured"):
        res.update(status="FAIL", error=f"no energy measured: {power.get('reason')}")
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="jetson_check.json", help="JSON report to write")
    parser.add_argument("--only", nargs="*", help="run only these checks")
    args = parser.parse_args(argv)
    try:
        import tensorrt  # noqa: F401
    except ImportError as err:
        print(f"FAIL  tensorrt does not import: {err}; see README 'TensorRT and Jetson'")
        return 2
    with tempfile.TemporaryDirectory(prefix="edgedet-jetson-check-") as tmp:
        c = Checker(Path(tmp))
        checks: list[tuple[str, str, Callable[[], Result]]] = [
            ("environment", "5,20", check_environment),
            ("target", "11", check_target),
            ("fp16", "1,14", lambda: check_precision(c, "fp16")),
            ("fp32", "1,5,14", lambda: check_precision(c, "fp32")),
            ("dynamic_batch", "6", lambda: check_dynamic_batch(c)),
            ("dynamic_hw", "7", lambda: check_dynamic_hw(c)),
            ("ultralytics_header", "3", lambda: check_ultralytics_header(c)),
            ("plugin_fresh_process", "2", lambda: check_plugin_fresh_process(c)),
            ("dla", "9", lambda: check_dla(c)),
            ("calibrator", "13", lambda: check_calibrator(c)),
            ("device_index", "12", check_device_index),
            ("power", "8,10,20", lambda: check_power(c)),
        ]
        for name, findings, fn in checks:
            if args.only and name not in args.only:
                continue
            c.run(name, findings, fn)
        Path(args.out).write_text(json.dumps(c.results, indent=1, default=str) + "\n")
    failed = [n for n, r in c.results.items() if r["status"] == "FAIL"]
    print(f"wrote {args.out}; {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
