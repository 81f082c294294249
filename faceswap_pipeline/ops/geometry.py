"""Face-box framing, crop + letterbox and its exact inverse.

Everything here is a pure function on arrays; the stages in ``faceswap_pipeline.stages`` wrap them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from faceswap_pipeline.types import Box, CropTransform

SEED_RESCALE: tuple[float, float, float, float] = (1.1, 1.5, 1.1, 1.3)
"""The original seed project's per-side enlargement of dlib's box: (left, top, right, bottom)."""

CHIP_RESCALE: tuple[float, float, float, float] = (1.1, 1.1, 1.1, 1.3)
"""The framing of the training chips (face packs) and so of every shipped model trained on them:
per-side enlargement of dlib's HOG box (left, top, right, bottom). The generators' manifest
entries record it under ``framing.rescale``; read it from there when a model is at hand."""


def rescale_box(box: Box, rescale: Sequence[float] = SEED_RESCALE) -> Box:
    """Enlarge a face box per side, as the original face-swap design intends.

    Each side moves outward by ``(f - 1) / 2`` of the *original* box width (left/right) or
    height (top/bottom). (The original prototype's code redefined ``w``/``h`` between sides; this is the
    documented intent.) The result is not clipped: crops past the image are padded instead.

    Args:
        box: ``(x0, y0, x1, y1)``.
        rescale: ``(left, top, right, bottom)`` factors; 1.0 leaves that side alone.

    Returns:
        The enlarged ``(x0, y0, x1, y1)``.

    Example:
        >>> rescale_box((100, 100, 200, 200))
        (95.0, 75.0, 205.0, 215.0)
    """
    fl, ft, fr, fb = (float(f) for f in rescale)
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    return (x0 - (fl - 1) / 2 * w, y0 - (ft - 1) / 2 * h, x1 + (fr - 1) / 2 * w, y1 + (fb - 1) / 2 * h)


def letterbox_transform(box: Box, size: int = 128) -> CropTransform:
    """Geometry of cropping ``box`` (rounded to whole pixels) and letterboxing it into a square.

    The crop keeps its aspect ratio, its longer side becomes ``size`` and it is centred on the
    shorter axis (black bars).

    Args:
        box: crop window ``(x0, y0, x1, y1)`` in source pixels (any floats; may leave the image).
        size: side of the output square.

    Returns:
        The :class:`CropTransform`.
    """
    x0, y0 = math.floor(box[0] + 0.5), math.floor(box[1] + 0.5)
    x1, y1 = max(x0 + 1, math.floor(box[2] + 0.5)), max(y0 + 1, math.floor(box[3] + 0.5))
    cw, ch = x1 - x0, y1 - y0
    s = size / max(cw, ch)
    nw, nh = min(size, max(1, round(cw * s))), min(size, max(1, round(ch * s)))
    return CropTransform(box=(x0, y0, x1, y1), size=size, content_size=(nw, nh), offset=((size - nw) // 2, (size - nh) // 2))


def padded_crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Cut ``box`` out of ``image``; parts outside the image are black (zero).

    Args:
        image: ``(H, W, C)`` array.
        box: integer ``(x0, y0, x1, y1)``, may extend past any border.

    Returns:
        ``(y1 - y0, x1 - x0, C)`` array of the same dtype (a copy).
    """
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    out = np.zeros((y1 - y0, x1 - x0, *image.shape[2:]), dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def resize(img: torch.Tensor, hw: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize ``(B, C, H, W)`` float images to ``hw`` with antialiasing when shrinking.

    Returns the input unchanged when the size already matches, so a scale-1 round trip is exact.
    Bicubic output is clamped to the input's value range [0, 1].
    """
    if tuple(img.shape[-2:]) == tuple(hw):
        return img
    out = F.interpolate(img, size=hw, mode=mode, align_corners=False, antialias=mode in ("bilinear", "bicubic"))
    return out.clamp_(0.0, 1.0) if mode == "bicubic" else out


def crop_letterbox(image: np.ndarray, box: Box, size: int = 128) -> tuple[torch.Tensor, CropTransform]:
    """Crop a face window out of a photo and letterbox it into a ``size`` x ``size`` square.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        box: crop window in source pixels (already framed, e.g. by :func:`rescale_box`).
        size: output side.

    Returns:
        ``(crop, transform)``: crop is ``(3, size, size)`` float32 in [0, 1] (black bars and
        out-of-image parts are 0); transform maps between the two coordinate frames.
    """
    tf = letterbox_transform(box, size)
    return letterbox_patch(padded_crop(image, tf.box), tf), tf


def letterbox_patch(patch: np.ndarray, tf: CropTransform) -> torch.Tensor:
    """Resize a window-sized ``(h, w, 3)`` uint8 patch into ``tf``'s square: ``(3, S, S)`` float32 in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1)[None].float().div_(255.0)
    nw, nh = tf.content_size
    t = resize(t, (nh, nw))
    out = torch.zeros(3, tf.size, tf.size, dtype=torch.float32)
    ox, oy = tf.offset
    out[:, oy : oy + nh, ox : ox + nw] = t[0]
    return out


def content_of(square: torch.Tensor, tf: CropTransform) -> torch.Tensor:
    """The part of a (possibly upscaled) letterboxed square that holds the face crop.

    Args:
        square: ``(3, S, S)`` float, where ``S`` is ``tf.size`` times an integer factor ``k``.
        tf: the transform the square was made with.

    Returns:
        ``(3, k*h, k*w)`` view of the content area (no black bars).
    """
    k = square.shape[-1] // tf.size
    if square.shape[-1] != k * tf.size or square.shape[-2] != square.shape[-1]:
        raise ValueError(f"square of shape {tuple(square.shape)} is not a multiple of the {tf.size}px crop")
    (ox, oy), (nw, nh) = tf.offset, tf.content_size
    return square[:, k * oy : k * (oy + nh), k * ox : k * (ox + nw)]
