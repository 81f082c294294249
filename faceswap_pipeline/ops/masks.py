"""Soft paste-back masks: face-shaped or head-shaped (from 68 landmarks), or the original design's square / elliptical feather.

Every mask here lives in the pixel grid of a face's crop window (``CropTransform.box``), and is
multiplied by :func:`window_envelope`, which is 0 outside the part of the window that lies inside
the photo and falls smoothly to 0 at the window's edges inside the photo. So a mask never leaks
outside the valid (non-padded) part of the crop, and never ends in a hard step at the window edge.
"""

from __future__ import annotations

import numpy as np

from faceswap_pipeline.ops.blend import feather_mask
from faceswap_pipeline.ops.landmarks import BROWS, JAW

FOREHEAD = 0.55
"""How far the forehead reaches above the brows, as a fraction of the brow-to-nose-base distance."""
HEAD_FOREHEAD = 1.6
"""``"head"`` masks: the brows raised this far (same unit), past the hairline into the hair, where
gender and race swaps change the hairline and the hair's colour and length."""
LANDMARK_MASKS = {"landmarks": FOREHEAD, "head": HEAD_FOREHEAD}
"""The mask shapes drawn from a face's 68 landmarks, each with how far its forehead reaches."""
MASK_SHAPES = (*LANDMARK_MASKS, "ellipse", "rect")


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def window_envelope(box: tuple[int, int, int, int], image_hw: tuple[int, int], feather: float) -> np.ndarray:
    """``(h, w)`` weight over a crop window: 0 outside the photo, smooth fall to 0 at the window's
    edges that lie inside the photo (where a seam could show); sides cut by the photo's border do
    not fade (nothing lies beyond them).

    Args:
        box: integer ``(x0, y0, x1, y1)`` window in source pixels (may extend past the photo).
        image_hw: ``(H, W)`` of the photo.
        feather: fall-off width in pixels (0: hard edge).
    """
    x0, y0, x1, y1 = box
    H, W = image_hw
    h, w = y1 - y0, x1 - x0
    xs = np.arange(w, dtype=np.float64)  # distance of each pixel centre to the outermost pixel's centre
    ys = np.arange(h, dtype=np.float64)
    inf = np.full(1, np.inf)
    dx = np.minimum(xs if x0 > 0 else inf, (w - 1 - xs) if x1 < W else inf)
    dy = np.minimum(ys if y0 > 0 else inf, (h - 1 - ys) if y1 < H else inf)
    d = np.minimum(dx[None, :], dy[:, None])
    env = (d > 0).astype(np.float64) if feather <= 0 else _smoothstep(d / feather)
    gx = (np.arange(w) + x0 >= 0) & (np.arange(w) + x0 < W)
    gy = (np.arange(h) + y0 >= 0) & (np.arange(h) + y0 < H)
    return (env * (gy[:, None] & gx[None, :])).astype(np.float32)


def face_polygon(points: np.ndarray, forehead: float = FOREHEAD) -> np.ndarray:
    """Outline of the face from 68 landmarks: the jaw (0-16) plus the brows (17-26) raised to the forehead.

    The brows move along the face's own up direction (chin -> brow centre), so tilted faces get
    tilted masks. Returns ``(27, 2)`` float points; use its convex hull.
    """
    p = np.asarray(points, dtype=np.float64)
    brow_mid = p[list(BROWS)].mean(0)
    up = brow_mid - p[8]
    up /= max(np.linalg.norm(up), 1e-9)
    lift = forehead * np.linalg.norm(brow_mid - p[33])
    return np.concatenate([p[list(JAW)], p[list(BROWS)] + lift * up])


def polygon_mask(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    """Binary ``(h, w)`` uint8 mask (0/1) of the convex hull of ``poly`` (pixel coords, pixel i covers [i, i+1))."""
    import cv2

    hull = cv2.convexHull(np.round((poly - 0.5) * 16).astype(np.int32))  # 4 fractional bits
    m = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(m, hull, 1, lineType=cv2.LINE_8, shift=4)
    return m


def landmark_mask(points: np.ndarray, h: int, w: int, feather: float, forehead: float = FOREHEAD) -> np.ndarray:
    """Face-shaped soft mask: the hull of :func:`face_polygon`, feathered inward over ``feather`` pixels.

    Args:
        points: ``(68, 2)`` landmarks in the mask's pixel coordinates.
        h, w: mask size.
        feather: fall-off width in pixels; the fall-off is centred a third of it outside the
            hull (faces' outlines are where generators differ most, so the blend ends just past it).
        forehead: how far the brows are raised (:func:`face_polygon`).

    Returns:
        ``(h, w)`` float32 in [0, 1].
    """
    import cv2

    p = np.asarray(points, dtype=np.float64)
    poly = face_polygon(p, forehead)
    if feather <= 0:
        return polygon_mask(poly, h, w).astype(np.float32)
    c = poly.mean(0)
    grow = feather / 3.0
    r = np.linalg.norm(poly - c, axis=1, keepdims=True)
    poly = c + (poly - c) * (1 + grow / np.maximum(r, 1e-9))
    m = polygon_mask(poly, h, w)
    if not m.any():
        return m.astype(np.float32)
    dist = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    return _smoothstep(dist / feather).astype(np.float32)


def face_size(points: np.ndarray) -> float:
    """Side of the face for relative feathering: the larger extent of :func:`face_polygon`."""
    poly = face_polygon(points)
    return float(max(np.ptp(poly[:, 0]), np.ptp(poly[:, 1])))


def paste_mask(
    box: tuple[int, int, int, int],
    image_hw: tuple[int, int],
    feather: float = 0.12,
    shape: str = "landmarks",
    points: np.ndarray | None = None,
) -> np.ndarray:
    """The alpha of one face over its crop window, ready for paste-back.

    Args:
        box: the crop window ``(x0, y0, x1, y1)`` (integer source pixels).
        image_hw: ``(H, W)`` of the photo.
        feather: fall-off as a fraction of the face size (landmarks: the face outline's extent;
            ellipse / rect: the window's shorter side).
        shape: ``"landmarks"`` (the face: jaw and forehead; needs ``points``), ``"head"`` (the
            face with the hairline and the hair above it, :data:`HEAD_FOREHEAD`; needs ``points``),
            ``"ellipse"`` or ``"rect"`` (the original design's square feather).
        points: ``(68, 2)`` landmarks in source pixels (for ``"landmarks"`` and ``"head"``).

    Returns:
        ``(h, w)`` float32 in [0, 1], 0 outside the photo, 0 at the window's edges inside the photo.
    """
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    win = min(h, w)
    if shape in LANDMARK_MASKS:
        if points is None:
            raise ValueError(f"shape {shape!r} needs the face's landmarks")
        local = np.asarray(points, dtype=np.float64) - (x0, y0)
        m = landmark_mask(local, h, w, feather * face_size(local), LANDMARK_MASKS[shape])
        env = window_envelope(box, image_hw, 0.5 * feather * win)
    elif shape in ("ellipse", "rect"):
        m = feather_mask(h, w, feather * win, shape)
        env = window_envelope(box, image_hw, 0.0)
    else:
        raise ValueError(f"mask shape must be one of {', '.join(MASK_SHAPES)}, not {shape!r}")
    return (m * env).astype(np.float32)
