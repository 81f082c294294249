"""The cascade trainer's typed config and its command line (one ``--dashed`` flag per field).

Flags are made by :mod:`faceswap_pipeline.train.config` from :class:`CascadeTrainConfig` (help
texts are the fields' ``metadata["help"]``); an unset flag keeps the value of ``--config``'s JSON
file or the dataclass default. ``--export`` and ``--bf16`` are switches (``--no-bf16``). Kept by hand:
``--utk`` / ``--nonface`` (required), ``--no-channels-last``, ``--threshold-strata`` (``none`` =
pooled) and ``--steps-scale`` (not a field: it scales every net's step count).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from faceswap_pipeline.train import config

SIZES = {"12net": 12, "12cal": 12, "24net": 24, "24cal": 24, "48net": 48, "48cal": 48}
"""Input side (pixels) of each cascade member."""


@dataclass
class CascadeTrainConfig:
    """Everything that defines a cascade training run (saved as ``config.json`` in ``out``)."""

    utk: str = config.helped("", "UTKFace folder (the train/ folder of 200x200 chips)")
    nonface: str = config.helped("", "folder of non-face photos")
    out: str = config.helped("runs/cascade", "run folder (samples cache, checkpoints, logs)")
    weights_dir: str | None = config.helped(None, "weights folder to export to (default: the repository's weights/)")
    export: bool = config.helped(False, "write the trained nets to the weights folder + manifest")
    seed: int = 0
    threads: int | None = config.helped(None, "torch threads (default: torch's default)")
    max_minutes: float = config.helped(33.0, "total training time budget (split over the six nets)")
    n_faces: int = config.helped(0, "UTK faces used (0: all of the train split)")
    dev_faces: int = config.helped(600, "train-split chips held out to choose each level's threshold")
    window: tuple[float, float, float] = config.helped((92.5, 89.6, 173.0), "face window (cx, cy, side) in UTK chip pixels: dlib HOG's mean box")
    canvas: int = 144
    face_px: int = 64
    rot_prob: float = config.helped(0.6, "fraction of face chips rotated uniformly in +-rot-max (the rest: +-5 degrees)")
    rot_max: float = config.helped(40.0, "largest in-plane rotation of the face chips (degrees)")
    pos_per_face: int = 2
    cal_per_face: int = 2
    neg_per_face: int = 2
    neg_per_nonface: int = 40
    neg_big_per_nonface: int = 15
    grey_prob: float = config.helped(0.8, "fraction of training windows turned grey")
    steps: dict[str, int] = field(
        default_factory=lambda: {"12net": 8000, "12cal": 6000, "24net": 12000, "24cal": 6000, "48net": 8000, "48cal": 4000}
    )
    batch: dict[str, int] = field(
        default_factory=lambda: {"12net": 256, "12cal": 256, "24net": 192, "24cal": 192, "48net": 128, "48cal": 128}
    )
    minutes: dict[str, float] = field(
        default_factory=lambda: {"12net": 2.5, "12cal": 2.0, "24net": 8.0, "24cal": 3.5, "48net": 12.0, "48cal": 5.0}
    )
    lr: float = config.helped(2e-3, "peak learning rate")
    weight_decay: float = 1e-4
    pos_fraction: float = 0.35
    recall: tuple[float, float, float] = config.helped((0.99, 0.98, 0.95), "dev-face recall target of the 12-, 24- and 48-net thresholds")
    threshold_strata: tuple[float, ...] = (10.0, 25.0)
    threshold_strata_levels: tuple[int, ...] = config.helped((12, 24), "cascade levels whose threshold is stratified, the others pooled")
    mine_min_face: float = 24.0
    max_mined: int = 40000
    framing_faces: int = config.helped(400, "UTK chips used to fit the HOG framing")
    max_nonface: int = config.helped(0, "use only this many non-face photos (0: all; smoke tests)")
    nets: dict[str, dict[str, Any]] = field(default_factory=lambda: {"24net": {"width": 40, "hidden": 160}, "48net": {"width": 24, "hidden": 192}})
    channels_last: bool = True
    bf16: bool = config.helped(False, "bfloat16 autocast for the training forward/backward (weights, BatchNorm and the optimiser stay float32)")
    # ---- the colour retrain: extra negatives/backgrounds, real-photo positives, fine-tuning
    nonface_colour: str = config.helped("", "colour non-face photos: the train half (colour_data.half_split) is used as backgrounds, negatives and for mining")
    scenes: str = config.helped("", "more colour photos without (prominent) faces, all used like --nonface-colour's train half")
    fddb: str = config.helped("", "FDDB-style folder (images/, annotations/): its train half gives real-photo positives, face-free negatives and mined false positives")
    fddb_window: tuple[float, float, float] = config.helped((0.0, -0.12, 0.95), "FDDB box -> cascade window 'a,b,s': centre (cx + a w, cy + b h), side s w")
    fddb_pos_per_face: int = 8
    fddb_cal_per_face: int = 4
    fddb_neg_per_image: int = 40
    fddb_min_side: float = 16.0
    init: str = config.helped("", "weights folder to fine-tune from (same net widths)")
    jpeg_prob: float = config.helped(0.0, "fraction of face composites JPEG-compressed (quality 25-90)")
    occlude_prob: float = config.helped(0.0, "fraction of detection-net windows partly occluded")
    light_prob: float = config.helped(0.0, "fraction of windows side-lit (brightness ramp + gamma)")
    blur_prob: float = config.helped(0.0, "fraction of windows Gaussian-blurred")
    colour_repeat: int = config.helped(1, "each colour non-face photo counts this many times among the backgrounds and random negatives")


def _strata(text: str) -> tuple[float, ...]:
    """``"10,25"`` -> ``(10.0, 25.0)``; ``"none"`` or ``""`` -> ``()`` (pooled thresholds)."""
    return () if text.strip().lower() in ("", "none") else tuple(float(x) for x in text.split(","))


def build_parser() -> argparse.ArgumentParser:
    """The ``faceswap-pipeline train cascade`` flags (see the module docstring)."""
    p = argparse.ArgumentParser(prog="faceswap-pipeline train cascade", description="Train the CNN face-detection cascade.")
    p.add_argument("--utk", required=True, help=CascadeTrainConfig.__dataclass_fields__["utk"].metadata["help"])
    p.add_argument("--nonface", required=True, help=CascadeTrainConfig.__dataclass_fields__["nonface"].metadata["help"])
    p.add_argument("--no-channels-last", action="store_true", help="train in NCHW instead of channels_last (same maths, slower on CPU)")
    p.add_argument("--threshold-strata", type=_strata, default=None,
                   help="comma-separated |rotation| edges in degrees: each level's threshold keeps its recall target in every "
                        "rotation stratum of the dev faces (default 10,25; 'none': pooled)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every net's step count (smoke tests: 0.01)")
    p.add_argument("--config", default=None, help="JSON file of CascadeTrainConfig fields (flags override)")
    config.add_config_args(p, CascadeTrainConfig, skip=("utk", "nonface", "channels_last", "threshold_strata"), switches=("export", "bf16"))
    return p


def parse_config(argv: list[str] | None) -> CascadeTrainConfig:
    """The run's config from command-line flags (``--config`` JSON first, then the flags given).

    ``max_minutes`` is split over the six nets in proportion to ``minutes``; ``--steps-scale``
    multiplies every net's step count (at least 1 step each).
    """
    a = build_parser().parse_args(argv)
    base = config.config_from_json(CascadeTrainConfig, a.config, strict=False) if a.config else None
    cfg = config.config_from_args(a, CascadeTrainConfig, base)
    if a.no_channels_last:
        cfg.channels_last = False
    total = sum(cfg.minutes.values())
    cfg.minutes = {k: v * cfg.max_minutes / total for k, v in cfg.minutes.items()}
    cfg.steps = {k: max(1, int(round(v * a.steps_scale))) for k, v in cfg.steps.items()}
    return cfg


__all__ = ["SIZES", "CascadeTrainConfig", "build_parser", "parse_config"]
