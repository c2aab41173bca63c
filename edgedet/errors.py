"""The one exception tree of edgedet.

Every error a user can cause is one of these. Messages say what was expected, what came, and
what to do about it.

    EdgedetError
    ├── RuntimeUnavailableError   (also ImportError)   a runtime's package or device is missing
    ├── ModelLoadError                                  missing / truncated / not-a-model file
    ├── IncompatibleModelError                          outputs don't fit the decoder, engine from
    │                                                   another TensorRT or GPU, bad meta
    ├── InvalidInputError         (also ValueError)     bad image, bad argument
    │   └── SourceLostError                             a camera / stream stopped mid-way
    ├── DatasetError              (also ValueError)     unreadable or inconsistent dataset
    ├── InferenceError                                  a runtime failed while running a model
    ├── CalibrationError                                INT8 calibration could not run or finish
    └── TrainingError                                   training / pruning / QAT could not run
"""

from __future__ import annotations


class EdgedetError(Exception):
    """Base class of every error edgedet raises on purpose."""


class RuntimeUnavailableError(EdgedetError, ImportError):
    """A runtime (or the library behind it, or the device it needs) is not available here."""


class ModelLoadError(EdgedetError):
    """A model file is missing, truncated, or not a model this runtime can read."""


class IncompatibleModelError(EdgedetError):
    """A model does not fit what it is used with: decoder, runtime version, GPU, metadata."""


class InvalidInputError(EdgedetError, ValueError):
    """An argument or an image is not what the API accepts."""


class SourceLostError(InvalidInputError):
    """A live video source (camera, stream URL) stopped delivering frames mid-stream."""


class DatasetError(EdgedetError, ValueError):
    """A dataset is unreadable or inconsistent (missing image, bad label, unknown class)."""


class InferenceError(EdgedetError):
    """A runtime failed while running a model that loaded fine (device lost, async failure)."""


class CalibrationError(EdgedetError):
    """INT8 calibration could not run or could not meet its accuracy budget."""


class TrainingError(EdgedetError):
    """Training, pruning, distillation or QAT could not run."""


def missing_extra(package: str, extra: str, what: str) -> RuntimeUnavailableError:
    """The error for a missing optional package, naming the extra that installs it.

    The command is the one that fits this install (`edgedet.hints.install_command`): edgedet is
    installed from a checkout or a wheel, not from the package index.

    >>> str(missing_extra("openvino", "openvino", "runtime 'openvino'")).startswith(
    ...     "runtime 'openvino' needs the openvino package (the 'openvino' extra): pip install")
    True
    """
    from .hints import install_command

    return RuntimeUnavailableError(
        f"{what} needs the {package} package (the '{extra}' extra): {install_command(extra)}"
    )
