"""edgedet's own detector family (torch)."""

from .net import (
    ACTIVATIONS,
    SIZES,
    DecodeTail,
    EdgeDet,
    ExportModel,
    ModelConfig,
    build_model,
    count_parameters,
    dfl_expectation,
    flatten_outputs,
    make_anchors,
)

__all__ = [
    "ACTIVATIONS",
    "SIZES",
    "DecodeTail",
    "EdgeDet",
    "ExportModel",
    "ModelConfig",
    "build_model",
    "count_parameters",
    "dfl_expectation",
    "flatten_outputs",
    "make_anchors",
]
