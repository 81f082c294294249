"""Image I/O: reading every kind of file a photo folder holds, atomic metadata-keeping writes, the walk."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from faceswap_pipeline.io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    LoadedImage,
    atomic_open,
    estimate_jpeg_quality,
    has_image_suffix,
    iter_images,
    read_image,
    reset_exif_orientation,
    to_uint8_rgb,
    write_image,
)


@pytest.fixture(scope="module")
def astro() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8 RGB


@pytest.fixture(scope="module")
def small(astro) -> np.ndarray:
    """A non-square, asymmetric crop so every rotation/flip gives a different array."""
    return astro[40:200:2, 120:360:2].copy()  # (80, 120, 3)


def exif_bytes(orientation: int | None = None, make: str = "TestCam") -> bytes:
    ex = Image.Exif()
    ex[0x010F] = make  # Make
    ex[0x0131] = "faceswap-tests"  # Software
    if orientation is not None:
        ex[0x0112] = orientation
    return ex.tobytes()


def exif_tags(exif: bytes) -> dict[int, object]:
    ex = Image.Exif()
    ex.load(exif)
    return dict(ex)


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def png16(path: Path, arr: np.ndarray) -> None:
    """Write a 16-bit RGB PNG by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    a = arr.astype(">u2")
    raw = b"".join(b"\x00" + a[i].tobytes() for i in range(h))

    def chunk(t: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------------------------- reading

# What a viewer shows for stored pixels ``a`` with each EXIF orientation.
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, k=1),
}


@pytest.mark.parametrize("orientation", [6, 8])
def test_jpeg_exif_orientation_is_applied(tmp_path, astro, orientation):
    p = tmp_path / "photo.jpg"
    Image.fromarray(astro[:, 64:448]).save(p, quality=92, exif=exif_bytes(orientation))  # 512 x 384 stored
    stored = np.asarray(Image.open(p).convert("RGB"))  # decoded pixels, orientation ignored
    img = read_image(p)
    assert img.rgb.shape == (384, 512, 3)  # rotated: wider than tall
    np.testing.assert_array_equal(img.rgb, UPRIGHT[orientation](stored))
    assert img.orientation == orientation
    assert img.format == "JPEG" and img.quality == 92
    tags = exif_tags(img.exif)
    assert tags[0x0112] == 1  # pixels are upright now
    assert tags[0x010F] == "TestCam"  # the rest of the EXIF is kept
    # The face is upright after the rotation: in the astronaut the face is above the chest.
    assert img.rgb.flags.c_contiguous and img.rgb.dtype == np.uint8


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_exact_on_png(tmp_path, small, orientation):
    p = tmp_path / "o.png"
    Image.fromarray(small).save(p, exif=exif_bytes(orientation))
    img = read_image(p)
    np.testing.assert_array_equal(img.rgb, UPRIGHT[orientation](small))
    assert img.orientation == orientation


