"""A tiny DETR-layout detector, trained on edgedet's synthetic road scenes, exported in every
output layout the ``detr`` family reads (tests only; needs torch).

The network is small on purpose (77k weights): a conv encoder to stride 8, then what a
DETR decoder does after its transformer: *query selection* (a class-score head on every cell,
``TopK`` of the best ``Q`` cells, ``GatherElements`` of their features and anchor boxes), a box
head MLP refining each query's box in inverse-sigmoid space (``sigmoid(ref + mlp(f))``, as
RT-DETR / D-FINE refine reference points) and a class head. It has no attention layers (too
slow to train on 2 cores); its outputs are the real DETR layouts and its boxes are
meaningful (mAP50-95 0.202 on 40 held-out scenes; one-to-one trained refined heads, see the
recipe).

Its weights are trained by ``recipes/build_tiny_detr.py`` (a few minutes on 2 CPU cores) and
committed as ``tests/assets/tiny_detr_state.npz`` (float16, 150 KB); `export_layout` rebuilds the
ONNX files from them in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgedet.data.synthetic import CLASS_NAMES
from edgedet.meta import ModelMeta, write_onnx_meta

STATE = Path(__file__).parent / "assets" / "tiny_detr_state.npz"
IMGSZ = 128
STRIDE = 8
NUM_QUERIES = 64
TOPK = 300  # the post-processed layouts' K, as lyuwenyu's PostProcessor / Ultralytics
NC = len(CLASS_NAMES)

#: layout -> ``options`` its meta carries (the ``detr`` family reads the rest from the shapes)
LAYOUTS: dict[str, dict[str, Any]] = {
    "raw": {},  # pred_logits [B, Q, C] + pred_boxes [B, Q, 4], normalised cxcywh, sigmoid
    "packed": {},  # output0 [B, Q, 4 + C], scores already sigmoids
    "topk6": {"topk_in_graph": True},  # output0 [B, K, 6] (Ultralytics >= 8.4 RT-DETR)
    "postprocessed": {},  # orig_target_sizes input; labels / boxes (xyxy px) / scores [B, K]
    "softmax_px": {"box_format": "xyxy", "box_units": "pixels"},  # C + 1 logits, pixel boxes
}


def _torch() -> Any:
    import torch

    return torch


def build_model() -> Any:
    """The torch module (random weights); `load_state` fills them."""
    torch = _torch()
    nn = torch.nn

    def block(cin: int, cout: int, stride: int, dilation: int = 1) -> Any:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    class TinyDetr(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            d = 48
            self.encoder = nn.Sequential(
                block(3, 16, 2), block(16, 24, 2), block(24, 32, 2), block(32, d, 1),
                block(d, d, 1, 2), block(d, d, 1, 4),
            )  # fmt: skip
            self.enc_score = nn.Linear(d, NC)
            self.enc_box = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 4))
            self.query_proj = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d), nn.ReLU())
            self.box_head = nn.Sequential(
                nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 4)
            )
            self.class_head = nn.Linear(d, NC)
            g = IMGSZ // STRIDE
            ys, xs = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
            cxcy = torch.stack([(xs + 0.5) / g, (ys + 0.5) / g], -1).reshape(-1, 2)
            anchors = torch.cat([cxcy, torch.full_like(cxcy, 0.12)], -1).clamp(1e-3, 1 - 1e-3)
            self.register_buffer("anchors", torch.log(anchors / (1 - anchors))[None])

        def dense(self, x: Any) -> tuple[Any, Any, Any]:
            """Every cell: features [B, N, d], score logits [B, N, C], box logits [B, N, 4]."""
            f = self.encoder(x).flatten(2).transpose(1, 2)
            return f, self.enc_score(f), self.enc_box(f) + self.anchors

        def heads(self, f: Any, ref: Any) -> tuple[Any, Any]:
            """Query features and reference box logits -> class logits, boxes (cxcywh in 0..1)."""
            q = self.query_proj(f)
            return self.class_head(q), torch.sigmoid(ref + self.box_head(q))

        def forward(self, x: Any) -> tuple[Any, Any]:
            """Inference: top-``NUM_QUERIES`` cells by best class score -> (logits, boxes)."""
            f, score, box = self.dense(x)
            idx = torch.topk(score.max(-1).values, NUM_QUERIES, dim=1).indices
            f = torch.gather(f, 1, idx.unsqueeze(-1).expand(-1, -1, f.shape[-1]))
            ref = torch.gather(box, 1, idx.unsqueeze(-1).expand(-1, -1, 4))
            return self.heads(f, ref)

    return TinyDetr()


def load_state(model: Any, path: Path = STATE) -> Any:
    torch = _torch()
    with np.load(path) as z:
        state = {k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files}
    for k, v in model.state_dict().items():
        if k not in state:  # integer buffers (BatchNorm's num_batches_tracked)
            state[k] = v
        else:
            state[k] = state[k].to(v.dtype)
    model.load_state_dict(state)
    return model.eval()


def save_state(model: Any, path: Path = STATE) -> Path:
    arrays = {
        k: v.detach().cpu().numpy().astype(np.float16)
        for k, v in model.state_dict().items()
        if v.dtype.is_floating_point
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def _wrapper(model: Any, layout: str) -> tuple[Any, list[str], list[str]]:
    """A module emitting ``layout``, with its input and output names."""
    torch = _torch()

    def topk(logits: Any, boxes: Any) -> tuple[Any, Any, Any]:
        scores = torch.sigmoid(logits).flatten(1)
        k = min(TOPK, scores.shape[1])
        top, index = torch.topk(scores, k, dim=1)
        query = torch.div(index, NC, rounding_mode="floor")
        boxes = torch.gather(boxes, 1, query.unsqueeze(-1).expand(-1, -1, 4))
        return top, index - query * NC, boxes

    class Wrapper(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model  # a submodule: its weights are exported as initializers

    class Raw(Wrapper):
        def forward(self, x: Any) -> Any:
            return self.model(x)

    class Packed(Wrapper):
        def forward(self, x: Any) -> Any:
            logits, boxes = self.model(x)
            return torch.cat([boxes, torch.sigmoid(logits)], -1)

    class TopK6(Wrapper):
        def forward(self, x: Any) -> Any:
            scores, labels, boxes = topk(*self.model(x))
            return torch.cat([boxes, scores[..., None], labels[..., None].float()], -1)

    class PostProcessed(Wrapper):
        def forward(self, x: Any, orig_target_sizes: Any) -> Any:
            scores, labels, boxes = topk(*self.model(x))
            cx, cy, w, h = boxes.unbind(-1)
            xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
            xyxy = xyxy * orig_target_sizes.repeat(1, 2).unsqueeze(1).float()
            return labels, xyxy, scores

    class SoftmaxPixels(Wrapper):
        def forward(self, x: Any) -> Any:
            logits, boxes = self.model(x)
            background = torch.zeros_like(logits[..., :1])
            cx, cy, w, h = (boxes * IMGSZ).unbind(-1)
            xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
            return torch.cat([logits, background], -1), xyxy

    table = {
        "raw": (Raw(), ["images"], ["pred_logits", "pred_boxes"]),
        "packed": (Packed(), ["images"], ["output0"]),
        "topk6": (TopK6(), ["images"], ["output0"]),
        "postprocessed": (
            PostProcessed(), ["images", "orig_target_sizes"], ["labels", "boxes", "scores"]
        ),
        "softmax_px": (SoftmaxPixels(), ["images"], ["pred_logits", "pred_boxes"]),
    }
    return table[layout]


def detr_meta(layout: str) -> ModelMeta:
    return ModelMeta(
        family="detr",
        class_names=CLASS_NAMES,
        input_size=(IMGSZ, IMGSZ),
        options=LAYOUTS[layout],
        source="tests/detr_models.py",
    )


def export_layout(model: Any, layout: str, path: Path, *, with_meta: bool = True) -> Path:
    """Export ``model`` emitting ``layout`` to ONNX at ``path`` (batch 1, opset 17), with its
    edgedet meta unless ``with_meta`` is False."""
    torch = _torch()
    module, inputs, outputs = _wrapper(model, layout)
    args: tuple[Any, ...] = (torch.zeros(1, 3, IMGSZ, IMGSZ),)
    if layout == "postprocessed":
        args = (*args, torch.tensor([[IMGSZ, IMGSZ]], dtype=torch.int64))
    raw = path.with_suffix(".raw.onnx")
    torch.onnx.export(
        module.eval(), args, str(raw), input_names=inputs, output_names=outputs,
        opset_version=17, dynamo=False,
    )  # fmt: skip
    if not with_meta:
        raw.replace(path)
        return path
    write_onnx_meta(raw, path, detr_meta(layout))
    raw.unlink()
    return path
