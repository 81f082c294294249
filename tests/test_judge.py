"""The independent judge (dlib-descriptor probes) and the quality figures beside it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceswap_pipeline.labels import AGE_BANDS, age_band, age_band_names
from faceswap_pipeline.train import judge as J


@pytest.fixture(scope="module")
def crop_u8() -> np.ndarray:
    """The astronaut's face framed as the pipeline frames it: (1, 128, 128, 3) uint8."""
    from skimage import data

    from faceswap_pipeline.stages.crop import frame_face
    from faceswap_pipeline.stages.detect_hog import HogDetector
    from faceswap_pipeline.train.prepare import CHIP_RESCALE

    im = data.astronaut()
    crop, _ = frame_face(im, HogDetector().detect(im)[0], CHIP_RESCALE, 128)
    return (crop.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()[None]


def _synthetic(n: int = 300, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 2, n)
    r = rng.integers(0, 5, n)
    age = rng.integers(1, 90, n)
    x = rng.normal(0, 0.05, (n, 128)).astype(np.float32)
    x[:, 0] += 0.3 * g
    x[np.arange(n), 1 + r] += 0.3
    x[:, 6] += age / 300.0
    return x, {"gender": g, "race": r, "age": age}


def test_age_bands() -> None:
    assert [age_band(a) for a in (0, 17, 18, 29, 30, 44, 45, 59, 60, 116)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert age_band_names() == ("0-17", "18-29", "30-44", "45-59", "60+") and len(AGE_BANDS) == 5


def test_probes_match_sklearn_and_separate_classes() -> None:
    from sklearn.linear_model import LogisticRegression

    x, lab = _synthetic()
    probes = J.fit_probes(x, lab)
    lg = J.probe_logits(probes, x)
    ref = LogisticRegression(C=1.0, max_iter=3000, random_state=0).fit(x, lab["gender"])
    # the binary head as 2 logits gives sklearn's probabilities exactly
    p = torch.from_numpy(lg["gender"]).softmax(1)[:, 1].numpy()
    assert np.allclose(p, ref.predict_proba(x)[:, 1], atol=1e-5)
    ref_r = LogisticRegression(C=1.0, max_iter=3000, random_state=0).fit(x, lab["race"])
    assert (lg["race"].argmax(1) == ref_r.predict(x)).all()
    acc = J.probe_accuracy(probes, *_synthetic(seed=1))
    assert acc["gender"]["all"] > 0.95 and acc["race"]["all"] > 0.95
    assert set(acc["race"]["by_race"]) == {"white", "black", "asian", "indian", "other"}


def test_target_class_and_hits() -> None:
    assert J.target_class("male2female") == ("gender", 1, (0, 1))
    assert J.target_class("white2asian") == ("race", 2, (0, 2))
    with pytest.raises(ValueError):
        J.target_class("male2asian")
    x, lab = _synthetic()
    judge = J.Judge(probes=J.fit_probes(x, lab))
    female = x[lab["gender"] == 1]
    assert judge.hits(female, "male2female").mean() > 0.95
    assert judge.hits(female, "female2male").mean() < 0.05
    # race pairs compare only the pair's two classes
    asian = x[lab["race"] == 2]
    assert judge.hits(asian, "white2asian").mean() > 0.95


def test_grid_energy_sees_checkerboard() -> None:
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = np.repeat(((xx + yy) * 2).astype(np.uint8)[None, ..., None], 3, axis=3)
    grid = smooth.astype(np.int16) + 20 * ((xx + yy) % 2)[None, ..., None]
    e_s, e_g = J.grid_energy(smooth), J.grid_energy(grid.clip(0, 255).astype(np.uint8))
    assert e_s[0] < 1e-3 and e_g[0] > 20 * e_s[0]


def test_frechet_and_sharpness() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8))
    assert J.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert J.frechet_distance(a, a + 1.0) == pytest.approx(8.0, rel=1e-6)
    img = rng.integers(0, 255, (2, 32, 32, 3)).astype(np.uint8)
    blur = ((img[:, :-1, :-1].astype(np.float32) + img[:, 1:, 1:]) / 2).astype(np.uint8)
    assert (J.laplacian_variance(blur) < J.laplacian_variance(img[:, :-1, :-1])).all()


def test_score_on_real_face(crop_u8: np.ndarray) -> None:
    x, lab = _synthetic()
    judge = J.Judge(probes=J.fit_probes(x, lab))
    faces = np.concatenate([crop_u8, crop_u8[:, :, ::-1]])
    same = judge.score(faces, faces.copy(), "female2male")
    assert same["identity_median"] == pytest.approx(0.0, abs=1e-5) and same["face_found_outputs"] == 1.0
    assert same["sharpness_ratio"] == pytest.approx(1.0) and same["grid_energy_ratio"] == pytest.approx(1.0)
    assert same["race_kept"] == 1.0 and "gender_kept" not in same  # a gender swap must keep race
    assert judge.score(faces, faces.copy(), "white2asian")["gender_kept"] == 1.0
    blank = np.full_like(faces, 128)
    worse = judge.score(faces, blank, "female2male")
    assert worse["face_found_outputs"] == 0.0 and worse["identity_median"] > 0.6 and worse["sharpness_ratio"] < 0.01
