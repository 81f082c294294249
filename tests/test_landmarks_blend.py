"""Landmark CNN and its loss, face-shaped masks, feather / laplacian / poisson paste-back, seam metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceswap_pipeline.archs.landmarks import FLIP_PERM, LandmarkNet
from faceswap_pipeline.ops.geometry import crop_letterbox, padded_crop, rescale_box
from faceswap_pipeline.ops.landmarks import inter_ocular, landmark_loss, nme
from faceswap_pipeline.ops.masks import LANDMARK_MASKS, MASK_SHAPES, landmark_mask, paste_mask, window_envelope
from faceswap_pipeline.ops.seam import seam_score
from faceswap_pipeline.ops.seamless import BLEND_MODES, paste_window
from faceswap_pipeline.stages.blend import FeatherBlend
from faceswap_pipeline.types import Detection, FaceRecord, ImageRecord

FRAMING = (1.1, 1.1, 1.1, 1.3)


def _shape(scale: float = 100.0, seed: int = 0) -> torch.Tensor:
    """A plausible 68-point layout (random jitter around a grid), outer eye corners 50 px apart."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(68, 2, generator=g) * scale
    p[36] = torch.tensor([25.0, 40.0])
    p[45] = torch.tensor([75.0, 40.0])
    return p


def _face_points(tf_box: tuple[float, float, float, float]) -> np.ndarray:
    """68 synthetic landmarks shaped like a face inside the box ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = tf_box
    cx, w, h = (x0 + x1) / 2, x1 - x0, y1 - y0
    p = np.zeros((68, 2))
    t = np.linspace(math.pi, 0, 17)  # jaw: lower half ellipse, left to right
    p[:17] = np.stack([cx + 0.42 * w * np.cos(t), y0 + 0.45 * h + 0.45 * h * np.sin(t)], 1)
    p[17:27] = np.stack([np.linspace(cx - 0.35 * w, cx + 0.35 * w, 10), np.full(10, y0 + 0.35 * h)], 1)
    p[27:36] = np.stack([np.full(9, cx), np.linspace(y0 + 0.4 * h, y0 + 0.62 * h, 9)], 1)
    p[36:42] = np.stack([np.linspace(cx - 0.3 * w, cx - 0.1 * w, 6), np.full(6, y0 + 0.42 * h)], 1)
    p[42:48] = np.stack([np.linspace(cx + 0.1 * w, cx + 0.3 * w, 6), np.full(6, y0 + 0.42 * h)], 1)
    p[48:68] = np.stack([np.linspace(cx - 0.18 * w, cx + 0.18 * w, 20), np.full(20, y0 + 0.75 * h)], 1)
    return p.astype(np.float32)


# ---------------------------------------------------------------------------------- the loss


def test_loss_is_zero_for_a_perfect_prediction() -> None:
    t = _shape()[None]
    assert float(landmark_loss(t.clone(), t)) == pytest.approx(0.0, abs=1e-6)


def test_loss_of_a_known_shift_is_shift_over_inter_ocular() -> None:
    t = _shape()[None].repeat(2, 1, 1)
    pred = t + torch.tensor([3.0, 4.0])  # every point 5 px off; inter-ocular 50 px
    assert float(inter_ocular(t)[0]) == pytest.approx(50.0)
    assert float(landmark_loss(pred, t)) == pytest.approx(0.1, abs=1e-4)
    assert nme(pred.numpy(), t.numpy()) == pytest.approx([0.1, 0.1], abs=1e-6)


def test_loss_compares_point_i_with_point_i() -> None:
    # the original design's loss ignored which point is which: swapping two points left it unchanged
    t = _shape()[None]
    swapped = t.clone()
    swapped[0, [0, 16]] = swapped[0, [16, 0]]
    d = float(torch.linalg.vector_norm(t[0, 0] - t[0, 16]))
    assert float(landmark_loss(swapped, t)) == pytest.approx(2 * d / 68 / 50, rel=1e-3)


def test_loss_is_scale_invariant_and_its_gradient_descends() -> None:
    t = _shape()[None]
    p = t + torch.randn_like(t) * 3
    assert float(landmark_loss(p * 2, t * 2, eps=2e-3)) == pytest.approx(float(landmark_loss(p, t)), rel=1e-3)
    p.requires_grad_(True)
    loss = landmark_loss(p, t)
    loss.backward()
    with torch.no_grad():
        assert float(landmark_loss(p - 50.0 * p.grad, t)) < float(loss)


def test_flip_permutation_is_an_involution_swapping_the_eyes() -> None:
    perm = np.array(FLIP_PERM)
    assert sorted(perm) == list(range(68))
    assert (perm[perm] == np.arange(68)).all()
    assert perm[36] == 45 and perm[0] == 16 and perm[30] == 30 and perm[48] == 54


def test_rotate_batch_moves_points_with_pixels() -> None:
    from faceswap_pipeline.train.landmarks import rotate_batch

    x = torch.zeros(1, 1, 128, 128)
    x[0, 0, 28:33, 38:43] = 1.0  # a blob centred on (40.5, 30.5)
    p = torch.tensor([[40.5, 30.5]]).repeat(68, 1)[None]
    for ang, flip in ((0.5, False), (-0.3, True)):
        xr, pr = rotate_batch(x, p, torch.tensor([ang]), torch.tensor([1.1]), torch.tensor([[0.02, -0.03]]), torch.tensor([flip]))
        w = xr[0, 0].numpy() / xr.sum().item()
        ys, xs = np.mgrid[:128, :128]
        assert (xs * w).sum() + 0.5 == pytest.approx(float(pr[0, 0, 0]), abs=0.3)
        assert (ys * w).sum() + 0.5 == pytest.approx(float(pr[0, 0, 1]), abs=0.3)


# ---------------------------------------------------------------------------------- the CNN


def test_landmark_cnn_smoke() -> None:
    torch.manual_seed(0)
    net = LandmarkNet(width=4, dense=32).eval()
    mean = torch.rand(68, 2)
    net.set_mean_shape(mean)
    with torch.no_grad():
        grey = net(torch.rand(3, 1, 128, 128))
        rgb = net(torch.rand(2, 3, 128, 128))
        small = net(torch.rand(1, 3, 96, 96))
    assert grey.shape == (3, 68, 2) and rgb.shape == (2, 68, 2) and small.shape == (1, 68, 2)
    assert torch.isfinite(grey).all()
    net.train()
    x = torch.rand(4, 1, 128, 128)
    loss = landmark_loss(net(x), mean.expand(4, 68, 2) * 0.9)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_shipped_landmark_cnn_finds_the_astronauts_features(astronaut: np.ndarray) -> None:
    from faceswap_pipeline.stages.landmarks import LandmarkDetector
    from faceswap_pipeline.weights import has_model

    if not has_model("landmarks.v1"):
        pytest.skip("landmarks.v1 is not in the weights folder")
    from conftest import ASTRONAUT_FACE

    crop, tf = crop_letterbox(astronaut, rescale_box(ASTRONAUT_FACE, FRAMING))
    face = FaceRecord(detection=Detection(ASTRONAUT_FACE, 1.0), transform=tf, crop=crop)
    LandmarkDetector.from_pretrained("cnn")([ImageRecord(image=astronaut, faces=[face])])
    p = face.detection.landmarks
    assert p.shape == (68, 2) and p.dtype == np.float32
    x0, y0, x1, y1 = ASTRONAUT_FACE
    assert (p[:, 0] > x0 - 20).all() and (p[:, 0] < x1 + 20).all() and (p[:, 1] > y0 - 20).all() and (p[:, 1] < y1 + 30).all()
    eyes_y, mouth_y, chin_y = p[36:48, 1].mean(), p[48:68, 1].mean(), p[8, 1]
    assert eyes_y < mouth_y < chin_y
    assert p[36:42, 0].mean() < p[30, 0] < p[42:48, 0].mean()  # left-image eye, nose, the other eye
    try:
        from faceswap_pipeline.ops.landmarks import dlib_landmarks

        teacher = dlib_landmarks(astronaut, [ASTRONAUT_FACE])
    except FileNotFoundError:
        return
    assert nme(p[None], teacher)[0] < 0.2


# ---------------------------------------------------------------------------------- masks


def test_head_mask_holds_the_face_mask_and_reaches_into_the_hair() -> None:
    box = (100, 60, 300, 300)
    pts = _face_points(box)
    face = paste_mask(box, (512, 512), 0.12, "landmarks", pts)
    head = paste_mask(box, (512, 512), 0.12, "head", pts)
    assert (head[face > 0.99] > 0.95).all()  # holds the face (the feather's centre moves up a little)
    assert head.sum() > 1.15 * face.sum()
    rows_face, rows_head = np.flatnonzero(face.max(1) > 0.5), np.flatnonzero(head.max(1) > 0.5)
    assert rows_head[0] < rows_face[0] - 10 and abs(rows_head[-1] - rows_face[-1]) <= 1  # higher top, same chin


@pytest.mark.parametrize("box", [(100, 80, 260, 260), (-40, -30, 120, 140), (400, 380, 560, 560), (-10, 200, 530, 400)])
@pytest.mark.parametrize("shape", MASK_SHAPES)
def test_mask_stays_inside_the_image_and_window(box, shape) -> None:
    H, W = 512, 512
    pts = _face_points(box)
    m = paste_mask(box, (H, W), 0.12, shape, pts)
    x0, y0, x1, y1 = box
    assert m.shape == (y1 - y0, x1 - x0) and m.dtype == np.float32
    assert m.min() >= 0.0 and m.max() <= 1.0 and m.max() > 0.99
    xs, ys = np.arange(x0, x1), np.arange(y0, y1)
    outside = (ys[:, None] < 0) | (ys[:, None] >= H) | (xs[None, :] < 0) | (xs[None, :] >= W)
    assert (m[outside] == 0).all()
    # window edges that lie inside the image carry (next to) no weight: no hard step there
    # (the original ellipse / rect feathers reach 0 on the edge itself, half a pixel further out)
    tol = 0.0 if shape in LANDMARK_MASKS else 0.01
    if x0 > 0:
        assert (m[:, 0] <= tol).all()
    if y0 > 0:
        assert (m[0] <= tol).all()
    if x1 < W:
        assert (m[:, -1] <= tol).all()
    if y1 < H:
        assert (m[-1] <= tol).all()


def test_landmark_mask_is_face_shaped() -> None:
    box = (0, 0, 200, 220)
    pts = _face_points(box)
    m = landmark_mask(pts, 220, 200, 0.12 * 200)
    nose = pts[30].astype(int)
    assert m[nose[1], nose[0]] == pytest.approx(1.0)
    assert m[2, 2] == 0 and m[217, 2] == 0 and m[217, 197] == 0  # corners of the window stay the photo's
    soft = (m > 0) & (m < 1)
    assert soft.sum() > 0.05 * m.size  # feathered, not a hard cut-out


def test_window_envelope_does_not_fade_at_the_photo_border() -> None:
    env = window_envelope((-20, -20, 80, 80), (100, 100), 10.0)
    assert (env[:20] == 0).all() and (env[:, :20] == 0).all()
    assert env[20, 40] == pytest.approx(1.0)  # the photo's top row: a border, not a seam
    assert (env[-1] == 0).all()


# ---------------------------------------------------------------------------------- blending


@pytest.mark.parametrize("mode", BLEND_MODES)
@pytest.mark.parametrize("shape", MASK_SHAPES)
@pytest.mark.parametrize("box", [(150, 40, 290, 220), (-30, -20, 100, 150), (440, 400, 560, 530)])
def test_blending_the_photo_into_itself_is_exact(astronaut, mode, shape, box) -> None:
    out = astronaut.copy()
    face = padded_crop(astronaut, box).astype(np.float32)
    alpha = paste_mask(box, astronaut.shape[:2], 0.12, shape, _face_points(box))
    paste_window(out, face, box, alpha, mode)
    assert np.array_equal(out, astronaut)


@pytest.mark.parametrize("mode", BLEND_MODES)
@pytest.mark.parametrize("box", [(150, 40, 290, 220), (-30, -20, 100, 150), (440, 400, 560, 530)])
def test_far_pixels_stay_bit_identical_and_border_faces_paste(astronaut, mode, box) -> None:
    out = astronaut.copy()
    face = padded_crop(astronaut, box).astype(np.float32) * 0.5 + 100.0  # a different-looking face
    alpha = paste_mask(box, astronaut.shape[:2], 0.12, "landmarks", _face_points(box))
    paste_window(out, face, box, alpha, mode)
    changed = np.any(out != astronaut, axis=2)
    assert changed.any()
    full = np.zeros(astronaut.shape[:2], np.float32)
    x0, y0, x1, y1 = box
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, 512), min(y1, 512)
    full[sy0:sy1, sx0:sx1] = alpha[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    assert not changed[full == 0].any()  # every pixel outside the mask is the photo's own


def _record(astronaut, box=(175.0, 76.0, 266.0, 167.0), landmarks=True, tone=0.8):
    crop, tf = crop_letterbox(astronaut, rescale_box(box, FRAMING))
    det = Detection(box, 1.0, _face_points(rescale_box(box, FRAMING)) if landmarks else None)
    return ImageRecord(image=astronaut, faces=[FaceRecord(detection=det, transform=tf, crop=crop, output=crop * tone)])


@pytest.mark.parametrize("mode", BLEND_MODES)
@pytest.mark.parametrize("shape", ["auto", *MASK_SHAPES])
def test_blend_stage_modes(astronaut, mode, shape) -> None:
    rec = _record(astronaut)
    FeatherBlend(0.12, shape, mode)([rec])
    assert rec.result.shape == astronaut.shape and rec.result.dtype == np.uint8
    x0, y0, x1, y1 = rec.faces[0].transform.box
    outside = np.ones(astronaut.shape[:2], bool)
    outside[max(y0, 0) : y1, max(x0, 0) : x1] = False
    assert np.array_equal(rec.result[outside], astronaut[outside])
    assert not np.array_equal(rec.result, astronaut)
    assert rec.faces[0].actions[-1].startswith("blend")


def test_blend_stage_identical_output_returns_the_input(astronaut) -> None:
    for mode in BLEND_MODES:
        rec = _record(astronaut, tone=1.0)
        # the face square *is* the photo: with an exact resize round trip (window = 128 px) nothing changes
        box = (100.0, 100.0, 228.0, 228.0)
        crop, tf = crop_letterbox(astronaut, box)
        rec.faces[0].transform, rec.faces[0].output = tf, crop
        rec.faces[0].detection = Detection(box, 1.0, _face_points(box))
        FeatherBlend(0.12, "landmarks", mode)([rec])
        assert np.array_equal(rec.result, astronaut), mode


def test_default_mask_without_landmarks_is_the_previous_ellipse(astronaut) -> None:
    a, b = _record(astronaut, landmarks=False), _record(astronaut, landmarks=False)
    FeatherBlend(0.12)([a])
    FeatherBlend(0.12, "ellipse")([b])
    assert np.array_equal(a.result, b.result)


def test_bad_blend_options_are_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        FeatherBlend(0.12, "landmarks", "gp-gan")
    with pytest.raises(ValueError, match="shape"):
        FeatherBlend(0.12, "hexagon")
    import faceswap_pipeline as fp

    with pytest.raises(ValueError, match="blend"):
        fp.load_pipeline("male2female", blend="median")
    with pytest.raises(ValueError, match="mask"):
        fp.load_pipeline("male2female", mask="circle")


def test_cli_parses_blend_options() -> None:
    from faceswap_pipeline.cli import build_parser

    a = build_parser().parse_args(["run", "in", "out", "--direction", "male2female", "--blend", "feather", "--mask", "rect", "--landmarks", "dlib"])
    assert (a.blend, a.mask, a.landmarks) == ("feather", "rect", "dlib")
    a = build_parser().parse_args(["run", "in", "out", "--direction", "male2female"])
    assert (a.blend, a.mask, a.landmarks) == ("poisson", "landmarks", "cnn")  # the defaults
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "in", "out", "--direction", "male2female", "--blend", "median"])


# ---------------------------------------------------------------------------------- seam metric


def test_seam_metric_sees_a_hard_paste_and_not_a_soft_one() -> None:
    rng = np.random.default_rng(0)
    base = np.clip(120 + rng.normal(0, 3, (200, 200, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:200, :200]
    r = np.hypot(xx - 100, yy - 100)
    hard = (r < 60).astype(np.float32)
    soft = np.clip((70 - r) / 30, 0, 1).astype(np.float32)
    bright = np.clip(base.astype(np.float32) + 40, 0, 255)
    res_hard = np.rint(hard[..., None] * bright + (1 - hard[..., None]) * base).astype(np.uint8)
    res_soft = np.rint(soft[..., None] * bright + (1 - soft[..., None]) * base).astype(np.uint8)
    s_hard, s_soft, s_none = seam_score(base, res_hard, hard), seam_score(base, res_soft, soft), seam_score(base, base, soft)
    assert s_none.delta_e_excess == 0 and s_none.gradient_excess == 0
    assert s_hard.delta_e_excess > 3 * s_soft.delta_e_excess > 0
    assert s_hard.gradient_excess > 2 * s_soft.gradient_excess > 0
    assert seam_score(base, base, np.zeros((200, 200), np.float32)) is None
