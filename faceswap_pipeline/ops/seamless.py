"""Paste-back blending modes: alpha feather, multi-band (Laplacian pyramid) and Poisson (seamless cloning).

All three work on the crop window of one face and write only pixels where the face's alpha
(:func:`~faceswap_pipeline.ops.masks.paste_mask`) is above 0, so pixels away from the face stay
bit-identical. The pyramids are OpenCV's (``cv2.pyrDown`` / ``cv2.pyrUp``); the Poisson solve is
OpenCV's ``cv2.seamlessClone`` (Perez et al. 2003), not a hand-written solver.
"""

from __future__ import annotations

import numpy as np
import torch

from faceswap_pipeline.ops.geometry import content_of, resize
from faceswap_pipeline.types import CropTransform

BLEND_MODES = ("feather", "laplacian", "poisson")


def window_face(square: torch.Tensor, tf: CropTransform) -> np.ndarray:
    """The face square's content resized exactly to the crop window: ``(h, w, 3)`` float32 in [0, 255]."""
    cw, ch = tf.crop_size
    face = resize(content_of(square, tf)[None].float(), (ch, cw))[0]
    return face.permute(1, 2, 0).numpy() * 255.0


def _levels(h: int, w: int, smallest: int = 8, most: int = 6) -> int:
    n = 0
    while n < most and min(h, w) / 2 ** (n + 1) >= smallest:
        n += 1
    return n


def laplacian_blend(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray, levels: int | None = None) -> np.ndarray:
    """Multi-band blend (Burt & Adelson 1983) of ``src`` into ``dst`` with weight ``alpha``.

    Each band of the Laplacian pyramids is mixed with the Gaussian pyramid of ``alpha`` at that
    band's scale: coarse tone differences are spread wide, fine detail stays sharp. The
    correction to ``dst`` is then multiplied by ``support`` = the alpha's own support, grown and
    softened (its Gaussian pyramid's finest blurred level) so the result equals ``dst`` exactly
    where ``alpha`` is 0 far from the face.

    Args:
        dst, src: ``(h, w, 3)`` float32 in [0, 255].
        alpha: ``(h, w)`` float32 in [0, 1].
        levels: pyramid depth (default: down to ~8 px).

    Returns:
        ``(h, w, 3)`` float32 (not clipped).
    """
    import cv2

    h, w = alpha.shape
    n = _levels(h, w) if levels is None else levels
    diff = (src - dst).astype(np.float32)
    a = alpha.astype(np.float32)
    gd, ga = [diff], [a]
    for _ in range(n):
        gd.append(cv2.pyrDown(gd[-1]))
        ga.append(cv2.pyrDown(ga[-1]))
    out = gd[n] * ga[n][..., None]
    for k in range(n - 1, -1, -1):
        size = (gd[k].shape[1], gd[k].shape[0])
        lap = gd[k] - cv2.pyrUp(gd[k + 1], dstsize=size)
        out = cv2.pyrUp(out, dstsize=size) + lap * ga[k][..., None]
    # alpha, not the blurred pyramids, decides where anything may change: outside alpha > 0 the
    # photo is untouched; at alpha = 1 the full multi-band correction applies
    support = np.clip(a * 4.0, 0.0, 1.0)[..., None]
    return dst + support * out


def poisson_blend(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Gradient-domain blend: OpenCV's ``seamlessClone`` (NORMAL_CLONE) inside ``alpha > threshold``,
    then mixed with ``alpha`` so the cloned region's edge is soft too. The solver's own error
    (the clone of the photo into itself) is subtracted, so blending a photo into itself is exact.

    The window is reflect-padded first, so faces cut by the photo's border clone fine (OpenCV
    needs a margin around the mask).

    Args:
        dst, src: ``(h, w, 3)`` float32 in [0, 255].
        alpha: ``(h, w)`` float32 in [0, 1].

    Returns:
        ``(h, w, 3)`` float32.
    """
    import cv2

    m = (alpha > threshold).astype(np.uint8) * 255
    if m.sum() == 0:
        return dst + alpha[..., None] * (src - dst)
    pad = 4
    d8 = np.clip(np.rint(dst), 0, 255).astype(np.uint8)
    s8 = np.clip(np.rint(src), 0, 255).astype(np.uint8)
    dp = cv2.copyMakeBorder(d8, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    sp = cv2.copyMakeBorder(s8, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    mp = cv2.copyMakeBorder(m, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    x, y, bw, bh = cv2.boundingRect(mp)
    centre = (x + bw // 2, y + bh // 2)  # seamlessClone places the mask's bounding box centred here
    cloned = cv2.seamlessClone(sp, dp, mp, centre, cv2.NORMAL_CLONE)[pad:-pad, pad:-pad].astype(np.float32)
    # the same solve with the photo as its own source: OpenCV's solver is not exact (8-bit,
    # rounding), so its bias is measured and removed; identical images then blend to the input
    base = cv2.seamlessClone(dp, dp, mp, centre, cv2.NORMAL_CLONE)[pad:-pad, pad:-pad].astype(np.float32)
    return dst + alpha[..., None] * (cloned - base)


def blend_window(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray, mode: str = "feather") -> np.ndarray:
    """``(h, w, 3)`` float32 blend of ``src`` into ``dst`` by ``mode`` (one of :data:`BLEND_MODES`)."""
    if mode == "feather":
        return dst + alpha[..., None] * (src - dst)
    if mode == "laplacian":
        return laplacian_blend(dst, src, alpha)
    if mode == "poisson":
        return poisson_blend(dst, src, alpha)
    raise ValueError(f"blend mode must be one of {', '.join(BLEND_MODES)}, not {mode!r}")


def paste_window(image: np.ndarray, face: np.ndarray, box: tuple[int, int, int, int], alpha: np.ndarray, mode: str = "feather") -> np.ndarray:
    """Blend a window-sized face ``(h, w, 3)`` float [0, 255] into ``image`` in place.

    Args:
        image: ``(H, W, 3)`` uint8, modified in place.
        face: the face resized to the window ``box``.
        box: integer window ``(x0, y0, x1, y1)`` (may extend past the photo).
        alpha: ``(h, w)`` window alpha (see :func:`~faceswap_pipeline.ops.masks.paste_mask`).
        mode: ``"feather"``, ``"laplacian"`` or ``"poisson"``.

    Only pixels with ``alpha > 0`` are written.
    """
    x0, y0, x1, y1 = box
    H, W = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if sx1 <= sx0 or sy1 <= sy0:
        return image
    sl = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
    a = np.ascontiguousarray(alpha[sl], dtype=np.float32)
    inside = a > 0
    if not inside.any():
        return image
    region = image[sy0:sy1, sx0:sx1]
    mixed = blend_window(region.astype(np.float32), np.ascontiguousarray(face[sl], dtype=np.float32), a, mode)
    region[inside] = np.clip(np.rint(mixed[inside]), 0, 255).astype(np.uint8)
    return image
