import numpy as np
import torch

from faceswap_pipeline.ops.blend import feather_mask, paste
from faceswap_pipeline.ops.geometry import crop_letterbox
from faceswap_pipeline.stages.blend import FeatherBlend
from faceswap_pipeline.types import Detection, FaceRecord, ImageRecord


def test_feather_mask_profile():
    m = feather_mask(101, 101, 10, "rect")
    assert m[50, 50] == 1 and m[0, 50] < 0.05 and m[50, 0] < 0.05
    assert np.all(np.diff(m[50, :51]) >= 0)  # rises monotonically toward the centre
    e = feather_mask(100, 60, 5, "ellipse")
    assert e[0, 0] == 0 and e[50, 30] == 1 and e.dtype == np.float32


def test_paste_identity_round_trip_is_pixel_exact(astronaut):
    img = astronaut.copy()
    crop, tf = crop_letterbox(img, (100, 50, 228, 178), 128)
    paste(img, crop, tf, feather=0.0, shape="rect")
    np.testing.assert_array_equal(img, astronaut)


def test_paste_leaves_everything_outside_the_window_bit_identical(astronaut):
    img = astronaut.copy()
    _, tf = crop_letterbox(img, (150, 40, 290, 220), 128)
    paste(img, torch.ones(3, 512, 512), tf, feather=0.12)  # a white x4 square
    changed = np.any(img != astronaut, axis=2)
    ys, xs = np.nonzero(changed)
    x0, y0, x1, y1 = tf.box
    assert changed.sum() > 1000
    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
    # the centre is fully replaced, the window's corners (outside the ellipse) untouched
    assert (img[(y0 + y1) // 2, (x0 + x1) // 2] == 255).all()
    np.testing.assert_array_equal(img[y0, x0], astronaut[y0, x0])


def test_paste_face_at_border_only_writes_inside_image(astronaut):
    img = astronaut.copy()
    _, tf = crop_letterbox(img, (-60, 400, 100, 600), 128)
    paste(img, torch.zeros(3, 128, 128), tf, feather=0.1)
    assert img.shape == astronaut.shape
    assert np.any(img[400:, :100] != astronaut[400:, :100])
    np.testing.assert_array_equal(img[:400], astronaut[:400])
    np.testing.assert_array_equal(img[:, 100:], astronaut[:, 100:])


def test_feather_blend_stage_keeps_input_and_skips_faces_without_output(astronaut):
    crop, tf = crop_letterbox(astronaut, (150, 40, 290, 220), 128)
    f1 = FaceRecord(Detection((160, 80, 280, 200), 1.0), transform=tf, crop=crop, output=1 - crop)
    f2 = FaceRecord(Detection((0, 0, 50, 50), 0.5), transform=tf, crop=crop, output=None)
    rec = ImageRecord(image=astronaut)
    rec.faces = [f1, f2]
    FeatherBlend()([rec])
    assert rec.result is not None and rec.result is not astronaut
    assert np.any(rec.result != astronaut)
    assert f1.actions == ["blend"] and f2.actions == []
    assert rec.image is astronaut
