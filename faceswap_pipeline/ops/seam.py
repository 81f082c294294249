"""Seam metrics of a paste-back: colour step (Lab Delta-E) and gradient discontinuity along the mask boundary.

A seam is an edge in the result that the original photo does not have. Both metrics are measured
along the blend mask's boundary (its 0.5 level line) and reported for the result and, at the very
same pixels, for the original photo; the difference ("excess") is what the paste-back added:

* **Delta-E**: for each boundary pixel, CIEDE2000 between the mean Lab colour of the result just
  inside the mask (a ``ring``-pixel band) and just outside it.
* **gradient**: mean Sobel gradient magnitude of the result's L channel (Lab lightness, 0..100
  per pixel) over the pixels within ``ring`` of the boundary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class SeamScore:
    """Seam metrics of one face (or the mean over many)."""

    delta_e: float
    delta_e_original: float
    gradient: float
    gradient_original: float
    boundary_px: int

    @property
    def delta_e_excess(self) -> float:
        return self.delta_e - self.delta_e_original

    @property
    def gradient_excess(self) -> float:
        return self.gradient - self.gradient_original

    def to_dict(self) -> dict[str, float]:
        d = {k: round(float(v), 4) for k, v in asdict(self).items()}
        d["delta_e_excess"] = round(self.delta_e_excess, 4)
        d["gradient_excess"] = round(self.gradient_excess, 4)
        return d


def _lab(image: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(image[..., :3].astype(np.float64) / 255.0)


def _side_means(lab: np.ndarray, side: np.ndarray, k: int) -> np.ndarray:
    import cv2

    w = cv2.blur(side.astype(np.float64), (k, k), borderType=cv2.BORDER_CONSTANT)
    num = cv2.blur(lab * side[..., None], (k, k), borderType=cv2.BORDER_CONSTANT)
    return num / np.maximum(w, 1e-9)[..., None]


def _grad(lab: np.ndarray) -> np.ndarray:
    import cv2

    L = np.ascontiguousarray(lab[..., 0])
    gx = cv2.Sobel(L, cv2.CV_64F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(L, cv2.CV_64F, 0, 1, ksize=3) / 8.0
    return np.hypot(gx, gy)


def seam_score(original: np.ndarray, result: np.ndarray, alpha: np.ndarray, ring: int = 4) -> SeamScore | None:
    """Seam metrics of ``result`` vs ``original`` along the boundary of ``alpha``.

    Args:
        original, result: ``(H, W, 3)`` uint8 RGB photos (or the same crop of both).
        alpha: ``(H, W)`` blend weight of the pasted face in [0, 1].
        ring: band width in pixels on each side of the boundary.

    Returns:
        A :class:`SeamScore`, or None when the mask has no boundary inside the image.
    """
    import cv2
    from skimage.color import deltaE_ciede2000

    inside = (alpha >= 0.5).astype(np.uint8)
    if inside.all() or not inside.any():
        return None
    k = 2 * ring + 1
    kernel = np.ones((3, 3), np.uint8)
    boundary = (cv2.dilate(inside, kernel) != cv2.erode(inside, kernel)).astype(bool)
    band = cv2.dilate(boundary.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    ys, xs = np.nonzero(boundary)
    y0, y1 = max(ys.min() - k, 0), min(ys.max() + k + 1, alpha.shape[0])
    x0, x1 = max(xs.min() - k, 0), min(xs.max() + k + 1, alpha.shape[1])
    sl = (slice(y0, y1), slice(x0, x1))
    inn = inside[sl].astype(bool) & band[sl]
    out = ~inside[sl].astype(bool) & band[sl]
    b = boundary[sl]
    vals = []
    for img in (result, original):
        lab = _lab(img[sl])
        mi, mo = _side_means(lab, inn, k)[b], _side_means(lab, out, k)[b]
        vals.append((float(deltaE_ciede2000(mi, mo).mean()), float(_grad(lab)[band[sl]].mean())))
    return SeamScore(vals[0][0], vals[1][0], vals[0][1], vals[1][1], int(b.sum()))


def mean_scores(scores: list[SeamScore]) -> dict[str, float]:
    """Mean of each metric over faces (boundary-length weighted), plus the face count."""
    if not scores:
        return {"faces": 0}
    w = np.array([s.boundary_px for s in scores], np.float64)
    keys = ("delta_e", "delta_e_original", "gradient", "gradient_original", "delta_e_excess", "gradient_excess")
    out: dict[str, float] = {k: round(float(np.average([getattr(s, k) for s in scores], weights=w)), 4) for k in keys}
    out["faces"] = len(scores)
    return out