def test_reset_exif_orientation_patches_only_the_tag():
    for order in ("MM", "II"):
        e = "<" if order == "II" else ">"
        # TIFF header + IFD0 with Orientation=6 and one other SHORT tag, then next-IFD 0
        ifd = struct.pack(e + "H", 2)
        ifd += struct.pack(e + "HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(e + "HHIHH", 0x0128, 3, 1, 2, 0)
        body = order.encode() + struct.pack(e + "HI", 42, 8) + ifd + struct.pack(e + "I", 0)
        out = reset_exif_orientation(b"Exif\x00\x00" + body)
        assert len(out) == len(body) + 6
        assert exif_tags(out)[0x0112] == 1 and exif_tags(out)[0x0128] == 2
        diff = [i for i, (x, y) in enumerate(zip(out[6:], body)) if x != y]
        assert len(diff) == 1  # one byte of the SHORT value changed
    assert reset_exif_orientation(b"Exif\x00\x00garbage") == b"Exif\x00\x00garbage"


def test_greyscale_png(tmp_path, astro):
    grey = astro[..., 1].copy()
    Image.fromarray(grey).save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.mode == "L" and img.alpha is None
    assert img.rgb.shape == (512, 512, 3)
    for c in range(3):
        np.testing.assert_array_equal(img.rgb[..., c], grey)


def test_bilevel_and_la_modes(tmp_path, astro):
    Image.fromarray(astro[..., 0] > 128).save(tmp_path / "b.png")
    img = read_image(tmp_path / "b.png")
    assert set(np.unique(img.rgb)) <= {0, 255}
    la = np.dstack([astro[..., 0], astro[..., 2]])
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    img = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(img.rgb[..., 1], astro[..., 0])
    np.testing.assert_array_equal(img.alpha, astro[..., 2])


def test_rgba_png_alpha_read_and_kept_on_output(tmp_path, astro):
    astro = astro[::2, ::2]  # 256 x 256
    alpha = np.tile(np.linspace(0, 255, 256).astype(np.uint8), (256, 1))
    Image.fromarray(np.dstack([astro, alpha])).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(img.rgb, astro)
    np.testing.assert_array_equal(img.alpha, alpha)
    write_image(tmp_path / "out.png", 255 - img.rgb, like=img)
    back = np.asarray(Image.open(tmp_path / "out.png"))
    assert back.shape == (256, 256, 4)
    np.testing.assert_array_equal(back[..., 3], alpha)
    np.testing.assert_array_equal(back[..., :3], 255 - astro)
    # WebP and TIFF keep it too; JPEG drops it without complaint.
    for suffix in (".webp", ".tif"):
        write_image(tmp_path / f"out{suffix}", img.rgb, like=img)
        np.testing.assert_array_equal(read_image(tmp_path / f"out{suffix}").alpha, alpha)
    write_image(tmp_path / "out.jpg", img.rgb, like=img)
    assert read_image(tmp_path / "out.jpg").alpha is None
    # an upscaled output gets the alpha resized to its size
    big = np.repeat(np.repeat(img.rgb, 2, axis=0), 2, axis=1)
    write_image(tmp_path / "big.png", big, like=img)
    assert read_image(tmp_path / "big.png").alpha.shape == (512, 512)


def test_16bit_greyscale_rounded_to_8bit(tmp_path):
    g = np.arange(0, 65536, 7, dtype=np.uint16)[: 96 * 96].reshape(96, 96)
    Image.fromarray(g).save(tmp_path / "g16.png")
    img = read_image(tmp_path / "g16.png")
    assert img.mode.startswith("I")
    expected = np.rint(g / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(img.rgb[..., 0], expected)


def test_16bit_rgb_png(tmp_path, small):
    arr16 = small.astype(np.uint16) * 257 + 100
    png16(tmp_path / "rgb16.png", arr16)
    img = read_image(tmp_path / "rgb16.png")
    assert img.rgb.dtype == np.uint8 and img.rgb.shape == small.shape
    # Pillow keeps the high byte of 16-bit RGB samples: within one level of exact rounding.
    assert np.abs(img.rgb.astype(int) - np.rint(arr16 / 257.0)).max() <= 1


def test_cmyk_jpeg(tmp_path, astro):
    Image.fromarray(astro).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    img = read_image(tmp_path / "c.jpg")
    assert img.mode == "CMYK" and img.format == "JPEG"
    assert img.rgb.shape == (512, 512, 3)
    assert np.abs(img.rgb.astype(int) - astro).mean() < 6
    write_image(tmp_path / "c_out.jpg", img.rgb, like=img)  # RGB output of a CMYK input works
    assert read_image(tmp_path / "c_out.jpg").mode == "RGB"


def test_palette_gif_and_png(tmp_path, astro):
    pal = Image.fromarray(astro[::2, ::2]).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    pal.save(tmp_path / "p.gif")
    pal.save(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGB"))
    for name in ("p.gif", "p.png"):
        img = read_image(tmp_path / name)
        np.testing.assert_array_equal(img.rgb, expected)
        assert img.alpha is None
    pal.save(tmp_path / "pt.png", transparency=0)
    img = read_image(tmp_path / "pt.png")
    idx = np.asarray(pal)
    np.testing.assert_array_equal(img.alpha == 0, idx == 0)


def test_icc_profile_kept_only_when_rgb(tmp_path, small):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(small).save(tmp_path / "icc.jpg", icc_profile=srgb)
    img = read_image(tmp_path / "icc.jpg")
    assert img.icc_profile == srgb
    write_image(tmp_path / "icc_out.png", img.rgb, like=img)
    assert Image.open(tmp_path / "icc_out.png").info.get("icc_profile") == srgb
    Image.fromarray(small[..., 0]).save(tmp_path / "grey_icc.png", icc_profile=b"\0" * 16 + b"GRAY" + b"\0" * 108)
    assert read_image(tmp_path / "grey_icc.png").icc_profile is None


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.jpg", b"", "empty file"),
        ("text.jpg", b"this is not an image\n", "not a recognised image"),
        ("header_only.png", b"\x89PNG\r\n\x1a\n", "cannot read image"),
    ],
)
def test_bad_files_raise_named_errors(tmp_path, name, content, reason):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as info:
        read_image(p)
    assert name in str(info.value) and isinstance(info.value, ValueError)
    assert info.value.path == p


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp")])
def test_truncated_files_are_errors_not_partial_images(tmp_path, astro, fmt, suffix):
    full = tmp_path / f"full{suffix}"
    Image.fromarray(astro).save(full, format=fmt)
    data = full.read_bytes()
    for frac in (0.3, 0.9):
        p = tmp_path / f"cut{suffix}"
        p.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(ImageReadError, match="cut"):
            read_image(p)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="nope.jpg"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="not a regular file"):
        read_image(tmp_path)


