"""Files shipped inside edgedet: the sample model ``sample_roads.onnx`` (see ``sample_roads.md``).

The sample is a small edgedet model trained by ``edgedet train`` on synthetic road scenes made by
`edgedet.data.synthetic`; ``recipes/build_sample.py`` rebuilds it. It lets ``edgedet bench`` and
``edgedet predict`` run on a fresh machine with no download, together with
`edgedet.data.synthetic.sample_validation_set` (its held-out validation split, made on the fly).
"""

from __future__ import annotations

from pathlib import Path

from edgedet.errors import ModelLoadError

SAMPLE_MODEL = Path(__file__).with_name("sample_roads.onnx")
SAMPLE_README = Path(__file__).with_name("sample_roads.md")


def sample_model_path() -> Path:
    """The path of the shipped sample model (raises `ModelLoadError` if the install lacks it)."""
    if not SAMPLE_MODEL.is_file():
        raise ModelLoadError(
            f"the sample model {SAMPLE_MODEL} is missing from this install; reinstall edgedet or "
            "rebuild it with: python recipes/build_sample.py"
        )
    return SAMPLE_MODEL
