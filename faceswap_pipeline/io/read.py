"""Reading image files: :func:`read_image`.

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

"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from faceswap_pipeline.io.image import ImageReadError, LoadedImage, PathLike, to_uint8_rgb, u16_to_u8
from faceswap_pipeline.io.metadata import (
    ORIENTATION_TAG,
    estimate_jpeg_quality,
    exif_for_output,
    rgb_icc,
    webp_is_lossless,
)

logger = logging.getLogger("faceswap_pipeline.io")  # the name users see on its messages

#: Default pixel limit of :func:`read_image`: Pillow's own hard decompression-bomb limit
#: (``2 * PIL.Image.MAX_IMAGE_PIXELS`` = 178,956,970 pixels, e.g. 16,000 x 11,000).
DEFAULT_MAX_PIXELS = 178_956_970

_SWAP16 = {"RGB;16B": "RGB;16L", "RGB;16L": "RGB;16B", "RGBA;16B": "RGBA;16L", "RGBA;16L": "RGBA;16B"}
_SWAP16["RGB;16N"] = _SWAP16["RGB;16L" if sys.byteorder == "little" else "RGB;16B"]
_SWAP16["RGBA;16N"] = _SWAP16["RGBA;16L" if sys.byteorder == "little" else "RGBA;16B"]


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
        grey = u16_to_u8(a)
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
        value = int(im.getexif().get(ORIENTATION_TAG, 1) or 1)
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
                rgb = u16_to_u8(samples16[:, :, :3])
                alpha = u16_to_u8(samples16[:, :, 3]) if samples16.shape[2] == 4 else None
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
        icc_profile=rgb_icc(info.get("icc_profile")),
        quality=estimate_jpeg_quality(qtables) if fmt == "JPEG" else None,
        path=path,
        mode=mode,
        orientation=orientation,
        dpi=dpi,
        qtables={int(k): list(v) for k, v in qtables.items()} if qtables else None,
        subsampling=subsampling,
        tiff_compression=str(compression) if compression else None,
        webp_lossless=webp_is_lossless(path) if fmt == "WEBP" else None,
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
