"""Command-line front of the trainer: ``edgedet train``, ``edgedet export``, ``edgedet data synth``.

`edgedet.cli` adds these with ``add_*_arguments(parser)`` and calls ``run_*(args)``; this module is
also runnable by itself: ``python -m edgedet.train.command train --data ...``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgedet.errors import EdgedetError, InvalidInputError


def _name_value(items: list[str] | None, flag: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name] = float(value)
        except ValueError:
            raise InvalidInputError(
                f"{flag} expects name=weight (e.g. pedestrian=2.0), got {item!r}"
            ) from None
    return out


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", required=True, help="training dataset (COCO / YOLO / VOC / KITTI folder or file)"
    )
    p.add_argument(
        "--val",
        default=None,
        help="validation dataset; 'train' scores the training images; default: hold out 10%%",
    )
    p.add_argument("--model", default="n", choices=("n", "s", "m"), help="model size (default n)")
    p.add_argument("--p2", action="store_true", help="add a stride-4 level for small objects")
    p.add_argument("--activation", default="silu", choices=("silu", "relu", "relu6"))
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument(
        "--imgsz", type=int, default=640, help="training / export input size (multiple of 32)"
    )
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--accumulate", type=int, default=1, help="batches per optimizer step")
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"))
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--weight-decay", type=float, default=0.0005)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument(
        "--patience",
        type=int,
        default=30,
        help="early stop after this many epochs without improvement (0: never)",
    )
    p.add_argument("--close-mosaic", type=int, default=2, help="last epochs trained without mosaic")
    p.add_argument("--mosaic", type=float, default=1.0, help="mosaic probability")
    p.add_argument("--mixup", type=float, default=0.0, help="mixup probability")
    p.add_argument(
        "--copy-paste", type=float, default=0.0, help="copy-paste probability for --rare-classes"
    )
    p.add_argument("--scale", type=float, default=0.5, help="random zoom range (+-)")
    p.add_argument("--degrees", type=float, default=0.0)
    p.add_argument("--fliplr", type=float, default=0.5)
    p.add_argument("--no-augment", action="store_true", help="switch every augmentation off")
    p.add_argument(
        "--multi-scale", type=float, default=0.0, help="train on sizes imgsz*(1 +- this)"
    )
    p.add_argument("--cls-loss", default="bce", choices=("bce", "vfl", "qfl"))
    p.add_argument("--box-loss", default="ciou", choices=("ciou", "giou"))
    p.add_argument("--class-weights", nargs="*", metavar="NAME=W", help="per-class loss weights")
    p.add_argument(
        "--rare-classes", nargs="*", metavar="NAME", help="oversample images holding these classes"
    )
    p.add_argument(
        "--rare-repeat",
        type=float,
        default=3.0,
        help="how often rare-class images repeat per epoch",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument(
        "--from",
        dest="from_ckpt",
        default=None,
        metavar="CKPT",
        help="start from these weights (class list may differ)",
    )
    p.add_argument(
        "--out", default="runs/train", help="run folder (checkpoints, results.csv, results.png)"
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--save-every", type=int, default=100, help="write last.pt every N optimizer steps"
    )
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument(
        "--names",
        default=None,
        help="class names for a YOLO folder without data.yaml ('coco', a file, a,b,c)",
    )
    p.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs")
    from edgedet.protocol import add_protocol_arguments

    add_protocol_arguments(p)
    p.add_argument(
        "--max-train-images", type=int, default=None, help="use only the first N training images"
    )


def config_from_args(args: argparse.Namespace) -> Any:
    from .augment import AugmentConfig
    from .trainer import TrainConfig

    aug = AugmentConfig(
        mosaic=args.mosaic, mixup=args.mixup, copy_paste=args.copy_paste, scale=args.scale,
        degrees=args.degrees, fliplr=args.fliplr,
    )  # fmt: skip
    if args.no_augment:
        aug = AugmentConfig.none()
    return TrainConfig(
        data=args.data, val=args.val, model=args.model, p2=args.p2, activation=args.activation,
        epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, accumulate=args.accumulate,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, patience=args.patience, close_mosaic=args.close_mosaic,
        multi_scale=args.multi_scale, cls_loss=args.cls_loss, box_loss=args.box_loss,
        class_weights=_name_value(args.class_weights, "--class-weights"),
        rare_classes=list(args.rare_classes or []), rare_repeat=args.rare_repeat, augment=aug,
        seed=args.seed, device=args.device, workers=args.workers, threads=args.threads,
        out=args.out, save_every=args.save_every, amp=not args.no_amp, resume=args.resume,
        from_ckpt=args.from_ckpt, max_train_images=args.max_train_images, names=args.names,
        eval_every=args.eval_every, eval_conf=args.eval_conf, eval_iou=args.eval_iou,
        max_det=args.max_det, multi_label=args.multi_label,
    )  # fmt: skip


def run_train(args: argparse.Namespace) -> int:
    from .trainer import train

    cfg = config_from_args(args)
    res = train(cfg)
    if res.get("best_epoch", -1) >= 0:
        print(
            f"best epoch {res['best_epoch']} (fitness {res['best_fitness']:.4f}); checkpoints in {cfg.out}"
        )
    return 0


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a checkpoint written by edgedet train (best.pt / last.pt)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument(
        "--imgsz", type=int, default=None, help="input size (default: the training size)"
    )
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--dynamic-batch", action="store_true", help="make the batch dimension dynamic")
    p.add_argument(
        "--no-ema", action="store_true", help="export the raw weights instead of the EMA"
    )
    p.add_argument(
        "--val", default=None, help="labelled dataset: score the exported file (ONNX Runtime)"
    )
    from edgedet.protocol import add_protocol_arguments

    add_protocol_arguments(p)


def run_export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint

    res = export_checkpoint(
        args.checkpoint, args.out, imgsz=args.imgsz, opset=args.opset, dynamic_batch=args.dynamic_batch,
        use_ema=not args.no_ema,
    )  # fmt: skip
    print(
        f"wrote {res['path']} ({res['bytes'] / 1e6:.2f} MB); ONNX Runtime vs torch max abs diff "
        f"{res['max_abs_diff']:.2e} (boxes px and scores)"
    )
    if getattr(args, "val", None):
        from edgedet.protocol import EvalProtocol, protocol_overrides

        from .export import evaluate_onnx

        ev = evaluate_onnx(res["path"], args.val, overrides=protocol_overrides(args))
        proto = EvalProtocol.from_dict(ev["protocol"])
        print(
            f"{res['path']} on {args.val}: mAP50-95 {ev['map50_95']:.4f} mAP50 "
            f"{ev['map50']:.4f} (ONNX Runtime; protocol: {proto.describe()})"
        )
    return 0


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder to write (images/, annotations/, labels/)")
    p.add_argument("--n", type=int, default=200, help="number of scenes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--imgsz", type=int, nargs="+", default=[256], help="H [W] of the scenes")
    p.add_argument("--jpg", action="store_true", help="write JPEG instead of PNG")
    p.add_argument(
        "--sequences", type=int, default=0, metavar="K",
        help="write K MOTChallenge sequences (moving objects with ids, gt/gt.txt) instead of "
        "scenes; seeds SEED..SEED+K-1",
    )  # fmt: skip
    p.add_argument("--frames", type=int, default=60, help="frames per sequence (default 60)")
    p.add_argument("--objects", type=int, default=8, help="objects per sequence (default 8)")


def run_synth(args: argparse.Namespace) -> int:
    from edgedet.data.synthetic import generate, generate_sequence

    hw = (args.imgsz[0], args.imgsz[-1])
    if args.sequences:
        for k in range(args.sequences):
            generate_sequence(
                f"{args.out}/synth-{args.seed + k:04d}", args.frames, args.seed + k, hw,
                args.objects,
            )  # fmt: skip
        print(
            f"wrote {args.sequences} synthetic sequence(s) of {args.frames} frames ({hw[0]}x"
            f"{hw[1]}, seeds {args.seed}..{args.seed + args.sequences - 1}) to {args.out}"
        )
        return 0
    out = generate(args.out, args.n, args.seed, hw, image_ext=".jpg" if args.jpg else ".png")
    print(f"wrote {args.n} synthetic road scenes ({hw[0]}x{hw[1]}, seed {args.seed}) to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgedet.train.command")
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_train_arguments(sub.add_parser("train", help="train an edgedet model"))
    add_export_arguments(sub.add_parser("export", help="export a checkpoint to ONNX"))
    add_synth_arguments(sub.add_parser("synth", help="write synthetic road scenes"))
    args = ap.parse_args(argv)
    try:
        return {"train": run_train, "export": run_export, "synth": run_synth}[args.cmd](args)
    except EdgedetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
