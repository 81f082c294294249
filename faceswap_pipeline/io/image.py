"""The in-memory image: :class:`LoadedImage` (pixels plus what a file carries) and array conversion.

The public image contract is ``np.ndarray`` uint8 HWC RGB. Everything a photo carries besides its
pixels (format, EXIF, ICC profile, JPEG quantisation, alpha) travels next to the pixels in a
:class:`LoadedImage`, so that :func:`write_image` can put it back on the output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | os.PathLike

GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
"""Pillow modes of greyscale files (written back as greyscale)."""


class ImageReadError(ValueError):
    """A file could not be read as an image (missing, empty, corrupt, truncated, too large).

    The message names the file and the reason; ``path`` holds the file.
    """

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {str(self.path)!r}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (a worker process's read error comes back whole)
        return type(self), (self.path, self.reason)


@dataclass
class LoadedImage:
    """An image read by :func:`read_image`: upright RGB pixels plus what is needed to write it back.

    Attributes:
        rgb: the pixels, EXIF orientation applied. Shape: (H, W, 3) uint8 in [0, 255], RGB.
        alpha: transparency if the file had any, else None. Shape: (H, W) uint8 (255 = opaque).
        format: Pillow's name of the decoded format: ``"JPEG"``, ``"PNG"``, ``"WEBP"``,
            ``"TIFF"``, ``"BMP"``, ``"GIF"``... (camera ``"MPO"`` files are reported as
            ``"JPEG"``). It comes from the file's content, not its suffix.
        exif: the file's EXIF block prepared for derived images (see :func:`exif_for_output`):
            starts with ``b"Exif\\0\\0"``, orientation tag 1, embedded thumbnail removed; or None.
        icc_profile: ICC profile bytes if the file had one that describes RGB data (a CMYK or
            greyscale profile does not fit the converted pixels and is dropped), or None.
        quality: JPEG quality (1-100) estimated from the luminance quantisation table, or None
            for other formats.
        path: the file that was read.
        mode: the Pillow mode of the file before conversion (``"RGB"``, ``"I;16"``, ``"CMYK"``...).
        orientation: the EXIF orientation (1-8) that was applied, 1 if none.
        dpi: ``(x, y)`` resolution if the file stored one, else None.
        qtables: JPEG quantisation tables (Pillow's ``quantization``), or None.
        subsampling: JPEG chroma subsampling (0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0), or None.
        tiff_compression: the TIFF compression name, or None.
        webp_lossless: for WebP files, whether the image is lossless (VP8L), else None.
        n_frames: number of frames/pages in the file (only the first is read).
        bits: bits per sample of the file's pixels: 16 for 16-bit files whose samples were read in
            full (then in ``samples16``), else 8.
        samples16: the full 16-bit samples, upright, for ``bits == 16``: shape (H, W) uint16 for
            greyscale, (H, W, 3) or (H, W, 4) (with alpha) for colour; else None.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    format: str
    exif: bytes | None
    icc_profile: bytes | None
    quality: int | None
    path: Path
    mode: str = "RGB"
    orientation: int = 1
    dpi: tuple[float, float] | None = None
    qtables: dict[int, list[int]] | None = field(default=None, repr=False)
    subsampling: int | None = None
    tiff_compression: str | None = None
    webp_lossless: bool | None = None
    n_frames: int = 1
    bits: int = 8
    samples16: np.ndarray | None = field(default=None, repr=False)

    @property
    def is_grey(self) -> bool:
        """Whether the file holds a greyscale image (mode in :data:`GREY_MODES`)."""
        return self.mode in GREY_MODES

    @property
    def height(self) -> int:
        """Height of the upright image in pixels."""
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        """Width of the upright image in pixels."""
        return int(self.rgb.shape[1])

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description (no pixels): size, format, mode, bits, quality, orientation."""
        return {
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "mode": self.mode,
            "bits": self.bits,
            "alpha": self.alpha is not None,
            "quality": self.quality,
            "orientation": self.orientation,
        }



def u16_to_u8(a: np.ndarray) -> np.ndarray:
    """Round 16-bit samples to 8 bits: ``round(v * 255 / 65535) == round(v / 257)``."""
    return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)


def to_uint8_rgb(array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert an image array of any supported dtype/shape to uint8 RGB plus optional alpha.

    Supported shapes: (H, W) and (H, W, 1) greyscale, (H, W, 2) greyscale + alpha, (H, W, 3) RGB,
    (H, W, 4) RGBA. Supported dtypes: uint8 (kept), uint16 (rounded to 8 bits), bool
    (False/True -> 0/255), float16/32/64 in [0, 1] (values slightly outside are clipped, then
    ``round(v * 255)``).

    Args:
        array: the image. Shape: (H, W[, C]) with C in {1, 2, 3, 4}.

    Returns:
        ``(rgb, alpha)``: rgb of shape (H, W, 3) uint8 (the input itself when it already is a
        contiguous (H, W, 3) uint8 array), alpha of shape (H, W) uint8 or None.

    Raises:
        ValueError: unsupported shape or dtype, an empty image, NaN values, or a float array with
            values above 1.5 (it looks like [0, 255] data: convert with ``astype(np.uint8)``).
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ValueError(
            f"expected an image of shape (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4), "
            f"got shape {tuple(np.shape(array))}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"empty image of shape {tuple(a.shape)}")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = u16_to_u8(a)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * np.uint8(255)
    elif np.issubdtype(a.dtype, np.floating):
        if np.isnan(a).any():
            raise ValueError("float image contains NaN values")
        if a.size and float(a.max()) > 1.5:
            raise ValueError(
                f"float image has values up to {float(a.max()):.4g}; float images must be in "
                "[0, 1] (for [0, 255] data use array.astype(np.uint8))"
            )
        a = np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise ValueError(f"unsupported image dtype {a.dtype}: use uint8, uint16, bool or float in [0, 1]")
    c = a.shape[2]
    alpha = None
    if c in (2, 4):
        alpha = np.ascontiguousarray(a[:, :, c - 1])
        a = a[:, :, : c - 1]
    if a.shape[2] == 1:
        rgb = np.repeat(a, 3, axis=2)
    else:
        rgb = np.ascontiguousarray(a)
    return rgb, alpha
