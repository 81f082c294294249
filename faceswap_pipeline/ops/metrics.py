"""Image-quality metrics in the super-resolution papers' convention: PSNR / SSIM on the Y channel.

Convention (as in SRCNN, SRResNet, EDSR and their MATLAB evaluation code):

* Y is the luma of ITU-R BT.601 in "studio swing" (MATLAB ``rgb2ycbcr``):
  ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` for R, G, B in [0, 1], i.e. Y in [16, 235] on a
  255 scale. (kornia's ``rgb_to_ycbcr`` is full-swing JPEG YCbCr, which gives slightly different
  numbers, so the luma is computed here.)
* ``border`` pixels (the scale factor, 4 for x4) are cropped from every side before measuring.
* PSNR uses peak 255 on that scale (= 1.0 here); SSIM uses an 11x11 Gaussian window,
  sigma 1.5, K1 = 0.01, K2 = 0.03 (Wang et al. 2004) over "valid" positions only (kornia).
* Callers should quantise the SR output to uint8 first, as the papers measure saved images.
"""

from __future__ import annotations

import math

import torch

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """BT.601 studio-swing luma, scaled to [0, 1] (i.e. ``Y / 255``).

    Shape: (B, 3, H, W) float in [0, 1] -> (B, 1, H, W) float64 in [16/255, 235/255].
    """
    if img.dim() != 4 or img.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W), got {tuple(img.shape)}")
    x = img.double()
    w = torch.tensor(_Y_WEIGHTS, dtype=torch.float64, device=img.device).view(1, 3, 1, 1)
    return (16.0 + (x * w).sum(dim=1, keepdim=True)) / 255.0


def _prep(a: torch.Tensor, b: torch.Tensor, border: int) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() == 3:
        a, b = a[None], b[None]
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    if border > 0:
        if min(ya.shape[-2:]) <= 2 * border:
            raise ValueError(f"image {tuple(a.shape[-2:])} too small for border {border}")
        ya = ya[..., border:-border, border:-border]
        yb = yb[..., border:-border, border:-border]
    return ya, yb


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, border: int = 4) -> torch.Tensor:
    """PSNR (dB) of the Y channel after cropping ``border`` pixels, per image.

    Args:
        sr: (B, 3, H, W) or (3, H, W) float in [0, 1], the estimate.
        hr: same shape, the reference.
        border: pixels removed from each side (the SR convention: the scale factor).

    Returns:
        (B,) float64 tensor; ``inf`` where the Y channels are identical.
    """
    ya, yb = _prep(sr, hr, border)
    mse = ((ya - yb) ** 2).flatten(1).mean(dim=1)
    return torch.where(mse > 0, -10.0 * torch.log10(mse.clamp_min(1e-30)), torch.full_like(mse, math.inf))


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, border: int = 4, window_size: int = 11) -> torch.Tensor:
    """Mean SSIM of the Y channel after cropping ``border`` pixels, per image (Gaussian 11x11, sigma 1.5).

    Args:
        sr: (B, 3, H, W) or (3, H, W) float in [0, 1].
        hr: same shape.
        border: pixels removed from each side.
        window_size: Gaussian window side.

    Returns:
        (B,) float64 tensor in [-1, 1]; 1.0 for identical images.
    """
    import kornia

    ya, yb = _prep(sr, hr, border)
    m = kornia.metrics.ssim(ya, yb, window_size, max_val=1.0, padding="valid")
    return m.flatten(1).mean(dim=1)
