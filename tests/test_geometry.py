import numpy as np
import pytest
import torch

from faceswap_pipeline.ops.geometry import SEED_RESCALE, crop_letterbox, letterbox_transform, padded_crop, rescale_box


def test_rescale_box_seed_factors_grow_each_side_by_half_the_excess():
    # 100x200 box: left/right grow 0.05*100, top 0.25*200, bottom 0.15*200
    assert rescale_box((10, 20, 110, 220), SEED_RESCALE) == pytest.approx((5.0, -30.0, 115.0, 250.0))


def test_rescale_box_identity_and_asymmetric():
    assert rescale_box((1, 2, 3, 4), (1, 1, 1, 1)) == (1, 2, 3, 4)
    assert rescale_box((0, 0, 10, 10), (3, 1, 1, 1)) == (-10, 0, 10, 10)


def test_letterbox_transform_tall_crop_is_centred_horizontally():
    tf = letterbox_transform((0, 0, 100, 200), 128)
    assert tf.content_size == (64, 128) and tf.offset == (32, 0)


def test_letterbox_points_round_trip_exactly():
    tf = letterbox_transform((13.4, -20.6, 313.2, 380.1), 128)
    pts = np.array([[13.0, -21.0], [100.5, 50.25], [313.0, 380.0]])
    np.testing.assert_allclose(tf.to_source(tf.to_square(pts)), pts, atol=1e-9)
    # the crop window's corners land on the content's corners
    x0, y0, x1, y1 = tf.box
    (ox, oy), (w, h) = tf.offset, tf.content_size
    np.testing.assert_allclose(tf.to_square(np.array([[x0, y0], [x1, y1]])), [[ox, oy], [ox + w, oy + h]], atol=1e-9)


def test_padded_crop_pads_outside_with_black(astronaut):
    out = padded_crop(astronaut, (-10, -5, 20, 30))
    assert out.shape == (35, 30, 3)
    assert (out[:5] == 0).all() and (out[:, :10] == 0).all()
    np.testing.assert_array_equal(out[5:, 10:], astronaut[:30, :20])


def test_crop_letterbox_at_scale_one_is_pixel_exact(astronaut):
    crop, tf = crop_letterbox(astronaut, (100, 50, 228, 178), 128)
    assert tf.content_size == (128, 128) and tf.offset == (0, 0)
    got = (crop.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(got, astronaut[50:178, 100:228])


def test_crop_letterbox_border_face_pads_instead_of_shifting(astronaut):
    # a window hanging 50 px off the left edge: the face stays where it is, left part is black
    crop, tf = crop_letterbox(astronaut, (-50, 100, 206, 356), 128)
    assert tf.box == (-50, 100, 206, 356) and tf.content_size == (128, 128)
    assert crop[:, :, :24].abs().max() == 0  # 50 px / 2 = 25 px of padding at scale 0.5
    assert crop[:, :, 26:].mean() > 0.1


def test_crop_letterbox_range_and_dtype(astronaut):
    crop, _ = crop_letterbox(astronaut, (0, 0, 512, 300), 128)
    assert crop.dtype == torch.float32 and crop.shape == (3, 128, 128)
    assert 0.0 <= crop.min() and crop.max() <= 1.0
    assert crop[:, :14].abs().max() == 0 and crop[:, -14:].abs().max() == 0  # letterbox bars (75 px content)
