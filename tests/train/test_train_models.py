"""EdgeDet models: shapes for every size, P2, activations, no chunk/split; loss and assigner."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edgedet.errors import InvalidInputError  # noqa: E402
from edgedet.train.assigner import TaskAlignedAssigner  # noqa: E402
from edgedet.train.losses import DetectionLoss, bbox_iou, dfl_loss  # noqa: E402
from edgedet.train.models import ExportModel, build_model, count_parameters  # noqa: E402


@pytest.mark.parametrize(
    ("size", "p2", "act"),
    [("n", False, "silu"), ("n", True, "relu"), ("s", False, "relu6"), ("m", True, "silu")],
)
def test_forward_shapes(size: str, p2: bool, act: str) -> None:
    m = build_model(5, size, p2=p2, activation=act).eval()
    x = torch.zeros(2, 3, 64, 96)
    with torch.no_grad():
        levels = m(x)
    strides = (4, 8, 16, 32) if p2 else (8, 16, 32)
    assert m.strides == strides and len(levels) == len(strides)
    for (box, cls), s in zip(levels, strides):
        assert box.shape == (2, 4 * 16, 64 // s, 96 // s)
        assert cls.shape == (2, 5, 64 // s, 96 // s)
    with torch.no_grad():
        out = ExportModel(m, (64, 96))(x)
    n = sum((64 // s) * (96 // s) for s in strides)
    assert out.shape == (2, n, 4 + 5)
    assert ((out[..., 4:] >= 0) & (out[..., 4:] <= 1)).all()


def test_sizes_grow_and_n_fits_the_sample_budget() -> None:
    n, s, m = (count_parameters(build_model(6, k)) for k in "nsm")
    assert n < s < m
    assert n * 4 < 5e6  # the shipped sample (fp32) must stay under 5 MB


def test_no_chunk_or_split_in_the_graph() -> None:
    fx = pytest.importorskip("torch.fx")
    for p2 in (False, True):
        gm = fx.symbolic_trace(build_model(3, "n", p2=p2))
        bad = [
            n for n in gm.graph.nodes
            if n.op in ("call_function", "call_method")
            and getattr(n.target, "__name__", str(n.target)) in ("chunk", "split", "tensor_split", "unbind", "getitem")
        ]  # fmt: skip
        # getitem is only allowed on the list of head outputs, never on tensors (slicing)
        assert all(
            n.args[0].op != "call_module" or "head" not in str(n.args[0].target)
            for n in bad
            if n.target is not None
        )
        assert not [
            n
            for n in bad
            if getattr(n.target, "__name__", str(n.target)) in ("chunk", "split", "tensor_split")
        ]


def test_bad_model_settings() -> None:
    with pytest.raises(InvalidInputError, match="model size must be one of"):
        build_model(3, "xl")
    with pytest.raises(InvalidInputError, match="activation must be one of"):
        build_model(3, "n", activation="gelu")
    with pytest.raises(InvalidInputError, match="2 class names given for num_classes=3"):
        build_model(3, "n", class_names=("a", "b"))


def test_assigner_picks_cells_inside_the_box() -> None:
    n_cells = 8 * 8
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    anchors = torch.stack([(xs.reshape(-1) + 0.5) * 8, (ys.reshape(-1) + 0.5) * 8], 1)
    gt = torch.tensor([[[10.0, 10.0, 40.0, 30.0], [0, 0, 0, 0]]])
    labels = torch.tensor([[2, 0]])
    mask = torch.tensor([[True, False]])
    pd_boxes = gt[:, :1].expand(1, n_cells, 4).clone()
    pd_scores = torch.full((1, n_cells, 3), 0.5)
    a = TaskAlignedAssigner(topk=5)(pd_scores, pd_boxes, anchors, labels, gt, mask)
    assert 0 < int(a.fg.sum()) <= 5
    inside = (
        (anchors[:, 0] > 10) & (anchors[:, 0] < 40) & (anchors[:, 1] > 10) & (anchors[:, 1] < 30)
    )
    assert bool(inside[a.fg[0]].all())
    assert (a.labels[a.fg] == 2).all()
    assert float(a.scores.max()) <= 1.0 + 1e-6 and float(a.scores[..., :2].abs().sum()) == 0.0
    # a box too small to win the top-k still gets its nearest cell
    tiny = torch.tensor([[[12.0, 12.0, 14.0, 14.0]]])
    a2 = TaskAlignedAssigner()(pd_scores, pd_boxes * 0, anchors, labels[:, :1], tiny, mask[:, :1])
    assert int(a2.fg.sum()) <= 1


def test_iou_variants_and_dfl() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert torch.allclose(bbox_iou(a, a, "ciou"), torch.ones(1), atol=1e-5)
    b = torch.tensor([[20.0, 20.0, 30.0, 30.0]])
    assert float(bbox_iou(a, b, "giou")) < 0 and float(bbox_iou(a, b, "iou")) == 0
    logits = torch.zeros(1, 4, 16)
    logits[..., 3] = 20.0
    assert float(dfl_loss(logits, torch.full((1, 4), 3.0), 16)) < 1e-3
    assert float(dfl_loss(logits, torch.full((1, 4), 9.0), 16)) > 1.0


@pytest.mark.parametrize("cls_loss", ["bce", "vfl", "qfl"])
def test_loss_decreases_when_fitting_one_image(cls_loss: str) -> None:
    torch.manual_seed(0)
    m = build_model(2, "n")
    m.head.init_bias(64)
    weights = torch.tensor([1.0, 2.0])
    loss_fn = DetectionLoss(2, m.strides, cls_loss=cls_loss, class_weights=weights)
    x = torch.rand(1, 3, 64, 64)
    gt = torch.tensor([[[8.0, 8.0, 40.0, 30.0], [30.0, 36.0, 60.0, 62.0]]])
    labels = torch.tensor([[0, 1]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    opt = torch.optim.AdamW(m.parameters(), lr=0.003)
    losses = []
    for _ in range(12):
        loss, parts = loss_fn(m(x), labels, gt, mask)
        assert set(parts) == {"box", "cls", "dfl"}
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


def test_loss_with_no_boxes_is_finite() -> None:
    m = build_model(2, "n")
    loss_fn = DetectionLoss(2, m.strides)
    loss, _ = loss_fn(
        m(torch.rand(2, 3, 64, 64)),
        torch.zeros(2, 0, dtype=torch.long),
        torch.zeros(2, 0, 4),
        torch.zeros(2, 0, dtype=torch.bool),
    )
    assert torch.isfinite(loss)
    loss.backward()
