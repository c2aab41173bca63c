"""The README's command blocks, run as written (issue 16): a renamed command or flag fails here.

Every ```bash block of README.md is one test. A block runs in one scratch folder shared by all
blocks, through the installed ``edgedet`` console script (``.venv/bin/edgedet`` there is a link
to it), offline, with each command's exit status checked. An HTML comment right above a block
says how it is tested:

- ``<!-- readme-test: run (...) -->`` or no comment: every command runs; ``python3 -m venv`` and
  ``pip install`` steps are left out (``.ci/run`` installs a fresh clone the same way);
- ``<!-- readme-test: parse (why) -->``: each ``edgedet`` command is parsed by edgedet's own
  argument parser but not run (training for minutes, material a user may not have);
- ``<!-- readme-test: skip (why) -->``: not run (another tool's environment, a Jetson); its
  ``edgedet`` commands are still parsed.

Placeholder paths of the README exist in the scratch folder as small stand-ins built here (the
documented mapping):

========================================== ====================================================
README path                                stand-in
========================================== ====================================================
``model.onnx``, ``a.onnx``, ``b.onnx``     copies of the shipped sample (``sample_roads.onnx``)
``yolox_nano.onnx``                        a 32×32 YOLOX-shaped ONNX graph, 80 classes, no meta
``images/``, ``calib/``, ``frames/``       8 synthetic road scenes (PNG)
``coco/``, ``coco128/``, ``val/``,         the same 8 scenes as a dataset (COCO JSON + YOLO)
``roads/``, ``roads_val/``,
``path/to/dataset``
``kitti/``                                 that dataset converted to KITTI by edgedet
``video.mp4``                              6 frames of those scenes at 15 fps
``runs/old/``, ``runs/new/``               ``records.jsonl`` from one tiny bench of ``model.onnx``
========================================== ====================================================
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(
    r"(?:<!--\s*readme-test:\s*(?P<mode>run|parse|skip)\s*(?:\((?P<why>[^)]*)\))?\s*-->\s*\n)?"
    r"```(?P<lang>[a-z]*)\n(?P<body>.*?)```",
    re.S,
)


@dataclass(frozen=True)
class Block:
    line: int
    mode: str
    why: str
    commands: tuple[tuple[str, ...], ...]


def _commands(body: str) -> tuple[tuple[str, ...], ...]:
    """Each command of a shell block as argv: continuation lines joined, comments dropped,
    ``&&`` / ``;`` lists split."""
    text = body.replace("\\\n", " ")
    out: list[tuple[str, ...]] = []
    for line in text.splitlines():
        current: list[str] = []
        for token in shlex.split(line, comments=True):
            if token in ("&&", ";"):
                if current:
                    out.append(tuple(current))
                current = []
            else:
                current.append(token)
        if current:
            out.append(tuple(current))
    return tuple(out)


def readme_blocks(text: str | None = None) -> list[Block]:
    text = README.read_text() if text is None else text
    blocks = []
    for m in _BLOCK.finditer(text):
        if m.group("lang") != "bash":
            continue
        blocks.append(
            Block(
                line=text.count("\n", 0, m.start("body")) + 1,
                mode=m.group("mode") or "run",
                why=(m.group("why") or "").strip(),
                commands=_commands(m.group("body")),
            )
        )
    return blocks


def _edgedet_argv(argv: tuple[str, ...]) -> list[str] | None:
    """The arguments after ``edgedet`` when ``argv`` runs edgedet, else None."""
    if argv and Path(argv[0]).name == "edgedet":
        return list(argv[1:])
    return None


def _is_setup(argv: tuple[str, ...]) -> bool:
    """Creating a venv or installing packages: what .ci/run does on a fresh clone."""
    return (len(argv) >= 3 and argv[1:3] == ("-m", "venv")) or (
        "install" in argv and any(Path(a).name == "pip" or a == "pip" for a in argv[:4])
    )


BLOCKS = readme_blocks()


def test_the_readme_has_command_blocks() -> None:
    assert len(BLOCKS) >= 8
    assert sum(b.mode == "run" for b in BLOCKS) >= 4
    assert all(b.why for b in BLOCKS if b.mode != "run"), "a parse/skip block says why"


def test_every_edgedet_command_in_the_readme_parses() -> None:
    """Every ``edgedet ...`` line, in every block (skipped ones too), against the real parser."""
    from edgedet.cli import build_parser

    checked = 0
    for block in BLOCKS:
        for argv in block.commands:
            args = _edgedet_argv(argv)
            if args is None:
                continue
            parser = build_parser()
            try:
                parser.parse_args(args)
            except SystemExit as err:
                pytest.fail(f"README.md line {block.line}: `{shlex.join(argv)}` does not parse ({err})")
            checked += 1
    assert checked >= 20


def test_the_readme_python_block_compiles() -> None:
    text = README.read_text()
    bodies = [m.group("body") for m in _BLOCK.finditer(text) if m.group("lang") == "python"]
    assert bodies
    for body in bodies:
        compile(body, "README.md", "exec")


# -- the stand-ins ------------------------------------------------------------------------------


def _tiny_yolox(path: Path, size: int = 32, nc: int = 80) -> Path:
    """A YOLOX-shaped graph: [1, 3, size, size] -> [1, sum((size/s)^2 for s in 8, 16, 32), 5+nc]
    (box regression raw, objectness and class scores after a sigmoid), from pooled 1×1 convs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c = 5 + nc
    rng = np.random.default_rng(0)
    nodes, inits, levels = [], [], []
    for s in (8, 16, 32):
        n = (size // s) ** 2
        w = rng.normal(0, 0.05, (c, 3, 1, 1)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{s}"),
                  numpy_helper.from_array(np.array([1, c, n], np.int64), f"shape{s}")]  # fmt: skip
        nodes += [
            helper.make_node("AveragePool", ["images"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s]),
            helper.make_node("Conv", [f"p{s}", f"W{s}"], [f"c{s}"]),
            helper.make_node("Reshape", [f"c{s}", f"shape{s}"], [f"r{s}"]),
        ]  # fmt: skip
        levels.append(f"r{s}")
    total = sum((size // s) ** 2 for s in (8, 16, 32))
    nodes += [
        helper.make_node("Concat", levels, ["cat"], axis=2),
        helper.make_node("Transpose", ["cat"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Slice", ["t", "s0", "s1", "s2"], ["reg"]),
        helper.make_node("Slice", ["t", "s1", "s3", "s2"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["probs"]),
        helper.make_node("Concat", ["reg", "probs"], ["output"], axis=2),
    ]  # fmt: skip
    inits += [numpy_helper.from_array(np.array([v], np.int64), k)
              for k, v in (("s0", 0), ("s1", 4), ("s2", 2), ("s3", c))]  # fmt: skip
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, total, c])
    graph = helper.make_graph(nodes, "tiny_yolox", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def _edgedet_script() -> Path:
    script = Path(sys.executable).with_name("edgedet")
    if script.is_file():
        return script
    found = shutil.which("edgedet")
    if found is None:
        pytest.skip("the edgedet console script is not installed beside this Python")
    return Path(found)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import cv2

    from edgedet.cli import default_sample_model
    from edgedet.data.synthetic import generate

    root = tmp_path_factory.mktemp("readme")
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "edgedet").symlink_to(_edgedet_script())
    sample = default_sample_model()
    for name in ("model.onnx", "a.onnx", "b.onnx"):
        shutil.copyfile(sample, root / name)
    _tiny_yolox(root / "yolox_nano.onnx")
    data = generate(root / "coco", 8, seed=3, imgsz=(96, 128))
    for alias in ("coco128", "val", "roads", "roads_val", "path/to/dataset"):
        (root / alias).parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(data, root / alias)
    for alias in ("images", "calib", "frames"):
        shutil.copytree(data / "images", root / alias)
    subprocess.run([str(venv_bin / "edgedet"), "data", "convert", "coco", "--to", "kitti",
                    "--out", "kitti"], cwd=root, check=True, capture_output=True, timeout=120)  # fmt: skip
    frames = sorted((root / "images").glob("*.png"))[:6]
    first = cv2.imread(str(frames[0]))
    writer = cv2.VideoWriter(str(root / "video.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 15.0,
                             (first.shape[1], first.shape[0]))  # fmt: skip
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()
    small = [str(venv_bin / "edgedet"), "bench", "--model", "model.onnx", "--data", "coco",
             "--runtime", "onnxruntime", "--warmup", "1", "--min-iterations", "3",
             "--min-seconds", "0", "--requests", "0", "--bootstrap", "0", "--no-progress",
             "--no-plot", "--out", "runs/old"]  # fmt: skip
    subprocess.run(small, cwd=root, check=True, capture_output=True, timeout=300)
    shutil.copytree(root / "runs" / "old", root / "runs" / "new")
    return root


def run_block(block: Block, workdir: Path) -> list[str]:
    """Run a block's commands in ``workdir``; returns what was left out, and why. A command
    that fails raises AssertionError with its output."""
    left_out = []
    env = {**os.environ, "COLUMNS": "100"}
    for argv in block.commands:
        if _is_setup(argv):
            left_out.append(f"{shlex.join(argv)} (setup: .ci/run installs a fresh clone)")
            continue
        args = _edgedet_argv(argv)
        assert args is not None, f"README.md line {block.line}: not an edgedet command: {argv}"
        cmd = [str(workdir / ".venv" / "bin" / "edgedet"), *args]  # `edgedet` or `.venv/bin/edgedet`
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env,
                              timeout=600)  # fmt: skip
        assert proc.returncode == 0, (
            f"README.md line {block.line}: `{shlex.join(argv)}` exited {proc.returncode}\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return left_out


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b.line}" for b in BLOCKS])
def test_readme_block_runs_as_written(block: Block, workdir: Path) -> None:
    if block.mode == "skip":
        pytest.skip(f"README.md line {block.line}: {block.why}")
    if block.mode == "parse":
        pytest.skip(f"README.md line {block.line}: parsed only ({block.why})")
    run_block(block, workdir)
