"""What the benchmarks share: result files, detection scoring, validation chips, SR quality.

Each benchmark runs as a script (``python benchmarks/bench_x.py``), so this folder is first on
``sys.path`` and ``from common import ...`` finds this module; the package itself comes from the
installed ``faceswap_pipeline``. Nothing here is the package's API: these are the measuring tools
behind ``docs/benchmarks/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def write_json(res: dict[str, Any], path: str | Path | None, indent: int = 2) -> str:
    """``res`` as indented JSON, also written to ``path`` when one is given (folders created)."""
    text = json.dumps(res, indent=indent)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n", encoding="utf-8")
    return text


# ------------------------------------------------------------------ detection: CMU+MIT scoring


def load_set(root: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(path, image (H, W, 3) uint8, gt (N, 4) xyxy)]`` from ``boxes.txt`` (``x y w h`` per face)."""
    import imageio.v3 as iio

    out = []
    for line in (root / "boxes.txt").read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        rel, n = parts[0], int(parts[1])
        v = np.array([float(x) for x in parts[2 : 2 + 4 * n]], dtype=np.float64).reshape(n, 4)
        gt = np.c_[v[:, 0], v[:, 1], v[:, 0] + v[:, 2], v[:, 1] + v[:, 3]]
        im = np.asarray(iio.imread(root / rel))
        if im.ndim == 2:
            im = np.repeat(im[:, :, None], 3, axis=2)
        out.append((rel, np.ascontiguousarray(im[:, :, :3]).astype(np.uint8), gt))
    out.sort(key=lambda t: t[0])
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def fit_transform(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Least-squares centre/size transform detector box -> annotation box (relative to the box size)."""
    if len(pairs) < 3:
        return {"ax": 0.0, "ay": 0.0, "sw": 1.0, "sh": 1.0, "pairs": len(pairs)}
    d = np.array([p[0] for p in pairs])
    g = np.array([p[1] for p in pairs])
    dc, dw = (d[:, :2] + d[:, 2:]) / 2, d[:, 2:] - d[:, :2]
    gc, gw = (g[:, :2] + g[:, 2:]) / 2, g[:, 2:] - g[:, :2]
    return {
        "ax": float(np.mean((gc[:, 0] - dc[:, 0]) / dw[:, 0])),
        "ay": float(np.mean((gc[:, 1] - dc[:, 1]) / dw[:, 1])),
        "sw": float((gw[:, 0] * dw[:, 0]).sum() / (dw[:, 0] ** 2).sum()),
        "sh": float((gw[:, 1] * dw[:, 1]).sum() / (dw[:, 1] ** 2).sum()),
        "pairs": len(pairs),
    }


def apply_transform(boxes: np.ndarray, t: dict[str, float]) -> np.ndarray:
    if len(boxes) == 0:
        return boxes
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    wh = boxes[:, 2:] - boxes[:, :2]
    cx, cy = c[:, 0] + t["ax"] * wh[:, 0], c[:, 1] + t["ay"] * wh[:, 1]
    w, h = t["sw"] * wh[:, 0], t["sh"] * wh[:, 1]
    return np.c_[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def match_pairs(dets: list[tuple[np.ndarray, np.ndarray]], gts: list[np.ndarray], iou_min: float = 0.3) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for (boxes, _), gt in zip(dets, gts):
        m = iou_matrix(gt, boxes)
        for i in range(len(gt)):
            if m.shape[1] and m[i].max() > iou_min:
                pairs.append((boxes[int(m[i].argmax())], gt[i]))
    return pairs


def cross_fit(dets: list[tuple[np.ndarray, np.ndarray]], gts: list[np.ndarray]) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """2-fold cross-fitted annotation transform (see module docstring). Two passes: fit, re-match, re-fit."""
    folds = [list(range(0, len(dets), 2)), list(range(1, len(dets), 2))]
    fitted = []
    for f in folds:
        dd = [dets[i] for i in f]
        gg = [gts[i] for i in f]
        t = fit_transform(match_pairs(dd, gg))
        dd2 = [(apply_transform(b, t), s) for b, s in dd]
        pairs = match_pairs(dd2, gg, 0.4)
        # refine: express the second fit in the raw box frame by composing with the first
        raw_pairs = [(p0, g) for (p0, g) in match_pairs(dd, gg) if any(np.allclose(apply_transform(p0[None], t)[0], q) for q, _ in pairs)]
        fitted.append(fit_transform(raw_pairs) if len(raw_pairs) >= 3 else t)
    out = list(dets)
    for k, f in enumerate(folds):
        t = fitted[1 - k]
        for i in f:
            out[i] = (apply_transform(dets[i][0], t), dets[i][1])
    return out, {"fit_on_odd_applied_to_even": fitted[1], "fit_on_even_applied_to_odd": fitted[0]}


def evaluate(dets: list[tuple[np.ndarray, np.ndarray]], gts: list[np.ndarray], fps: tuple[int, ...] = (10, 50, 100), iou_thr: float = 0.5) -> dict[str, Any]:
    """Recall at FP counts and VOC AP (all points) over the set, greedy matching in score order."""
    n_gt = sum(len(g) for g in gts)
    recs = []
    for i, (boxes, scores) in enumerate(dets):
        for b, s in zip(boxes, scores):
            recs.append((float(s), i, b))
    recs.sort(key=lambda r: -r[0])
    used = [np.zeros(len(g), bool) for g in gts]
    tp = np.zeros(len(recs))
    for k, (_, i, b) in enumerate(recs):
        if len(gts[i]) == 0:
            continue
        m = iou_matrix(b[None], gts[i])[0]
        m[used[i]] = -1
        j = int(m.argmax())
        if m[j] >= iou_thr:
            used[i][j] = True
            tp[k] = 1
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1 - tp)
    recall = ctp / max(1, n_gt)
    precision = ctp / np.maximum(1, ctp + cfp)
    out: dict[str, Any] = {"n_faces": n_gt, "n_detections": len(recs)}
    for f in fps:
        ok = cfp <= f
        out[f"recall@{f}fp"] = round(float(recall[ok].max()) if ok.any() else 0.0, 4)
    # VOC all-points AP
    mrec = np.r_[0, recall, recall[-1] if len(recall) else 0]
    mpre = np.r_[0, precision, 0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    out["ap50"] = round(float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1])), 4)
    out["max_recall"] = round(float(recall[-1]) if len(recall) else 0.0, 4)
    return out


def found_count(dets: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """(faces found, unmatched detections) with the framing-independent centre criterion."""
    if len(gt) == 0:
        return 0, len(dets)
    found = np.zeros(len(gt), bool)
    fp = 0
    gside = np.sqrt((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]))
    for b in dets:
        c = (b[:2] + b[2:]) / 2
        side = np.sqrt(max(b[2] - b[0], 1e-6) * max(b[3] - b[1], 1e-6))
        ok = (c[0] >= gt[:, 0]) & (c[0] < gt[:, 2]) & (c[1] >= gt[:, 1]) & (c[1] < gt[:, 3]) & (side >= 0.5 * gside) & (side <= 2.5 * gside) & ~found
        if ok.any():
            found[int(np.argmax(ok))] = True
        else:
            fp += 1
    return int(found.sum()), fp


# ------------------------------------------------------------- detection: composites of UTKFace chips


def validation_chips(utk: str, n: int, seed: int) -> list[Path]:
    """``n`` UTKFace chips of the project's validation split (0: all), in a seeded random order."""
    from faceswap_pipeline.train.splits import is_validation

    files = sorted(f for f in Path(utk).iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png") and is_validation(f.name))
    if n:
        files = [files[i] for i in np.random.default_rng(seed).permutation(len(files))[:n]]
    return files


def load_cascades(specs: list[str], min_face: float) -> dict[str, Any]:
    """``NAME=WEIGHTS_DIR`` specs (an empty dir: the shipped weights) -> name -> CascadeDetector."""
    from faceswap_pipeline.stages.detect_cascade import CascadeDetector

    out = {}
    for spec in specs or ["shipped="]:
        name, _, wdir = spec.partition("=")
        out[name] = CascadeDetector.from_pretrained(weights_dir=wdir or None, min_face=min_face)
    return out


# ------------------------------------------------------------------------ super-resolution quality


def quantise_8bit(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255.0) / 255.0


@torch.inference_mode()
def quality(model: torch.nn.Module, images: list[np.ndarray], scale: int, device: torch.device, batch: int = 8) -> dict[str, Any]:
    """Per-set mean PSNR-Y / SSIM-Y of SR and bicubic (plus per-image lists for the JSON)."""
    import torch.nn.functional as F

    from faceswap_pipeline.ops.geometry import resize
    from faceswap_pipeline.ops.metrics import psnr_y, ssim_y
    from faceswap_pipeline.train.srresnet import degrade, mod_crop, to_tensor

    rows: dict[str, list[float]] = {f"{m}_{k}": [] for m in ("sr", "bicubic", "bicubic_torch") for k in ("psnr_y", "ssim_y")}
    groups: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for img in images:  # batch images of equal size together
        hr = to_tensor(mod_crop(img, scale))
        groups.setdefault(tuple(hr.shape), []).append(hr)
    for hrs in groups.values():
        for i in range(0, len(hrs), batch):
            hr = torch.cat(hrs[i : i + batch]).to(device)
            lr = degrade(hr, scale)
            outs = {
                "sr": model(lr).float(),
                # MATLAB imresize-style bicubic (Keys a = -0.5): the SR papers' baseline.
                "bicubic": resize(lr, tuple(hr.shape[-2:]), "bicubic"),
                # torch / OpenCV bicubic (a = -0.75): sharper, a stronger baseline on these images.
                "bicubic_torch": F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False),
            }
            for m, y in outs.items():
                y = quantise_8bit(y)
                rows[f"{m}_psnr_y"] += psnr_y(y, hr, scale).tolist()
                rows[f"{m}_ssim_y"] += ssim_y(y, hr, scale).tolist()
    out: dict[str, Any] = {"n": len(rows["sr_psnr_y"])}
    out.update({k: round(float(np.mean(v)), 4) for k, v in rows.items()})
    for b in ("bicubic", "bicubic_torch"):
        out[f"gain_psnr_y_db_vs_{b}"] = round(out["sr_psnr_y"] - out[f"{b}_psnr_y"], 4)
        out[f"gain_ssim_y_vs_{b}"] = round(out["sr_ssim_y"] - out[f"{b}_ssim_y"], 4)
        gains = np.array(rows["sr_psnr_y"]) - np.array(rows[f"{b}_psnr_y"])
        out[f"images_sr_better_than_{b}"] = int((gains > 0).sum())
    return out
