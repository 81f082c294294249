"""What the cascade trainer fits after each net: recall thresholds, calibration accuracy, HOG framing.

* :func:`dev_face_prob`, :func:`threshold_for_recall`, :func:`threshold_for_recall_strata`: each
  level's threshold is the largest that keeps its recall target on the held-out dev faces (seen
  in greyscale), optionally in every rotation stratum.
* :func:`cal_accuracy`: a calibration net's accuracy on held-out calibration samples.
* :func:`fit_framing`: the cascade-window -> dlib-HOG-box transform, so the cascade's boxes frame
  faces as HOG's do (the crops the generators were trained on).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from faceswap_pipeline.ops.nms import box_iou
from faceswap_pipeline.train.cascade_data import composite, to_tensor
from faceswap_pipeline.train.colour_data import read_rgb
from faceswap_pipeline.train.window_classifier import augment

if TYPE_CHECKING:
    from faceswap_pipeline.train.cascade_config import CascadeTrainConfig

log = logging.getLogger(__name__)


@torch.inference_mode()
def cal_accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of a calibration net on uint8 windows ``x (B, 3, S, S)`` with pattern labels ``y (B,)``."""
    net.eval()
    p = torch.cat([net.probs(x[i : i + 2048].float() / 255.0) for i in range(0, x.shape[0], 2048)])
    return float((p.argmax(1) == y).float().mean())


@torch.inference_mode()
def dev_face_prob(net: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
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
        chip = to_tensor(read_rgb(p))
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


__all__ = ["cal_accuracy", "dev_face_prob", "fit_framing", "threshold_for_recall", "threshold_for_recall_strata"]
