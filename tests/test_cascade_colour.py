"""Colour training data for the cascade (the colour retrain): FDDB-style annotations, the half split, face-free
windows, the colour augmentations and the trainer's colour options on a tiny synthetic config."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _write_voc(path, boxes, w, h):
    objs = "".join(
        f"<object><name>face</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for b in boxes
    )
    path.write_text(f"<annotation><size><width>{w}</width><height>{h}</height></size>{objs}</annotation>")


def test_voc_boxes_and_half_split(tmp_path):
    from faceswap_pipeline.train.colour_data import fddb_items, half_split, read_voc_boxes

    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    import imageio.v3 as iio

    for i in range(5):
        iio.imwrite(tmp_path / "images" / f"{i:06d}.jpg", np.zeros((40, 50, 3), np.uint8))
        _write_voc(tmp_path / "annotations" / f"{i:06d}.xml", [(1, 2, 11 + i, 22)] * (i % 3), 50, 40)
    b = read_voc_boxes(tmp_path / "annotations" / "000002.xml")
    assert b.shape == (2, 4) and b[0].tolist() == [1, 2, 13, 22]
    tr, te = half_split([tmp_path / f"{i}" for i in range(5)])
    assert [p.name for p in tr] == ["0", "2", "4"] and [p.name for p in te] == ["1", "3"]
    train, test = fddb_items(tmp_path, "train"), fddb_items(tmp_path, "test")
    assert [p.name for p, _ in train] == ["000000.jpg", "000002.jpg", "000004.jpg"]
    assert {p.name for p, _ in train}.isdisjoint({p.name for p, _ in test})
    assert len(train[1][1]) == 2 and len(test[0][1]) == 1


def test_face_free_windows_avoid_faces():
    from faceswap_pipeline.train.colour_data import face_free_windows

    faces = np.array([[100.0, 100.0, 200.0, 220.0]])
    w = face_free_windows((300, 400), faces, 50, np.random.default_rng(0))
    assert len(w) > 10
    c = (w[:, :2] + w[:, 2:]) / 2
    inside = (c[:, 0] > 85) & (c[:, 0] < 215) & (c[:, 1] > 82) & (c[:, 1] < 238)
    assert not inside.any()
    assert (w[:, 2] - w[:, 0] >= 12).all() and (w[:, :2] >= 0).all() and (w[:, 2] <= 400 + 1e-6).all()


def test_face_free_mask_and_fddb_windows():
    from faceswap_pipeline.train.cascade_config import CascadeTrainConfig
    from faceswap_pipeline.train.cascade_data import face_free, fddb_windows

    faces = np.array([[10.0, 10.0, 50.0, 70.0]])
    cand = torch.tensor([[12.0, 15.0, 48.0, 51.0], [200.0, 200.0, 240.0, 240.0]])
    assert face_free(cand, faces).tolist() == [False, True]
    cfg = CascadeTrainConfig(fddb_window=(0.0, -0.1, 1.0))
    win = fddb_windows(faces, cfg)
    assert torch.allclose(win, torch.tensor([[10.0, 14.0, 50.0, 54.0]]))


def test_colour_augmentations_shape_range_and_effect():
    from faceswap_pipeline.train.window_classifier import augment

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 24, 24), dtype=torch.uint8)
    plain = augment(x, torch.Generator().manual_seed(1), 0.0, False, 0.0)
    y = augment(x, torch.Generator().manual_seed(1), 0.0, False, 0.0, occlude_prob=1.0, light_prob=1.0, blur_prob=1.0)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert not torch.allclose(plain, y)
    # blur lowers the high-frequency energy of noise windows
    z = augment(x, g, 0.0, False, 0.0, blur_prob=1.0)
    hf = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert hf(z) < 0.7 * hf(x.float() / 255)


@pytest.mark.slow
def test_training_with_colour_options_tiny(tmp_path):
    import imageio.v3 as iio

    from faceswap_pipeline.stages.detect_cascade import CascadeDetector
    from faceswap_pipeline.train.cascade import main
    from faceswap_pipeline.weights import read_manifest
    from tests.test_cascade import _synthetic_face

    rng = np.random.default_rng(0)
    utk, nonface, colour, fddb = (tmp_path / d for d in ("utk", "nonface", "colour", "fddb"))
    for d in (utk, nonface, colour, fddb / "images", fddb / "annotations"):
        d.mkdir(parents=True)
    for i in range(12):
        iio.imwrite(utk / f"{20 + i}_{i % 2}_{i % 5}_2017010100000{i:04d}.jpg.chip.jpg", _synthetic_face(rng))
    for i in range(6):
        iio.imwrite(nonface / f"bg_{i:03d}.png", rng.integers(0, 255, (72, 96), dtype=np.uint8))
        iio.imwrite(colour / f"c_{i:03d}.png", rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    for i in range(4):
        img = rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)
        img[20:220, 20:220] = _synthetic_face(rng)[:140, :180]
        iio.imwrite(fddb / "images" / f"{i:06d}.jpg", img)
        _write_voc(fddb / "annotations" / f"{i:06d}.xml", [(40, 30, 150, 150)], 200, 160)
    wdir = tmp_path / "weights"
    rc = main(
        ["--utk", str(utk), "--nonface", str(nonface), "--nonface-colour", str(colour), "--fddb", str(fddb), "--init", "weights",
         "--out", str(tmp_path / "run"), "--threads", "1", "--n-faces", "8", "--dev-faces", "3", "--framing-faces", "2",
         "--steps-scale", "0.002", "--grey-prob", "0.4", "--jpeg-prob", "0.5", "--occlude-prob", "0.3", "--light-prob", "0.3",
         "--blur-prob", "0.2", "--colour-repeat", "2", "--lr", "1e-4", "--export", "--weights-dir", str(wdir)]
    )
    assert rc == 0
    samples = torch.load(tmp_path / "run" / "samples.pt", weights_only=True)
    assert samples["fddb_pos48"].shape[0] == 2 * 8 and samples["fddb_neg24"].shape[0] > 0  # the train half: 2 of the 4 photos, one face each
    assert samples["fddb_cal_label"].shape[0] == samples["fddb_cal12"].shape[0]
    man = read_manifest(wdir)
    assert man["cascade.24net"]["training"]["steps"] >= 1
    det = CascadeDetector.from_pretrained(weights_dir=str(wdir), min_face=40)
    dets = det.detect(_synthetic_face(rng))
    assert isinstance(dets, list)
    assert all(len(d.box) == 4 and 0.0 <= d.score <= 1.0 for d in dets)  # cascade scores are probabilities
