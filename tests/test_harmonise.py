"""Skin-tone harmonisation at paste-back (ops/harmonise.py, FeatherBlend(harmonise=...))."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceswap_pipeline.ops.harmonise import harmonise_surround, skin_pixels, tone_shift
from faceswap_pipeline.ops.masks import paste_mask
from faceswap_pipeline.ops.seam import seam_score
from faceswap_pipeline.pipeline import Pipeline
from faceswap_pipeline.stages.blend import FeatherBlend
from faceswap_pipeline.stages.crop import CropLetterbox
from faceswap_pipeline.stages.detect_hog import HogDetector
from faceswap_pipeline.stages.translate import Translator


class Darken(torch.nn.Module):
    """A stand-in for a race swap: the face in a darker, browner tone ([-1, 1] in and out)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) * 0.5 * torch.tensor([0.62, 0.5, 0.42]).view(1, 3, 1, 1)) * 2 - 1


def _run(image, gen, direction="white2black", harmonise="auto"):
    pipe = Pipeline([HogDetector(threshold=0.5), CropLetterbox(), Translator({direction: gen}, direction), FeatherBlend(shape="ellipse", harmonise=harmonise)])
    return pipe(image)


def _full_alpha(face, hw):
    x0, y0, x1, y1 = face.transform.box
    a = paste_mask(face.transform.box, hw, 0.12, "ellipse")
    full = np.zeros(hw, np.float32)
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y1, hw[0]), min(x1, hw[1])
    full[sy0:sy1, sx0:sx1] = a[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    return full


def test_harmonisation_lowers_the_seam_and_never_touches_far_pixels(astronaut) -> None:
    off, faces_off = _run(astronaut, Darken(), harmonise="off")
    on, faces_on = _run(astronaut, Darken())  # auto: a race direction is harmonised
    (face,) = faces_on
    assert "harmonise" in face.actions and face.attributes["tone_shift_de"] > 10
    assert "harmonise" not in faces_off[0].actions
    x0, y0, x1, y1 = face.transform.box
    far = np.ones(astronaut.shape[:2], bool)
    far[max(y0, 0) : y1, max(x0, 0) : x1] = False
    np.testing.assert_array_equal(on[far], astronaut[far])  # nothing outside the crop window moves
    alpha = _full_alpha(face, astronaut.shape[:2])
    s_off, s_on = seam_score(astronaut, off, alpha), seam_score(astronaut, on, alpha)
    assert s_on.delta_e < s_off.delta_e - 0.5  # the colour step at the mask's edge shrinks
    # the neck just below the mask moved toward the darker face
    neck = (slice(y1 - 12, y1 - 6), slice((x0 + x1) // 2 - 5, (x0 + x1) // 2 + 5))
    assert on[neck].mean() < off[neck].mean() - 3


def test_an_unchanged_face_leaves_the_photo_as_without_harmonisation(astronaut) -> None:
    on, faces = _run(astronaut, torch.nn.Identity(), harmonise="on")
    off, _ = _run(astronaut, torch.nn.Identity(), harmonise="off")
    np.testing.assert_array_equal(on, off)
    assert faces[0].attributes["tone_shift_de"] < 1.0


def test_auto_leaves_gender_swaps_alone(astronaut) -> None:
    out, faces = _run(astronaut, Darken(), direction="female2male")
    assert "harmonise" not in faces[0].actions
    with pytest.raises(ValueError):
        FeatherBlend(harmonise="always")


def test_skin_pixels_drop_features_and_tone_shift_is_measured_on_skin() -> None:
    from skimage.color import rgb2lab

    rng = np.random.default_rng(0)
    skin = np.full((40, 40, 3), (200.0, 150.0, 120.0)) + rng.normal(0, 2, (40, 40, 3))
    skin[10:14, 8:16] = (40, 30, 30)  # an "eye"
    lab = rgb2lab(skin / 255)
    mask, centre = skin_pixels(lab, np.ones((40, 40), bool))
    assert not mask[10:14, 8:16].any() and mask.mean() > 0.9
    darker = skin * 0.7
    alpha = np.ones((40, 40))
    s = tone_shift(skin, darker, alpha)
    assert s.lab[0] < -8 and s.n_skin > 1000
    out, weight, _ = harmonise_surround(skin, darker, np.zeros((40, 40)), np.ones((40, 40)))
    assert weight.max() == 0 and np.array_equal(out, skin)  # no face pixels: nothing measured, nothing moved


def test_auto_follows_the_blend_mode() -> None:
    assert FeatherBlend().harmonises("white2black") and FeatherBlend(mode="laplacian").harmonises("asian2white")
    assert not FeatherBlend(mode="poisson").harmonises("white2black")  # Poisson matches the boundary itself
    assert FeatherBlend(mode="poisson", harmonise="on").harmonises("white2black")
    assert not FeatherBlend(harmonise="off").harmonises("white2black") and not FeatherBlend().harmonises("male2female")
