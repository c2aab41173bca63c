"""A batch axis for ONNX models exported with a fixed batch of 1, so that several images (the tiles
of a frame, the views of test-time augmentation) run in ONE runtime call.

Many exports (YOLOX, Ultralytics, edgedet's own sample) fix the input at ``[1, 3, H, W]`` and bake
the batch into ``Reshape`` targets (``[1, 85, -1]``). `dynamic_batch_onnx` rewrites such a graph:

- the image input's and every output's first dimension become the symbol ``batch``;
- a ``Reshape`` whose target is a constant starting with 1 gets 0 there instead, which ONNX
  defines as "copy this dimension from the input" (only where ``allowzero`` is off), so the batch
  flows through;
- intermediate shape annotations (``value_info``) are dropped, since they still say 1.

Whether the graph then really computes each image on its own is not decided by reading it (a
``Reshape [80, -1]`` that folds the batch into rows, as NanoDet's export has, is legal ONNX at
any batch): the rewritten model is run by ONNX Runtime on two different random inputs, at batch
2 and at batch 1 each, and must give the same outputs to 1e-4. A model whose outputs have no batch
axis, or that fails the check, raises `IncompatibleModelError`; callers then run images one by
one. ONNX Runtime and OpenVINO read the rewritten file; TensorRT builds it with an optimisation
profile up to its ``max_batch``.

`batched_model_path` keeps one rewritten copy per source model (by content hash) in a cache
folder, written atomically.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import IncompatibleModelError, InvalidInputError, ModelLoadError, missing_extra

log = logging.getLogger("edgedet")

#: The symbolic name given to the new batch dimension.
BATCH_SYMBOL = "batch"
#: Largest difference allowed between batch-2 and batch-1 outputs in the parity check.
PARITY_ATOL = 1e-4


def _graph_inputs(model: Any) -> list[Any]:
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _dims(value_info: Any) -> list[Any]:
    return list(value_info.type.tensor_type.shape.dim)


def _load(path: Path, *, weights: bool) -> tuple[Any, Any]:
    """(ModelProto, its one image input); `ModelLoadError` / `IncompatibleModelError` else."""
    import onnx

    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=weights)
    except Exception as err:  # onnx raises DecodeError / ValueError / OSError for bad files
        raise ModelLoadError(f"onnx could not read {path}: {err}") from err
    inputs = _graph_inputs(model)
    if len(inputs) != 1 or len(_dims(inputs[0])) != 4:
        raise IncompatibleModelError(
            f"{path.name}: a batch axis can be added only to a model with one image input of "
            f"rank 4; its inputs are {[(i.name, len(_dims(i))) for i in inputs]}"
        )
    return model, inputs[0]


def input_batch(path: str | Path) -> int | None:
    """The first dimension of an ONNX model's image input: an int when fixed, None when dynamic.

    Raises `IncompatibleModelError` when the model has not exactly one (non-initializer) input of
    rank 4, `ModelLoadError` when it cannot be read."""
    _, image = _load(Path(path), weights=False)
    d = _dims(image)[0]
    return int(d.dim_value) if d.HasField("dim_value") else None


def dynamic_batch_onnx(src: str | Path, *, check: bool = True) -> bytes:
    """The serialized ONNX model ``src`` with a dynamic batch axis (see the module docstring).

    Args:
        src: an ONNX file whose image input is ``[1, C, H, W]`` (or NHWC) and whose outputs all
            start with a batch axis of 1.
        check: run the batch-2 vs batch-1 parity check with ONNX Runtime (needs onnxruntime).

    Raises:
        IncompatibleModelError: the input batch is not 1, an output has no leading batch axis of
            1, or the rewritten graph mixes the images of a batch (parity check).
        ModelLoadError: ``src`` cannot be read.
    """
    from onnx import numpy_helper

    path = Path(src)
    model, image = _load(path, weights=True)
    first = _dims(image)[0]
    if not first.HasField("dim_value"):
        return model.SerializeToString()  # already dynamic
    if first.dim_value != 1:
        raise IncompatibleModelError(
            f"{path.name}: its input has a fixed batch of {first.dim_value}; edgedet rewrites "
            "only batch-1 models to a dynamic batch"
        )
    no_batch = [
        o.name
        for o in model.graph.output
        if len(_dims(o)) < 2 or not _dims(o)[0].HasField("dim_value") or _dims(o)[0].dim_value != 1
    ]
    if no_batch:
        shapes = {o.name: [d.dim_value or d.dim_param for d in _dims(o)] for o in model.graph.output}
        raise IncompatibleModelError(
            f"{path.name}: output(s) {no_batch} have no leading batch axis of 1 (shapes {shapes}); "
            "the graph folds the batch away, so its images cannot be batched"
        )
    for vi in [image, *model.graph.output]:
        dim = _dims(vi)[0]
        dim.ClearField("dim_value")
        dim.dim_param = BATCH_SYMBOL
    del model.graph.value_info[:]
    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        if any(a.name == "allowzero" and a.i == 1 for a in node.attribute):
            continue  # 0 would mean a real zero-sized dim there
        name = node.input[1]
        if name in inits:
            target = numpy_helper.to_array(inits[name])
            if target.ndim == 1 and len(target) >= 2 and target[0] == 1:
                fixed = target.copy()
                fixed[0] = 0
                inits[name].CopyFrom(numpy_helper.from_array(fixed, name))
                changed += 1
        elif name in consts:
            for attr in consts[name].attribute:
                if attr.name != "value":
                    continue
                target = numpy_helper.to_array(attr.t)
                if target.ndim == 1 and len(target) >= 2 and target[0] == 1:
                    fixed = target.copy()
                    fixed[0] = 0
                    attr.t.CopyFrom(numpy_helper.from_array(fixed, attr.t.name))
                    changed += 1
    log.info("batching: %s: %d Reshape target(s) now copy the batch dim", path.name, changed)
    data: bytes = model.SerializeToString()
    if check:
        _parity_check(data, path.name)
    return data


def _parity_check(data: bytes, name: str) -> None:
    """Batch 2 must give what two batch-1 runs give (raises IncompatibleModelError otherwise)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise missing_extra("onnxruntime", "onnxruntime", "checking a rewritten batch axis") from err
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT's own Fail / InvalidGraph types
        raise IncompatibleModelError(
            f"{name}: with a dynamic batch the graph no longer loads ({err}); it hard-codes the "
            "batch somewhere edgedet does not rewrite: re-export it with a dynamic batch axis"
        ) from err
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 2 for d in inp.shape]
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    rng = np.random.default_rng(0)
    pair = rng.uniform(0.0, 1.0, size=shape).astype(dtype)
    try:
        both = sess.run(None, {inp.name: pair})
        ones = [sess.run(None, {inp.name: pair[i : i + 1]}) for i in range(2)]
    except Exception as err:  # ORT's runtime errors (shape mismatch inside the graph)
        raise IncompatibleModelError(
            f"{name}: with a dynamic batch the graph fails at batch 2 ({str(err)[:300]}); it "
            "hard-codes the batch: re-export it with a dynamic batch axis"
        ) from err
    for k, out in enumerate(both):
        single = np.concatenate([ones[0][k], ones[1][k]], axis=0)
        if out.shape != single.shape or not np.allclose(out, single, atol=PARITY_ATOL, rtol=1e-3):
            raise IncompatibleModelError(
                f"{name}: with a dynamic batch, output {k} at batch 2 differs from two batch-1 "
                "runs; the graph mixes the images of a batch: re-export it with a dynamic batch"
            )


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edgedet/batch`` (``~/.cache/edgedet/batch``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgedet" / "batch"


def batched_model_path(src: str | Path, *, folder: str | Path | None = None) -> Path:
    """A dynamic-batch copy of the ONNX model ``src`` (see `dynamic_batch_onnx`), made once and
    reused: ``<folder>/<stem>_<sha256[:16]>_dynbatch.onnx`` (``folder`` default `cache_dir`).
    ``src`` itself when its batch is already dynamic.

    Raises:
        InvalidInputError: ``src`` is not an ``.onnx`` file.
        IncompatibleModelError / ModelLoadError: as `dynamic_batch_onnx`.
    """
    from .fileio import atomic_write_bytes

    path = Path(src)
    if path.suffix.lower() != ".onnx":
        raise InvalidInputError(
            f"{path.name}: only an ONNX model can be given a batch axis here; rebuild a "
            "TensorRT engine or OpenVINO IR from a dynamic-batch ONNX export"
        )
    if input_batch(path) is None:
        return path
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    out = Path(folder) if folder is not None else cache_dir()
    target = out / f"{path.stem}_{digest}_dynbatch.onnx"
    if target.is_file():
        return target
    atomic_write_bytes(target, dynamic_batch_onnx(path))
    log.info("batching: wrote %s (dynamic batch copy of %s)", target, path)
    return target
