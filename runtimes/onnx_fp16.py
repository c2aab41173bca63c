"""A float16 copy of an ONNX detector for strongly typed TensorRT builds (TensorRT 11+).

TensorRT 11 removed ``BuilderFlag.FP16``: networks are strongly typed, so an engine runs in the
precision its ONNX graph has ("Strong typing with ModelOpt AutoCast" replaces the flag in
"Removed Python APIs and Replacements", docs.nvidia.com/deeplearning/tensorrt/latest/api/
migration/tensorrt-10x-to-11x-python-api-reference.html; "Strongly Typed Networks",
.../inference-library/advanced.html#strongly-typed-networks). edgedet makes that graph itself,
from the one float32 ONNX artifact the user has, with ``onnxconverter_common.float16`` (the
converter ONNX Runtime documents for fp16 models; NVIDIA's ModelOpt AutoCast does the same job
but pulls in torch, which the on-device install must not need):

- graph inputs and outputs stay float32 (``keep_io_types``), so the runtime's buffers and the
  decoders see what they see for an fp16 engine on TensorRT 10;
- the decode tail (`edgedet.calibration.tail.find_decode_tail`: sigmoids, box decode, DFL
  softmax, concatenations of pixels with probabilities) stays float32, the same rule INT8
  calibration uses, because fp16 rounds pixel coordinates above 2048 and small probabilities;
- the converter's default block list (Resize, TopK, NonMaxSuppression, Range, CumSum...) and
  Q/DQ nodes stay float32 (their scales must keep their dtype below opset 19).

Shapes, layouts and coordinate frames are unchanged; only tensor dtypes inside the graph change.
"""

from __future__ import annotations

from typing import Any

from edgedet.errors import ModelLoadError, missing_extra

#: Ops kept in float32 besides the converter's defaults.
EXTRA_FLOAT_OPS = ("QuantizeLinear", "DequantizeLinear", "Softmax", "Exp", "Log")


def float16_graph(onnx_bytes: bytes, where: str) -> bytes:
    """``onnx_bytes`` (a float32 ONNX model) with its body converted to float16, I/O and decode
    tail kept float32 (see the module docstring). Raises ModelLoadError if it cannot."""
    try:
        from onnxconverter_common import float16
    except ImportError as err:
        raise missing_extra(
            "onnxconverter-common", "tensorrt", "fp16 engines on TensorRT 11"
        ) from err
    import onnx
    from edgedet.calibration.tail import ensure_node_names, find_decode_tail

    try:
        model: Any = onnx.load_from_string(onnx_bytes)
        ensure_node_names(model)
        tail = find_decode_tail(model)
        model_outputs = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
        converted = float16.convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, *EXTRA_FLOAT_OPS],
            node_block_list=list(tail.nodes),
        )
        _float_outputs(model_outputs, converted)
    except Exception as err:  # the converter raises plain ValueError / KeyError / onnx errors
        raise ModelLoadError(
            f"could not convert {where} to float16 for a strongly typed TensorRT build "
            f"({type(err).__name__}: {err}); use precision='fp32', or convert it yourself "
            "(e.g. ModelOpt AutoCast with keep_io_types) and load that model"
        ) from err
    return bytes(converted.SerializeToString())


def _float_outputs(original: dict[str, int], model: Any) -> None:
    """Give back float32 graph outputs the converter made float16.

    onnxconverter-common 1.16 with ``keep_io_types`` still ends an output produced by a blocked
    (float32) node with a Cast to float16; that Cast is turned into a Cast to float32 (a no-op
    on a float32 input, an up-cast otherwise), so pixel coordinates are not rounded to fp16.
    """
    from onnx import TensorProto, helper

    producers = {out: node for node in model.graph.node for out in node.output}
    for out in model.graph.output:
        ttype = out.type.tensor_type
        if original.get(out.name) != TensorProto.FLOAT or ttype.elem_type == TensorProto.FLOAT:
            continue
        node = producers.get(out.name)
        if node is not None and node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to":
                    attr.i = TensorProto.FLOAT
        else:
            half = out.name + "_edgedet_fp16"
            if node is not None:
                node.output[list(node.output).index(out.name)] = half
            model.graph.node.append(
                helper.make_node("Cast", [half], [out.name], to=TensorProto.FLOAT)
            )
        ttype.elem_type = TensorProto.FLOAT
