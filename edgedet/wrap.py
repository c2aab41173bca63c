"""Build tiled / TTA / ensemble detectors from plain settings: what ``edgedet predict`` and
``edgedet bench`` (``--tiles``, ``--tta``, ``--ensemble``) and Python callers share.

    >>> from edgedet.wrap import ViewSettings, load_wrapped
    >>> det = load_wrapped("yolox_nano.onnx", ViewSettings(tiles="2x2"), family="yolox")

`load_wrapped` loads the model (and each ensemble member) through `edgedet.load`; when tiles or
TTA are asked for and the file is an ONNX model with a fixed batch of 1, it loads a dynamic-batch
copy instead (`edgedet.batching.batched_model_path`), so the views of a frame run in one runtime
call. A model whose graph cannot take a batch (NanoDet's export folds the batch away) runs its
views one by one; the wrapper says so, once, with the reason.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EdgedetError, IncompatibleModelError, InvalidInputError

log = logging.getLogger("edgedet")

#: Values of ``--tiles`` / ``--tta`` / ``--ensemble`` meaning "not this".
NONE_WORDS = ("none", "off", "no", "")


@dataclass(frozen=True)
class ViewSettings:
    """What to wrap a detector in. ``tiles``: a tile spec (``"2x2"``, ``"640px"``) or None;
    ``tta``: a ``--tta`` string (``"flip,ms"``) or None; ``ensemble``: other model files, each
    ``PATH`` or ``PATH:FAMILY`` (for files without edgedet meta), fused with the main model;
    ``one_by_one``: run the views in separate runtime calls (to measure what batching saves)."""

    tiles: str | None = None
    tile_overlap: float = 0.2
    full_frame: bool = True
    tile_merge: str = "nms"
    tta: str | None = None
    ensemble: tuple[str, ...] = field(default_factory=tuple)
    one_by_one: bool = False  # views in separate runtime calls even where a batch would do

    def __post_init__(self) -> None:
        tiles = None if self.tiles is None or self.tiles.strip().lower() in NONE_WORDS else self.tiles
        tta = None if self.tta is None or self.tta.strip().lower() in NONE_WORDS else self.tta
        object.__setattr__(self, "tiles", tiles)
        object.__setattr__(self, "tta", tta)
        object.__setattr__(
            self, "ensemble", tuple(m for m in self.ensemble if m.strip().lower() not in NONE_WORDS)
        )
        if tiles is not None and tta is not None:
            raise InvalidInputError(
                "--tiles and --tta together are not supported: choose one (tiles for small "
                "objects in large frames, TTA for flips and scales of the whole frame)"
            )
        if tiles is not None:
            from .tiles import parse_tiles

            parse_tiles(tiles, overlap=self.tile_overlap, full_frame=self.full_frame)
        if tta is not None:
            from .tta import parse_tta

            parse_tta(tta)

    @property
    def active(self) -> bool:
        return self.tiles is not None or self.tta is not None or bool(self.ensemble)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tiles": self.tiles,
            "tile_overlap": self.tile_overlap if self.tiles else None,
            "full_frame": self.full_frame if self.tiles else None,
            "tile_merge": self.tile_merge if self.tiles else None,
            "tta": self.tta,
            "ensemble": list(self.ensemble),
            "one_by_one": self.one_by_one,
        }


def split_member(spec: str) -> tuple[str, str | None]:
    """``PATH`` or ``PATH:FAMILY`` -> (path, family or None)."""
    from .decoders import family_names

    head, sep, tail = spec.rpartition(":")
    if sep and tail in family_names():
        return head, tail
    return spec, None


def load_batchable(
    model: str | Path, load: Callable[[str | Path], Any], *, want_batch: bool
) -> tuple[Any, str | None, Path | None]:
    """Load ``model`` with ``load``; with ``want_batch``, a dynamic-batch copy of a batch-1 ONNX
    file instead. Returns (detector, why the views cannot be batched or None, the copy's path or
    None)."""
    path = Path(model)
    if not want_batch or path.suffix.lower() != ".onnx":
        det = load(model)
        why = None
        if want_batch and getattr(det, "fixed_batch", None) == 1:
            why = f"{path.name} is not an ONNX file edgedet can give a batch axis"
        return det, why, None
    from .batching import batched_model_path, input_batch

    try:
        if input_batch(path) != 1:
            return load(model), None, None
        copy = batched_model_path(path)
    except IncompatibleModelError as err:
        return load(model), str(err), None
    log.info("views: using %s, a dynamic-batch copy of %s", copy, path)
    return load(copy), None, copy


def wrap(
    det: Any, settings: ViewSettings, *, why_sequential: str | None = None
) -> Any:
    """``det`` in a `TiledDetector` or `TTADetector` per ``settings`` (no ensemble here)."""
    if settings.tiles is not None:
        from .tiles import TiledDetector

        return TiledDetector(
            det,
            settings.tiles,
            overlap=settings.tile_overlap,
            full_frame=settings.full_frame,
            merge=settings.tile_merge,
            batch=False if settings.one_by_one else None,
            why_sequential=why_sequential,
        )
    if settings.tta is not None:
        from .tta import TTADetector, parse_tta

        return TTADetector(
            det,
            **parse_tta(settings.tta),
            batch=False if settings.one_by_one else None,
            why_sequential=why_sequential,
        )
    return det


def load_wrapped(
    model: str | Path,
    settings: ViewSettings,
    *,
    load: Callable[..., Any] | None = None,
    **load_kwargs: Any,
) -> Any:
    """Load ``model`` (``edgedet.load(model, **load_kwargs)``, or ``load(path, family=...)``)
    and wrap it per ``settings``; ensemble members get ``load_kwargs`` too, with their own
    ``family`` when given as ``PATH:FAMILY`` (members with edgedet meta use their own)."""
    from .detector import load as edgedet_load

    loader = load or edgedet_load
    views = settings.tiles is not None or settings.tta is not None
    extra = dict(load_kwargs)
    main_family = extra.pop("family", None)
    made: list[Any] = []
    try:
        specs: Sequence[tuple[str | Path, str | None]] = [
            (model, main_family),
            *(split_member(m) for m in settings.ensemble),
        ]
        for i, (path, family) in enumerate(specs):
            if i and not Path(path).is_file():
                raise InvalidInputError(f"--ensemble member not found: {path}")

            def one(p: str | Path, fam: str | None = family) -> Any:
                return loader(p, family=fam, **extra)

            det, why, _ = load_batchable(path, one, want_batch=views and not settings.one_by_one)
            if settings.one_by_one:
                why = "asked for (one_by_one / --views-one-by-one)"
            made.append(det)
            made[-1] = wrap(det, settings, why_sequential=why)
        if len(made) == 1:
            return made[0]
        from .tta import Ensemble

        return Ensemble(made)
    except EdgedetError:
        for d in made:
            d.close()
        raise


# -- command line ------------------------------------------------------------------------------


def add_view_arguments(p: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    """``--tiles``, ``--tile-overlap``, ``--no-full-frame``, ``--tile-merge``, ``--tta``,
    ``--ensemble``. With ``sweep`` (``edgedet bench``) ``--tiles`` / ``--tta`` / ``--ensemble``
    repeat as sweep axes, ``none`` standing for the plain model."""
    g = p.add_argument_group("tiles, test-time augmentation, ensembles")
    again = " (repeat to compare; 'none' = without)" if sweep else ""
    g.add_argument(
        "--tiles",
        action="append" if sweep else "store",
        default=None,
        metavar="SPEC",
        help="tiled inference: a grid COLSxROWS (2x2, 3x1) or a tile size Spx / WxHpx (640px), "
        "plus the full frame, as one batched call where the model allows" + again,
    )
    g.add_argument(
        "--tile-overlap",
        type=float,
        default=0.2,
        metavar="F",
        help="fraction of a tile side shared with its neighbour (default 0.2)",
    )
    g.add_argument(
        "--no-full-frame", action="store_true", help="tiles only, without the whole frame"
    )
    g.add_argument(
        "--tile-merge",
        choices=["nms", "ios", "wbf"],
        default="nms",
        help="how tiles' boxes are merged after cut boxes are resolved: nms (default); ios: nms, "
        "then another view's box mostly inside a kept one of its class dropped (fewer "
        "duplicates); wbf: weighted box fusion",
    )
    g.add_argument(
        "--views-one-by-one",
        action="store_true",
        help="also measure each tiled / TTA configuration with every view in its own runtime "
        "call (what batching saves)"
        if sweep
        else "run each tile / TTA view in its own runtime call, even where the model takes a "
        "batch",
    )
    g.add_argument(
        "--tta",
        action="append" if sweep else "store",
        default=None,
        metavar="SPEC",
        help="test-time augmentation, comma-separated: flip, ms (scales 1,0.83,0.67), scales in "
        "(0,1], and wbf (default) or nms as the merge; e.g. flip,ms" + again,
    )
    g.add_argument(
        "--ensemble",
        action="append",
        default=None,
        metavar="MODELS" if sweep else "MODEL",
        help=(
            "other model(s) fused with each --model by weighted box fusion: comma-separated "
            "PATH or PATH:FAMILY (files without edgedet meta)" + again
            if sweep
            else "another model fused with this one by weighted box fusion: PATH or "
            "PATH:FAMILY (files without edgedet meta); repeat for more"
        ),
    )


def settings_from_args(args: argparse.Namespace) -> ViewSettings:
    """The `ViewSettings` of ``edgedet predict``'s flags (single values)."""
    return ViewSettings(
        tiles=args.tiles,
        tile_overlap=args.tile_overlap,
        full_frame=not args.no_full_frame,
        tile_merge=args.tile_merge,
        tta=args.tta,
        ensemble=tuple(args.ensemble or ()),
        one_by_one=args.views_one_by_one,
    )


def load_from_args_wrapped(
    args: argparse.Namespace, model: str | Path, load_one: Callable[[argparse.Namespace, Any], Any]
) -> Any:
    """``edgedet predict``'s detector: ``load_one(args, path)`` (the plain loader), wrapped per
    the view flags; ensemble members get the same flags with their own ``--family``."""
    settings = settings_from_args(args)
    if not settings.active:
        return load_one(args, model)

    def loader(path: str | Path, family: str | None = None) -> Any:
        return load_one(argparse.Namespace(**{**vars(args), "family": family}), path)

    return load_wrapped(model, settings, load=loader, family=args.family)
