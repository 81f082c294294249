"""Test-time voting over jittered windows: 45 = 5 scales x 9 shifts of a face crop.

Each window is the crop re-sampled around a slightly moved / resized square; the classifier's
softmax outputs over all windows are averaged (the original design summed them and divided by 45, which is
the same), the argmax is the vote and the mean probability its confidence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

DEFAULT_SCALES: tuple[float, ...] = (0.9, 0.95, 1.0, 1.05, 1.1)
"""Window sides relative to the crop (1.0 = the crop itself)."""

DEFAULT_SHIFT: float = 0.04
"""Window shift as a fraction of the crop side (3 x 3 grid: -s, 0, +s on each axis); ~5 px at 128."""


def jitter_params(scales: Sequence[float] = DEFAULT_SCALES, shift: float = DEFAULT_SHIFT) -> torch.Tensor:
    """The ``(K, 3)`` table of windows ``(scale, dx, dy)``, ``K = len(scales) * 9``.

    Shifts are fractions of the crop side; order is scale-major, then ``dy``, then ``dx`` in
    ``(-shift, 0, +shift)``. The identity window ``(1, 0, 0)`` is included when 1.0 is a scale.
    """
    rows = [(float(s), dx * shift, dy * shift) for s in scales for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return torch.tensor(rows, dtype=torch.float32)


def jittered_windows(
    x: torch.Tensor,
    scales: Sequence[float] = DEFAULT_SCALES,
    shift: float = DEFAULT_SHIFT,
    out_size: int | None = None,
) -> torch.Tensor:
    """Resample every image into ``K`` jittered windows in one batched ``grid_sample``.

    Window ``(s, dx, dy)`` covers the square of side ``s * W`` centred at ``(W/2 + dx*W, H/2 + dy*H)``;
    parts outside the image read as 0 (like the black letterbox bars).

    Args:
        x: ``(B, C, H, W)`` float images.
        scales: window sides relative to the image.
        shift: shift step as a fraction of the image side.
        out_size: side of the output windows (default: ``H``); resize to the network's input
            size *before* calling this to avoid aliasing when shrinking a lot.

    Returns:
        ``(B * K, C, out, out)``; window ``k`` of image ``b`` is row ``b * K + k``.
    """
    if x.dim() != 4:
        raise ValueError(f"expected (B, C, H, W), got {tuple(x.shape)}")
    b, c, h, w = x.shape
    p = jitter_params(scales, shift).to(device=x.device, dtype=x.dtype)
    k = p.shape[0]
    theta = torch.zeros(k, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = p[:, 0]
    theta[:, 1, 1] = p[:, 0]
    theta[:, 0, 2] = 2.0 * p[:, 1]  # normalised coordinates span 2 per image side
    theta[:, 1, 2] = 2.0 * p[:, 2]
    oh = ow = int(out_size) if out_size is not None else h
    if out_size is None:
        ow = w
    grid = F.affine_grid(theta, [k, c, oh, ow], align_corners=False)  # (K, oh, ow, 2)
    grid = grid.unsqueeze(0).expand(b, -1, -1, -1, -1).reshape(b * k, oh, ow, 2)
    xs = x.unsqueeze(1).expand(-1, k, -1, -1, -1).reshape(b * k, c, h, w)
    return F.grid_sample(xs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def vote(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Average per-window probabilities: ``(B * k, C) -> (B, C)`` (argmax = vote, max = confidence)."""
    if probs.shape[0] % k:
        raise ValueError(f"{probs.shape[0]} rows is not a multiple of {k} windows")
    return probs.reshape(-1, k, *probs.shape[1:]).mean(1)


__all__ = ["DEFAULT_SCALES", "DEFAULT_SHIFT", "jitter_params", "jittered_windows", "vote"]
