"""Rebuild edgedet's shipped sample model, ``edgedet/assets/sample_roads.onnx``, from nothing.

The exact sequence that made the shipped file (see ``edgedet/assets/sample_roads.md`` for the
numbers it reached). Run from the repository root with the train extra installed:

    python recipes/build_sample.py --work /tmp/sample_build            # all stages
    python recipes/build_sample.py --work /tmp/sample_build --stage export

Stages: ``data`` writes the synthetic training split (seed 1) and the held-out validation split
(seed 1000003, the same one `edgedet.data.synthetic.sample_validation_set` makes); ``train`` runs
the edgedet trainer (equivalent CLI below); ``finetune`` continues from its best weights with
rare-class oversampling (cyclist, sign), no mosaic and a lower learning rate; ``export``
writes the ONNX with its ModelMeta into ``edgedet/assets/`` and checks ONNX Runtime against
torch; ``eval`` scores the ONNX model on the held-out split through ONNX Runtime and OpenVINO
(f32) and writes ``WORK/eval.json``.

Equivalent commands:

    edgedet data synth --out WORK/train --n 3000 --seed 1 --imgsz 192
    edgedet data synth --out WORK/val --n 200 --seed 1000003 --imgsz 192
    edgedet train --data WORK/train --val WORK/val --model n --imgsz 192 --epochs 12 --batch 8 \\
        --lr 0.002 --mosaic 0.3 --scale 0.3 --close-mosaic 2 --seed 0 --threads 1 --out WORK/run
    edgedet train --data WORK/train --val WORK/val --from WORK/run/best.pt --imgsz 192 --epochs 3 \\
        --batch 8 --lr 0.0008 --warmup-steps 50 --mosaic 0 --scale 0.3 --close-mosaic 0 \\
        --rare-classes cyclist sign --rare-repeat 2 --seed 1 --threads 1 --out WORK/finetune
    edgedet export WORK/finetune/best.pt --out edgedet/assets/sample_roads.onnx
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN_N, VAL_N, IMGSZ = 3000, 200, 192
TRAIN_SEED, VAL_SEED = 1, 1_000_003


def train_args(work: Path) -> list[str]:
    return [
        "--data", str(work / "train"), "--val", str(work / "val"), "--model", "n", "--imgsz", str(IMGSZ),
        "--epochs", "12", "--batch", "8", "--lr", "0.002", "--mosaic", "0.3", "--scale", "0.3",
        "--close-mosaic", "2", "--seed", "0", "--threads", "1", "--out", str(work / "run"),
    ]  # fmt: skip


def finetune_args(work: Path) -> list[str]:
    """Stage 2: from stage 1's best weights, oversample the rare, thin classes, no mosaic, low lr."""
    return [
        "--data", str(work / "train"), "--val", str(work / "val"), "--from", str(work / "run" / "best.pt"),
        "--imgsz", str(IMGSZ), "--epochs", "3", "--batch", "8", "--lr", "0.0008", "--warmup-steps", "50",
        "--mosaic", "0", "--scale", "0.3", "--close-mosaic", "0", "--rare-classes", "cyclist", "sign",
        "--rare-repeat", "2", "--seed", "1", "--threads", "1", "--out", str(work / "finetune"),
    ]  # fmt: skip


#: the run whose best.pt becomes the sample
FINAL_RUN = "finetune"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--work", default="/tmp/sample_build", help="scratch folder for data and checkpoints"
    )
    ap.add_argument(
        "--stage", choices=("all", "data", "train", "finetune", "export", "eval"), default="all"
    )
    ap.add_argument(
        "--resume", action="store_true", help="resume an interrupted train / finetune stage"
    )
    a = ap.parse_args(argv)
    work = Path(a.work)
    out = REPO / "edgedet" / "assets" / "sample_roads.onnx"
    resume = ["--resume"] if a.resume else []
    if a.stage in ("all", "data"):
        from edgedet.data.synthetic import generate

        t = time.time()
        generate(work / "train", TRAIN_N, TRAIN_SEED, (IMGSZ, IMGSZ))
        generate(work / "val", VAL_N, VAL_SEED, (IMGSZ, IMGSZ))
        print(f"data: {TRAIN_N} + {VAL_N} scenes in {time.time() - t:.0f}s", flush=True)
    if a.stage in ("all", "train"):
        from edgedet.train.command import main as train_main

        rc = train_main(["train", *train_args(work), *resume])
        if rc:
            return rc
    if a.stage in ("all", "finetune") and FINAL_RUN == "finetune":
        from edgedet.train.command import main as train_main

        rc = train_main(["train", *finetune_args(work), *resume])
        if rc:
            return rc
    if a.stage in ("all", "export"):
        from edgedet.train.command import main as train_main

        rc = train_main(["export", str(work / FINAL_RUN / "best.pt"), "--out", str(out)])
        if rc:
            return rc
    if a.stage in ("all", "eval"):
        from edgedet.train.export import evaluate_onnx

        results = {}
        for runtime in ("onnxruntime", "openvino"):
            rep = evaluate_onnx(out, work / "val", runtime=runtime)
            results[runtime] = rep
            print(
                f"{runtime} on the held-out split ({VAL_N} images, seed {VAL_SEED}): "
                f"mAP50 {rep['map50']:.4f} mAP50-95 {rep['map50_95']:.4f}",
                flush=True,
            )
        (work / "eval.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
