"""The face-check window: what the verify stage's second opinion (``facecheck.v1``) looks at.

For a detection box (HOG framing, which both detectors output) the check window is the square of
side ``context * sqrt(w h)`` centred on the box; it is cropped with the cascade's own window crop
(:func:`~faceswap_pipeline.ops.windows.crop_windows`: one bilinear sample from an octave pyramid,
zeros past the photo). The trainer (:mod:`faceswap_pipeline.train.facecheck`) makes every
training crop with these same two functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from faceswap_pipeline.ops.windows import crop_windows, octave_pyramid

DEFAULT_CONTEXT = 1.25


def check_windows(boxes: torch.Tensor | np.ndarray | Sequence[Sequence[float]], context: float = DEFAULT_CONTEXT) -> torch.Tensor:
    """``(N, 4)`` xyxy boxes -> ``(N, 4)`` square check windows (float32)."""
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
    c = (b[:, :2] + b[:, 2:]) / 2
    side = context * torch.sqrt((b[:, 2] - b[:, 0]).clamp_min(1e-3) * (b[:, 3] - b[:, 1]).clamp_min(1e-3))
    return torch.cat([c - side[:, None] / 2, c + side[:, None] / 2], 1)


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB (or ``(H, W)`` grey) -> ``(1, 3, H, W)`` float32 in [0, 1]."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(a[:, :, :3])).permute(2, 0, 1)[None].float().div_(255.0)


def check_crops(image: np.ndarray | torch.Tensor, boxes: torch.Tensor | np.ndarray | Sequence[Sequence[float]], size: int = 64,
                context: float = DEFAULT_CONTEXT, pyramid: list[torch.Tensor] | None = None) -> torch.Tensor:
    """``(N, 3, size, size)`` float32 crops of the check windows of ``boxes`` in one image."""
    wins = check_windows(boxes, context)
    if pyramid is None:
        t = image if isinstance(image, torch.Tensor) else image_tensor(image)
        if t.dim() == 3:
            t = t[None]
        pyramid = octave_pyramid(t)
    if wins.shape[0] == 0:
        return torch.zeros((0, 3, size, size))
    return crop_windows(pyramid, torch.zeros(wins.shape[0], dtype=torch.long), wins, size)


__all__ = ["DEFAULT_CONTEXT", "check_crops", "check_windows", "image_tensor"]
