"""Greyscale and 16-bit photos: grey in, grey out; 16 bits in, 16 bits out."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import faceswap_pipeline as fp
from faceswap_pipeline.io import read_image, write_image
from faceswap_pipeline.io.read import _orient
from faceswap_pipeline.stages.blend import is_greyscale


def png16(path: Path, arr: np.ndarray) -> None:
    """A 16-bit RGB(A) PNG written by hand with filter 0 (independent of the writer under test)."""
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(t: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def grey_astronaut(astronaut) -> np.ndarray:
    return np.asarray(Image.fromarray(astronaut).convert("L"))


def face_mask(faces, shape) -> np.ndarray:
    inside = np.zeros(shape, bool)
    for f in faces:
        x0, y0, x1, y1 = f.transform.box
        inside[max(y0, 0) : y1, max(x0, 0) : x1] = True
    return inside


# -------------------------------------------------------------------------------------- grey


def test_grey_photo_gets_a_grey_face(grey_astronaut, tiny_weights):
    pipe = fp.load_pipeline("female2male", upscaler="resize", device="cpu", weights_dir=tiny_weights)
    out, faces = pipe(grey_astronaut)
    assert len(faces) == 1 and faces[0].actions[-2:] == ["grey", "blend"]
    inside = face_mask(faces, grey_astronaut.shape)
    assert np.any(out[inside][:, 0] != grey_astronaut[inside])  # the face was swapped ...
    np.testing.assert_array_equal(out[..., 0], out[..., 1])  # ... and the photo is still grey
    np.testing.assert_array_equal(out[..., 1], out[..., 2])
    np.testing.assert_array_equal(out[~inside][:, 0], grey_astronaut[~inside])


def test_colour_photo_keeps_colour_faces(astronaut, tiny_weights):
    pipe = fp.load_pipeline("female2male", upscaler="resize", device="cpu", weights_dir=tiny_weights)
    _, faces = pipe(astronaut)
    assert "grey" not in faces[0].actions


def test_is_greyscale_tolerates_a_little_chroma_noise(grey_astronaut, astronaut):
    rgb = np.repeat(grey_astronaut[:, :, None], 3, axis=2)
    noise = np.random.default_rng(0).integers(-2, 3, rgb.shape)  # a scanned B&W print stored as colour
    noisy = np.clip(rgb.astype(int) + noise, 0, 255).astype(np.uint8)
    assert is_greyscale(rgb) and is_greyscale(noisy)
    assert not is_greyscale(astronaut)
    sepia = np.clip(rgb.astype(int) * np.array([1.0, 0.85, 0.6]), 0, 255).astype(np.uint8)
    assert not is_greyscale(sepia)


@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_folder_run_writes_grey_files_as_grey(tmp_path, grey_astronaut, tiny_weights, mode):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    if mode == "L":
        Image.fromarray(grey_astronaut).save(src / "g.png")
    else:  # real 16-bit detail: a low byte that 8 bits cannot hold
        g16 = grey_astronaut.astype(np.uint16) * 257 + (np.arange(512)[None, :] % 97).astype(np.uint16)
        Image.fromarray(g16).save(src / "g.png")
    pipe = fp.load_pipeline("female2male", upscaler="resize", device="cpu", weights_dir=tiny_weights)
    report = pipe.run_folder(src, out, progress=False)
    (item,) = report.items
    assert item.status == "ok" and item.info["n_faces"] == 1
    assert item.info["output_image"]["mode"] == mode
    with Image.open(out / "g.png") as im:
        assert im.mode == mode
        got = np.asarray(im)
    before = read_image(src / "g.png")
    original = before.samples16 if mode == "I;16" else before.rgb[..., 0]
    changed = got != original
    assert changed.any()
    # every changed pixel lies in the face's crop window; everything else is bit-identical
    x0, y0, x1, y1 = (round(v) for v in item.info["faces"][0]["crop_box"])
    changed[max(y0, 0) : y1, max(x0, 0) : x1] = False
    assert not changed.any()


def test_write_image_like_a_grey_file_converts_colour_to_luma(tmp_path, astronaut, grey_astronaut):
    Image.fromarray(grey_astronaut).save(tmp_path / "g.jpg", quality=90)
    like = read_image(tmp_path / "g.jpg")
    assert like.is_grey
    assert write_image(tmp_path / "o.jpg", astronaut, like=like) == {"format": "JPEG", "mode": "L", "bits": 8}
    assert Image.open(tmp_path / "o.jpg").mode == "L"
    # a grey image keeps its exact values (no luma rounding of grey pixels)
    write_image(tmp_path / "o.png", like.rgb, like=like)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png")), like.rgb[..., 0])


# ------------------------------------------------------------------------------------ 16 bits


@pytest.fixture(scope="module")
def deep(astronaut) -> np.ndarray:
    """(96, 128, 3) uint16 samples whose low byte is not a copy of the high one."""
    rng = np.random.default_rng(0)
    return astronaut[:96, :128].astype(np.uint16) * 256 + rng.integers(0, 256, (96, 128, 3)).astype(np.uint16)


def test_16bit_rgb_png_is_read_in_full(tmp_path, deep):
    png16(tmp_path / "d.png", deep)
    img = read_image(tmp_path / "d.png")
    assert img.bits == 16 and img.summary()["bits"] == 16
    np.testing.assert_array_equal(img.samples16, deep)
    np.testing.assert_array_equal(img.rgb, ((deep.astype(np.uint32) + 128) // 257).astype(np.uint8))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_stays_16bit_and_unchanged_pixels_are_exact(tmp_path, deep, suffix):
    png16(tmp_path / "d.png", deep)
    like = read_image(tmp_path / "d.png")
    edited = like.rgb.copy()
    edited[10:20, 10:30] = 255 - edited[10:20, 10:30]  # what a face paste does to a region
    written = write_image(tmp_path / f"o{suffix}", edited, like=like)
    assert written == {"format": "PNG" if suffix == ".png" else "TIFF", "mode": "RGB;16", "bits": 16}
    back = read_image(tmp_path / f"o{suffix}")
    assert back.bits == 16
    outside = np.ones(deep.shape[:2], bool)
    outside[10:20, 10:30] = False
    np.testing.assert_array_equal(back.samples16[outside], deep[outside])
    np.testing.assert_array_equal(back.rgb, edited)  # the edit itself is exact at 8 bits


def test_16bit_rgba_png_keeps_16bit_alpha(tmp_path, deep):
    a16 = np.linspace(0, 65535, deep.shape[0] * deep.shape[1]).astype(np.uint16).reshape(deep.shape[:2])
    png16(tmp_path / "d.png", np.dstack([deep, a16]))
    like = read_image(tmp_path / "d.png")
    assert like.bits == 16 and like.alpha is not None
    write_image(tmp_path / "o.png", like.rgb, like=like)
    back = read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(back.samples16, np.dstack([deep, a16]))


def test_16bit_to_8bit_formats_and_other_sizes(tmp_path, deep):
    png16(tmp_path / "d.png", deep)
    like = read_image(tmp_path / "d.png")
    assert write_image(tmp_path / "o.jpg", like.rgb, like=like)["bits"] == 8  # JPEG has no 16-bit samples
    big = np.repeat(np.repeat(like.rgb, 2, 0), 2, 1)
    write_image(tmp_path / "big.png", big, like=like)
    back = read_image(tmp_path / "big.png")
    np.testing.assert_array_equal(back.samples16, big.astype(np.uint16) * 257)


def test_orientation_applies_to_16bit_samples(deep):
    np.testing.assert_array_equal(_orient(deep, 6), np.rot90(deep, k=-1))
    np.testing.assert_array_equal(_orient(deep[..., 0], 8), np.rot90(deep[..., 0], k=1))


def test_folder_run_keeps_16bit_rgb(tmp_path, astronaut, tiny_weights):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(1)
    deep = astronaut.astype(np.uint16) * 256 + rng.integers(0, 256, astronaut.shape).astype(np.uint16)
    png16(src / "a.png", deep)
    pipe = fp.load_pipeline("female2male", upscaler="resize", device="cpu", weights_dir=tiny_weights)
    (item,) = pipe.run_folder(src, out, progress=False).items
    assert item.status == "ok" and item.info["image"]["bits"] == 16
    assert item.info["output_image"] == {"format": "PNG", "mode": "RGB;16", "bits": 16}
    back = read_image(out / "a.png")
    assert back.bits == 16
    x0, y0, x1, y1 = item.info["faces"][0]["crop_box"]
    outside = np.ones(deep.shape[:2], bool)
    outside[max(y0, 0) : y1, max(x0, 0) : x1] = False
    np.testing.assert_array_equal(back.samples16[outside], deep[outside])
    assert np.any(back.samples16[~outside] != deep[~outside])
