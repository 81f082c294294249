"""Training-data preparation: pack format round trip and ``prepare`` on synthetic UTK-style chips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faceswap_pipeline.train.packs import FacePack, decode_jpeg, encode_jpeg, write_pack
from faceswap_pipeline.train.prepare import (
    CHIP_RESCALE,
    FALLBACK_BOX,
    fallback_detection,
    main,
    outside_fraction,
    process_image,
)
from faceswap_pipeline.train.splits import is_validation


def _smooth_images(n: int, size: int = 128, seed: int = 0) -> np.ndarray:
    """Smooth random colour images (JPEG-friendly), (n, size, size, 3) uint8."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return (up.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def _labels(n: int) -> dict[str, np.ndarray]:
    return {
        "age": np.arange(n, dtype=np.int16) * 7 % 90,
        "gender": np.arange(n) % 2,
        "race": np.arange(n) % 5,
        "fallback": np.arange(n) % 3 == 0,
        "pad": np.linspace(0, 0.2, n, dtype=np.float32),
        "box": np.tile(np.array([[1.0, 2.0, 3.0, 4.0]], np.float32), (n, 1)),
        "name": np.array([f"{i}_x.jpg" for i in range(n)]),
    }


@pytest.fixture(scope="module")
def astronaut_chip() -> np.ndarray:
    """A 200x200 UTK-like chip around the astronaut's face (uint8 RGB)."""
    from skimage import data

    im = data.astronaut()  # HOG box (175, 76)-(266, 167): chip with ~same margins as UTK's
    y0, x0 = 76 - 12, 175 - 12
    chip = im[y0 : y0 + 130, x0 : x0 + 130]
    from PIL import Image

    return np.asarray(Image.fromarray(chip).resize((200, 200), Image.BICUBIC))


def test_jpeg_round_trip_close() -> None:
    img = _smooth_images(1)[0]
    back = decode_jpeg(encode_jpeg(img, 95))
    assert back.shape == img.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - img.astype(int)).mean() < 2.0


def test_pack_round_trip(tmp_path) -> None:
    imgs = _smooth_images(10)
    labels = _labels(10)
    path = tmp_path / "p.npz"
    nbytes = write_pack(path, [encode_jpeg(i, 90) for i in imgs], labels, {"size": 128, "framing": {"rescale": [1, 1, 1, 1]}})
    assert nbytes == path.stat().st_size
    with np.load(path, allow_pickle=False) as z:  # readable without pickle
        assert z["jpeg"].dtype == np.uint8 and z["offsets"][-1] == len(z["jpeg"])
    pack = FacePack(path)
    assert len(pack) == 10 and pack.size == 128 and pack.meta["framing"]["rescale"] == [1, 1, 1, 1]
    for k in ("age", "gender", "race", "fallback", "pad", "box"):
        np.testing.assert_array_equal(pack.labels[k], np.asarray(labels[k]).astype(pack.labels[k].dtype))
    assert list(pack.labels["name"]) == list(labels["name"])
    out = pack.images([3, 1])
    assert out.shape == (2, 128, 128, 3) and out.dtype == np.uint8
    assert np.abs(out[0].astype(int) - imgs[3].astype(int)).mean() < 3.0
    np.testing.assert_array_equal(pack.images(1), out[1])
    np.testing.assert_array_equal(pack.decode_all(), pack.images(np.arange(10)))
    assert pack.images([]).shape == (0, 128, 128, 3)


def test_pack_select(tmp_path) -> None:
    labels = _labels(10)
    write_pack(tmp_path / "p.npz", [encode_jpeg(i) for i in _smooth_images(10, 16)], labels, {"size": 16})
    pack = FacePack(tmp_path / "p.npz")
    g, r, a = labels["gender"], labels["race"], labels["age"]
    np.testing.assert_array_equal(pack.select(gender="female"), np.flatnonzero(g == 1))
    np.testing.assert_array_equal(pack.select(gender=0, race=["white", 2]), np.flatnonzero((g == 0) & np.isin(r, [0, 2])))
    np.testing.assert_array_equal(pack.select(min_age=18, max_age=70), np.flatnonzero((a >= 18) & (a <= 70)))
    np.testing.assert_array_equal(pack.select(max_pad=0.1, fallback=False), np.flatnonzero((labels["pad"] <= 0.1) & ~labels["fallback"]))
    assert len(pack.select()) == 10