def test_pixel_limit_checked_from_header(tmp_path, astro):
    Image.fromarray(astro).save(tmp_path / "a.png")
    with pytest.raises(ImageReadError, match="exceeds the limit of 1000 pixels"):
        read_image(tmp_path / "a.png", max_pixels=1000)
    assert read_image(tmp_path / "a.png", max_pixels=None).rgb.shape == (512, 512, 3)
    # A 60000 x 60000 PNG "bomb" of a few KB is refused before decoding (default limit).
    bomb = tmp_path / "bomb.png"
    Image.new("L", (1, 1)).save(bomb)
    data = bytearray(bomb.read_bytes())
    data[16:24] = struct.pack(">II", 60000, 60000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    bomb.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="bomb.png"):
        read_image(bomb)


def test_multiframe_gif_gives_first_frame(tmp_path, small):
    frames = [Image.fromarray(small), Image.fromarray(255 - small)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    img = read_image(tmp_path / "anim.gif")
    assert img.n_frames == 2
    assert np.abs(img.rgb.astype(int) - small).mean() < 20  # first frame, palette-quantised


def test_file_named_by_wrong_suffix_reads_by_content(tmp_path, small):
    Image.fromarray(small).save(tmp_path / "really_png.jpg", format="PNG")
    img = read_image(tmp_path / "really_png.jpg")
    assert img.format == "PNG"
    np.testing.assert_array_equal(img.rgb, small)


# ---------------------------------------------------------------------------------- JPEG quality


@pytest.mark.parametrize("q", [40, 75, 90, 97])
def test_jpeg_quality_estimated(tmp_path, small, q):
    Image.fromarray(small).save(tmp_path / "q.jpg", quality=q)
    assert read_image(tmp_path / "q.jpg").quality == q


def test_estimate_jpeg_quality_edge_cases():
    assert estimate_jpeg_quality(None) is None
    assert estimate_jpeg_quality({}) is None
    assert estimate_jpeg_quality({0: [1] * 64}) == 100


def test_jpeg_output_keeps_quality_exif_and_subsampling(tmp_path, astro):
    src = tmp_path / "in.jpg"
    Image.fromarray(astro).save(src, quality=83, subsampling=1, exif=exif_bytes(6), dpi=(300, 300))
    img = read_image(src)
    out = tmp_path / "out.jpg"
    write_image(out, 255 - img.rgb, like=img)
    back = read_image(out)
    assert back.quality == 83 and back.subsampling == 1
    assert Image.open(out).quantization == Image.open(src).quantization  # same tables exactly
    assert back.orientation == 1 and back.rgb.shape == img.rgb.shape  # written upright, not re-rotated
    tags = exif_tags(back.exif)
    assert tags[0x010F] == "TestCam" and tags[0x0112] == 1
    assert back.dpi is not None and round(back.dpi[0]) == 300
    # explicit quality wins; EXIF survives a JPEG -> PNG/WEBP change of format
    write_image(tmp_path / "q60.jpg", img.rgb, like=img, quality=60)
    assert read_image(tmp_path / "q60.jpg").quality == 60
    for suffix in (".png", ".webp"):
        write_image(tmp_path / f"o{suffix}", img.rgb, like=img)
        assert exif_tags(read_image(tmp_path / f"o{suffix}").exif)[0x010F] == "TestCam"


def test_default_quality_without_like(tmp_path, small):
    write_image(tmp_path / "d.jpg", small)
    assert read_image(tmp_path / "d.jpg").quality == 95


# ---------------------------------------------------------------------------------- writing


def test_write_roundtrip_formats(tmp_path, small):
    for suffix in (".png", ".PNG", ".tif", ".tiff", ".bmp", ".webp", ".jpeg", ".gif"):
        p = tmp_path / f"x{suffix}"
        write_image(p, small)
        back = read_image(p)
        assert back.rgb.shape == small.shape
        if suffix.lower() in (".png", ".tif", ".tiff", ".bmp"):
            np.testing.assert_array_equal(back.rgb, small)
    with pytest.raises(ValueError, match="suffix '.txt'"):
        write_image(tmp_path / "x.txt", small)
    assert not (tmp_path / "x.txt").exists()


def test_write_refuses_the_input_path(tmp_path, small):
    p = tmp_path / "in.png"
    Image.fromarray(small).save(p)
    before = sha(p)
    img = read_image(p)
    with pytest.raises(ValueError, match="refusing to write over the input"):
        write_image(p, 255 - img.rgb, like=img)
    with pytest.raises(ValueError, match="refusing"):
        write_image(tmp_path / "." / "in.png", img.rgb, like=img)
    os.link(p, tmp_path / "hardlink.png")
    with pytest.raises(ValueError, match="refusing"):
        write_image(tmp_path / "hardlink.png", img.rgb, like=img)
    assert sha(p) == before


def test_failing_encoder_leaves_target_and_no_temp_file(tmp_path, small):
    target = tmp_path / "out.webp"
    write_image(target, small)
    before = sha(target)
    # A real encoder failure: WebP cannot hold an image wider than 16383 pixels.
    with pytest.raises((ValueError, OSError)):
        write_image(target, np.zeros((1, 17000, 3), np.uint8))
    assert sha(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.webp"]


def test_encoder_crashing_mid_write_leaves_no_temp_file(tmp_path, small, monkeypatch):
    target = tmp_path / "out.png"

    def half_save(self, fp, format=None, **params):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(Image.Image, "save", half_save)
    with pytest.raises(OSError, match="disk full"):
        write_image(target, small)
    assert list(tmp_path.iterdir()) == []


def test_atomic_open_is_all_or_nothing(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    with atomic_open(target) as f:
        f.write(b"one")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write(b"two, half")
        raise RuntimeError("crash")
    assert target.read_bytes() == b"one"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def test_written_files_have_umask_permissions(tmp_path, small):
    old = os.umask(0o022)
    try:
        write_image(tmp_path / "perm.png", small)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "perm.png").stat().st_mode) == 0o644


def test_write_accepts_float_and_rgba_arrays(tmp_path, small):
    write_image(tmp_path / "f.png", small.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(read_image(tmp_path / "f.png").rgb, small)
    rgba = np.dstack([small, np.full(small.shape[:2], 7, np.uint8)])
    write_image(tmp_path / "rgba.png", rgba)
    assert (read_image(tmp_path / "rgba.png").alpha == 7).all()
    with pytest.raises(ValueError, match="alpha shape"):
        write_image(tmp_path / "bad.png", small, alpha=np.zeros((3, 3), np.uint8))


# ---------------------------------------------------------------------------------- to_uint8_rgb


def test_to_uint8_rgb_shapes_and_dtypes(small):
    rgb, alpha = to_uint8_rgb(small)
    assert rgb is small and alpha is None  # no copy for the common case
    grey = small[..., 0]
    for g in (grey, grey[..., None]):
        rgb, alpha = to_uint8_rgb(g)
        assert rgb.shape == small.shape and alpha is None
        np.testing.assert_array_equal(rgb[..., 2], grey)
    rgb, alpha = to_uint8_rgb(np.dstack([small, grey]))
    np.testing.assert_array_equal(rgb, small)
    np.testing.assert_array_equal(alpha, grey)
    rgb, alpha = to_uint8_rgb(np.dstack([grey, grey]))
    assert rgb.shape == small.shape and alpha is not None
    np.testing.assert_array_equal(to_uint8_rgb(small.astype(np.uint16) * 257)[0], small)
    np.testing.assert_array_equal(to_uint8_rgb(small / 255.0)[0], small)
    np.testing.assert_array_equal(to_uint8_rgb((small / 255.0).astype(np.float16))[0], small)
    np.testing.assert_array_equal(to_uint8_rgb(np.array([[[1.02, -0.01, 0.5]]]))[0], [[[255, 0, 128]]])
    np.testing.assert_array_equal(to_uint8_rgb(np.array([[True, False]]))[0][..., 0], [[255, 0]])
    assert to_uint8_rgb(small[:, ::-1])[0].flags.c_contiguous


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((4, 4, 5), np.uint8), "shape"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
        (np.zeros((4,), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.zeros((4, 4, 3), np.int64), "dtype"),
        (np.full((4, 4, 3), 200.0), r"\[0, 1\]"),
        (np.full((4, 4, 3), np.nan), "NaN"),
    ],
)
def test_to_uint8_rgb_rejects(array, match):
    with pytest.raises(ValueError, match=match):
        to_uint8_rgb(array)


# ---------------------------------------------------------------------------------- folder walk


def test_iter_images_anchored_filter_hidden_and_exclude(tmp_path):
    files = [
        "a.jpg", "b.JPG", "c.Jpeg", "d.png", "e.webp", "f.tif", "g.tiff", "h.bmp", "i.gif",
        "sub/deep/j.png", "sub/k.JPEG",
        "a.jpg.txt", "jpg", "notes.txt", "x.jpgx", "png.zip",
        ".hidden.jpg", ".cache/l.jpg", "out/m.jpg",
    ]  # fmt: skip
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_images(tmp_path, exclude=tmp_path / "out")]
    assert found == [
        "a.jpg", "b.JPG", "c.Jpeg", "d.png", "e.webp", "f.tif", "g.tiff", "h.bmp", "sub/deep/j.png", "sub/k.JPEG",
    ]  # fmt: skip
    assert [p.name for p in iter_images(tmp_path, recursive=False)] == found[:8]
    assert [p.name for p in iter_images(tmp_path, extensions=["PNG"], exclude=[tmp_path / "sub"])] == ["d.png"]
    assert "m.jpg" in [p.name for p in iter_images(tmp_path)]
    assert "i.gif" in [p.name for p in iter_images(tmp_path, extensions=IMAGE_EXTENSIONS + (".gif",))]
    assert iter_images(tmp_path / "a.jpg.txt") == [tmp_path / "a.jpg.txt"]  # an explicit file is taken
    with pytest.raises(FileNotFoundError):
        iter_images(tmp_path / "missing")


