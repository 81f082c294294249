"""--align: tilted faces turned upright for the generator and back at paste-back (ops/align, stages/align)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from faceswap_pipeline.ops.align import rotate_points, rotated_window, tilt_degrees, unrotate_window
from faceswap_pipeline.pipeline import Pipeline
from faceswap_pipeline.stages.align import FaceAligner
from faceswap_pipeline.stages.blend import FeatherBlend
from faceswap_pipeline.stages.crop import CropLetterbox
from faceswap_pipeline.stages.translate import Translator
from faceswap_pipeline.types import Detection, FaceRecord, ImageRecord

BOX = (175.0, 76.0, 266.0, 167.0)  # the astronaut's face (HOG)


def _points(tilt: float) -> np.ndarray:
    """68 points whose eye line is tilted by ``tilt`` degrees about the face box's centre (the rest at the centre)."""
    cx, cy = (BOX[0] + BOX[2]) / 2, (BOX[1] + BOX[3]) / 2
    p = np.tile([[cx, cy]], (68, 1)).astype(np.float64)
    t = np.radians(tilt)
    d = np.array([np.cos(t), np.sin(t)]) * 20
    p[36:42], p[42:48] = (cx, cy - 15) - d, (cx, cy - 15) + d
    return p.astype(np.float32)


def test_tilt_and_point_rotation_level_the_eyes() -> None:
    pts = _points(20.0)
    assert tilt_degrees(pts) == pytest.approx(20.0, abs=1e-4)
    assert tilt_degrees(rotate_points(pts, (150, 50, 290, 200), 20.0)) == pytest.approx(0.0, abs=1e-4)


def test_rotated_window_undoes_a_tilt_and_unrotate_round_trips(astronaut) -> None:
    box = (150, 50, 290, 200)
    w, h = box[2] - box[0], box[3] - box[1]
    centre = (box[0] + (w - 1) / 2, box[1] + (h - 1) / 2)
    tilted = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D(centre, -25.0, 1.0), astronaut.shape[1::-1])  # head turned clockwise
    upright = rotated_window(tilted, box, 25.0).astype(np.float32)
    orig = astronaut[box[1] : box[3], box[0] : box[2]].astype(np.float32)
    inner = (slice(30, -30), slice(30, -30))
    assert np.abs(upright[inner] - orig[inner]).mean() < 6.0  # the original, upright content again
    assert np.abs(tilted[box[1] : box[3], box[0] : box[2]].astype(np.float32)[inner] - orig[inner]).mean() > 20
    back, valid = unrotate_window(upright, 25.0)
    sel = valid > 0.99
    assert sel.mean() > 0.6 and not sel[0, 0]  # the corners the upright square did not cover are left out
    assert np.abs(back[sel] - tilted[box[1] : box[3], box[0] : box[2]][sel]).mean() < 6.0


class Same(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _run(image: np.ndarray, tilt: float, align: bool):
    rec = ImageRecord(image=image, faces=[FaceRecord(Detection(BOX, 1.0, landmarks=_points(tilt)))])
    stages = [CropLetterbox((1.1, 1.1, 1.1, 1.3), 128)] + ([FaceAligner()] if align else [])
    stages += [Translator({"male2female": Same()}, "male2female"), FeatherBlend(shape="ellipse")]
    (rec,) = Pipeline(stages).process([rec])
    return rec


def test_aligned_face_is_pasted_back_in_place(astronaut) -> None:
    rec = _run(astronaut, 20.0, align=True)
    (face,) = rec.faces
    assert face.rotation == pytest.approx(20.0, abs=1e-3) and face.actions[0] == "align:20.0"
    assert face.to_dict()["rotation"] == 20.0
    plain = _run(astronaut, 20.0, align=False)
    assert not torch.equal(face.crop, plain.faces[0].crop)
    x0, y0, x1, y1 = face.transform.box
    far = np.ones(astronaut.shape[:2], bool)
    far[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(rec.result[far], astronaut[far])
    err = np.abs(rec.result.astype(int) - astronaut)[y0:y1, x0:x1].mean()
    err_plain = np.abs(plain.result.astype(int) - astronaut)[y0:y1, x0:x1].mean()
    assert err < err_plain + 1.5 and err < 4.0  # an identity generator gives (almost) the photo back


def test_small_tilts_are_not_aligned(astronaut) -> None:
    a, b = _run(astronaut, 2.0, align=True), _run(astronaut, 2.0, align=False)
    assert a.faces[0].rotation == 0.0
    np.testing.assert_array_equal(a.result, b.result)
    with pytest.raises(ValueError):
        FaceAligner(min_angle=10, max_angle=5)


def test_load_pipeline_align_adds_landmarks_and_aligner(tiny_weights) -> None:
    import faceswap_pipeline as fp

    names = [s.name for s in fp.load_pipeline("male2female", mask="ellipse", align=True, device="cpu", weights_dir=tiny_weights).stages]
    assert names.index("landmarks") < names.index("align") < names.index("translate")
