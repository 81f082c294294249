"""Robust image reading and writing, and the folder walk.

The public image contract is ``np.ndarray`` uint8 HWC RGB. Everything a photo carries besides its
pixels (format, EXIF, ICC profile, JPEG quantisation, alpha) travels next to the pixels in a
:class:`LoadedImage`, so that :func:`write_image` can put it back on the output.

Modules, in the order an image passes them:

* :mod:`~faceswap_pipeline.io.walk`: which files of a folder are images (:func:`iter_images`).
* :mod:`~faceswap_pipeline.io.read`: :func:`read_image` (orientation, every Pillow mode, 16-bit
  samples, corrupt and oversized files refused with :class:`ImageReadError`).
* :mod:`~faceswap_pipeline.io.image`: :class:`LoadedImage` and :func:`to_uint8_rgb`.
* :mod:`~faceswap_pipeline.io.metadata`: EXIF, JPEG quality, ICC profile.
* :mod:`~faceswap_pipeline.io.write`: :func:`write_image` (atomic; grey in, grey out; 16 bits in,
  16 bits out; the metadata each format keeps) and :func:`atomic_open`.

Everything listed in ``__all__`` is importable from here.
"""

from __future__ import annotations

from faceswap_pipeline.io.image import GREY_MODES, ImageReadError, LoadedImage, PathLike, to_uint8_rgb
from faceswap_pipeline.io.metadata import estimate_jpeg_quality, exif_for_output, reset_exif_orientation
from faceswap_pipeline.io.read import DEFAULT_MAX_PIXELS, read_image
from faceswap_pipeline.io.walk import (
    IMAGE_EXTENSIONS,
    OUTPUT_MARKER,
    has_image_suffix,
    iter_images,
    normalise_extensions,
)
from faceswap_pipeline.io.write import (
    DEFAULT_JPEG_QUALITY,
    DEFAULT_WEBP_QUALITY,
    SUFFIX_TO_FORMAT,
    atomic_open,
    atomic_write_bytes,
    format_for_suffix,
    write_image,
)

__all__ = [
    "DEFAULT_JPEG_QUALITY", "DEFAULT_MAX_PIXELS", "DEFAULT_WEBP_QUALITY", "GREY_MODES", "IMAGE_EXTENSIONS",
    "OUTPUT_MARKER", "SUFFIX_TO_FORMAT", "ImageReadError", "LoadedImage", "PathLike", "atomic_open",
    "atomic_write_bytes", "estimate_jpeg_quality", "exif_for_output", "format_for_suffix", "has_image_suffix",
    "iter_images", "normalise_extensions", "read_image", "reset_exif_orientation", "to_uint8_rgb", "write_image",
]