def test_has_image_suffix():
    assert has_image_suffix("a.JPG") and has_image_suffix(Path("x/y.tiff"))
    assert not has_image_suffix("a.jpg.txt") and not has_image_suffix("jpg") and not has_image_suffix(".jpg")
    assert set(IMAGE_EXTENSIONS) == {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}


def test_loaded_image_summary(tmp_path, small):
    Image.fromarray(small).save(tmp_path / "s.jpg", quality=80)
    img = read_image(tmp_path / "s.jpg")
    assert isinstance(img, LoadedImage)
    assert img.summary() == {
        "width": 120, "height": 80, "format": "JPEG", "mode": "RGB", "bits": 8, "alpha": False, "quality": 80,
        "orientation": 1,
    }  # fmt: skip


def test_tiff_orientation_tag_applied(tmp_path, small):
    Image.fromarray(small).save(tmp_path / "o.tif", tiffinfo={274: 8})
    img = read_image(tmp_path / "o.tif")
    assert img.format == "TIFF" and img.orientation == 8
    np.testing.assert_array_equal(img.rgb, np.rot90(small, k=1))
    write_image(tmp_path / "out.tif", img.rgb, like=img)
    back = read_image(tmp_path / "out.tif")
    assert back.orientation == 1  # written upright, no tag to rotate it again
    np.testing.assert_array_equal(back.rgb, img.rgb)


