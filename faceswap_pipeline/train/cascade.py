"""Train the CNN face-detection cascade (12/24/48 nets + calibration nets) with hard-negative mining.

Data (paths are arguments):

* **Positives**: UTKFace chips of the project's *train* split
  (:func:`faceswap_pipeline.train.splits.is_validation` is False). Each chip is flipped at random,
  rotated (60 % of them uniformly in +-40 degrees, the rest +-5), scaled so its face window is ``face_px`` pixels and
  pasted with a feathered edge onto a random non-face background (so windows see context and no
  chip border). The face window is the cascade's canonical square: centre/side of dlib HOG's mean
  box on UTKFace chips (``window`` in the config). From each composite: jittered face windows
  (detection positives), windows perturbed by random calibration patterns (calibration samples,
  label = pattern), and windows overlapping the face window by IoU < 0.3 (negatives, often parts
  of faces).
* **Negatives**: random windows of the non-face photos (90 % of them; every 10th is held out to
  measure false positives), then **hard negatives**: the 24-net trains on what the trained
  12-net + 12-cal let through on those photos, the 48-net on what 12 + 24 let through.
* A few hundred train-split chips are held out (``dev_faces``) to choose each level's threshold
  (recall targets) and report metrics. No CMU+MIT image is used.

All crops are made with the detector's own :func:`~faceswap_pipeline.ops.windows.crop_windows`.
Augmentation: random greyscale (CMU+MIT and the non-face set are grey), flips (detection nets),
contrast/brightness. Then the HOG-framing box transform is fitted on train-split chips (both
detectors on the same images) and everything is exported to ``weights/`` (fp16).

Run: ``python -m faceswap_pipeline.train.cascade --utk DIR --nonface DIR --threads 1 --export``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceswap_pipeline.ops.nms import N_CAL, box_iou, perturb
from faceswap_pipeline.ops.windows import crop_windows, octave_pyramid
from faceswap_pipeline.train.checkpoint import atomic_save

log = logging.getLogger(__name__)

SIZES = {"12net": 12, "12cal": 12, "24net": 24, "24cal": 24, "48net": 48, "48cal": 48}


@dataclass
class CascadeTrainConfig:
    """Everything that defines a cascade training run (saved as ``config.json`` in ``out``)."""

    utk: str = ""
    nonface: str = ""
    out: str = "runs/cascade"
    weights_dir: str | None = None
    export: bool = False
    seed: int = 0
    threads: int | None = None
    max_minutes: float = 33.0
    n_faces: int = 0
    dev_faces: int = 600
    window: tuple[float, float, float] = (92.5, 89.6, 173.0)
    canvas: int = 144
    face_px: int = 64
    rot_prob: float = 0.6
    rot_max: float = 40.0
    pos_per_face: int = 2
    cal_per_face: int = 2
    neg_per_face: int = 2
    neg_per_nonface: int = 40
    neg_big_per_nonface: int = 15
    grey_prob: float = 0.8
    steps: dict[str, int] = field(
        default_factory=lambda: {"12net": 8000, "12cal": 6000, "24net": 12000, "24cal": 6000, "48net": 8000, "48cal": 4000}
    )
    batch: dict[str, int] = field(
        default_factory=lambda: {"12net": 256, "12cal": 256, "24net": 192, "24cal": 192, "48net": 128, "48cal": 128}
    )
    minutes: dict[str, float] = field(
        default_factory=lambda: {"12net": 2.5, "12cal": 2.0, "24net": 8.0, "24cal": 3.5, "48net": 12.0, "48cal": 5.0}
    )
    lr: float = 2e-3
    weight_decay: float = 1e-4
    pos_fraction: float = 0.35
    recall: tuple[float, float, float] = (0.99, 0.98, 0.95)
    threshold_strata: tuple[float, ...] = (10.0, 25.0)
    threshold_strata_levels: tuple[int, ...] = (12, 24)
    mine_min_face: float = 24.0
    max_mined: int = 40000
    framing_faces: int = 400
    max_nonface: int = 0
    nets: dict[str, dict[str, Any]] = field(default_factory=lambda: {"24net": {"width": 40, "hidden": 160}, "48net": {"width": 24, "hidden": 192}})
    channels_last: bool = True
    bf16: bool = False
    # ---- colour (issue 15): extra negatives/backgrounds, real-photo positives, fine-tuning
    nonface_colour: str = ""
    """colour non-face photos: the train half (:func:`colour_data.half_split`) is used as backgrounds, negatives and for mining"""
    scenes: str = ""
    """more colour photos without (prominent) faces, all used like ``nonface_colour``'s train half"""
    fddb: str = ""
    """FDDB-style folder (images/, annotations/): train half only: face-free windows and mined false positives as negatives, faces as positives"""
    fddb_window: tuple[float, float, float] = (0.0, -0.12, 0.95)
    """FDDB box -> cascade window: centre ``(cx + a w, cy + b h)``, side ``s w`` (w, h: the FDDB box)"""
    fddb_pos_per_face: int = 8
    fddb_cal_per_face: int = 4
    fddb_neg_per_image: int = 40
    fddb_min_side: float = 16.0
    init: str = ""
    """weights folder to start from (fine-tuning; the nets' kwargs must match)"""
    jpeg_prob: float = 0.0
    occlude_prob: float = 0.0
    light_prob: float = 0.0
    blur_prob: float = 0.0
    colour_repeat: int = 1
    """each colour non-face photo counts this many times among the backgrounds and random negatives"""


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB (grey images replicated)."""
    import imageio.v3 as iio

    a = np.asarray(iio.imread(path))
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3]).astype(np.uint8)


def utk_train_files(utk_dir: str) -> list[Path]:
    """Sorted UTKFace files of the project's train split (validation faces excluded)."""
    from faceswap_pipeline.train.splits import is_validation

    files = sorted(p for p in Path(utk_dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [p for p in files if not is_validation(p.name)]


def nonface_files(nonface_dir: str) -> tuple[list[Path], list[Path]]:
    """(train, held-out) non-face images: every 10th sorted file is held out."""
    files = sorted(p for p in Path(nonface_dir).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".pgm", ".bmp"))
    return [p for i, p in enumerate(files) if i % 10], [p for i, p in enumerate(files) if i % 10 == 0]


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0


def _feather_alpha(h: int, w: int, frac: float = 0.07) -> torch.Tensor:
    m = max(1.0, frac * min(h, w))
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    ay = torch.clamp(torch.minimum(ys, h - ys) / m, 0, 1)
    ax = torch.clamp(torch.minimum(xs, w - xs) / m, 0, 1)
    return (ay[:, None] * ax[None, :])[None]


def composite(
    chip: torch.Tensor, bg: torch.Tensor, window: tuple[float, float, float], face_px: float, canvas: int, angle_deg: float, offset: tuple[float, float], rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a face chip onto a background so its face window is a ``face_px`` square.

    Args:
        chip: ``(3, h, w)`` float in [0, 1]. bg: ``(3, H, W)`` background (any size >= 8).
        window: ``(cx, cy, side)`` of the face window in chip pixels.
        angle_deg: in-plane rotation of the face about the window centre.
        offset: window centre offset from the canvas centre (pixels).

    Returns:
        ``(canvas (3, C, C), face_box (4,))`` with the box xyxy in canvas pixels.
    """
    cx, cy, side = window
    f = face_px / side
    _, h, w = chip.shape
    # antialiased downscale first, then a near-1:1 rotation warp
    sh, sw = max(8, round(h * f)), max(8, round(w * f))
    small = F.interpolate(chip[None], size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)[0]
    alpha = _feather_alpha(sh, sw)
    src = torch.cat([small, alpha], 0)[None]
    fy, fx = sh / h, sw / w
    ccx, ccy = cx * fx, cy * fy  # window centre in the small chip
    tcx, tcy = canvas / 2 + offset[0], canvas / 2 + offset[1]
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)
    # canvas pixel p -> small-chip coordinate q = R^-1 (p - t) + c
    ys = torch.arange(canvas, dtype=torch.float32) + 0.5
    xs = torch.arange(canvas, dtype=torch.float32) + 0.5
    gy, gx = torch.meshgrid(ys - tcy, xs - tcx, indexing="ij")
    qx = ca * gx + sa * gy + ccx
    qy = -sa * gx + ca * gy + ccy
    grid = torch.stack([qx / sw * 2 - 1, qy / sh * 2 - 1], -1)[None]
    warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    # background: random crop at a random scale, resized to the canvas
    _, bh, bw = bg.shape
    crop = int(min(bh, bw) * rng.uniform(0.3, 1.0))
    crop = max(8, crop)
    y0 = int(rng.integers(0, bh - crop + 1))
    x0 = int(rng.integers(0, bw - crop + 1))
    back = F.interpolate(bg[None, :, y0 : y0 + crop, x0 : x0 + crop], size=(canvas, canvas), mode="bilinear", antialias=True, align_corners=False)[0]
    back = back * torch.tensor(rng.uniform(0.85, 1.15, 3), dtype=torch.float32)[:, None, None]  # random tint
    al = warped[3:4]
    out = (warped[:3] * al + back * (1 - al)).clamp(0, 1)
    half = face_px / 2
    return out, torch.tensor([tcx - half, tcy - half, tcx + half, tcy + half], dtype=torch.float32)


def _jitter(boxes: torch.Tensor, g: torch.Generator, shift: float, scale: tuple[float, float]) -> torch.Tensor:
    n = boxes.shape[0]
    side = boxes[:, 2] - boxes[:, 0]
    c = (boxes[:, :2] + boxes[:, 2:]) / 2 + (torch.rand(n, 2, generator=g) * 2 - 1) * shift * side[:, None]
    lo, hi = math.log(scale[0]), math.log(scale[1])
    s = side * torch.exp(lo + torch.rand(n, generator=g) * (hi - lo))
    return torch.cat([c - s[:, None] / 2, c + s[:, None] / 2], 1)


def _random_negatives(face: torch.Tensor, canvas: int, k: int, g: torch.Generator) -> torch.Tensor:
    """``k`` square windows per face box with IoU < 0.3 (rejection sampling). (N*k, 4)."""
    n = face.shape[0]
    out = torch.zeros((n, k, 4))
    todo = torch.ones((n, k), dtype=torch.bool)
    side0 = (face[:, 2] - face[:, 0])[:, None].expand(n, k)
    for _ in range(50):
        s = side0 * torch.exp(math.log(0.4) + torch.rand(n, k, generator=g) * (math.log(1.3) - math.log(0.4)))
        x = torch.rand(n, k, generator=g) * (canvas - s * 0.7).clamp_min(1) - s * 0.15
        y = torch.rand(n, k, generator=g) * (canvas - s * 0.7).clamp_min(1) - s * 0.15
        b = torch.stack([x, y, x + s, y + s], -1)
        iou = torch.stack([box_iou(b[i], face[i : i + 1])[:, 0] for i in range(n)])
        ok = (iou < 0.3) & todo
        out[ok] = b[ok]
        todo &= ~ok
        if not todo.any():
            break
    return out.reshape(-1, 4)


def _q(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def _crop_all(canvases: torch.Tensor, idx: torch.Tensor, boxes: torch.Tensor, sizes: tuple[int, ...] = (12, 24, 48)) -> dict[int, torch.Tensor]:
    pyr = octave_pyramid(canvases)
    return {s: _q(crop_windows(pyr, idx, boxes, s)) for s in sizes}


def face_samples(files: list[Path], bgs: list[torch.Tensor], cfg: CascadeTrainConfig, seed: int) -> dict[str, torch.Tensor]:
    """Positive, calibration and composite-negative crops (uint8) from UTK chips. See module doc."""
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list[torch.Tensor]] = {}
    chunk = 128
    t0 = time.time()
    for start in range(0, len(files), chunk):
        canv, faces, angles = [], [], []
        for p in files[start : start + chunk]:
            chip = _to_tensor(read_rgb(p))
            if rng.random() < 0.5:
                chip = chip.flip(-1)
                window = (chip.shape[2] - cfg.window[0], cfg.window[1], cfg.window[2])
            else:
                window = tuple(cfg.window)
            ang = rng.uniform(-cfg.rot_max, cfg.rot_max) if rng.random() < cfg.rot_prob else rng.uniform(-5, 5)
            off = tuple(rng.uniform(-12, 12, 2))
            bg = bgs[int(rng.integers(len(bgs)))]
            c, fb = composite(chip, bg, window, cfg.face_px, cfg.canvas, ang, off, rng)  # type: ignore[arg-type]
            if cfg.jpeg_prob > 0 and rng.random() < cfg.jpeg_prob:
                from faceswap_pipeline.train.degrade import jpeg

                c = jpeg(c[None], int(rng.integers(25, 90)))[0]
            canv.append(c)
            faces.append(fb)
            angles.append(ang)
        C = torch.stack(canv)
        FB = torch.stack(faces)
        n = C.shape[0]
        ar = torch.arange(n)
        # detection positives: jitter within what the 12-net's grid + calibration must absorb
        pi = ar.repeat_interleave(cfg.pos_per_face)
        pb = _jitter(FB[pi], g, 0.08, (0.87, 1.15))
        # calibration samples: window perturbed by pattern n (plus a tiny jitter)
        ci = ar.repeat_interleave(cfg.cal_per_face)
        cl = torch.randint(0, N_CAL, (ci.shape[0],), generator=g)
        cb = perturb(_jitter(FB[ci], g, 0.015, (0.985, 1.015)), cl)
        ni = ar.repeat_interleave(cfg.neg_per_face)
        nb = _random_negatives(FB, cfg.canvas, cfg.neg_per_face, g)
        for key, (ii, bb) in {"pos": (pi, pb), "cal": (ci, cb), "neg": (ni, nb)}.items():
            for s, t in _crop_all(C, ii, bb).items():
                out.setdefault(f"{key}{s}", []).append(t)
        out.setdefault("cal_label", []).append(cl)
        out.setdefault("pos_angle", []).append(torch.tensor(angles, dtype=torch.float32)[pi])
        if (start // chunk) % 20 == 0:
            log.info("face samples %d/%d (%.0f s)", start + n, len(files), time.time() - t0)
    return {k: torch.cat(v) for k, v in out.items()}


def nonface_samples(bgs: list[torch.Tensor], cfg: CascadeTrainConfig, seed: int) -> dict[str, torch.Tensor]:
    """Random windows of the non-face photos: ``neg12`` for all, ``neg24``/``neg48`` for a subset."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list[torch.Tensor]] = {}
    for bg in bgs:
        _, h, w = bg.shape
        k = cfg.neg_per_nonface
        lo, hi = math.log(12), math.log(max(13, min(h, w)))
        s = torch.exp(lo + torch.rand(k, generator=g) * (hi - lo))
        x = torch.rand(k, generator=g) * (w - s).clamp_min(0)
        y = torch.rand(k, generator=g) * (h - s).clamp_min(0)
        b = torch.stack([x, y, x + s, y + s], 1)
        pyr = octave_pyramid(bg[None])
        idx = torch.zeros(k, dtype=torch.long)
        out.setdefault("neg12", []).append(_q(crop_windows(pyr, idx, b, 12)))
        kb = cfg.neg_big_per_nonface
        out.setdefault("neg24", []).append(_q(crop_windows(pyr, idx[:kb], b[:kb], 24)))
        out.setdefault("neg48", []).append(_q(crop_windows(pyr, idx[:kb], b[:kb], 48)))
    return {k: torch.cat(v) for k, v in out.items()}


def mine(detector: Any, bgs: list[torch.Tensor], stages: int, sizes: tuple[int, ...], limit: int, seed: int) -> dict[int, torch.Tensor]:
    """Windows the first ``stages`` cascade levels accept on non-face photos (all are false positives)."""
    from faceswap_pipeline.stages.detect_cascade import images_to_batch

    crops: dict[int, list[torch.Tensor]] = {s: [] for s in sizes}
    total = 0
    with torch.inference_mode():
        for bg in bgs:
            img = (bg.permute(1, 2, 0) * 255).round().byte().numpy()
            batch, shapes = images_to_batch([img])
            cand = detector.raw_detect(batch, shapes, stages=stages)
            if len(cand) == 0:
                continue
            pyr = octave_pyramid(batch)
            for s in sizes:
                crops[s].append(_q(crop_windows(pyr, cand.image, cand.boxes, s)))
            total += len(cand)
    out = {s: torch.cat(v) if v else torch.zeros((0, 3, s, s), dtype=torch.uint8) for s, v in crops.items()}
    if total > limit:
        g = torch.Generator().manual_seed(seed)
        sel = torch.randperm(total, generator=g)[:limit]
        out = {s: v[sel] for s, v in out.items()}
    log.info("mined %d false positives after %d stage(s) on %d photos (kept %d)", total, stages, len(bgs), min(total, limit))
    return out


def fddb_windows(faces: np.ndarray, cfg: CascadeTrainConfig) -> torch.Tensor:
    """Cascade windows (square, xyxy) of FDDB face boxes (``cfg.fddb_window``: centre shift, side)."""
    a, b, s = cfg.fddb_window
    f = torch.as_tensor(faces, dtype=torch.float32).reshape(-1, 4)
    w, h = f[:, 2] - f[:, 0], f[:, 3] - f[:, 1]
    cx, cy = (f[:, 0] + f[:, 2]) / 2 + a * w, (f[:, 1] + f[:, 3]) / 2 + b * h
    side = s * w
    return torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)


def fddb_samples(items: list[tuple[Path, np.ndarray]], cfg: CascadeTrainConfig, seed: int) -> dict[str, torch.Tensor]:
    """Real-photo positives, calibration samples and face-free negatives from FDDB train-half photos.

    Positives: each annotated face (window side >= ``fddb_min_side``) mapped to the cascade window,
    jittered like the composites' positives, cropped by the detector's own window crop (zero padding
    past the photo, as at inference). Negatives: random windows overlapping no (enlarged) face box.
    """
    from faceswap_pipeline.train.colour_data import face_free_windows, read_rgb

    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list[torch.Tensor]] = {}
    for p, faces in items:
        img = _to_tensor(read_rgb(p))
        pyr = octave_pyramid(img[None])
        win = fddb_windows(faces, cfg)
        win = win[(win[:, 2] - win[:, 0]) >= cfg.fddb_min_side]
        if len(win):
            n = win.shape[0]
            pi = torch.arange(n).repeat_interleave(cfg.fddb_pos_per_face)
            pb = _jitter(win[pi], g, 0.08, (0.87, 1.15))
            ci = torch.arange(n).repeat_interleave(cfg.fddb_cal_per_face)
            cl = torch.randint(0, N_CAL, (ci.shape[0],), generator=g)
            cb = perturb(_jitter(win[ci], g, 0.015, (0.985, 1.015)), cl)
            for s in (12, 24, 48):
                out.setdefault(f"pos{s}", []).append(_q(crop_windows(pyr, torch.zeros(len(pb), dtype=torch.long), pb, s)))
                out.setdefault(f"cal{s}", []).append(_q(crop_windows(pyr, torch.zeros(len(cb), dtype=torch.long), cb, s)))
            out.setdefault("cal_label", []).append(cl)
        nb = torch.as_tensor(face_free_windows(tuple(img.shape[1:]), faces, cfg.fddb_neg_per_image, rng), dtype=torch.float32)
        if len(nb):
            for s in (12, 24, 48):
                out.setdefault(f"neg{s}", []).append(_q(crop_windows(pyr, torch.zeros(len(nb), dtype=torch.long), nb, s)))
    res = {k: torch.cat(v) for k, v in out.items()}
    log.info("FDDB samples from %d photos: %s", len(items), {k: tuple(v.shape) for k, v in res.items()})
    return res


