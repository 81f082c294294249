"""What a photo carries besides its pixels: EXIF (orientation, thumbnail), JPEG quality, WebP
lossless flag, ICC profile. Used by :mod:`~faceswap_pipeline.io.read` and
:mod:`~faceswap_pipeline.io.write`."""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("faceswap_pipeline.io")  # the name users see on its messages

EXIF_HEADER = b"Exif\x00\x00"
ORIENTATION_TAG = 0x0112

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


def _normalise_exif(exif: bytes | None) -> bytes | None:
    """Return the EXIF block with the ``Exif\\0\\0`` header (JPEG's APP1 form), or None."""
    if not exif:
        return None
    if not exif.startswith(EXIF_HEADER):
        exif = EXIF_HEADER + exif
    return exif if len(exif) > len(EXIF_HEADER) + 8 else None


def _ifd0(exif: bytes) -> tuple[bytes, bytearray, str, int, int]:
    """Locate IFD0 of a raw EXIF block: ``(header, mutable body, byte order, IFD0 offset, entry count)``.

    Raises ``KeyError`` (unknown byte order) or ``struct.error`` (truncated block).
    """
    head = EXIF_HEADER if exif.startswith(EXIF_HEADER) else b""
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
            if tag == ORIENTATION_TAG and typ == 3 and count == 1:  # SHORT, value inline
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
        if ORIENTATION_TAG in ex:
            ex[ORIENTATION_TAG] = 1
        for tag in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
            if tag in ex:
                ex.get_ifd(tag)  # loaded so that tobytes() writes it
        out = ex.tobytes()
        check = Image.Exif()
        check.load(out)  # must parse back
        return out if len(out) > len(EXIF_HEADER) + 8 else None
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


def webp_is_lossless(path: Path) -> bool | None:
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


def rgb_icc(icc: bytes | None) -> bytes | None:
    """Keep an ICC profile only if its data colour space (header bytes 16-20) is RGB."""
    if icc and len(icc) >= 20 and icc[16:20] == b"RGB ":
        return bytes(icc)
    return None
