"""Skin-tone harmonisation at paste-back: the skin around a swapped face follows its new tone.

A race swap changes the face's skin tone; pasted onto an unchanged neck, ears and forehead it
leaves a visible step at the mask's edge. :func:`harmonise_surround` measures the tone change of
the face's skin (CIE Lab, median over skin-coloured pixels well inside the mask, the same pixels
before and after) and moves the skin around the face toward it:

* only pixels of the face's crop window can change, with weight ``(1 - alpha)`` (the paste then
  covers the rest), times a fall-off with distance from the face mask (1 at the mask, 0 at
  ``reach`` x the window's shorter side, smooth in between), times the window's edge envelope (0
  at the window's edges inside the photo, so nothing steps there);
* and only skin-coloured pixels: a pixel's weight falls with its Lab distance to the face's skin
  colour before the swap (hair, clothes and background barely move);
* a tone change below ``min_shift`` Delta-E (a gender swap that kept the skin, or a generator that
  returns its input) changes nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceswap_pipeline.ops.masks import _smoothstep


@dataclass(frozen=True)
class ToneShift:
    """The face's skin-tone change: ``lab`` = (dL, da, db) after minus before, over ``n_skin`` pixels."""

    lab: tuple[float, float, float]
    n_skin: int

    @property
    def magnitude(self) -> float:
        """Euclidean size of the shift in Lab (Delta-E 1976)."""
        return float(np.linalg.norm(self.lab))


def _rgb2lab(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(np.clip(rgb, 0, 255) / 255.0)


def _lab2rgb(lab: np.ndarray) -> np.ndarray:
    from skimage.color import lab2rgb

    return lab2rgb(lab) * 255.0


def skin_pixels(lab: np.ndarray, region: np.ndarray, tolerance: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """The skin inside ``region``: pixels whose Lab colour lies near the region's robust centre.

    Args:
        lab: ``(h, w, 3)`` Lab image.
        region: ``(h, w)`` bool, where to look (e.g. well inside the face mask).
        tolerance: kept pixels lie within this many robust spreads (1.4826 x MAD per channel,
            at least 2 Lab units) of the median: eyes, brows, lips, teeth and hair fall out.

    Returns:
        ``(mask, centre)``: ``(h, w)`` bool skin mask and the ``(3,)`` median Lab colour of the region.
    """
    px = lab[region]
    if len(px) == 0:
        return np.zeros(region.shape, bool), np.zeros(3)
    centre = np.median(px, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(px - centre), axis=0), 2.0)
    mask = region & np.all(np.abs(lab - centre) <= tolerance * spread, axis=-1)
    return mask, centre


def tone_shift(before: np.ndarray, after: np.ndarray, alpha: np.ndarray, core: float = 0.9) -> ToneShift:
    """The skin-tone change of a pasted face, measured on its skin pixels before and after.

    Args:
        before: ``(h, w, 3)`` float RGB in [0, 255], the photo's crop window before the paste.
        after: ``(h, w, 3)`` float RGB in [0, 255], the new face resized to the window.
        alpha: ``(h, w)`` paste mask in [0, 1]; the skin is sampled where ``alpha >= core``.
    """
    lab_b, lab_a = _rgb2lab(before), _rgb2lab(after)
    skin, _ = skin_pixels(lab_b, alpha >= core)
    if skin.sum() < 16:
        return ToneShift((0.0, 0.0, 0.0), int(skin.sum()))
    d = np.median(lab_a[skin], axis=0) - np.median(lab_b[skin], axis=0)
    return ToneShift(tuple(float(v) for v in d), int(skin.sum()))


def harmonise_surround(
    before: np.ndarray,
    after: np.ndarray,
    alpha: np.ndarray,
    envelope: np.ndarray,
    reach: float = 0.35,
    colour_sigma: float = 14.0,
    min_shift: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, ToneShift]:
    """Move the skin around a face (within its crop window) toward the face's new tone.

    Args:
        before: ``(h, w, 3)`` float RGB in [0, 255], the photo's crop window before the paste.
        after: ``(h, w, 3)`` float RGB in [0, 255], the new face resized to the window.
        alpha: ``(h, w)`` float paste mask in [0, 1] (the face that will be pasted).
        envelope: ``(h, w)`` float in [0, 1], 0 outside the photo and at the window's edges
            inside it (:func:`~faceswap_pipeline.ops.masks.window_envelope`).
        reach: how far from the face mask the shift fades to 0, as a fraction of the window's
            shorter side.
        colour_sigma: Lab distance from the face's skin colour at which a pixel's weight falls
            to ``1/e`` (a Gaussian in Delta-E 1976).
        min_shift: tone changes smaller than this (Delta-E 1976) are left alone.

    Returns:
        ``(window, weight, shift)``: the harmonised window (``(h, w, 3)`` float RGB [0, 255];
        equal to ``before`` wherever ``weight`` is 0), the per-pixel weight ``(h, w)`` in [0, 1]
        of the full shift, and the measured :class:`ToneShift`.
    """
    import cv2

    h, w = alpha.shape
    shift = tone_shift(before, after, alpha)
    weight = np.zeros((h, w), np.float64)
    if shift.magnitude < min_shift:
        return before, weight, shift
    lab = _rgb2lab(before)
    _, skin_centre = skin_pixels(lab, alpha >= 0.9)
    face = (alpha >= 0.5).astype(np.uint8)
    dist = cv2.distanceTransform(1 - face, cv2.DIST_L2, 5).astype(np.float64)  # 0 on the face, px outside
    fall = 1.0 - _smoothstep(dist / max(reach * min(h, w), 1.0))
    colour = np.exp(-np.sum((lab - skin_centre) ** 2, axis=-1) / colour_sigma**2)
    weight = (1.0 - alpha) * fall * colour * envelope
    weight[weight < 1e-3] = 0.0
    out = before.copy()
    on = weight > 0
    if on.any():
        moved = lab[on] + weight[on, None] * np.asarray(shift.lab)
        out[on] = _lab2rgb(moved[:, None, :])[:, 0, :]
    return out, weight, shift


def harmonise_in_photo(
    image: np.ndarray, face: np.ndarray, box: tuple[int, int, int, int], alpha: np.ndarray, **kwargs
) -> ToneShift:
    """:func:`harmonise_surround` for one face of a photo, in place, before that face is pasted.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo, modified in place (only inside ``box``, only where
            the weight is above 0).
        face: ``(h, w, 3)`` float [0, 255], the new face resized to the window ``box``.
        box: integer crop window ``(x0, y0, x1, y1)`` (may extend past the photo).
        alpha: ``(h, w)`` paste mask of the face over the window.
        **kwargs: passed to :func:`harmonise_surround`.
    """
    from faceswap_pipeline.ops.masks import window_envelope

    x0, y0, x1, y1 = box
    H, W = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if sx1 <= sx0 or sy1 <= sy0:
        return ToneShift((0.0, 0.0, 0.0), 0)
    env = window_envelope(box, (H, W), 0.15 * min(x1 - x0, y1 - y0))
    sl = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
    region = image[sy0:sy1, sx0:sx1]
    out, weight, shift = harmonise_surround(region.astype(np.float64), face[sl].astype(np.float64), alpha[sl].astype(np.float64),
                                            env[sl].astype(np.float64), **kwargs)
    on = weight > 0
    region[on] = np.clip(np.rint(out[on]), 0, 255).astype(np.uint8)
    return shift


__all__ = ["ToneShift", "harmonise_in_photo", "harmonise_surround", "skin_pixels", "tone_shift"]
