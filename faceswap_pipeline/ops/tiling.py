"""Tiled upscaling: run an SR network on overlapping tiles and blend them without seams.

Large images do not fit a network's activations in memory at once (SRResNet x4 keeps 64 feature
maps at the input size and 64 at 4x the size), so :func:`upscale_tiled` cuts the LR image into
``tile`` x ``tile`` windows (evenly spread) that overlap by at least ``overlap`` pixels,
upscales each, and blends the outputs with separable weights: across each shared band, a tile's
weight is 0 in the third next to its own inner edge (output computed without full context is
discarded, as in crop-centre tiling), ramps linearly over the middle third (feathering, so even an
inexact network leaves no hard seam), and is 1 in the far third. Weights are only ramped on sides
that border another tile and sum to 1, so a pixel covered by one tile gets exactly that tile's
value. When ``overlap / 3`` is at least the network's effective receptive radius, the blended
result equals the untiled one up to float rounding (see ``tests/test_sr.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of the fewest ``tile`` windows covering ``[0, length)`` with >= ``overlap`` shared, evenly spread."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _ramp(n: int, lo_band: int, hi_band: int, device: torch.device) -> torch.Tensor:
    """1-D blend weight of a tile of ``n`` samples that shares ``lo_band`` / ``hi_band`` samples with its neighbours.

    Across a shared band of length ``L`` the weight is 0 for the third next to the tile's inner
    edge (where the network lacks context), ramps linearly over the middle third and is 1 in the
    far third. The neighbour's weight is the mirror image, so the two always sum to 1.
    """
    w = torch.ones(n, dtype=torch.float64)

    def side(length: int) -> torch.Tensor:
        third = length / 3.0
        return ((torch.arange(length, dtype=torch.float64) + 0.5 - third) / third).clamp(0.0, 1.0)

    if lo_band > 0:
        w[:lo_band] = side(lo_band)
    if hi_band > 0:
        w[n - hi_band :] = torch.minimum(w[n - hi_band :], side(hi_band).flip(0))
    return w.float().to(device)


def upscale_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    img: torch.Tensor,
    scale: int,
    tile: int = 128,
    overlap: int = 24,
) -> torch.Tensor:
    """Upscale ``img`` by ``scale`` with ``fn`` applied to overlapping tiles, blended seamlessly.

    Args:
        fn: maps ``(1, 3, h, w)`` to ``(1, 3, scale*h, scale*w)`` (e.g. an SR network in eval mode).
        img: (1, 3, H, W) float32 in [0, 1], the LR image.
        scale: the factor ``fn`` upscales by.
        tile: LR tile side; an image no larger than this is processed whole.
        overlap: minimum LR pixels shared by neighbouring tiles; the third next to each tile's
            inner edge is discarded, the middle third feathered. Must be < ``tile``. The default
            24 keeps the shipped SRResNet within 1/255 of untiled inference.

    Returns:
        (1, 3, scale*H, scale*W) float32, the values ``fn`` produced (no clamping here).

    Example:
        >>> import torch.nn.functional as F
        >>> up = lambda x: F.interpolate(x, scale_factor=2, mode="nearest")
        >>> upscale_tiled(up, torch.rand(1, 3, 40, 50), 2, tile=16, overlap=4).shape
        torch.Size([1, 3, 80, 100])
    """
    if img.dim() != 4 or img.shape[0] != 1:
        raise ValueError(f"expected one image (1, C, H, W), got {tuple(img.shape)}")
    if not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap={overlap}, tile={tile}")
    _, c, h, w = img.shape
    if h <= tile and w <= tile:
        return fn(img).float()
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    out: torch.Tensor | None = None
    for iy, y0 in enumerate(ys):
        th = min(tile, h - y0)
        # Ramp length on a side = the overlap with the neighbour on that side (in output pixels).
        top = (ys[iy - 1] + tile - y0) * scale if iy > 0 else 0
        bot = (y0 + th - ys[iy + 1]) * scale if iy + 1 < len(ys) else 0
        wy = _ramp(th * scale, top, bot, img.device)
        for ix, x0 in enumerate(xs):
            tw = min(tile, w - x0)
            left = (xs[ix - 1] + tile - x0) * scale if ix > 0 else 0
            right = (x0 + tw - xs[ix + 1]) * scale if ix + 1 < len(xs) else 0
            wx = _ramp(tw * scale, left, right, img.device)
            piece = fn(img[:, :, y0 : y0 + th, x0 : x0 + tw]).float()
            if out is None:
                out = torch.zeros(1, piece.shape[1], h * scale, w * scale, dtype=torch.float32, device=img.device)
                norm = torch.zeros(1, 1, h * scale, w * scale, dtype=torch.float32, device=img.device)
            wgt = wy[:, None] * wx[None, :]
            sl = (slice(None), slice(None), slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale))
            out[sl] += piece * wgt
            norm[sl] += wgt
    assert out is not None
    return out / norm
