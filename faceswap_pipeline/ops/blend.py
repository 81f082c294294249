"""Alpha-feathered paste-back of a processed face square into the photo."""

from __future__ import annotations

import numpy as np
import torch

from faceswap_pipeline.ops.geometry import content_of, resize
from faceswap_pipeline.types import CropTransform


def feather_mask(h: int, w: int, feather: float, shape: str = "ellipse") -> np.ndarray:
    """Alpha that is 1 in the middle and falls smoothly to 0 at the region's edge.

    Args:
        h, w: mask size in pixels.
        feather: width of the fall-off in pixels (0: hard edge).
        shape: ``"ellipse"`` (the ellipse inscribed in the rectangle: only the face, not the
            crop's corners, changes) or ``"rect"`` (the whole rectangle, edges feathered).

    Returns:
        ``(h, w)`` float32 in [0, 1]; exactly 0 on and outside the shape's boundary.
    """
    ys = (np.arange(h, dtype=np.float64) + 0.5)[:, None]
    xs = (np.arange(w, dtype=np.float64) + 0.5)[None, :]
    if shape == "rect":
        dist = np.minimum(np.minimum(xs, w - xs), np.minimum(ys, h - ys))  # px to the nearest edge
    elif shape == "ellipse":
        a, b = w / 2.0, h / 2.0
        r = np.sqrt(((xs - a) / a) ** 2 + ((ys - b) / b) ** 2)
        dist = (1.0 - r) * min(a, b)  # approximate px inside the ellipse (exact on its short axis)
    else:
        raise ValueError(f"shape must be 'ellipse' or 'rect', not {shape!r}")
    if feather <= 0:
        return (dist > 0).astype(np.float32)
    t = np.clip(dist / feather, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)  # smoothstep


def paste(
    image: np.ndarray, square: torch.Tensor, tf: CropTransform, feather: float = 0.12, shape: str = "ellipse"
) -> np.ndarray:
    """Blend a processed face square back into ``image`` in place, using the crop's inverse.

    The content of ``square`` (the letterboxed area, at any integer multiple of ``tf.size``) is
    resized exactly to the crop window, feathered, and mixed into the pixels of the window that
    lie inside the image. Pixels outside the window, or where the alpha is 0, are not written.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, modified in place.
        square: ``(3, k*S, k*S)`` float in [0, 1].
        tf: the crop's transform.
        feather: fall-off width as a fraction of the window's shorter side.
        shape: mask shape, see :func:`feather_mask`.

    Returns:
        ``image``.
    """
    cw, ch = tf.crop_size
    face = resize(content_of(square, tf)[None].float(), (ch, cw))[0]
    x0, y0, x1, y1 = tf.box
    H, W = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if sx1 <= sx0 or sy1 <= sy0:
        return image
    alpha = feather_mask(ch, cw, feather * min(cw, ch), shape)[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0, None]
    new = face.permute(1, 2, 0).numpy()[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] * 255.0
    region = image[sy0:sy1, sx0:sx1]
    mixed = np.rint(alpha * new + (1.0 - alpha) * region).astype(np.uint8)
    inside = alpha[..., 0] > 0
    region[inside] = mixed[inside]
    return image
