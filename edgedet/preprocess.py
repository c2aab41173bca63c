"""Image -> network input, and network pixels -> original pixels.

One function feeds inference, INT8 calibration and benchmarks, so a model is calibrated with
exactly the preprocessing it is deployed with.

Coordinate frames: *original* pixels are those of the image the user passed (x right, y down,
origin at the top-left corner of the top-left pixel); *input* pixels are those of the tensor
fed to the network, after resize and padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import InvalidInputError
from .meta import ModelMeta

#: Largest side accepted (OpenCV's resize is limited to 32767 per side).
MAX_SIDE = 32767

#: Ways to fit an image into the network input (see `letterbox`).
LETTERBOX_STYLES: tuple[str, ...] = ("center", "topleft", "stretch")


@dataclass(frozen=True)
class LetterboxMeta:
    """How an image was fitted into the network input.

    ``input = original * (scale_x, scale_y) + (pad_x, pad_y)``; ``original_hw`` is the size of
    the image before resizing, ``input_hw`` the network input size.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    original_hw: tuple[int, int]
    input_hw: tuple[int, int]

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        """Map float (N, 4) xyxy boxes from input pixels to original pixels, clipped to the image."""
        out = np.empty_like(xyxy, dtype=np.float32)
        out[:, 0::2] = (xyxy[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (xyxy[:, 1::2] - self.pad_y) / self.scale_y
        h, w = self.original_hw
        np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
        return out

    def to_input(self, xyxy: np.ndarray) -> np.ndarray:
        """Map float (N, 4) xyxy boxes from original pixels to input pixels (the inverse)."""
        out = np.empty_like(xyxy, dtype=np.float32)
        out[:, 0::2] = xyxy[:, 0::2] * self.scale_x + self.pad_x
        out[:, 1::2] = xyxy[:, 1::2] * self.scale_y + self.pad_y
        return out


def as_bgr_image(image: object) -> np.ndarray:
    """Validate an image and return it as a contiguous H×W×3 uint8 BGR array.

    Accepts uint8 H×W×3 (BGR), H×W or H×W×1 (grayscale, converted), H×W×4 (BGRA, alpha
    dropped). Raises `InvalidInputError` for anything else, saying what came and how to fix it.
    """
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(
            f"image must be a numpy array (H×W×3 uint8, BGR as cv2.imread returns), "
            f"got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
            raise InvalidInputError(
                f"image contains NaN or inf values ({image.dtype}); edgedet expects uint8 BGR pixels"
            )
        hint = (
            " (scale 0-1 floats with (img * 255).clip(0, 255).astype(np.uint8))"
            if image.dtype.kind == "f"
            else ""
        )
        raise InvalidInputError(f"image dtype must be uint8, got {image.dtype}{hint}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3):
        raise InvalidInputError(
            f"image must have shape H×W×3 (or H×W grayscale), got shape {image.shape}"
        )
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise InvalidInputError(f"image is empty: shape {image.shape}")
    if max(h, w) > MAX_SIDE:
        raise InvalidInputError(
            f"image is {w}×{h} pixels; the largest side edgedet accepts is {MAX_SIDE}: tile it or "
            "downscale it first"
        )
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    channels = image.shape[2]
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if channels != 3:
        raise InvalidInputError(
            f"image must have 1, 3 or 4 channels, got {channels} (shape {image.shape})"
        )
    return np.ascontiguousarray(image)


def letterbox(
    image: np.ndarray, input_hw: tuple[int, int], style: str = "center", pad_value: int = 114
) -> tuple[np.ndarray, LetterboxMeta]:
    """Resize a H×W×C uint8 image into ``input_hw``.

    ``center``: keep aspect ratio, pad equally on both sides (Ultralytics' rounding);
    ``topleft``: keep aspect ratio, pad right and bottom (YOLOX); ``stretch``: no padding.
    Returns the input-sized image and its `LetterboxMeta`.
    """
    if style not in LETTERBOX_STYLES:
        raise InvalidInputError(f"letterbox style must be one of {LETTERBOX_STYLES}, got {style!r}")
    h, w = image.shape[:2]
    th, tw = input_hw
    if style == "stretch":
        out = cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR)
        return out, LetterboxMeta(tw / w, th / h, 0.0, 0.0, (h, w), (th, tw))
    r = min(th / h, tw / w)
    if style == "topleft":
        nw, nh = int(w * r), int(h * r)  # YOLOX truncates
        left = top = 0
    else:
        nw, nh = round(w * r), round(h * r)
        top = round((th - nh) / 2 - 0.1)
        left = round((tw - nw) / 2 - 0.1)
    nw, nh = max(nw, 1), max(nh, 1)
    # Resize straight into the padded canvas and fill only the borders: one pass over the
    # output instead of resize + copyMakeBorder's second copy (measurable right after
    # inference, when the caches are cold).
    out = np.empty((th, tw, *image.shape[2:]), np.uint8)
    inner = out[top : top + nh, left : left + nw]
    if (nw, nh) == (w, h):
        inner[...] = image
    else:
        cv2.resize(image, (nw, nh), dst=inner, interpolation=cv2.INTER_LINEAR)
    out[:top] = pad_value
    out[top + nh :] = pad_value
    out[top : top + nh, :left] = pad_value
    out[top : top + nh, left + nw :] = pad_value
    return out, LetterboxMeta(nw / w, nh / h, float(left), float(top), (h, w), (th, tw))


@dataclass(frozen=True)
class PixelTransform:
    """How a letterboxed H×W×3 uint8 BGR image becomes the model's float32 input.

    Reverse the channels when ``swap_rb`` (BGR -> RGB), then per channel, in the model's channel
    order, ``x = pixel * gain[c] + bias[c]``; the model's input is laid out as ``layout``
    (``NCHW`` or ``NHWC``). A runtime that can run these steps inside its graph (OpenVINO's
    PrePostProcessor) takes the uint8 N×H×W×3 BGR batch instead (`Preprocessor.pixels`).
    """

    gain: tuple[float, float, float]
    bias: tuple[float, float, float]
    swap_rb: bool
    layout: str

    @classmethod
    def from_meta(cls, meta: ModelMeta) -> PixelTransform:
        mean = np.array(meta.mean if meta.mean is not None else (0.0, 0.0, 0.0), np.float64)
        std = np.array(meta.std if meta.std is not None else (1.0, 1.0, 1.0), np.float64)
        # x = (p * scale - mean) / std  ==  p * gain + bias, per channel in the model's order.
        gain = (meta.scale / std).astype(np.float32)
        bias = (-mean / std).astype(np.float32)
        return cls(
            gain=(float(gain[0]), float(gain[1]), float(gain[2])),
            bias=(float(bias[0]), float(bias[1]), float(bias[2])),
            swap_rb=meta.color == "RGB",
            layout=meta.layout,
        )

    @property
    def identity(self) -> bool:
        """No scaling and no offset: the model takes the pixel values as they are."""
        return all(g == 1.0 for g in self.gain) and all(b == 0.0 for b in self.bias)


class Preprocessor:
    """Turns BGR uint8 images into one float32 batch the model expects, per its `ModelMeta`.

    Calling it returns ``(batch, metas)``: batch float32 (N, 3, H, W) or (N, H, W, 3) by
    ``meta.layout``; one `LetterboxMeta` per image. `pixels` stops before the float conversion,
    for runtimes that convert inside their graph.
    """

    def __init__(self, meta: ModelMeta, input_hw: tuple[int, int]):
        self.meta = meta
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.transform = PixelTransform.from_meta(meta)
        self._gain = np.array(self.transform.gain, np.float32)
        self._bias = np.array(self.transform.bias, np.float32)
        self._identity = self.transform.identity
        self._swap_rb = self.transform.swap_rb
        self._nchw = meta.layout == "NCHW"

    def fit(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxMeta]:
        """One validated image -> H×W×3 uint8 in the model's colour order, and its LetterboxMeta."""
        bgr = as_bgr_image(image)
        boxed, lb = letterbox(bgr, self.input_hw, self.meta.letterbox, self.meta.pad_value)
        if self._swap_rb:
            boxed = cv2.cvtColor(boxed, cv2.COLOR_BGR2RGB)
        return boxed, lb

    def __call__(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[LetterboxMeta]]:
        if len(images) == 0:
            raise InvalidInputError("no images to preprocess")
        boxed, metas = [], []
        for image in images:
            bgr = as_bgr_image(image)
            fitted, lb = letterbox(bgr, self.input_hw, self.meta.letterbox, self.meta.pad_value)
            boxed.append(fitted)
            metas.append(lb)
        h, w = self.input_hw
        shape = (len(boxed), 3, h, w) if self._nchw else (len(boxed), h, w, 3)
        batch = np.empty(shape, np.float32)
        for i, fitted in enumerate(boxed):
            self._write(fitted, batch[i])
        return batch, metas

    def pixels(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[LetterboxMeta]]:
        """Letterbox only: ``(batch, metas)`` with batch uint8 (N, H, W, 3) in BGR order, the
        input of a runtime that applies `transform` in its graph. One image is returned without
        a copy into a batch buffer."""
        if len(images) == 0:
            raise InvalidInputError("no images to preprocess")
        boxed, metas = [], []
        for image in images:
            fitted, lb = letterbox(
                as_bgr_image(image), self.input_hw, self.meta.letterbox, self.meta.pad_value
            )
            boxed.append(fitted)
            metas.append(lb)
        batch = boxed[0][None] if len(boxed) == 1 else np.stack(boxed)
        return batch, metas

    def _write(self, fitted: np.ndarray, dst: np.ndarray) -> None:
        """One H×W×3 uint8 BGR image -> ``dst`` (3, H, W) or (H, W, 3) float32, normalised.

        Why not cv2.dnn.blobFromImageWithParams (which does the same): splitting into planes
        and converting each one straight into the batch costs 0.11 ms at 416×416 against its
        0.3-0.4 ms, and pre-processing has to stay a small fraction of inference.
        """
        if self._nchw:
            planes = cv2.split(fitted)
            if self._swap_rb:
                planes = planes[::-1]
            for c in range(3):
                if self._identity:
                    dst[c] = planes[c]
                else:
                    np.multiply(planes[c], self._gain[c], out=dst[c], casting="unsafe")
                    dst[c] += self._bias[c]
            return
        dst[...] = fitted[:, :, ::-1] if self._swap_rb else fitted
        if not self._identity:
            dst *= self._gain
            dst += self._bias
