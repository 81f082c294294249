"""The cascade trainer's data: face composites, non-face windows, FDDB windows and hard-negative mining.

All crops are ``(N, 3, S, S)`` uint8 windows (``S`` in 12, 24, 48) made with the detector's own
:func:`~faceswap_pipeline.ops.windows.crop_windows` (zero padding past the image, as at inference):

* :func:`face_samples`: UTKFace train-split chips flipped, rotated, scaled so their face window
  is ``face_px`` pixels and pasted with a feathered edge on a random non-face background
  (:func:`composite`); from each: jittered face windows (``pos``), windows perturbed by random
  calibration patterns (``cal``, label ``cal_label``) and windows of IoU < 0.3 with the face (``neg``).
* :func:`nonface_samples`: random windows of the non-face photos (``neg``).
* :func:`fddb_samples`: real-photo positives, calibration samples and face-free negatives of the
  FDDB train half.
* :func:`mine` / :func:`mine_photos`: hard negatives, the windows the trained earlier levels
  accept on non-face photos / away from every annotated face.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from faceswap_pipeline.ops.nms import N_CAL, box_iou, perturb
from faceswap_pipeline.ops.windows import crop_windows, octave_pyramid
from faceswap_pipeline.train.colour_data import read_rgb

if TYPE_CHECKING:
    from faceswap_pipeline.train.cascade_config import CascadeTrainConfig

log = logging.getLogger(__name__)


def utk_train_files(utk_dir: str) -> list[Path]:
    """Sorted UTKFace files of the project's train split (validation faces excluded)."""
    from faceswap_pipeline.train.splits import is_validation

    files = sorted(p for p in Path(utk_dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [p for p in files if not is_validation(p.name)]


def nonface_files(nonface_dir: str) -> tuple[list[Path], list[Path]]:
    """(train, held-out) non-face images: every 10th sorted file is held out."""
    files = sorted(p for p in Path(nonface_dir).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".pgm", ".bmp"))
    return [p for i, p in enumerate(files) if i % 10], [p for i, p in enumerate(files) if i % 10 == 0]


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 image -> ``(3, H, W)`` float32 in [0, 1]."""
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


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float crops in [0, 1] -> uint8 (rounded, clamped to 0..255); same shape."""
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def _crop_all(canvases: torch.Tensor, idx: torch.Tensor, boxes: torch.Tensor, sizes: tuple[int, ...] = (12, 24, 48)) -> dict[int, torch.Tensor]:
    pyr = octave_pyramid(canvases)
    return {s: to_uint8(crop_windows(pyr, idx, boxes, s)) for s in sizes}


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
            chip = to_tensor(read_rgb(p))
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
        out.setdefault("neg12", []).append(to_uint8(crop_windows(pyr, idx, b, 12)))
        kb = cfg.neg_big_per_nonface
        out.setdefault("neg24", []).append(to_uint8(crop_windows(pyr, idx[:kb], b[:kb], 24)))
        out.setdefault("neg48", []).append(to_uint8(crop_windows(pyr, idx[:kb], b[:kb], 48)))
    return {k: torch.cat(v) for k, v in out.items()}


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
    from faceswap_pipeline.train.colour_data import face_free_windows

    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list[torch.Tensor]] = {}
    for p, faces in items:
        img = to_tensor(read_rgb(p))
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
                out.setdefault(f"pos{s}", []).append(to_uint8(crop_windows(pyr, torch.zeros(len(pb), dtype=torch.long), pb, s)))
                out.setdefault(f"cal{s}", []).append(to_uint8(crop_windows(pyr, torch.zeros(len(cb), dtype=torch.long), cb, s)))
            out.setdefault("cal_label", []).append(cl)
        nb = torch.as_tensor(face_free_windows(tuple(img.shape[1:]), faces, cfg.fddb_neg_per_image, rng), dtype=torch.float32)
        if len(nb):
            for s in (12, 24, 48):
                out.setdefault(f"neg{s}", []).append(to_uint8(crop_windows(pyr, torch.zeros(len(nb), dtype=torch.long), nb, s)))
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
                crops[s].append(to_uint8(crop_windows(pyr, cand.image, cand.boxes, s)))
            total += len(cand)
    out = {s: torch.cat(v) if v else torch.zeros((0, 3, s, s), dtype=torch.uint8) for s, v in crops.items()}
    if total > limit:
        g = torch.Generator().manual_seed(seed)
        sel = torch.randperm(total, generator=g)[:limit]
        out = {s: v[sel] for s, v in out.items()}
    log.info("mined %d false positives after %d stage(s) on %d photos (kept %d)", total, stages, len(bgs), min(total, limit))
    return out


def mine_photos(detector: Any, items: list[tuple[Path, np.ndarray]], stages: int, sizes: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """Windows the first ``stages`` levels accept on photos *with* faces, away from every annotated face."""
    from faceswap_pipeline.stages.detect_cascade import images_to_batch

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
                crops[s].append(to_uint8(crop_windows(pyr, cand.image[keep], cand.boxes[keep], s)))
            total += int(keep.sum())
    log.info("mined %d face-free false positives after %d stage(s) on %d photos with faces", total, stages, len(items))
    return {s: torch.cat(v) if v else torch.zeros((0, 3, s, s), dtype=torch.uint8) for s, v in crops.items()}


def load_images(files: list[Path]) -> list[torch.Tensor]:
    """The photos as ``(3, H, W)`` float tensors in [0, 1] (backgrounds and mining photos)."""
    return [to_tensor(read_rgb(p)) for p in files]


__all__ = ["composite", "face_free", "face_samples", "fddb_samples", "fddb_windows", "load_images", "mine", "mine_photos", "nonface_files", "nonface_samples", "to_tensor", "to_uint8", "utk_train_files"]