def face_free(boxes: torch.Tensor, faces: np.ndarray, grow: float = 1.3, max_iou: float = 0.05) -> torch.Tensor:
    """Mask of candidate windows that overlap no annotated face (enlarged by ``grow``) and are not centred in one."""
    if len(faces) == 0 or len(boxes) == 0:
        return torch.ones(len(boxes), dtype=torch.bool)
    f = torch.as_tensor(faces, dtype=torch.float32).reshape(-1, 4)
    c = (f[:, :2] + f[:, 2:]) / 2
    half = (f[:, 2:] - f[:, :2]) * grow / 2
    big = torch.cat([c - half, c + half], 1)
    iou = box_iou(boxes.float(), big)
    bc = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = (bc[:, None, 0] >= big[None, :, 0]) & (bc[:, None, 0] <= big[None, :, 2]) & (bc[:, None, 1] >= big[None, :, 1]) & (bc[:, None, 1] <= big[None, :, 3])
    return (iou.max(1).values <= max_iou) & ~inside.any(1)


def mine_photos(detector: Any, items: list[tuple[Path, np.ndarray]], stages: int, sizes: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """Windows the first ``stages`` levels accept on photos *with* faces, away from every annotated face."""
    from faceswap_pipeline.stages.detect_cascade import images_to_batch
    from faceswap_pipeline.train.colour_data import read_rgb

    crops: dict[int, list[torch.Tensor]] = {s: [] for s in sizes}
    total = 0
    with torch.inference_mode():
        for p, faces in items:
            batch, shapes = images_to_batch([read_rgb(p)])
            cand = detector.raw_detect(batch, shapes, stages=stages)
            if len(cand) == 0:
                continue
            keep = face_free(cand.boxes, faces)
            if not keep.any():
                continue
            pyr = octave_pyramid(batch)
            for s in sizes:
                crops[s].append(_q(crop_windows(pyr, cand.image[keep], cand.boxes[keep], s)))
            total += int(keep.sum())
    log.info("mined %d face-free false positives after %d stage(s) on %d photos with faces", total, stages, len(items))
    return {s: torch.cat(v) if v else torch.zeros((0, 3, s, s), dtype=torch.uint8) for s, v in crops.items()}


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------

_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def augment(
    x: torch.Tensor, g: torch.Generator, grey_prob: float, flip: bool, lowres_prob: float = 0.3,
    occlude_prob: float = 0.0, light_prob: float = 0.0, blur_prob: float = 0.0,
) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float [0, 1] with random flip, greyscale, low resolution (small faces
    seen through a larger window: down- then up-sampled), contrast, brightness and noise; optionally
    (colour recipe) Gaussian blur, a side-lit brightness ramp with a gamma change, and an occluding
    rectangle (flat colour or another sample of the batch) over up to a third of the window."""
    x = x.float() / 255.0
    b, _, size, _ = x.shape
    if blur_prob > 0:
        m = torch.rand(b, generator=g) < blur_prob
        if m.any():
            sigma = size / 48 * (0.5 + 1.5 * float(torch.rand(1, generator=g)))
            r = max(1, int(math.ceil(2.5 * sigma)))
            t = torch.arange(-r, r + 1, dtype=torch.float32)
            k = torch.exp(-0.5 * (t / sigma) ** 2)
            k = k / k.sum()
            xm = F.pad(x[m], (r, r, r, r), mode="replicate")
            xm = F.conv2d(xm, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
            x[m] = F.conv2d(xm, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    if light_prob > 0:
        m = (torch.rand(b, generator=g) < light_prob).float().view(b, 1, 1, 1)
        ang = torch.rand(b, generator=g) * 2 * math.pi
        lin = torch.linspace(-1, 1, size)
        ramp = torch.cos(ang).view(b, 1, 1, 1) * lin.view(1, 1, 1, -1) + torch.sin(ang).view(b, 1, 1, 1) * lin.view(1, 1, -1, 1)
        strength = 0.5 * torch.rand(b, 1, 1, 1, generator=g)
        gamma = torch.exp((torch.rand(b, 1, 1, 1, generator=g) - 0.5) * 0.8)
        lit = (x.clamp_min(1e-4) ** gamma) * (1 + strength * ramp)
        x = m * lit + (1 - m) * x
    if occlude_prob > 0:
        m = torch.nonzero(torch.rand(b, generator=g) < occlude_prob).squeeze(1).tolist()
        for i in m:
            ow = int(size * (0.2 + 0.35 * float(torch.rand(1, generator=g))))
            oh = int(size * (0.2 + 0.35 * float(torch.rand(1, generator=g))))
            side = int(torch.randint(0, 4, (1,), generator=g))  # occluder enters from one side
            y0 = int(torch.randint(0, size - oh + 1, (1,), generator=g)) if side < 2 else (0 if side == 2 else size - oh)
            x0 = (0 if side == 0 else size - ow) if side < 2 else int(torch.randint(0, size - ow + 1, (1,), generator=g))
            j = int(torch.randint(0, b, (1,), generator=g))
            if float(torch.rand(1, generator=g)) < 0.5:
                x[i, :, y0 : y0 + oh, x0 : x0 + ow] = torch.rand(3, 1, 1, generator=g)
            else:
                x[i, :, y0 : y0 + oh, x0 : x0 + ow] = x[j, :, y0 : y0 + oh, x0 : x0 + ow].clone()
    if size > 12 and lowres_prob > 0:
        m = torch.rand(b, generator=g) < lowres_prob
        if m.any():
            r = max(8, int(round(size * (0.3 + 0.6 * float(torch.rand(1, generator=g))))))
            small = F.interpolate(x[m], size=(r, r), mode="bilinear", antialias=True, align_corners=False)
            x[m] = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    if flip:
        m = torch.rand(b, generator=g) < 0.5
        x[m] = x[m].flip(-1)
    m = torch.rand(b, generator=g) < grey_prob
    if m.any():
        x[m] = (x[m] * _LUMA).sum(1, keepdim=True).expand(-1, 3, -1, -1)
    # mild random colour cast on everything, so colour (the non-face photos are grey) is no cue
    x = x * (0.9 + 0.2 * torch.rand(b, 3, 1, 1, generator=g))
    mean = x.mean((1, 2, 3), keepdim=True)
    c = 0.6 + 0.8 * torch.rand(b, 1, 1, 1, generator=g)
    br = (torch.rand(b, 1, 1, 1, generator=g) - 0.5) * 0.3
    noise = torch.randn(x.shape, generator=g) * (0.03 * torch.rand(b, 1, 1, 1, generator=g))
    return ((x - mean) * c + mean + br + noise).clamp(0, 1)


def train_net(
    name: str, net: nn.Module, data: dict[str, torch.Tensor], cfg: CascadeTrainConfig, seed: int, writer: Any = None
) -> dict[str, Any]:
    """Train one member. Detection nets: ``data["pos"], data["neg"]``; calibration: ``data["x"], data["y"]``."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    steps, bs = cfg.steps[name], cfg.batch[name]
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    is_cal = name.endswith("cal")
    net.train()
    t0 = time.time()
    budget = cfg.minutes[name] * 60
    loss_ema, acc_ema = None, None
    done = 0
    # NHWC is a pure layout change (same maths); oneDNN's CPU convolutions on these 3-channel
    # windows run ~2x faster that way (24-net forward+backward, batch 192: 42 -> 23 ms, one thread)
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    for step in range(steps):
        # cosine over the run's progress: steps done or time budget used, whichever is further, so a
        # run cut short by its budget (a loaded machine) still ends annealed
        progress = min(1.0, max(step / steps, (time.time() - t0) / budget if budget > 0 else 0.0))
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
        for grp in opt.param_groups:
            grp["lr"] = lr
        if is_cal:
            i = torch.randint(0, data["x"].shape[0], (bs,), generator=g)
            x = augment(data["x"][i], g, cfg.grey_prob, flip=False, light_prob=cfg.light_prob, blur_prob=cfg.blur_prob)
            y = data["y"][i]
        else:
            npos = int(bs * cfg.pos_fraction)
            ip = torch.randint(0, data["pos"].shape[0], (npos,), generator=g)
            ineg = torch.randint(0, data["neg"].shape[0], (bs - npos,), generator=g)
            x = augment(torch.cat([data["pos"][ip], data["neg"][ineg]]), g, cfg.grey_prob, flip=True,
                        occlude_prob=cfg.occlude_prob, light_prob=cfg.light_prob, blur_prob=cfg.blur_prob)
            y = torch.cat([torch.ones(npos, dtype=torch.long), torch.zeros(bs - npos, dtype=torch.long)])
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = net(x).float()
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = float((logits.argmax(1) == y).float().mean())
        lv = loss.item()
        loss_ema = lv if loss_ema is None else 0.98 * loss_ema + 0.02 * lv
        acc_ema = acc if acc_ema is None else 0.98 * acc_ema + 0.02 * acc
        done = step + 1
        if writer is not None and step % 50 == 0:
            writer.add_scalar(f"{name}/loss", lv, step)
            writer.add_scalar(f"{name}/acc", acc, step)
        if step % 200 == 0:
            log.info("%s step %d/%d loss %.4f acc %.3f lr %.2e (%.0f s)", name, step, steps, loss_ema, acc_ema, lr, time.time() - t0)
        if time.time() - t0 > budget:
            log.warning("%s: time budget %.1f min reached at step %d/%d", name, cfg.minutes[name], step + 1, steps)
            break
    net.to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors
    net.eval()
    return {"steps": done, "wall_time_s": round(time.time() - t0, 1), "train_loss_ema": round(loss_ema or 0, 4), "train_acc_ema": round(acc_ema or 0, 4)}


@torch.inference_mode()
def face_prob(net: nn.Module, x: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Face probability of uint8 crops (B, 3, S, S)."""
    net.eval()
    return torch.cat([net.face_prob(x[i : i + chunk].float() / 255.0) for i in range(0, x.shape[0], chunk)])


@torch.inference_mode()
def cal_accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    p = torch.cat([net.probs(x[i : i + 2048].float() / 255.0) for i in range(0, x.shape[0], 2048)])
    return float((p.argmax(1) == y).float().mean())


@torch.inference_mode()
def dev_face_prob(net: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:  # noqa: D401
    """Face probability of held-out positives converted to greyscale (with the training's
    contrast/brightness/noise jitter).

    Thresholds are set on these (not on the colour crops) so each level keeps its recall target on
    grey photos too (the nets are least sure of grey faces); nothing outside the UTKFace train split
    is looked at.
    """
    g = torch.Generator().manual_seed(seed)
    net.eval()
    out = []
    for i in range(0, x.shape[0], 1024):
        out.append(net.face_prob(augment(x[i : i + 1024], g, grey_prob=1.0, flip=True, lowres_prob=0.0)))
    return torch.cat(out)


def threshold_for_recall(p: torch.Tensor, recall: float) -> float:
    """Largest threshold keeping ``recall`` of the positives' probabilities ``p`` above it."""
    q = torch.quantile(p.float(), 1 - recall)
    return float(max(0.01, min(0.99, float(q) - 1e-4)))


def threshold_for_recall_strata(p: torch.Tensor, angle: torch.Tensor, recall: float, edges: tuple[float, ...], min_count: int = 20) -> tuple[float, dict[str, float]]:
    """Largest threshold keeping ``recall`` of the positives of *every* rotation stratum.

    Strata are ``|angle|`` in ``[0, e1), [e1, e2), ..., [e_last, inf)`` (degrees); strata with
    fewer than ``min_count`` positives are ignored. Returns the threshold (the smallest of the
    per-stratum ones, so no orientation keeps less than ``recall``) and the per-stratum thresholds.
    """
    bounds = [0.0, *(float(e) for e in edges), float("inf")]
    a = angle.abs()
    per: dict[str, float] = {}
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        m = (a >= lo) & (a < hi)
        if int(m.sum()) >= min_count:
            per[f"{lo:g}-{hi:g}"] = threshold_for_recall(p[m], recall)
    if not per:
        return threshold_for_recall(p, recall), per
    return min(per.values()), per


# --------------------------------------------------------------------------------------------
# HOG framing
# --------------------------------------------------------------------------------------------


def fit_framing(detector: Any, files: list[Path], bgs: list[torch.Tensor], cfg: CascadeTrainConfig, seed: int) -> dict[str, Any]:
    """Fit the cascade-window -> HOG-box transform on UTKFace train chips (both detectors, same images).

    Each chip is pasted unscaled in the middle of a non-face background (400 x 400) so both
    detectors see context. Pairs: every HOG box matched to the cascade box of highest IoU (> 0.3).
    Least squares per coordinate, relative to the cascade window: ``cx_h - cx_c = ax w_c``,
    ``cy_h - cy_c = ay h_c`` (offsets: mean), ``w_h = sw w_c``, ``h_h = sh h_c`` (through the origin).
    """
    from faceswap_pipeline.stages.detect_hog import HogDetector

    hog = HogDetector(upsample=0)
    rng = np.random.default_rng(seed)
    pairs = []
    for p in files:
        chip = _to_tensor(read_rgb(p))
        bg = bgs[int(rng.integers(len(bgs)))]
        canvas, _ = composite(chip, bg, tuple(cfg.window), cfg.window[2], 400, 0.0, (0.0, 0.0), rng)  # type: ignore[arg-type]
        img = (canvas.permute(1, 2, 0) * 255).round().byte().numpy()
        hd = hog.detect(img)
        cd = detector.detect(img)
        if not hd or not cd:
            continue
        hb = torch.tensor([hd[0].box], dtype=torch.float32)
        cb = torch.tensor([d.box for d in cd], dtype=torch.float32)
        iou = box_iou(hb, cb)[0]
        j = int(iou.argmax())
        if float(iou[j]) > 0.3:
            pairs.append((hb[0], cb[j]))
    if len(pairs) < 10:
        log.warning("only %d HOG/cascade pairs: framing left at identity", len(pairs))
        return {"ax": 0.0, "ay": 0.0, "sw": 1.0, "sh": 1.0, "pairs": len(pairs)}
    H = torch.stack([a for a, _ in pairs]).double()
    C = torch.stack([b for _, b in pairs]).double()
    hc, hw = (H[:, :2] + H[:, 2:]) / 2, H[:, 2:] - H[:, :2]
    cc, cw = (C[:, :2] + C[:, 2:]) / 2, C[:, 2:] - C[:, :2]
    ax = float(((hc[:, 0] - cc[:, 0]) / cw[:, 0]).mean())
    ay = float(((hc[:, 1] - cc[:, 1]) / cw[:, 1]).mean())
    sw = float((hw[:, 0] * cw[:, 0]).sum() / (cw[:, 0] ** 2).sum())
    sh = float((hw[:, 1] * cw[:, 1]).sum() / (cw[:, 1] ** 2).sum())
    fr = {"ax": ax, "ay": ay, "sw": sw, "sh": sh}
    from faceswap_pipeline.ops.framing import apply_framing

    mapped = apply_framing(C.float(), fr)
    before = float(box_iou(C.float(), H.float()).diagonal().mean())
    after = float(box_iou(mapped, H.float()).diagonal().mean())
    log.info("framing fit on %d pairs: %s (mean IoU with HOG %.3f -> %.3f)", len(pairs), fr, before, after)
    return {**{k: round(v, 5) for k, v in fr.items()}, "pairs": len(pairs), "mean_iou_before": round(before, 4), "mean_iou_after": round(after, 4)}


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------


def build_nets(cfg: CascadeTrainConfig) -> dict[str, nn.Module]:
    import faceswap_pipeline.archs  # noqa: F401
    from faceswap_pipeline.archs.cascade import NETS
    from faceswap_pipeline.registry import ARCHS

    return {m: ARCHS.get(NETS[m])(**cfg.nets.get(m, {})) for m in NETS}


def _load_bgs(files: list[Path]) -> list[torch.Tensor]:
    return [_to_tensor(read_rgb(p)) for p in files]


def run(cfg: CascadeTrainConfig, argv: list[str] | None = None) -> dict[str, Any]:
    """Generate samples, train the six nets in order with mining, fit framing, optionally export."""
    from faceswap_pipeline.stages.detect_cascade import CascadeDetector, images_to_batch

    t_start = time.time()
    out = Path(cfg.out)
    (out / "ckpt").mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    writer = None
    try:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    except Exception as e:  # tensorboard optional
        log.warning("no TensorBoard: %s", e)

    files = utk_train_files(cfg.utk)
    perm = np.random.default_rng(cfg.seed).permutation(len(files))
    dev_files = [files[i] for i in perm[: cfg.dev_faces]]
    train_files = [files[i] for i in perm[cfg.dev_faces : cfg.dev_faces + cfg.n_faces]] if cfg.n_faces else [files[i] for i in perm[cfg.dev_faces :]]
    nf_train, nf_hold = nonface_files(cfg.nonface)
    if cfg.max_nonface:
        nf_train, nf_hold = nf_train[: cfg.max_nonface], nf_hold[: max(1, cfg.max_nonface // 9)]
    log.info("UTK train split: %d files (%d train, %d dev); non-face: %d train, %d held out", len(files), len(train_files), len(dev_files), len(nf_train), len(nf_hold))
    bgs = _load_bgs(nf_train)
    mine_bgs = list(bgs)
    colour_files: list[Path] = []
    if cfg.nonface_colour or cfg.scenes:
        from faceswap_pipeline.train.colour_data import half_split, image_files

        if cfg.nonface_colour:
            colour_files += half_split(image_files(cfg.nonface_colour))[0]
        if cfg.scenes:
            colour_files += image_files(cfg.scenes)
        colour_bgs = _load_bgs(colour_files)
        mine_bgs += colour_bgs
        bgs += colour_bgs * max(1, int(cfg.colour_repeat))  # colour as often as the grey photos' share warrants
        log.info("colour non-face photos: %d (x%d as backgrounds/negatives)", len(colour_files), cfg.colour_repeat)
    fddb_train: list[tuple[Path, np.ndarray]] = []
    if cfg.fddb:
        from faceswap_pipeline.train.colour_data import fddb_items

        fddb_train = fddb_items(cfg.fddb, "train")

    cache = out / "samples.pt"
    if cache.is_file():
        S = torch.load(cache, weights_only=True)
        log.info("loaded samples from %s", cache)
    else:
        t = time.time()
        S = {f"face_{k}": v for k, v in face_samples(train_files, bgs, cfg, cfg.seed).items()}
        S.update({f"dev_{k}": v for k, v in face_samples(dev_files, bgs, cfg, cfg.seed + 1).items()})
        S.update({f"nf_{k}": v for k, v in nonface_samples(bgs, cfg, cfg.seed + 2).items()})
        if fddb_train:
            S.update({f"fddb_{k}": v for k, v in fddb_samples(fddb_train, cfg, cfg.seed + 3).items()})
        atomic_save(S, cache)
        log.info("samples made in %.0f s: %s", time.time() - t, {k: tuple(v.shape) for k, v in S.items()})

    nets = build_nets(cfg)
    if cfg.init:
        from faceswap_pipeline.weights import load_model

        for m in nets:
            nets[m].load_state_dict(load_model(f"cascade.{m}", cfg.init).float().state_dict())
        log.info("initialised the six nets from %s", cfg.init)

    def pool(kind: str, s: int) -> list[torch.Tensor]:
        """The face-derived tensors of a kind: composites (+ FDDB train-half photos)."""
        return [S[f"face_{kind}{s}"]] + ([S[f"fddb_{kind}{s}"]] if f"fddb_{kind}{s}" in S else [])

    def negs(s: int) -> list[torch.Tensor]:
        return [S[f"nf_neg{s}"], S[f"face_neg{s}"]] + ([S[f"fddb_neg{s}"]] if f"fddb_neg{s}" in S else [])

    def mine_all(det: Any, stages: int, size: int, seed: int) -> dict[int, torch.Tensor]:
        got = mine(det, mine_bgs, stages, (size,), cfg.max_mined, seed)[size]
        if fddb_train:
            got = torch.cat([got, mine_photos(det, fddb_train, stages, (size,))[size]])
        if got.shape[0] > cfg.max_mined:
            got = got[torch.randperm(got.shape[0], generator=torch.Generator().manual_seed(seed))[: cfg.max_mined]]
        return {size: got}
    report: dict[str, Any] = {"members": {}, "faces": {"train": len(train_files), "dev": len(dev_files)}}
    prev = json.loads((out / "report.json").read_text()).get("members", {}) if (out / "report.json").is_file() else {}
    thresholds = [0.5, 0.5, 0.5]
    strata: dict[str, dict[str, float]] = {}

    def level_threshold(pdev: torch.Tensor, level: int) -> float:
        if cfg.threshold_strata and "dev_pos_angle" in S and (12, 24, 48)[level] in tuple(cfg.threshold_strata_levels):
            t, per = threshold_for_recall_strata(pdev, S["dev_pos_angle"], cfg.recall[level], tuple(cfg.threshold_strata))
            strata[("12net", "24net", "48net")[level]] = {k: round(v, 4) for k, v in per.items()}
            return t
        return threshold_for_recall(pdev, cfg.recall[level])

    def ckpt(m: str) -> Path:
        return out / "ckpt" / f"{m}.pt"

    def fit(m: str, data: dict[str, torch.Tensor], seed: int) -> dict[str, Any]:
        if ckpt(m).is_file():
            blob = torch.load(ckpt(m), weights_only=True)
            nets[m].load_state_dict(blob["state_dict"])
            nets[m].eval()
            log.info("%s: resumed from checkpoint", m)
            return blob["info"]
        info = train_net(m, nets[m], data, cfg, seed, writer)
        atomic_save({"state_dict": nets[m].state_dict(), "info": info}, ckpt(m))
        return info

    def cal_data(s: int) -> dict[str, torch.Tensor]:
        y = [S["face_cal_label"]] + ([S["fddb_cal_label"]] if "fddb_cal_label" in S else [])
        return {"x": torch.cat(pool("cal", s)), "y": torch.cat(y)}

    # ---- level 12
    info = fit("12net", {"pos": torch.cat(pool("pos", 12)), "neg": torch.cat(negs(12))}, cfg.seed + 10)
    pdev = dev_face_prob(nets["12net"], S["dev_pos12"], cfg.seed + 40)
    thresholds[0] = level_threshold(pdev, 0)
    info["dev_neg_reject"] = round(float((face_prob(nets["12net"], S["dev_neg12"]) <= thresholds[0]).float().mean()), 4)
    report["members"]["12net"] = {**info, "threshold": thresholds[0], "dev_recall": cfg.recall[0]}
    info = fit("12cal", cal_data(12), cfg.seed + 11)
    report["members"]["12cal"] = {**info, "dev_acc": round(cal_accuracy(nets["12cal"], S["dev_cal12"], S["dev_cal_label"]), 4)}
    log.info("12: %s", report["members"])

    # mining, held-out false positives and the framing fit run in float32 on every machine
    det = CascadeDetector(min_face=cfg.mine_min_face, thresholds=thresholds, nets={k: nets[k] for k in ("12net", "12cal")}, precision="fp32")
    mined = mine_all(det, 1, 24, cfg.seed + 20) if not ckpt("24net").is_file() else {24: torch.zeros((0, 3, 24, 24), dtype=torch.uint8)}
    # ---- level 24
    neg24 = torch.cat([mined[24], *negs(24)])
    info = fit("24net", {"pos": torch.cat(pool("pos", 24)), "neg": neg24}, cfg.seed + 12)
    pdev = dev_face_prob(nets["24net"], S["dev_pos24"], cfg.seed + 40)
    thresholds[1] = level_threshold(pdev, 1)
    report["members"]["24net"] = {**info, "threshold": thresholds[1], "mined_negatives": int(mined[24].shape[0]) or prev.get("24net", {}).get("mined_negatives", 0)}
    del mined
    info = fit("24cal", cal_data(24), cfg.seed + 13)
    report["members"]["24cal"] = {**info, "dev_acc": round(cal_accuracy(nets["24cal"], S["dev_cal24"], S["dev_cal_label"]), 4)}
    log.info("24: %s", report["members"])

    det = CascadeDetector(min_face=cfg.mine_min_face, thresholds=thresholds, nets={k: nets[k] for k in ("12net", "12cal", "24net", "24cal")}, precision="fp32")
    mined = mine_all(det, 2, 48, cfg.seed + 21) if not ckpt("48net").is_file() else {48: torch.zeros((0, 3, 48, 48), dtype=torch.uint8)}
    # ---- level 48
    neg48 = torch.cat([mined[48], *negs(48)])
    info = fit("48net", {"pos": torch.cat(pool("pos", 48)), "neg": neg48}, cfg.seed + 14)
    pdev = dev_face_prob(nets["48net"], S["dev_pos48"], cfg.seed + 40)
    thresholds[2] = level_threshold(pdev, 2)
    report["members"]["48net"] = {**info, "threshold": thresholds[2], "mined_negatives": int(mined[48].shape[0]) or prev.get("48net", {}).get("mined_negatives", 0)}
    del mined
    info = fit("48cal", cal_data(48), cfg.seed + 15)
    report["members"]["48cal"] = {**info, "dev_acc": round(cal_accuracy(nets["48cal"], S["dev_cal48"], S["dev_cal_label"]), 4)}
    log.info("48: %s", report["members"])
    report["thresholds"] = [round(t, 4) for t in thresholds]
    if strata:
        report["threshold_strata"] = strata

    # ---- whole-cascade metrics: false positives on held-out non-face photos
    det = CascadeDetector(min_face=cfg.mine_min_face, thresholds=thresholds, nets=nets, precision="fp32")
    fp, n_img = 0, 0
    with torch.inference_mode():
        for p in nf_hold:
            b, sh = images_to_batch([read_rgb(p)])
            fp += len(det.raw_detect(b, sh))
            n_img += 1
    report["heldout_nonface_fp_per_image"] = round(fp / max(1, n_img), 4)
    report["heldout_nonface_images"] = n_img
    # ---- framing (on train-split chips not used as dev)
    fr_files = [files[i] for i in perm[cfg.dev_faces : cfg.dev_faces + cfg.framing_faces]]
    det_f = CascadeDetector(min_face=60, thresholds=thresholds, nets=nets, framing={"ax": 0.0, "ay": 0.0, "sw": 1.0, "sh": 1.0}, precision="fp32")
    framing = fit_framing(det_f, fr_files, bgs, cfg, cfg.seed + 30)
    report["framing"] = framing
    report["wall_time_s"] = round(time.time() - t_start, 1)  # this invocation (a resumed run skips trained nets)
    report["nets_train_time_s"] = round(sum(float(m.get("wall_time_s", 0.0)) for m in report["members"].values()), 1)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("report: %s", json.dumps(report))
    if cfg.export:
        export(nets, cfg, report, argv)
    if writer is not None:
        writer.close()
    return report


def export(nets: dict[str, nn.Module], cfg: CascadeTrainConfig, report: dict[str, Any], argv: list[str] | None) -> None:
    """Write ``weights/cascade_<member>.safetensors`` (fp16) and their manifest entries."""
    from faceswap_pipeline.archs.cascade import NETS
    from faceswap_pipeline.weights import register_weights, save_weights, weights_dir

    folder = weights_dir(cfg.weights_dir)
    cmd = "python -m faceswap_pipeline.train.cascade " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU"
    for m, net in nets.items():
        kw = dict(cfg.nets.get(m, {}))
        fname = f"cascade_{m}.safetensors"
        sha = save_weights(net, folder / fname, arch=NETS[m], kwargs=kw, storage="fp16")
        info = report["members"][m]
        entry: dict[str, Any] = {
            "file": fname,
            "sha256": sha,
            "arch": NETS[m],
            "kwargs": kw,
            "storage": "fp16",
            "io": {"input": [3, SIZES[m], SIZES[m]], "range": [0, 1], "output": "logits (2: [non-face, face])" if m.endswith("net") else "logits (45 calibration classes)"},
            "training": {
                "command": cmd,
                "data": "UTKFace train split (faceswap_pipeline.train.splits, validation excluded) composited on non-face photos; non-face photos (every 10th held out); hard negatives mined by the earlier levels",
                "split": f"train split, {report['faces']['train']} faces for training, {cfg.dev_faces} held out for thresholds",
                "steps": info["steps"],
                "batch": cfg.batch[m],
                "wall_time_s": info["wall_time_s"],
                "machine": machine,
                "seed": cfg.seed,
            },
            "metrics": {k: v for k, v in info.items() if k not in ("steps", "wall_time_s")},
        }
        if m == "12net":
            entry["cascade"] = {
                "thresholds": report["thresholds"],
                "framing": {k: report["framing"][k] for k in ("ax", "ay", "sw", "sh")},
                "framing_fit": report["framing"],
                "window": {"utk_chip_cx_cy_side": list(cfg.window), "note": "square window = mean dlib HOG box on UTKFace chips"},
                "heldout_nonface_fp_per_image": report["heldout_nonface_fp_per_image"],
                "min_face_trained": cfg.mine_min_face,
            }
            if report.get("threshold_strata"):
                entry["cascade"]["threshold_strata"] = {"edges_deg": list(cfg.threshold_strata), "per_stratum": report["threshold_strata"]}
        register_weights(f"cascade.{m}", entry, cfg.weights_dir)
    log.info("exported six nets to %s", folder)


def _parse(argv: list[str] | None) -> CascadeTrainConfig:
    p = argparse.ArgumentParser(prog="faceswap-pipeline train cascade", description=__doc__.split("\n")[0])
    p.add_argument("--utk", required=True, help="UTKFace folder (the train/ folder of 200x200 chips)")
    p.add_argument("--nonface", required=True, help="folder of non-face photos")
    p.add_argument("--out", default=CascadeTrainConfig.out, help="run folder (samples cache, checkpoints, logs)")
    p.add_argument("--weights-dir", default=None, help="weights folder to export to (default: the repository's weights/)")
    p.add_argument("--export", action="store_true", help="write the trained nets to the weights folder + manifest")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--max-minutes", type=float, default=CascadeTrainConfig.max_minutes, help="total training time budget (split over the six nets)")
    p.add_argument("--n-faces", type=int, default=CascadeTrainConfig.n_faces, help="UTK faces used (0: all of the train split)")
    p.add_argument("--dev-faces", type=int, default=CascadeTrainConfig.dev_faces)
    p.add_argument("--max-nonface", type=int, default=0, help="use only this many non-face photos (0: all; smoke tests)")
    p.add_argument("--framing-faces", type=int, default=CascadeTrainConfig.framing_faces, help="UTK chips used to fit the HOG framing")
    p.add_argument("--rot-prob", type=float, default=CascadeTrainConfig.rot_prob, help="fraction of face chips rotated uniformly in +-rot-max (the rest: +-5 degrees)")
    p.add_argument("--rot-max", type=float, default=CascadeTrainConfig.rot_max, help="largest in-plane rotation of the face chips (degrees)")
    p.add_argument("--threshold-strata", default=None, help="comma-separated |rotation| edges in degrees: each level's threshold keeps its recall target in every rotation stratum of the dev faces (default 10,25; 'none': pooled)")
    p.add_argument("--threshold-strata-levels", default=None, help="cascade levels whose threshold is stratified, the others pooled (default 12,24)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every net's step count (smoke tests: 0.01)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the training forward/backward (weights, BatchNorm and the optimiser stay float32)")
    p.add_argument("--no-channels-last", action="store_true", help="train in NCHW instead of channels_last (same maths, slower on CPU)")
    p.add_argument("--nonface-colour", default=None, help="colour non-face photos (the train half, colour_data.half_split, is used)")
    p.add_argument("--scenes", default=None, help="more colour photos without faces (all used as backgrounds / negatives)")
    p.add_argument("--fddb", default=None, help="FDDB-style folder (images/, annotations/): its train half gives real-photo positives, face-free negatives and mined false positives")
    p.add_argument("--fddb-window", default=None, help="FDDB box -> cascade window 'a,b,s': centre (cx + a w, cy + b h), side s w")
    p.add_argument("--init", default=None, help="weights folder to fine-tune from (same net widths)")
    p.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {CascadeTrainConfig.lr})")
    p.add_argument("--grey-prob", type=float, default=None, help=f"fraction of training windows turned grey (default {CascadeTrainConfig.grey_prob})")
    p.add_argument("--jpeg-prob", type=float, default=None, help="fraction of face composites JPEG-compressed (quality 25-90)")
    p.add_argument("--occlude-prob", type=float, default=None, help="fraction of detection-net windows partly occluded")
    p.add_argument("--light-prob", type=float, default=None, help="fraction of windows side-lit (brightness ramp + gamma)")
    p.add_argument("--blur-prob", type=float, default=None, help="fraction of windows Gaussian-blurred")
    p.add_argument("--colour-repeat", type=int, default=None, help="weight of each colour non-face photo among backgrounds/negatives")
    p.add_argument("--config", default=None, help="JSON file of CascadeTrainConfig fields (flags override)")
    a = p.parse_args(argv)
    cfg = CascadeTrainConfig()
    if a.config:
        known = {f.name for f in fields(CascadeTrainConfig)}
        for k, v in json.loads(Path(a.config).read_text()).items():
            if k in known:
                setattr(cfg, k, v)
    cfg.utk, cfg.nonface, cfg.out, cfg.weights_dir, cfg.export = a.utk, a.nonface, a.out, a.weights_dir, a.export
    cfg.seed, cfg.threads, cfg.max_minutes, cfg.n_faces, cfg.dev_faces = a.seed, a.threads, a.max_minutes, a.n_faces, a.dev_faces
    cfg.max_nonface, cfg.framing_faces = a.max_nonface, a.framing_faces
    cfg.rot_prob, cfg.rot_max = a.rot_prob, a.rot_max
    for k in ("nonface_colour", "scenes", "fddb", "init", "lr", "grey_prob", "jpeg_prob", "occlude_prob", "light_prob", "blur_prob", "colour_repeat"):
        if getattr(a, k) is not None:
            setattr(cfg, k, getattr(a, k))
    if a.fddb_window:
        cfg.fddb_window = tuple(float(x) for x in a.fddb_window.split(","))  # type: ignore[assignment]
    if a.bf16:
        cfg.bf16 = True
    if a.no_channels_last:
        cfg.channels_last = False
    if a.threshold_strata is not None:
        cfg.threshold_strata = () if a.threshold_strata.strip().lower() in ("", "none") else tuple(float(x) for x in a.threshold_strata.split(","))
    if a.threshold_strata_levels is not None:
        cfg.threshold_strata_levels = tuple(int(x) for x in a.threshold_strata_levels.split(","))
    total = sum(cfg.minutes.values())
    cfg.minutes = {k: v * cfg.max_minutes / total for k, v in cfg.minutes.items()}
    cfg.steps = {k: max(1, int(round(v * a.steps_scale))) for k, v in cfg.steps.items()}
    return cfg


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``faceswap-pipeline train cascade ...``); prints the final report as JSON."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = _parse(argv)
    report = run(cfg, argv)
    print(json.dumps(report, indent=2))
    return 0


__all__ = ["CascadeTrainConfig", "augment", "threshold_for_recall", "threshold_for_recall_strata", "composite", "face_samples", "fit_framing", "main", "mine", "nonface_samples", "run", "train_net"]

if __name__ == "__main__":
    sys.exit(main())
