"""Batched, seeded photometric + geometric augmentation of face crops (the original attribute classifier's "heavy" recipe).

Pure torch (one ``affine_grid``/``grid_sample`` per batch), driven by an explicit
``torch.Generator`` so a training run resumed from a checkpoint draws exactly the same
augmentations as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_GREY = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation (each drawn independently per image).

    Attributes:
        flip: probability of a horizontal flip.
        degrees: rotation in ``[-degrees, degrees]``.
        translate: shift in ``[-t, t]`` of the image side, per axis.
        scale: zoom factor range (``> 1`` zooms in).
        brightness: multiplicative brightness in ``[1 - b, 1 + b]``.
        contrast: contrast factor in ``[1 - c, 1 + c]`` around the image mean.
        saturation: saturation factor in ``[1 - s, 1 + s]``.
        grey: probability of converting to greyscale (UTKFace has some grey photos).
    """

    flip: float = 0.5
    degrees: float = 10.0
    translate: float = 0.05
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    grey: float = 0.1


def _u(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def augment_faces(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Randomly flip, rotate, shift, zoom and recolour a batch of face crops.

    Args:
        x: ``(B, 3, H, W)`` float32 in [0, 1] (CPU).
        cfg: augmentation ranges.
        generator: source of randomness (CPU ``torch.Generator``).

    Returns:
        ``(B, 3, H, W)`` float32 in [0, 1]; areas moved in from outside are black, like letterbox bars.
    """
    b = x.shape[0]
    ang = _u(b, -cfg.degrees, cfg.degrees, generator) * (math.pi / 180.0)
    zoom = torch.exp(_u(b, math.log(cfg.scale[0]), math.log(cfg.scale[1]), generator))
    tx = _u(b, -cfg.translate, cfg.translate, generator) * 2.0
    ty = _u(b, -cfg.translate, cfg.translate, generator) * 2.0
    flip = torch.where(torch.rand(b, generator=generator) < cfg.flip, -1.0, 1.0)
    cos, sin = torch.cos(ang) / zoom, torch.sin(ang) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    grey_w = torch.tensor(_GREY, dtype=x.dtype).view(1, 3, 1, 1)
    bri = _u(b, 1 - cfg.brightness, 1 + cfg.brightness, generator).view(b, 1, 1, 1)
    con = _u(b, 1 - cfg.contrast, 1 + cfg.contrast, generator).view(b, 1, 1, 1)
    sat = _u(b, 1 - cfg.saturation, 1 + cfg.saturation, generator).view(b, 1, 1, 1)
    to_grey = (torch.rand(b, generator=generator) < cfg.grey).view(b, 1, 1, 1)
    y = y * bri
    mean = (y * grey_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    y = (y - mean) * con + mean
    lum = (y * grey_w).sum(1, keepdim=True)
    y = (y - lum) * sat + lum
    y = torch.where(to_grey, lum.expand_as(y), y)
    return y.clamp_(0.0, 1.0)


__all__ = ["AugmentConfig", "augment_faces"]