def test_write_pack_rejects_missing_labels(tmp_path) -> None:
    labels = _labels(3)
    del labels["race"]
    with pytest.raises(ValueError, match="race"):
        write_pack(tmp_path / "p.npz", [b"x"] * 3, labels, {})


def test_outside_fraction_and_fallback_box() -> None:
    assert outside_fraction((0, 0, 10, 10), (10, 10)) == 0.0
    assert outside_fraction((-10, 0, 10, 10), (10, 10)) == pytest.approx(0.5)
    assert outside_fraction((20, 20, 30, 30), (10, 10)) == 1.0
    det = fallback_detection((200, 200, 3))
    assert det.box == pytest.approx(tuple(200 * f for f in FALLBACK_BOX)) and det.score == 0.0


def test_process_image_hog_and_fallback(astronaut_chip) -> None:
    crop, info = process_image(astronaut_chip, CHIP_RESCALE, 128)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
    assert not info["fallback"]
    assert info["pad"] < 0.05  # the chip framing keeps the crop inside the chip
    blank = np.full((200, 200, 3), 128, np.uint8)  # no face: HOG misses, fixed box is used
    crop2, info2 = process_image(blank, CHIP_RESCALE, 128)
    assert info2["fallback"] and crop2.shape == (128, 128, 3)
    assert info2["box"] == pytest.approx(tuple(200 * f for f in FALLBACK_BOX))


def test_seed_framing_pads_chips(astronaut_chip) -> None:
    """The original design's 1.5 top factor reaches past a UTK-like chip; the chip framing does not."""
    _, seed = process_image(astronaut_chip, (1.1, 1.5, 1.1, 1.3), 128)
    _, chip = process_image(astronaut_chip, CHIP_RESCALE, 128)
    assert seed["pad"] > chip["pad"] + 0.05


def test_prepare_main_on_synthetic_chips(tmp_path, astronaut_chip, capsys) -> None:
    from PIL import Image

    src = tmp_path / "utk"
    src.mkdir()
    names = [f"{20 + i}_{i % 2}_{i % 5}_2017011{i}000000000.jpg.chip.jpg" for i in range(6)]
    for i, n in enumerate(names):
        img = astronaut_chip if i < 5 else np.full((200, 200, 3), 90, np.uint8)
        Image.fromarray(np.ascontiguousarray(img[:, ::-1] if i % 2 else img)).save(src / n, quality=95)
    (src / "notlabelled.jpg").write_bytes((src / names[0]).read_bytes())
    out = tmp_path / "packs"
    rc = main(["--images", str(src), "--out", str(out), "--workers", "1", "--quality", "85"])
    assert rc == 0
    side = json.loads((out / "utk.json").read_text())
    assert side["framing"] == {"rescale": list(CHIP_RESCALE), "size": 128, "detector": "hog", "upsample": 1}
    assert side["skipped_unlabelled"] == 1 and side["errors"] == 0
    packs = {s: FacePack(out / f"utk_{s}.npz") for s in ("train", "val")}
    assert sum(len(p) for p in packs.values()) == 6
    for s, p in packs.items():
        assert all(is_validation(n) == (s == "val") for n in p.labels["name"])
        assert p.meta["framing"]["rescale"] == list(CHIP_RESCALE) and p.meta["quality"] == 85
    fb = {n: f for p in packs.values() for n, f in zip(p.labels["name"], p.labels["fallback"])}
    assert fb[names[5]] and not any(fb[n] for n in names[:5])
    ages = {n: a for p in packs.values() for n, a in zip(p.labels["name"], p.labels["age"])}
    assert ages[names[3]] == 23
    json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_prepare_age_filter(tmp_path, astronaut_chip) -> None:
    from PIL import Image

    src = tmp_path / "utk"
    src.mkdir()
    for age in (5, 30, 80):
        Image.fromarray(astronaut_chip).save(src / f"{age}_1_0_20170101000000000.jpg.chip.jpg")
    out = tmp_path / "packs"
    assert main(["--images", str(src), "--out", str(out), "--workers", "1", "--min-age", "18", "--max-age", "70"]) == 0
    ages = np.concatenate([FacePack(out / f"utk_{s}.npz").labels["age"] for s in ("train", "val")])
    assert list(ages) == [30]
