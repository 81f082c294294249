"""Robust image reading and writing, and the folder walk.

The public image contract is ``np.ndarray`` uint8 HWC RGB. Everything a photo carries besides its
pixels (format, EXIF, ICC profile, JPEG quantisation, alpha) travels next to the pixels in a
:class:`LoadedImage`, so that :func:`write_image` can put it back on the output.

Reading (:func:`read_image`):

* EXIF orientation is applied (pixels come back upright) and the orientation tag of the kept EXIF
  block is reset to 1, so outputs written with it are not rotated a second time by viewers. The
  EXIF's embedded thumbnail is dropped: on an output it would still show the original picture.
* Every Pillow mode is converted to RGB: greyscale (``1``, ``L``, ``I;16``, ``I``, ``F``), palette
  (``P``, with transparency becoming alpha), ``LA``/``PA``/``RGBA`` (alpha split off), ``CMYK``,
  ``YCbCr``, ``LAB``, ``HSV``. The file's mode stays on the :class:`LoadedImage` (``mode``,
  ``is_grey``), so that a greyscale photo is written back as greyscale.
* 16-bit files (greyscale ``I;16`` and 16-bit RGB/RGBA PNG and TIFF) keep their full samples in
  ``samples16`` (``bits == 16``); ``rgb`` is their 8-bit rounding (``round(v / 257)``). Pillow
  itself only decodes the high byte of 16-bit RGB samples; the low byte is decoded here with a
  second pass of Pillow's own decoder.
* Corrupt, truncated, empty and non-image files raise :class:`ImageReadError` naming the file and
  the reason. Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never changed (it must stay False,
  its default) and decoding is forced inside the ``try``, so a partial image is never returned.
* Images over ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`, about 179 megapixels) are
  refused from the header alone, before any pixel is decoded. Pillow's own decompression-bomb
  limit (``PIL.Image.MAX_IMAGE_PIXELS``, an error above twice its value) also applies; an
  application that wants bigger images raises both.
* Multi-frame files (animated GIF/WebP, multi-page TIFF) give their first frame.

Writing (:func:`write_image`) is atomic: the encoder writes a hidden temporary file in the target
folder (``.<name>.<random>.tmp``), which is renamed over the target with :func:`os.replace` only
once complete, and removed if anything fails. A half-written output never exists under the target
name, and a path that resolves to the ``like`` image's own file is refused, so inputs are never
overwritten.

Grey in, grey out; 16 bits in, 16 bits out: when ``like`` is a greyscale file, the output is
written greyscale (``L``, or ``LA`` in a PNG with alpha; a colour image is converted to its
luma, which leaves grey pixels unchanged). When ``like`` is a 16-bit file and the output is a PNG
or TIFF, it is written with 16-bit samples: every pixel the caller did not change keeps its
exact 16-bit value, changed ones get the new 8-bit value added to it (``v16 + 257 * (new8 -
old8)``), so edits stay smooth; an image of another size is scaled up exactly (``v8 * 257``).
Formats without 16-bit samples (JPEG, WebP, BMP, GIF) get 8 bits. :func:`write_image` returns
what it wrote (format, mode, bits).

Which metadata each output format keeps (when ``like`` has it):

========  ====  ====  =====  =========================================================
format    EXIF  ICC   alpha  quality
========  ====  ====  =====  =========================================================
JPEG      yes   yes   no     the source's quantisation tables and chroma subsampling
                             when ``like`` is a JPEG, else ``like.quality`` or
                             :data:`DEFAULT_JPEG_QUALITY`; ``quality=`` overrides
PNG       yes   yes   yes    lossless (zlib level 3)
WEBP      yes   yes   yes    lossless if ``like`` is a lossless WebP, else ``quality=``
                             or :data:`DEFAULT_WEBP_QUALITY`
TIFF      no    yes   yes    lossless (the source's LZW/Deflate/PackBits/raw
                             compression, else LZW)
BMP/GIF   no    no    no     lossless / 256-colour palette
========  ====  ====  =====  =========================================================
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import struct
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: Suffixes (lower case, with the dot) that :func:`iter_images` picks up by default.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".tif",
    ".tiff",
    ".bmp",
)
"""GIF is readable (first frame) but not walked by default: rewriting an animated GIF as one
palette frame would silently lose its animation. Pass ``extensions`` to include ``.gif``."""

#: Output suffix -> Pillow format name used by :func:`write_image`.
SUFFIX_TO_FORMAT: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".gif": "GIF",
}

#: Default pixel limit of :func:`read_image`: Pillow's own hard decompression-bomb limit
#: (``2 * PIL.Image.MAX_IMAGE_PIXELS`` = 178,956,970 pixels, e.g. 16,000 x 11,000).
DEFAULT_MAX_PIXELS = 178_956_970

#: JPEG quality used when neither ``quality=`` nor the ``like`` image gives one.
DEFAULT_JPEG_QUALITY = 95

#: WebP quality used when ``quality=`` is not given (Pillow cannot read a WebP file's quality).
DEFAULT_WEBP_QUALITY = 95

GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
"""Pillow modes of greyscale files (written back as greyscale)."""

_DEEP_FORMATS = frozenset({"PNG", "TIFF"})  # formats written with 16-bit samples
_SWAP16 = {"RGB;16B": "RGB;16L", "RGB;16L": "RGB;16B", "RGBA;16B": "RGBA;16L", "RGBA;16L": "RGBA;16B"}
_SWAP16["RGB;16N"] = _SWAP16["RGB;16L" if sys.byteorder == "little" else "RGB;16B"]
_SWAP16["RGBA;16N"] = _SWAP16["RGBA;16L" if sys.byteorder == "little" else "RGBA;16B"]
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
_EXIF_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
_ICC_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "TIFF"})
_LOSSLESS_TIFF = frozenset({"raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits"})
_EXIF_HEADER = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112

# IJG (libjpeg) standard luminance quantisation table, natural order, quality 50.
_IJG_LUMA = np.array(
    [
        16, 11, 10, 16, 24, 40, 51, 61,
        12, 12, 14, 19, 26, 58, 60, 55,
        14, 13, 16, 24, 40, 57, 69, 56,
        14, 17, 22, 29, 51, 87, 80, 62,
        18, 22, 37, 56, 68, 109, 103, 77,
        24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101,
        72, 92, 95, 98, 112, 100, 103, 99,
    ],
    dtype=np.int64,
)  # fmt: skip


class ImageReadError(ValueError):
    """A file could not be read as an image (missing, empty, corrupt, truncated, too large).

    The message names the file and the reason; ``path`` holds the file.
    """

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {str(self.path)!r}: {reason}")


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


# --------------------------------------------------------------------------------------------
# numpy conversion


def _u16_to_u8(a: np.ndarray) -> np.ndarray:
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
        a = _u16_to_u8(a)
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


# --------------------------------------------------------------------------------------------
# EXIF / JPEG helpers


def _normalise_exif(exif: bytes | None) -> bytes | None:
    """Return the EXIF block with the ``Exif\\0\\0`` header (JPEG's APP1 form), or None."""
    if not exif:
        return None
    if not exif.startswith(_EXIF_HEADER):
        exif = _EXIF_HEADER + exif
    return exif if len(exif) > len(_EXIF_HEADER) + 8 else None


def _ifd0(exif: bytes) -> tuple[bytes, bytearray, str, int, int]:
    """Locate IFD0 of a raw EXIF block: ``(header, mutable body, byte order, IFD0 offset, entry count)``.

    Raises ``KeyError`` (unknown byte order) or ``struct.error`` (truncated block).
    """
    head = _EXIF_HEADER if exif.startswith(_EXIF_HEADER) else b""
    body = bytearray(exif[len(head) :])
    order = {b"II": "<", b"MM": ">"}[bytes(body[:2])]
    (ifd,) = struct.unpack_from(order + "I", body, 4)
    (n,) = struct.unpack_from(order + "H", body, ifd)
    return head, body, order, ifd, n


def reset_exif_orientation(exif: bytes) -> bytes:
    """Set the orientation tag (0x0112) of an EXIF block to 1, leaving every other byte as is.

    The tag is patched in place in IFD0, so maker notes and sub-IFD offsets stay valid. A block
    without the tag, or one that cannot be parsed, is returned unchanged.

    Args:
        exif: raw EXIF block, with or without the ``b"Exif\\0\\0"`` header.

    Returns:
        The patched block (same length, same header presence as the input).
    """
    try:
        head, body, order, ifd, n = _ifd0(exif)
        for i in range(n):
            off = ifd + 2 + 12 * i
            tag, typ, count = struct.unpack_from(order + "HHI", body, off)
            if tag == _ORIENTATION_TAG and typ == 3 and count == 1:  # SHORT, value inline
                struct.pack_into(order + "H", body, off + 8, 1)
                return head + bytes(body)
    except (KeyError, struct.error):
        logger.debug("EXIF block could not be parsed; orientation left as is")
    return exif


def _unlink_next_ifds(exif: bytes) -> bytes:
    """Binary fallback: end the IFD chain after IFD0 (unlinks IFD1, the thumbnail)."""
    try:
        head, body, order, ifd, n = _ifd0(exif)
        struct.pack_into(order + "I", body, ifd + 2 + 12 * n, 0)
    except (KeyError, struct.error):
        return exif
    return head + bytes(body)


def exif_for_output(exif: bytes | None) -> bytes | None:
    """Prepare a file's EXIF block for images derived from it.

    The orientation tag is set to 1 (the pixels are upright once read) and the embedded thumbnail
    (IFD1) is dropped: it would still show the *original* picture, e.g. the unswapped face. The
    block is rebuilt by Pillow, keeping IFD0, the Exif sub-IFD (camera settings, dates) and GPS;
    if Pillow cannot rebuild it, the orientation is patched in place and IFD1 unlinked instead.

    Args:
        exif: raw EXIF block, with or without the ``b"Exif\\0\\0"`` header, or None.

    Returns:
        The block with the ``b"Exif\\0\\0"`` header, or None if there was none.
    """
    exif = _normalise_exif(exif)
    if exif is None:
        return None
    try:
        from PIL import ExifTags, Image

        ex = Image.Exif()
        ex.load(exif)
        if _ORIENTATION_TAG in ex:
            ex[_ORIENTATION_TAG] = 1
        for tag in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
            if tag in ex:
                ex.get_ifd(tag)  # loaded so that tobytes() writes it
        out = ex.tobytes()
        check = Image.Exif()
        check.load(out)  # must parse back
        return out if len(out) > len(_EXIF_HEADER) + 8 else None
    except Exception:  # noqa: BLE001 - odd EXIF: fall back to byte patching
        logger.debug("EXIF block could not be rebuilt; patched in place")
        return _unlink_next_ifds(reset_exif_orientation(exif))


def estimate_jpeg_quality(qtables: dict[int, Any] | None) -> int | None:
    """Estimate the IJG quality (1-100) a JPEG was saved with from its quantisation tables.

    The luminance table is compared (sorted, so the coefficient order does not matter) with the
    IJG standard table scaled for every quality; the closest quality wins. Exact for files written
    by libjpeg/Pillow/most software, an approximation for cameras with custom tables.

    Args:
        qtables: Pillow's ``Image.quantization`` (table id -> 64 values), or None.

    Returns:
        The quality, or None when there is no usable luminance table.
    """
    if not qtables or 0 not in qtables:
        return None
    table = np.sort(np.asarray(list(qtables[0]), dtype=np.int64))
    if table.size != 64:
        return None
    best_q, best_err = None, None
    for q in range(1, 101):
        scale = 5000 // q if q < 50 else 200 - 2 * q
        ref = np.clip((_IJG_LUMA * scale + 50) // 100, 1, 255)
        err = int(np.abs(np.sort(ref) - table).sum())
        if best_err is None or err < best_err:
            best_q, best_err = q, err
    return best_q


def _webp_is_lossless(path: Path) -> bool | None:
    """Whether a WebP file holds a lossless (``VP8L``) image, from its RIFF chunks; None if unknown."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
                return None
            for _ in range(64):
                hdr = f.read(8)
                if len(hdr) < 8:
                    return None
                fourcc, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
                if fourcc == b"VP8L":
                    return True
                if fourcc in (b"VP8 ", b"ANMF"):
                    return False
                f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None
    return None


def _rgb_icc(icc: bytes | None) -> bytes | None:
    """Keep an ICC profile only if its data colour space (header bytes 16-20) is RGB."""
    if icc and len(icc) >= 20 and icc[16:20] == b"RGB ":
        return bytes(icc)
    return None


# --------------------------------------------------------------------------------------------
# reading


def _convert_block(im: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert a loaded Pillow image of any mode to ``(rgb (H,W,3) uint8, alpha (H,W) | None)``."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8), None
    if mode == "L":
        return np.repeat(np.asarray(im, dtype=np.uint8)[:, :, None], 3, axis=2), None
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im)
        if a.dtype.kind == "i" or a.dtype.byteorder not in ("=", "|"):
            a = np.clip(a, 0, 65535).astype(np.uint16)
        grey = _u16_to_u8(a)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    if mode == "F":
        rgb, _ = to_uint8_rgb(np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0))
        return rgb, None
    if mode == "P":
        return _convert_block(im.convert("RGBA") if im.has_transparency_data else im.convert("RGB"))
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
        return rgba[:, :, :3], rgba[:, :, 3]
    if mode == "1":
        return _convert_block(im.convert("L"))
    # CMYK, YCbCr, LAB, HSV, RGBX, ...: Pillow's conversion
    return np.asarray(im.convert("RGB"), dtype=np.uint8), None


_STRIP_PIXELS = 4_000_000


def _pil_to_arrays(im: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert a loaded Pillow image to writable ``(rgb (H,W,3) uint8, alpha (H,W) uint8 | None)``.

    Big images are converted in horizontal strips straight into the output arrays, so the peak
    memory is the decoded Pillow image plus the output, not several full-size copies.
    """
    w, h = im.size
    if w * h <= _STRIP_PIXELS:
        rgb, alpha = _convert_block(im)
        return np.array(rgb, dtype=np.uint8, order="C"), (None if alpha is None else np.array(alpha, order="C"))
    rows = max(1, _STRIP_PIXELS // max(1, w))
    rgb = np.empty((h, w, 3), np.uint8)
    alpha: np.ndarray | None = None
    for y in range(0, h, rows):
        y1 = min(h, y + rows)
        strip_rgb, strip_alpha = _convert_block(im.crop((0, y, w, y1)))
        rgb[y:y1] = strip_rgb
        if strip_alpha is not None:
            if alpha is None:
                alpha = np.full((h, w), 255, np.uint8)
            alpha[y:y1] = strip_alpha
    return rgb, alpha


def _exif_orientation(im: Any) -> int:
    """The EXIF orientation (1-8) Pillow sees on an image; 1 when absent, invalid or unreadable."""
    try:
        value = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not fail the read
        return 1
    return value if 1 <= value <= 8 else 1


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W[, C]) array: what a viewer would show.

    Returns a new C-contiguous array of the same dtype. Rotations are copied in 512 x 512 tiles
    with each pixel viewed as one opaque element (3 bytes for RGB), which is about 5x faster than
    a plain strided copy on big photos.
    """
    pix = np.ascontiguousarray(a)
    if pix.ndim == 3:
        pix = pix.view(np.dtype(f"V{pix.shape[2] * pix.itemsize}")).reshape(pix.shape[:2])
    if orientation == 2:
        v = pix[:, ::-1]
    elif orientation == 3:
        v = pix[::-1, ::-1]
    elif orientation == 4:
        v = pix[::-1]
    elif orientation == 5:
        v = pix.T
    elif orientation == 6:
        v = pix.T[:, ::-1]  # 90 degrees clockwise
    elif orientation == 7:
        v = pix.T[::-1, ::-1]
    elif orientation == 8:
        v = pix.T[::-1]  # 90 degrees counter-clockwise
    else:
        v = pix
    out = np.empty(v.shape, v.dtype)
    h, w = v.shape
    tile = 512
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            out[y : y + tile, x : x + tile] = v[y : y + tile, x : x + tile]
    return out.view(a.dtype).reshape(h, w, a.shape[2]) if a.ndim == 3 else out


def read_image(path: PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an image file as upright uint8 RGB plus its metadata. Never modifies the file.

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this (checked from the header, before
            decoding); None disables this check (Pillow's own limit still applies).

    Returns:
        The :class:`LoadedImage`; ``rgb`` has shape (H, W, 3) uint8 RGB, EXIF orientation applied.

    Raises:
        ImageReadError: missing/unreadable, empty, not an image, corrupt or truncated file, or
            too many pixels. The message names the file and the reason.
    """
    from PIL import Image, ImageFile

    path = Path(path)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        logger.warning(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set by other code): truncated files "
            "may be read as partial images"
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageReadError(path, exc.strerror or str(exc)) from exc
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise ImageReadError(path, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} pixels")
            deep_rgb = im.mode in ("RGB", "RGBA") and _is_deep_tile(im)  # before anything loads the pixels
            orientation_in_file = _exif_orientation(im)  # before load: Pillow applies (and drops) a TIFF one
            im.load()  # decode now, inside the try: truncated data raises here
            fmt = "JPEG" if im.format == "MPO" else (im.format or "UNKNOWN")
            mode = im.mode
            info = dict(im.info)
            n_frames = int(getattr(im, "n_frames", 1) or 1)
            qtables = getattr(im, "quantization", None) if fmt == "JPEG" else None
            subsampling = None
            if fmt == "JPEG":
                from PIL import JpegImagePlugin

                sub = JpegImagePlugin.get_sampling(im)
                subsampling = sub if sub in (0, 1, 2) else None
            to_apply = _exif_orientation(im)  # still to apply ourselves (JPEG, PNG, WebP...)
            orientation = to_apply if to_apply != 1 else orientation_in_file
            samples16 = None
            if mode.startswith("I;16"):
                samples16 = np.asarray(im).astype(np.uint16)  # native byte order, a copy
            elif deep_rgb:
                samples16 = _read_deep_rgb(path, np.asarray(im, dtype=np.uint8))
            if samples16 is not None and samples16.ndim == 3:
                rgb = _u16_to_u8(samples16[:, :, :3])
                alpha = _u16_to_u8(samples16[:, :, 3]) if samples16.shape[2] == 4 else None
            else:
                rgb, alpha = _pil_to_arrays(im)
            im.close()  # frees the decoded Pillow image now (leaving the `with` only closes the file)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"{exc} (raise PIL.Image.MAX_IMAGE_PIXELS to allow)") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageReadError(path, "not a recognised image format") from exc
    except MemoryError as exc:
        raise ImageReadError(path, "out of memory while decoding") from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file
        raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from exc
    # the Pillow image is closed (its memory freed) before the rotation copy is made
    if to_apply != 1:
        rgb = _orient(rgb, to_apply)
        alpha = None if alpha is None else _orient(alpha, to_apply)
        samples16 = None if samples16 is None else _orient(samples16, to_apply)

    exif = exif_for_output(info.get("exif"))
    dpi = info.get("dpi")
    try:
        dpi = (float(dpi[0]), float(dpi[1])) if dpi else None
    except (TypeError, ValueError, IndexError):
        dpi = None
    compression = info.get("compression") if fmt == "TIFF" else None
    return LoadedImage(
        rgb=rgb,
        alpha=alpha,
        format=fmt,
        exif=exif,
        icc_profile=_rgb_icc(info.get("icc_profile")),
        quality=estimate_jpeg_quality(qtables) if fmt == "JPEG" else None,
        path=path,
        mode=mode,
        orientation=orientation,
        dpi=dpi,
        qtables={int(k): list(v) for k, v in qtables.items()} if qtables else None,
        subsampling=subsampling,
        tiff_compression=str(compression) if compression else None,
        webp_lossless=_webp_is_lossless(path) if fmt == "WEBP" else None,
        n_frames=n_frames,
        bits=16 if samples16 is not None else 8,
        samples16=samples16,
    )


def _tile_args(tile: Any) -> tuple[str, Any]:
    """``(rawmode, the tile's args)`` of one Pillow tile (args is a rawmode or a tuple starting with one)."""
    args = tile.args if hasattr(tile, "args") else tile[3]
    return (args if isinstance(args, str) else args[0]), args


def _is_deep_tile(im: Any) -> bool:
    """Whether an opened (not yet loaded) RGB/RGBA image is stored with 16-bit samples."""
    tiles = getattr(im, "tile", None) or []
    try:
        return bool(tiles) and all(_tile_args(t)[0] in _SWAP16 for t in tiles)
    except (AttributeError, IndexError, TypeError):
        return False


def _read_deep_rgb(path: Path, high: np.ndarray) -> np.ndarray | None:
    """The full 16-bit samples of a 16-bit RGB/RGBA file whose high bytes Pillow decoded (``high``).

    Pillow's unpackers for 16-bit RGB keep the high byte of each sample; decoding the file again
    with the unpacker of the other byte order yields the low bytes. Returns (H, W, C) uint16, or
    None (logged) if the second pass fails, in which case the image is used with 8 bits.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            tiles = []
            for t in im.tile:
                raw, args = _tile_args(t)
                new = _SWAP16[raw] if isinstance(args, str) else (_SWAP16[raw], *args[1:])
                tiles.append(t._replace(args=new) if hasattr(t, "_replace") else (*t[:3], new))
            im.tile = tiles
            im.load()
            low = np.asarray(im, dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 - fall back to the 8-bit decode
        logger.warning("%s: 16-bit samples could not be read in full (%s); using 8 bits", path, exc)
        return None
    if low.shape != high.shape:
        logger.warning("%s: 16-bit samples could not be read in full; using 8 bits", path)
        return None
    return (high.astype(np.uint16) << 8) | low


# --------------------------------------------------------------------------------------------
# writing


def format_for_suffix(path: PathLike) -> str:
    """Pillow format name written for a path's suffix (case-insensitive), e.g. ``.JPG`` -> JPEG.

    Raises:
        ValueError: the suffix is not one of :data:`SUFFIX_TO_FORMAT`.
    """
    suffix = Path(path).suffix.lower()
    try:
        return SUFFIX_TO_FORMAT[suffix]
    except KeyError:
        known = ", ".join(sorted(SUFFIX_TO_FORMAT))
        raise ValueError(
            f"cannot choose an image format for {str(path)!r}: suffix {suffix!r} is not one of {known}"
        ) from None


@contextlib.contextmanager
def atomic_open(path: PathLike) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary writing atomically.

    Yields a file object on a hidden temporary file in the same folder
    (``.<name>.<random>.tmp``); when the ``with`` block ends without error the file is flushed,
    closed and renamed over ``path`` (:func:`os.replace`, atomic on POSIX and Windows). On any
    error the temporary file is removed and ``path`` is left untouched. The parent folder is
    created if needed. The file gets the usual permissions (0o666 minus the umask).

    Args:
        path: the final file.

    Yields:
        A binary file object.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 random collisions
        raise FileExistsError(f"could not create a temporary file next to {str(path)!r}")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _resize_alpha(alpha: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(alpha, dtype=np.uint8)).resize(
        (size_hw[1], size_hw[0]), Image.Resampling.BILINEAR
    )
    return np.asarray(im, dtype=np.uint8)


def _save_params(fmt: str, like: LoadedImage | None, quality: int | None) -> dict[str, Any]:
    """Pillow ``save()`` keyword arguments for a format, carrying ``like``'s metadata."""
    params: dict[str, Any] = {}
    if like is not None:
        if like.exif and fmt in _EXIF_FORMATS:
            if fmt == "JPEG" and len(like.exif) > 65533:
                logger.warning("EXIF of %s is %d bytes, too long for a JPEG: not copied", like.path, len(like.exif))
            else:
                params["exif"] = like.exif
        if like.icc_profile and fmt in _ICC_FORMATS:
            params["icc_profile"] = like.icc_profile
        if like.dpi and fmt in ("JPEG", "PNG", "TIFF", "BMP"):
            params["dpi"] = like.dpi
    if fmt == "JPEG":
        if quality is None and like is not None and like.format == "JPEG" and like.qtables:
            params["qtables"] = like.qtables
            if like.subsampling is not None:
                params["subsampling"] = like.subsampling
        else:
            q = quality if quality is not None else (like.quality if like is not None else None)
            params["quality"] = int(q) if q is not None else DEFAULT_JPEG_QUALITY
            if like is not None and like.format == "JPEG" and like.subsampling is not None:
                params["subsampling"] = like.subsampling
    elif fmt == "WEBP":
        if quality is None and like is not None and like.format == "WEBP" and like.webp_lossless:
            params["lossless"] = True
        else:
            params["quality"] = int(quality) if quality is not None else DEFAULT_WEBP_QUALITY
        params["method"] = 4
    elif fmt == "PNG":
        params["compress_level"] = 3  # ~2.5x faster than zlib level 6, ~8% bigger on photos
    elif fmt == "TIFF":
        comp = like.tiff_compression if like is not None else None
        params["compression"] = comp if comp in _LOSSLESS_TIFF else "tiff_lzw"
    return params


def write_image(
    path: PathLike,
    rgb: np.ndarray,
    *,
    like: LoadedImage | None = None,
    alpha: np.ndarray | None = None,
    quality: int | None = None,
) -> dict[str, Any]:
    """Write an image atomically, keeping ``like``'s format metadata where the format allows.

    The format follows the suffix of ``path`` (see :data:`SUFFIX_TO_FORMAT`), not ``like``. See
    the module docstring for what each format keeps, and for greyscale and 16-bit ``like``
    images (grey in, grey out; 16 bits in a PNG/TIFF stay 16 bits).

    Args:
        path: the output file. Its parent folders are created.
        rgb: the pixels. Shape: (H, W, 3) uint8 RGB; any input of :func:`to_uint8_rgb` is
            accepted (an (H, W, 4) array brings its own alpha).
        like: the image this output derives from (usually the :func:`read_image` result of the
            input): its EXIF (orientation already 1), ICC profile, DPI, JPEG quantisation, alpha,
            greyscale mode and 16-bit samples are reused. ``path`` must not be ``like.path``.
        alpha: transparency to attach, shape (H, W) uint8. None takes the alpha of ``rgb`` (if
            it has 4 channels) or else ``like.alpha``, resized bilinearly if the size changed.
            Dropped for formats without alpha (JPEG, BMP, GIF).
        quality: JPEG/WebP quality 1-100. None keeps the source JPEG's quantisation tables when
            ``like`` is a JPEG, else uses ``like.quality`` or the module defaults.

    Returns:
        What was written: ``{"format": "PNG", "mode": "I;16", "bits": 16}``.

    Raises:
        ValueError: unsupported suffix, bad array, bad alpha shape, or ``path`` is ``like.path``.
        OSError: the file could not be written (the target is left untouched, no temp file
            remains).
    """
    from PIL import Image

    path = Path(path)
    fmt = format_for_suffix(path)
    if like is not None and _same_file(path, Path(like.path)):
        raise ValueError(f"refusing to write over the input image {str(like.path)!r}")
    rgb8, own_alpha = to_uint8_rgb(rgb)
    if quality is not None and not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    alpha_from_like = False
    if alpha is None:
        alpha = own_alpha
    if alpha is None and like is not None and like.alpha is not None:
        alpha, alpha_from_like = like.alpha, True
        if alpha.shape != rgb8.shape[:2]:
            alpha, alpha_from_like = _resize_alpha(alpha, rgb8.shape[:2]), False
    if alpha is not None:
        alpha, _ = to_uint8_rgb(alpha)
        alpha = alpha[:, :, 0]
        if alpha.shape != rgb8.shape[:2]:
            raise ValueError(f"alpha shape {alpha.shape} does not match image {rgb8.shape[:2]}")
    keep_alpha = alpha is not None and fmt in _ALPHA_FORMATS
    if alpha is not None and not keep_alpha:
        logger.debug("%s has no alpha channel: transparency dropped for %s", fmt, path)
    grey = like is not None and like.is_grey
    pixels: np.ndarray = _luma(rgb8) if grey else rgb8
    deep = like is not None and like.samples16 is not None and fmt in _DEEP_FORMATS
    if deep and grey and keep_alpha:
        deep = False  # no 16-bit grey + alpha files are read (Pillow decodes them to 8 bits)
    params = _save_params(fmt, like, quality)
    if deep:
        assert like is not None and like.samples16 is not None
        base = like.samples16 if like.samples16.ndim == 2 else like.samples16[:, :, :3]
        before = like.rgb[:, :, 0] if base.ndim == 2 else like.rgb
        pix16 = _lift16(pixels, before, base)
        if keep_alpha:
            assert alpha is not None
            a16 = None
            if alpha_from_like and like.samples16.ndim == 3 and like.samples16.shape[2] == 4:
                a16 = like.samples16[:, :, 3]
            pix16 = np.dstack([pix16, a16 if a16 is not None else alpha.astype(np.uint16) * 257])
        mode = "I;16" if pix16.ndim == 2 else ("RGBA;16" if pix16.shape[2] == 4 else "RGB;16")
        with atomic_open(path) as f:
            if pix16.ndim == 2:
                Image.fromarray(pix16).save(f, format=fmt, **params)
            elif fmt == "PNG":
                _save_png16(f, pix16, like)
            else:
                _save_tiff16(f, pix16, like)
        return {"format": fmt, "mode": mode, "bits": 16}
    if keep_alpha:
        assert alpha is not None
        if grey and fmt == "PNG":
            im = Image.fromarray(np.dstack([pixels, alpha]), mode="LA")
        else:
            im = Image.fromarray(np.dstack([rgb8 if not grey else np.repeat(pixels[:, :, None], 3, 2), alpha]))
    else:
        im = Image.fromarray(pixels)
    with atomic_open(path) as f:
        im.save(f, format=fmt, **params)
    return {"format": fmt, "mode": im.mode, "bits": 8}


def _luma(rgb8: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey of an (H, W, 3) uint8 RGB image: a grey image's own values, else
    Pillow's ITU-R 601-2 luma (which maps grey pixels to themselves)."""
    r, g, b = rgb8[:, :, 0], rgb8[:, :, 1], rgb8[:, :, 2]
    if np.array_equal(r, g) and np.array_equal(g, b):
        return np.ascontiguousarray(r)
    from PIL import Image

    return np.asarray(Image.fromarray(rgb8).convert("L"), dtype=np.uint8)


def _lift16(new8: np.ndarray, old8: np.ndarray, old16: np.ndarray) -> np.ndarray:
    """16-bit output samples for 8-bit pixels ``new8`` derived from a 16-bit image.

    Same size: ``old16 + 257 * (new8 - old8)`` (``old8`` is ``old16`` rounded to 8 bits), so a
    pixel the caller left unchanged keeps its exact 16-bit value and changed ones move by the
    8-bit change. Other size: ``new8 * 257`` (exact 8 -> 16-bit scaling).
    """
    if new8.shape != old16.shape or old8.shape != old16.shape:
        return new8.astype(np.uint16) * np.uint16(257)
    d = new8.astype(np.int32) - old8.astype(np.int32)
    return np.clip(old16.astype(np.int32) + 257 * d, 0, 65535).astype(np.uint16)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _save_png16(f: IO[bytes], pix: np.ndarray, like: LoadedImage | None, level: int = 6) -> None:
    """Write (H, W, 3|4) uint16 samples as a 16-bit RGB(A) PNG (Pillow cannot write one).

    Rows are Paeth-filtered (vectorised; encoding needs no sequential pass) and deflated in
    blocks. ``like``'s ICC profile (iCCP), EXIF (eXIf) and DPI (pHYs) are written.
    """
    h, w, c = pix.shape
    f.write(b"\x89PNG\r\n\x1a\n")
    f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0)))
    if like is not None:
        if like.icc_profile:
            f.write(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(like.icc_profile)))
        if like.dpi:
            ppm = [max(1, round(v / 0.0254)) for v in like.dpi]
            f.write(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
        if like.exif:
            f.write(_png_chunk(b"eXIf", like.exif[len(_EXIF_HEADER):] if like.exif.startswith(_EXIF_HEADER) else like.exif))
    bpp = 2 * c
    comp = zlib.compressobj(level)
    prev = np.zeros(w * bpp, np.int16)
    rows = max(1, (1 << 20) // max(1, w * bpp))
    for y in range(0, h, rows):
        raw = np.ascontiguousarray(pix[y : y + rows].astype(">u2")).view(np.uint8).reshape(-1, w * bpp).astype(np.int16)
        up = np.vstack([prev[None], raw[:-1]])
        left = np.zeros_like(raw)
        left[:, bpp:] = raw[:, :-bpp]
        upleft = np.zeros_like(raw)
        upleft[:, bpp:] = up[:, :-bpp]
        p = left + up - upleft
        pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
        pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        out = np.empty((raw.shape[0], 1 + w * bpp), np.uint8)
        out[:, 0] = 4  # Paeth
        out[:, 1:] = (raw - pred).astype(np.uint8)  # modulo 256
        data = comp.compress(out.tobytes())
        if data:
            f.write(_png_chunk(b"IDAT", data))
        prev = raw[-1]
    f.write(_png_chunk(b"IDAT", comp.flush()))
    f.write(_png_chunk(b"IEND", b""))


def _save_tiff16(f: IO[bytes], pix: np.ndarray, like: LoadedImage | None) -> None:
    """Write (H, W, 3|4) uint16 samples as a 16-bit RGB(A) TIFF (deflate) with ``tifffile``."""
    import tifffile

    kw: dict[str, Any] = {"photometric": "rgb", "compression": "zlib", "metadata": None}
    if pix.shape[2] == 4:
        kw["extrasamples"] = ["unassalpha"]
    if like is not None:
        if like.dpi:
            kw["resolution"], kw["resolutionunit"] = (float(like.dpi[0]), float(like.dpi[1])), "INCH"
        if like.icc_profile:
            kw["iccprofile"] = like.icc_profile
    buf = io.BytesIO()  # tifffile wants a named file or a BytesIO, not a file descriptor's file object
    tifffile.imwrite(buf, pix, **kw)
    f.write(buf.getbuffer())


# --------------------------------------------------------------------------------------------
# folder walk


def normalise_extensions(extensions: Iterable[str]) -> frozenset[str]:
    """Lower-case suffixes with a leading dot: ``["JPG", ".png"]`` -> ``{".jpg", ".png"}``."""
    out = set()
    for ext in extensions:
        ext = str(ext).strip().lower()
        if not ext or ext == ".":
            raise ValueError(f"empty extension in {list(extensions)!r}")
        out.add(ext if ext.startswith(".") else "." + ext)
    return frozenset(out)


def has_image_suffix(path: PathLike, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> bool:
    """Anchored, case-insensitive suffix test: ``a.JPG`` matches ``.jpg``; ``a.jpg.txt``,
    ``jpg`` and ``.jpg`` (a hidden file with no suffix) do not."""
    return Path(path).suffix.lower() in normalise_extensions(extensions)


OUTPUT_MARKER = ".faceswap-pipeline.json"
"""File that a folder run writes into its output folder: the settings its outputs were made with
(see :mod:`faceswap_pipeline.folder`). :func:`iter_images` never enters a sub-folder that has one,
so the outputs of an earlier run inside an input folder are never read back as inputs."""


def iter_images(
    root: PathLike,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    recursive: bool = True,
    *,
    exclude: PathLike | Iterable[PathLike] | None = None,
) -> list[Path]:
    """List the image files under ``root``, sorted.

    A file is listed when its last suffix, lower-cased, is one of ``extensions`` (anchored:
    ``.jpg`` matches ``a.JPG`` but not ``a.jpg.txt`` or a file named ``jpg``). Hidden files and
    folders (name starting with ``.``) are skipped, symlinked folders are not followed (no
    cycles), and the ``exclude`` folder(s) are never entered (for an output folder inside the
    input folder). Nor is any sub-folder holding an :data:`OUTPUT_MARKER`: it holds the outputs
    of an earlier run (a warning names it).

    Args:
        root: a folder, or a single file (returned as ``[root]`` whatever its suffix).
        extensions: suffixes to accept, with or without the dot, any case.
        recursive: descend into sub-folders.
        exclude: folder or folders not to enter.

    Returns:
        Paths ``root / relative``, sorted by their path relative to ``root``.

    Raises:
        FileNotFoundError: ``root`` does not exist.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {str(root)!r} does not exist")
    exts = normalise_extensions(extensions)
    if exclude is None:
        excluded: set[Path] = set()
    elif isinstance(exclude, (str, os.PathLike)):
        excluded = {Path(exclude).resolve()}
    else:
        excluded = {Path(e).resolve() for e in exclude}
    found: list[Path] = []

    def unreadable(exc: OSError) -> None:
        logger.warning("cannot list folder %s: %s (its images are not included)", exc.filename, exc.strerror or exc)

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if d.startswith(".") or not recursive:
                continue
            if excluded and (here / d).resolve() in excluded:
                continue
            if (here / d / OUTPUT_MARKER).is_file():
                logger.warning("not reading %s: it holds the outputs of an earlier run (it has %s)", here / d, OUTPUT_MARKER)
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            if name.startswith("."):
                continue
            p = here / name
            if p.suffix.lower() in exts and p.is_file():
                found.append(p)
    found.sort(key=lambda p: p.relative_to(root).parts)
    return found