def exif_with_thumbnail(thumb: bytes) -> bytes:
    """EXIF with IFD0 (Make, Orientation 6), Exif IFD (DateTimeOriginal), GPS and an IFD1 thumbnail."""
    from PIL import ExifTags

    ex = Image.Exif()
    ex[0x010F] = "TestCam"
    ex[0x0112] = 6
    ex.get_ifd(ExifTags.IFD.Exif)[0x9003] = "2020:01:02 03:04:05"
    ex.get_ifd(ExifTags.IFD.GPSInfo)[1] = "N"
    block = ex.tobytes()
    body = bytearray(block[6:])
    e = "<" if body[:2] == b"II" else ">"
    (ifd0,) = struct.unpack_from(e + "I", body, 4)
    (n,) = struct.unpack_from(e + "H", body, ifd0)
    ifd1 = len(body)
    struct.pack_into(e + "I", body, ifd0 + 2 + 12 * n, ifd1)  # IFD0 -> IFD1
    thumb_at = ifd1 + 2 + 2 * 12 + 4
    body += struct.pack(e + "H", 2)
    body += struct.pack(e + "HHII", 0x0201, 4, 1, thumb_at) + struct.pack(e + "HHII", 0x0202, 4, 1, len(thumb))
    body += struct.pack(e + "I", 0) + thumb
    return b"Exif\x00\x00" + bytes(body)


