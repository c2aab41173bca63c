"""One contract, every runtime: same specs, same outputs as ONNX Runtime, clean close.

Runtimes that are not installed here are skipped loudly with the reason (TensorRT cannot be
installed on these machines; its logic is covered by the fake-backed tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgedet.runtimes.base import AsyncInfer, ReportsPrecision, Runtime
from edgedet.runtimes.registry import probe, runtime_class, runtime_names

from edgedet.errors import InferenceError, InvalidInputError
from tests.tiny_models import conv_weights, make_tiny_yolov5

RUNTIMES = runtime_names()


def _make(name: str, model_path: Path, size: int) -> Runtime:
    info = probe(name)
    if not info["available"]:
        pytest.skip(f"runtime '{name}' is not usable here: {info['reason']}")
    cls = runtime_class(name)
    if name == "torch":
        import torch

        w, b = conv_weights(3, 7)
        rows = 3 * sum((-(-size // s)) ** 2 for s in (8, 16, 32))  # as make_tiny_yolov5
        conv = torch.nn.Conv2d(3, 7, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w))
            conv.bias.copy_(torch.from_numpy(b))

        class Head(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = conv

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                y = torch.sigmoid(self.conv(x))
                mid = (size * size - rows) // 2
                return y.reshape(y.shape[0], 7, -1).permute(0, 2, 1)[:, mid : mid + rows]

        return cls(
            Head(), input_name="images", output_names=("output",), input_shape=(1, 3, size, size)
        )
    return cls(model_path, threads=1)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_yolov5(tmp_path_factory.mktemp("contract") / "tiny.onnx", size=32)


@pytest.fixture(scope="module")
def feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"images": rng.random((1, 3, 32, 32), dtype=np.float32)}


@pytest.fixture(scope="module")
def reference(tiny: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with runtime_class("onnxruntime")(tiny) as rt:
        return rt.infer(feeds)  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", RUNTIMES)
def test_outputs_match_onnxruntime(name: str, tiny: Path, feeds: dict, reference: dict) -> None:
    rt = _make(name, tiny, 32)
    with rt:
        assert isinstance(rt, Runtime)
        assert [s.name for s in rt.inputs] == ["images"]
        assert [s.name for s in rt.outputs] == ["output"]
        assert rt.inputs[0].shape == (1, 3, 32, 32)
        out = rt.infer(feeds)
        assert set(out) == {"output"}
        assert out["output"].shape == (1, 3 * (16 + 4 + 1), 7)  # 3 anchors × cells of 32×32
        np.testing.assert_allclose(out["output"], reference["output"], rtol=1e-4, atol=1e-5)
        if isinstance(rt, ReportsPrecision):
            assert rt.precision == "fp32"


@pytest.mark.parametrize("name", RUNTIMES)
def test_bad_feeds_and_close(name: str, tiny: Path, feeds: dict) -> None:
    rt = _make(name, tiny, 32)
    with rt:
        with pytest.raises(InvalidInputError, match="expects input"):
            rt.infer({"wrong": feeds["images"]})
        if name != "torch":
            with pytest.raises(InvalidInputError, match="must have shape"):
                rt.infer({"images": np.zeros((1, 3, 16, 16), np.float32)})
    with pytest.raises(InvalidInputError, match="closed"):
        rt.infer(feeds)
    rt.close()  # idempotent


@pytest.mark.parametrize("name", RUNTIMES)
def test_async_matches_sync(name: str, tiny: Path, feeds: dict, reference: dict) -> None:
    rt = _make(name, tiny, 32)
    with rt:
        if not isinstance(rt, AsyncInfer):
            pytest.skip(f"runtime '{name}' offers no async API")
        got: dict[int, np.ndarray] = {}
        for i in range(6):
            rt.submit(feeds, lambda out, i: got.__setitem__(i, out["output"]), i)
        rt.wait_all()
        assert sorted(got) == list(range(6))
        for arr in got.values():
            np.testing.assert_allclose(arr, reference["output"], rtol=1e-4, atol=1e-5)


@pytest.mark.testdata
@pytest.mark.parametrize("name", ["openvino"])
@pytest.mark.parametrize("model", ["yolox_nano_416.onnx", "nanodet_m_320.onnx"])
def test_real_model_parity(name: str, model: str, models_dir: Path) -> None:
    """Real detectors: OpenVINO (explicit f32) reproduces ONNX Runtime's raw outputs."""
    path = models_dir / model
    rng = np.random.default_rng(0)
    with runtime_class("onnxruntime")(path, threads=2) as ref:
        x = {ref.inputs[0].name: (rng.random(ref.inputs[0].shape, dtype=np.float32) * 255)}
        expected = ref.infer(x)
        rt = _make(name, path, 0)
        with rt:
            out = rt.infer(x)
    for key, arr in expected.items():
        np.testing.assert_allclose(out[key], arr, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_close_with_requests_in_flight(name: str, tiny: Path, feeds: dict, reference: dict) -> None:
    """close() right after submit: every request finishes and calls back first, and the
    native session is freed with no native thread waiting to call into Python (the old
    run_async / AsyncInferQueue callbacks could deadlock that teardown)."""
    import time

    rt = _make(name, tiny, 32)
    got: list[np.ndarray] = []

    def slow(out: dict, _: object) -> None:
        time.sleep(0.01)  # still in the callback when close() starts
        got.append(out["output"])

    for _ in range(8):
        rt.submit(feeds, slow, None)
    rt.close()
    assert len(got) == 8
    for arr in got:
        np.testing.assert_allclose(arr, reference["output"], rtol=1e-4, atol=1e-5)


def test_async_callback_errors_reach_wait_all(tiny: Path, feeds: dict) -> None:
    rt = _make("onnxruntime", tiny, 32)
    with rt:

        def broken(out: dict, _: object) -> None:
            raise ValueError("callback broke")

        rt.submit(feeds, broken, None)
        with pytest.raises(InferenceError, match="callback broke"):
            rt.wait_all()
        rt.wait_all()  # reported once
