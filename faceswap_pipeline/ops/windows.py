"""Image pyramids and batched window cropping for window-based detectors (pure torch functions).

Coordinates are continuous pixel coordinates: pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``,
so its centre is ``(j + 0.5, i + 0.5)`` and a box ``(x0, y0, x1, y1)`` covering columns 10..19 is
``(10, y0, 20, y1)``, as in :class:`faceswap_pipeline.types.Detection`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pyramid_scales(
    height: int, width: int, min_face: float, net_size: int = 12, factor: float = 0.709, max_face: float | None = None
) -> list[float]:
    """Scales at which a ``net_size`` window net scans an image to find faces >= ``min_face`` px.

    Scale ``k`` is ``(net_size / min_face) * factor**k``: at that scale a ``net_size`` window covers
    ``net_size / scale`` source pixels. Levels continue while the scaled image still holds one
    window (and, if given, while the window is <= ``max_face``).

    Returns:
        Scales, largest first (empty if the image is smaller than ``min_face``).
    """
    if not 0 < factor < 1:
        raise ValueError(f"factor must be in (0, 1), got {factor}")
    if min_face <= 0:
        raise ValueError(f"min_face must be positive, got {min_face}")
    scales = []
    s = net_size / float(min_face)
    while min(height, width) * s >= net_size - 1e-9:
        if max_face is not None and net_size / s > max_face * (1 + 1e-9):
            break
        scales.append(s)
        s *= factor
    return scales


def level_shape(height: int, width: int, scale: float) -> tuple[int, int]:
    """``(h, w)`` of the image resized by ``scale`` (rounded, at least 1)."""
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def map_windows(
    positions: torch.Tensor, level_hw: tuple[int, int], image_hw: tuple[int, int], net_size: int = 12, stride: int = 2
) -> torch.Tensor:
    """Source-pixel boxes of fully-convolutional output cells.

    Output cell ``(i, j)`` of a net with input ``net_size`` and output stride ``stride`` on a level of
    shape ``level_hw`` sees level pixels ``[stride*j, stride*j + net_size) x [stride*i, ...)``; the
    level was resized from ``image_hw`` with per-axis factors ``level / image``.

    Args:
        positions: ``(N, 2)`` int64 ``(i, j)`` cells.

    Returns:
        ``(N, 4)`` float32 xyxy boxes in source pixels.
    """
    sy = level_hw[0] / image_hw[0]
    sx = level_hw[1] / image_hw[1]
    p = positions.to(torch.float32) * stride
    x0 = p[:, 1] / sx
    y0 = p[:, 0] / sy
    return torch.stack([x0, y0, x0 + net_size / sx, y0 + net_size / sy], dim=1)


def octave_pyramid(images: torch.Tensor, min_side: int = 8) -> list[torch.Tensor]:
    """Factor-2 pyramid by 2x2 area averaging (exact anti-aliasing for halving).

    Level ``L`` pixel ``(i, j)`` covers source pixels ``[2^L j, 2^L (j + 1))``. Odd sizes drop the
    last row/column at each halving (it lies outside every level-``L`` pixel's footprint).

    Shape: (B, C, H, W) -> list of (B, C, H / 2^L, W / 2^L), level 0 the input itself.
    """
    levels = [images]
    while min(levels[-1].shape[-2:]) // 2 >= min_side:
        levels.append(F.avg_pool2d(levels[-1], 2))
    return levels


def crop_windows(
    pyramid: list[torch.Tensor], image_index: torch.Tensor, boxes: torch.Tensor, size: int
) -> torch.Tensor:
    """Crop and resize windows (bilinear, zero outside the image), all windows at once.

    Each window is sampled from the finest pyramid level at which it is at most twice the output
    size (so bilinear sampling never skips more than one pixel: mild, bounded aliasing). Windows of
    all images of the batch are handled together; the only Python loop is over pyramid levels.

    Args:
        pyramid: :func:`octave_pyramid` of a ``(B, C, H, W)`` float batch.
        image_index: ``(N,)`` int64, which image of the batch each window comes from.
        boxes: ``(N, 4)`` xyxy windows in level-0 (source) pixels; may extend past the image.
        size: output side.

    Returns:
        ``(N, C, size, size)`` windows, same dtype as the pyramid (possibly a non-contiguous view).
    """
    base = pyramid[0]
    n = boxes.shape[0]
    c = base.shape[1]
    if n == 0:
        return base.new_zeros((0, c, size, size))
    side = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).clamp_min(1e-6)
    lvl = torch.floor(torch.log2(side / size)).clamp(0, len(pyramid) - 1).to(torch.long)
    t = (torch.arange(size, device=boxes.device, dtype=boxes.dtype) + 0.5) / size  # (S,)
    levels = torch.unique(lvl).tolist()
    single = len(levels) == 1  # every window from one level: no gather/scatter, return the sample directly
    out: torch.Tensor | None = None
    for L in levels:
        sel = None if single else torch.nonzero(lvl == L).squeeze(1)
        img = pyramid[L]
        f = 2.0**L
        b = (boxes if single else boxes[sel]) / f
        # sample centres in level pixel-index space (pixel centres at integers)
        xs = b[:, 0:1] + t[None] * (b[:, 2:3] - b[:, 0:1]) - 0.5  # (n, S)
        ys = b[:, 1:2] + t[None] * (b[:, 3:4] - b[:, 1:2]) - 0.5
        win = _bilinear(img, image_index if single else image_index[sel], xs, ys)
        if single:
            return win
        if out is None:
            out = base.new_empty((n, c, size, size))
        out[sel] = win
    assert out is not None
    return out


def _bilinear(img: torch.Tensor, idx: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Sample ``img[idx]`` on the grid ``ys x xs`` (zero padding). Returns (n, C, S, S).

    One ``grid_sample`` call: the windows of each image are stacked along the grid's height, and
    images with fewer windows are padded with off-image points (sampled as zeros, then dropped).
    When every window comes from one image (a single photo), no padding or regrouping is needed
    and the result is a strided view of the sampled block (no copy).
    """
    bsz, c, h, w = img.shape
    n, s = xs.shape
    gx = 2 * (xs + 0.5) / w - 1  # (n, S) columns
    gy = 2 * (ys + 0.5) / h - 1  # (n, S) rows
    if bsz == 1 or bool((idx == idx[0]).all()):
        src = img[int(idx[0]) : int(idx[0]) + 1] if bsz > 1 else img
        grid = img.new_empty((n, s, s, 2))
        grid[..., 0] = gx[:, None, :].to(img.dtype)
        grid[..., 1] = gy[:, :, None].to(img.dtype)
        out = torch.nn.functional.grid_sample(src, grid.view(1, n * s, s, 2), mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.view(c, n, s, s).transpose(0, 1)
    counts = torch.bincount(idx, minlength=bsz)
    m = int(counts.max())
    order = torch.argsort(idx, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(idx)
    slot[order] = torch.arange(n, device=idx.device) - starts[idx[order]]
    grid = img.new_full((bsz, m, s, s, 2), -4.0)  # off-image -> zeros
    grid[idx, slot] = torch.stack([gx[:, None, :].expand(n, s, s), gy[:, :, None].expand(n, s, s)], -1).to(img.dtype)
    out = torch.nn.functional.grid_sample(img, grid.view(bsz, m * s, s, 2), mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.view(bsz, c, m, s, s).permute(0, 2, 1, 3, 4)[idx, slot]


def _bilinear_gather(img: torch.Tensor, idx: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Reference implementation of :func:`_bilinear` by explicit four-corner gathers (tests)."""
    bsz, c, h, w = img.shape
    flat = img.permute(0, 2, 3, 1).reshape(bsz * h * w, c)
    x0 = torch.floor(xs)
    y0 = torch.floor(ys)
    wx1 = xs - x0
    wy1 = ys - y0
    x0 = x0.to(torch.long)
    y0 = y0.to(torch.long)
    n, s = xs.shape
    out = img.new_zeros((n, s, s, c))
    base = (idx * (h * w))[:, None, None]
    for dy, wy in ((0, 1 - wy1), (1, wy1)):
        yy = y0 + dy  # (n, S)
        vy = (yy >= 0) & (yy < h)
        for dx, wx in ((0, 1 - wx1), (1, wx1)):
            xx = x0 + dx
            vx = (xx >= 0) & (xx < w)
            valid = vy[:, :, None] & vx[:, None, :]  # (n, S, S)
            lin = base + yy.clamp(0, h - 1)[:, :, None] * w + xx.clamp(0, w - 1)[:, None, :]
            wgt = (wy[:, :, None] * wx[:, None, :]) * valid
            out += flat[lin.reshape(-1)].reshape(n, s, s, c) * wgt[..., None].to(img.dtype)
    return out.permute(0, 3, 1, 2).contiguous()


def level_from_octaves(octaves: list[torch.Tensor], shape: tuple[int, int], full_hw: tuple[int, int]) -> torch.Tensor:
    """Resize to ``shape`` the way :func:`crop_windows` samples: from the finest octave that is at
    most 2x larger, by plain bilinear interpolation (cheaper than an anti-aliased resize, and the
    same sampling the training crops had).

    Args:
        octaves: :func:`octave_pyramid` of a ``(B, C, H, W)`` batch whose images are ``full_hw``.
        shape: target ``(h, w)``.
        full_hw: ``(H, W)`` of the images at level 0 (crop of the padded batch).
    """
    f = max(full_hw[0] / shape[0], full_hw[1] / shape[1])
    L = int(min(len(octaves) - 1, max(0, math.floor(math.log2(max(f, 1.0))))))
    src = octaves[L][..., : full_hw[0] >> L, : full_hw[1] >> L]
    if tuple(src.shape[-2:]) == tuple(shape):
        return src
    return F.interpolate(src, size=shape, mode="bilinear", align_corners=False)


__all__ = ["crop_windows", "level_from_octaves", "level_shape", "map_windows", "octave_pyramid", "pyramid_scales"]