def test_exif_thumbnail_of_the_original_is_not_carried(tmp_path, small):
    from PIL import ExifTags

    Image.fromarray(small[:16, :16]).save(tmp_path / "t.jpg", quality=50)
    thumb = (tmp_path / "t.jpg").read_bytes()
    block = exif_with_thumbnail(thumb)
    src = Image.Exif()
    src.load(block)
    assert src.get_ifd(ExifTags.IFD.IFD1)  # the source really has a thumbnail
    Image.fromarray(small).save(tmp_path / "in.jpg", exif=block)
    img = read_image(tmp_path / "in.jpg")
    assert img.orientation == 6
    ex = Image.Exif()
    ex.load(img.exif)
    assert ex[0x0112] == 1 and ex[0x010F] == "TestCam"
    assert ex.get_ifd(ExifTags.IFD.Exif)[0x9003] == "2020:01:02 03:04:05"
    assert ex.get_ifd(ExifTags.IFD.GPSInfo)[1] == "N"
    assert not ex.get_ifd(ExifTags.IFD.IFD1)
    assert thumb not in img.exif
    write_image(tmp_path / "out.jpg", 255 - img.rgb, like=img)
    assert thumb not in (tmp_path / "out.jpg").read_bytes()


def test_exif_for_output_fallback_and_none():
    from faceswap_pipeline.io import exif_for_output

    assert exif_for_output(None) is None and exif_for_output(b"") is None
    assert exif_for_output(b"Exif\x00\x00garbage but long enough") == b"Exif\x00\x00garbage but long enough"


def test_too_long_exif_is_not_copied_to_jpeg(tmp_path, small):
    ex = Image.Exif()
    ex[0x010F] = "TestCam"
    ex[0x010E] = "x" * 70000  # ImageDescription: 70 kB
    Image.fromarray(small).save(tmp_path / "big_exif.png", exif=ex.tobytes())
    img = read_image(tmp_path / "big_exif.png")
    assert len(img.exif) > 65533
    write_image(tmp_path / "out.jpg", img.rgb, like=img)  # no crash: EXIF dropped
    assert read_image(tmp_path / "out.jpg").exif is None
    write_image(tmp_path / "out.png", img.rgb, like=img)  # PNG has no such limit
    assert len(read_image(tmp_path / "out.png").exif) > 65533
