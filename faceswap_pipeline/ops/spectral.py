"""Spectral image figures for the SR stage: periodic (grid) energy and a no-reference sharpness.

A regular dot or stripe grid of period ``p`` pixels (what transposed convolutions and badly
initialised sub-pixel convolutions leave) puts power on the frequency lines ``1/p`` cycles/px of
the 2-D spectrum: the rows ``fy = +-1/p`` and columns ``fx = +-1/p``. :func:`grid_ratio` is that
power relative to the power of the *neighbouring* lines (``1/p +- 2..4`` bins), so natural image
content (a smooth spectrum) scores ~1 at any period and a grid scores far above 1. The image is
Hann-windowed first, so the borders of a gradient (discontinuous under the FFT's periodic
extension) do not leak power onto every line.

Values are on luma (BT.601 weights, 0-255 scale) of ``(N, H, W, 3)`` uint8 or ``(N, 3, H, W)``
float [0, 1] images. No GPU, no torch: numpy only.
"""

from __future__ import annotations

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114])


def luma(images: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` float64 luma on a 0-255 scale of ``(N, H, W, 3)`` uint8 or ``(N, 3, H, W)`` float [0, 1] images."""
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    if a.dtype == np.uint8:
        return a.astype(np.float64) @ _LUMA
    if a.ndim == 4 and a.shape[1] == 3:
        return np.einsum("nchw,c->nhw", a.astype(np.float64), _LUMA) * 255.0
    raise ValueError(f"expected (N, H, W, 3) uint8 or (N, 3, H, W) float, got {a.shape} {a.dtype}")


def _power(g: np.ndarray) -> np.ndarray:
    n, h, w = g.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    x = (g - g.mean(axis=(1, 2), keepdims=True)) * win
    return np.abs(np.fft.fft2(x)) ** 2


def grid_ratio(images: np.ndarray, period: int, neighbours: tuple[int, ...] = (2, 3, 4), floor: float = 0.1) -> np.ndarray:
    """Power on the ``1/period`` cycles/px lines over the mean power of nearby lines, per image.

    Args:
        images: ``(N, H, W, 3)`` uint8 or ``(N, 3, H, W)`` float in [0, 1]; H and W multiples of
            ``period`` so the line falls on an FFT bin.
        period: grid period in pixels (2 = Nyquist, 4, 8, ...).
        neighbours: bin offsets from the line whose mean power is the reference (the line's +-1
            bins are skipped: the Hann window spreads a pure line into them).
        floor: a noise floor, in grey levels (0-255): the mean line power of a grid of this
            amplitude is added to both sides, so a flat or gradient image scores ~1 (not 0/0 or
            a ratio of rounding errors). 0.1 is far below what anyone sees (8-bit quantisation
            alone is ~0.3 rms).

    Returns:
        ``(N,)`` float64: ~1 for grid-free content, >> 1 for a regular ``period``-px grid.

    Example:
        >>> x = np.full((1, 64, 64, 3), 128, np.uint8)
        >>> float(grid_ratio(x, 2)[0])
        1.0
        >>> x[:, ::2, ::2] += 8  # a dot every 2 px
        >>> bool(grid_ratio(x, 2)[0] > 100)
        True
    """
    g = luma(images)
    n, h, w = g.shape
    if h % period or w % period:
        raise ValueError(f"image size {(h, w)} is not a multiple of the period {period}")
    p = _power(g)
    p[:, 0, 0] = 0.0

    def lines(ky: int, kx: int) -> np.ndarray:
        """Mean power on the rows +-ky and columns +-kx (each bin counted once)."""
        mask = np.zeros((h, w), bool)
        mask[[ky % h, -ky % h], :] = True
        mask[:, [kx % w, -kx % w]] = True
        return p[:, mask].mean(1)

    ky, kx = h // period, w // period
    peak = lines(ky, kx)
    ref = np.mean([(lines(ky + d, kx + d) + lines(ky - d, kx - d)) / 2 for d in neighbours], axis=0)
    # A sinusoid of amplitude `floor` on one line bin, windowed: (floor * sum(window) / 2)^2, spread
    # over the ~2 (h + w) bins the line mean is taken over.
    eps = (floor * np.hanning(h).sum() * np.hanning(w).sum() / 2) ** 2 / (2 * (h + w))
    return (peak + eps) / (ref + eps)


def grid_ratios(images: np.ndarray, periods: tuple[int, ...] = (2, 4)) -> dict[int, np.ndarray]:
    """:func:`grid_ratio` at each period (those that divide the image size)."""
    h, w = luma(images[:1]).shape[1:]
    return {p: grid_ratio(images, p) for p in periods if not (h % p or w % p)}


def sharpness(images: np.ndarray) -> np.ndarray:
    """No-reference sharpness: variance of the 4-neighbour Laplacian of the luma (0-255 scale), per image.

    Higher is sharper, but a dot grid raises it too: read it beside :func:`grid_ratio`.
    """
    g = luma(images)
    lap = g[:, 1:-1, :-2] + g[:, 1:-1, 2:] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] - 4 * g[:, 1:-1, 1:-1]
    return lap.reshape(len(g), -1).var(1)
