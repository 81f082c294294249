"""CNN cascade detector: NMS, calibration arithmetic, pyramid/window geometry, nets, detection, training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from faceswap_pipeline.archs.cascade import Cal12, Net12, Net24, Net48, fuse
from faceswap_pipeline.ops.nms import (
    IDENTITY_CLASS,
    N_CAL,
    batched_nms,
    box_iou,
    calibrate,
    calibration_patterns,
    nms,
    perturb,
)
from faceswap_pipeline.ops.windows import crop_windows, level_shape, map_windows, octave_pyramid, pyramid_scales
from faceswap_pipeline.types import ImageRecord

ASTRONAUT_FACE = (175.0, 76.0, 266.0, 167.0)  # dlib HOG box (upsample 1), as in conftest


def _iou(a, b) -> float:
    return float(box_iou(torch.tensor([a], dtype=torch.float32), torch.tensor([b], dtype=torch.float32))[0, 0])


# ---------------------------------------------------------------- IoU / NMS


def test_box_iou_known_values():
    assert _iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert _iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert _iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching, x1 exclusive
    assert _iou((0, 0, 10, 10), (2, 2, 7, 7)) == pytest.approx(25 / 100)


def test_nms_hand_made_boxes():
    boxes = torch.tensor(
        [
            [0, 0, 10, 10],  # 0: best of cluster A
            [1, 1, 11, 11],  # 1: IoU 81/119 = 0.68 with 0 -> suppressed
            [20, 20, 30, 30],  # 2: alone
            [0, 0, 10, 5],  # 3: IoU 0.5 with 0 exactly -> kept at threshold 0.5 (strictly greater suppresses)
            [21, 21, 31, 31],  # 4: IoU 81/119 with 2 -> suppressed
        ],
        dtype=torch.float32,
    )
    scores = torch.tensor([0.9, 0.95, 0.7, 0.6, 0.8])
    # 1 has the highest score: it suppresses 0 (IoU .68); 3 overlaps 1 by 36/(100+50-36)=.316
    keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == [1, 4, 3]
    # a box that is suppressed does not suppress others (greedy, not "fast NMS")
    b = torch.tensor([[0, 0, 10, 10], [0, 3, 10, 13], [0, 6, 10, 16]], dtype=torch.float32)  # chain: .54, .54, .25
    assert nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2]
    assert nms(torch.zeros((0, 4)), torch.zeros(0), 0.5).numel() == 0


def test_nms_threshold_is_strict():
    b = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5]], dtype=torch.float32)  # IoU exactly 0.5
    assert nms(b, torch.tensor([1.0, 0.5]), 0.5).tolist() == [0, 1]
    assert nms(b, torch.tensor([1.0, 0.5]), 0.49).tolist() == [0]


def test_batched_nms_keeps_groups_apart():
    b = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11]], dtype=torch.float32)
    s = torch.tensor([0.5, 0.9, 0.8])
    g = torch.tensor([0, 1, 1])
    assert sorted(batched_nms(b, s, g, 0.5).tolist()) == [0, 1]


def test_nms_row_mode_equals_matrix_mode(monkeypatch):
    import faceswap_pipeline.ops.nms as m

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(600, 2, generator=g) * 200
    b = torch.cat([xy, xy + 10 + torch.rand(600, 2, generator=g) * 30], 1)
    s = torch.rand(600, generator=g)
    full = nms(b, s, 0.4)
    monkeypatch.setattr(m, "_MATRIX_MAX", 10)
    assert torch.equal(full, nms(b, s, 0.4))


# ---------------------------------------------------------------- calibration


def test_calibration_patterns_layout():
    pat = calibration_patterns()
    assert pat.shape == (N_CAL, 3) == (45, 3)
    assert pat[IDENTITY_CLASS].tolist() == [1.0, 0.0, 0.0]
    assert pat[0].tolist() == pytest.approx([0.83, -0.17, -0.17])
    assert pat[42].tolist() == pytest.approx([1.21, 0.17, -0.17])  # 9*4 + 3*2 + 0


def _onehot(n: int) -> torch.Tensor:
    p = torch.zeros(1, N_CAL)
    p[0, n] = 1.0
    return p


def test_calibrate_one_hot_known_answer():
    box = torch.tensor([[10.0, 20.0, 110.0, 120.0]])  # x=10, y=20, w=h=100
    assert torch.allclose(calibrate(box, _onehot(IDENTITY_CLASS)), box)
    # class 42: s=1.21, dx=+0.17, dy=-0.17 -> (x - 0.17*100/1.21, y + 0.17*100/1.21, 100/1.21, 100/1.21)
    out = calibrate(box, _onehot(42))[0].tolist()
    w = 100 / 1.21
    x0, y0 = 10 - 17 / 1.21, 20 + 17 / 1.21
    assert out == pytest.approx([x0, y0, x0 + w, y0 + w], abs=1e-4)


def test_calibrate_weighted_mean_over_floor():
    box = torch.tensor([[10.0, 20.0, 110.0, 120.0]])
    p = torch.full((1, N_CAL), 0.2 / 43)  # 0.00465 each: below the 1/45 floor, ignored
    p[0, IDENTITY_CLASS] = 0.5
    p[0, 42] = 0.3
    # s = (0.5*1 + 0.3*1.21)/0.8 = 1.07875, dx = 0.3*0.17/0.8 = 0.06375, dy = -0.06375
    s, dx, dy = 1.07875, 0.06375, -0.06375
    x0 = 10 - dx * 100 / s
    y0 = 20 - dy * 100 / s
    assert calibrate(box, p)[0].tolist() == pytest.approx([x0, y0, x0 + 100 / s, y0 + 100 / s], abs=1e-4)
    # argmax would give class 22 (identity): the weighted mean is *not* the argmax
    assert calibrate(box, p)[0, 2].item() - calibrate(box, p)[0, 0].item() == pytest.approx(100 / s, abs=1e-4)
    # a higher floor drops class 42: identity only
    assert torch.allclose(calibrate(box, p, floor=0.4), box)


def test_calibrate_all_below_floor_uses_argmax():
    box = torch.tensor([[0.0, 0.0, 50.0, 50.0]])
    p = torch.full((1, N_CAL), 0.9 / 44)
    p[0, 7] = 0.1  # class 7 = (s 0.83, dx +0.17, dy 0)
    out = calibrate(box, p, floor=0.5)  # nothing above the floor -> the argmax class alone
    s, dx = 0.83, 0.17
    x0 = -dx * 50 / s
    assert out[0].tolist() == pytest.approx([x0, 0.0, x0 + 50 / s, 50 / s], abs=1e-4)


def test_perturb_then_calibrate_is_identity_for_every_class():
    box = torch.tensor([[30.0, 40.0, 94.0, 104.0]]).repeat(N_CAL, 1)
    classes = torch.arange(N_CAL)
    seen = perturb(box, classes)
    fixed = calibrate(seen, torch.eye(N_CAL))
    assert torch.allclose(fixed, box, atol=1e-4)
    # the perturbed windows really differ (scales 0.83..1.21 of the side)
    side = seen[:, 2] - seen[:, 0]
    assert side.min().item() == pytest.approx(64 * 0.83, abs=1e-3) and side.max().item() == pytest.approx(64 * 1.21, abs=1e-3)


# ---------------------------------------------------------------- pyramid / windows geometry


def test_pyramid_scales_and_level_shapes():
    s = pyramid_scales(350, 450, min_face=24, net_size=12, factor=0.709)
    assert s[0] == pytest.approx(0.5)
    assert all(b / a == pytest.approx(0.709) for a, b in zip(s, s[1:]))
    # last level still holds a 12 px window: 350 * s >= 12 -> k <= log(12/175)/log(0.709) = 7.79
    assert len(s) == 8
    assert 350 * s[-1] >= 12 > 350 * s[-1] * 0.709
    assert level_shape(350, 450, s[0]) == (175, 225)
    assert pyramid_scales(350, 450, min_face=24, max_face=48) == pytest.approx([0.5, 0.5 * 0.709, 0.5 * 0.709**2])  # windows 24, 33.9, 47.7 px
    assert pyramid_scales(10, 10, min_face=24) == []
    with pytest.raises(ValueError):
        pyramid_scales(100, 100, min_face=24, factor=1.0)


def test_map_windows_cells_to_source_boxes():
    pos = torch.tensor([[0, 0], [3, 5]])
    b = map_windows(pos, (175, 225), (350, 450), net_size=12, stride=2)
    assert torch.allclose(b, torch.tensor([[0.0, 0, 24, 24], [20, 12, 44, 36]]))


def test_crop_windows_exact_on_pixel_grid():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 40, 48, generator=g)
    pyr = octave_pyramid(img)
    assert [tuple(p.shape[-2:]) for p in pyr] == [(40, 48), (20, 24), (10, 12)]
    boxes = torch.tensor([[8.0, 4.0, 20.0, 16.0], [8.0, 4.0, 32.0, 28.0], [-4.0, 0.0, 8.0, 12.0]])
    idx = torch.tensor([1, 0, 1])
    out = crop_windows(pyr, idx, boxes, 12)
    assert out.shape == (3, 3, 12, 12)
    assert torch.allclose(out[0], img[1, :, 4:16, 8:20], atol=1e-4)  # 12 px box -> copy (grid_sample rounding)
    assert torch.allclose(out[1], pyr[1][0, :, 2:14, 4:16], atol=1e-4)  # 24 px box -> 2x2 averages
    assert torch.all(out[2][:, :, :4].abs() < 1e-4) and torch.allclose(out[2][:, :, 4:], img[1, :, 0:12, 0:8], atol=1e-4)


# ---------------------------------------------------------------- nets


@pytest.mark.parametrize("cls", [Net12, Cal12, Net24, Net48])
def test_net_shapes_and_fusion(cls):
    torch.manual_seed(0)
    net = cls()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    net.eval()
    x = torch.rand(3, 3, net.size, net.size)
    y = net(x)
    assert y.shape == (3, net.n_out)
    assert torch.allclose(fuse(net)(x), y, atol=1e-4)
    assert net.face_prob(x).shape == (3,) if net.n_out == 2 else net.probs(x).sum(1).allclose(torch.ones(3))


def test_12net_fully_convolutional_equals_windows():
    torch.manual_seed(1)
    net = Net12().eval()
    img = torch.rand(1, 3, 30, 34)
    with torch.no_grad():
        m = net(img)  # (1, 2, 10, 12)
        assert m.shape == (1, 2, 10, 12)
        wins = torch.stack([img[0, :, 2 * i : 2 * i + 12, 2 * j : 2 * j + 12] for i in range(10) for j in range(12)])
        w = net(wins).reshape(10, 12, 2).permute(2, 0, 1)
    assert torch.allclose(m[0], w, atol=1e-5)


# ---------------------------------------------------------------- detection with the shipped weights


@pytest.fixture(scope="module")
def shipped():
    from faceswap_pipeline.stages.detect_cascade import CascadeDetector
    from faceswap_pipeline.weights import read_manifest

    if "cascade.12net" not in read_manifest():
        pytest.skip("no shipped cascade weights")
    return CascadeDetector.from_pretrained(device="cpu")


def test_astronaut_detection_in_hog_framing(shipped, astronaut):
    dets = shipped.detect(astronaut)
    assert dets, "no face found"
    assert all(0.0 <= d.score <= 1.0 for d in dets)
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    best = max(_iou(d.box, ASTRONAUT_FACE) for d in dets)
    assert best >= 0.5
    # greyscale input (H, W) works too
    grey = (astronaut.astype(np.float32) @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)
    assert max(_iou(d.box, ASTRONAUT_FACE) for d in shipped.detect(grey)) >= 0.5


def test_stage_batches_images(shipped, astronaut):
    recs = [ImageRecord(image=astronaut), ImageRecord(image=np.zeros((64, 80, 3), np.uint8)), ImageRecord(image=astronaut[::2, ::2].copy())]
    out = shipped(recs)
    assert out is recs and shipped.name == "detect"
    assert recs[0].faces and not recs[1].faces
    single = shipped.detect(astronaut)
    assert np.allclose([f.detection.box for f in recs[0].faces], [d.box for d in single], atol=1e-3)


def test_sliding_mode_runs(shipped, astronaut):
    from faceswap_pipeline.stages.detect_cascade import CascadeDetector

    det = CascadeDetector(mode="sliding", nets=shipped.nets, framing=shipped.framing)
    out = det.detect(astronaut)
    assert all(0.0 <= d.score <= 1.0 for d in out)
    with pytest.raises(ValueError):
        CascadeDetector(mode="nope")


# ---------------------------------------------------------------- training smoke test


def _synthetic_face(rng: np.random.Generator, size: int = 200) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.full((size, size, 3), rng.integers(60, 120), np.float32)
    face = ((xx - 92) / 70) ** 2 + ((yy - 90) / 85) ** 2 < 1
    img[face] = (200, 160, 140)
    for ex in (65, 120):
        img[((xx - ex) / 12) ** 2 + ((yy - 70) / 7) ** 2 < 1] = 30
    img[(abs(xx - 92) < 25) & (abs(yy - 130) < 5)] = 80
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_training_smoke_on_synthetic_data(tmp_path):
    import imageio.v3 as iio

    from faceswap_pipeline.stages.detect_cascade import CascadeDetector
    from faceswap_pipeline.train.cascade import main
    from faceswap_pipeline.weights import read_manifest

    rng = np.random.default_rng(0)
    utk, nonface = tmp_path / "utk", tmp_path / "nonface"
    utk.mkdir()
    nonface.mkdir()
    for i in range(24):
        iio.imwrite(utk / f"{20 + i}_{i % 2}_{i % 5}_2017010100000{i:04d}.jpg.chip.jpg", _synthetic_face(rng))
    for i in range(12):
        iio.imwrite(nonface / f"bg_{i:03d}.png", rng.integers(0, 255, (72, 96), dtype=np.uint8))
    wdir = tmp_path / "weights"
    rc = main(
        ["--utk", str(utk), "--nonface", str(nonface), "--out", str(tmp_path / "run"), "--threads", "1", "--n-faces", "16",
         "--dev-faces", "4", "--framing-faces", "3", "--steps-scale", "0.004", "--export", "--weights-dir", str(wdir)]
    )
    assert rc == 0
    man = read_manifest(wdir)
    assert {f"cascade.{m}" for m in ("12net", "12cal", "24net", "24cal", "48net", "48cal")} <= set(man)
    meta = man["cascade.12net"]["cascade"]
    assert len(meta["thresholds"]) == 3 and set(meta["framing"]) == {"ax", "ay", "sw", "sh"}
    assert man["cascade.48net"]["storage"] == "fp16" and man["cascade.48net"]["training"]["steps"] >= 1
    det = CascadeDetector.from_pretrained(weights_dir=str(wdir), min_face=40)
    dets = det.detect(_synthetic_face(rng))
    assert isinstance(dets, list)
    assert all(len(d.box) == 4 and 0.0 <= d.score <= 1.0 for d in dets)  # cascade scores are probabilities
    assert math.isfinite(det.thresholds[0])
    # a second run in the same folder resumes every net from its format-tagged checkpoint (no training)
    first = json.loads((tmp_path / "run" / "report.json").read_text())
    main(["--utk", str(utk), "--nonface", str(nonface), "--out", str(tmp_path / "run"), "--threads", "1", "--n-faces", "16",
          "--dev-faces", "4", "--framing-faces", "3", "--steps-scale", "0.004"])
    again = json.loads((tmp_path / "run" / "report.json").read_text())
    assert {m: v["steps"] for m, v in again["members"].items()} == {m: v["steps"] for m, v in first["members"].items()}
    assert again["thresholds"] == first["thresholds"]


def test_batched_nms_equals_per_group_nms():
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(300, 2, generator=g) * 100
    b = torch.cat([xy, xy + 8 + torch.rand(300, 2, generator=g) * 20], 1)
    s = torch.rand(300, generator=g)
    grp = torch.randint(0, 5, (300,), generator=g)
    got = batched_nms(b, s, grp, 0.45)
    want = []
    for k in range(5):
        ii = torch.nonzero(grp == k).squeeze(1)
        want += ii[nms(b[ii], s[ii], 0.45)].tolist()
    assert sorted(got.tolist()) == sorted(want)
    assert torch.all(s[got][:-1] >= s[got][1:])  # highest score first


def test_grid_sample_windows_equal_explicit_bilinear():
    from faceswap_pipeline.ops import windows as W

    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 3, 40, 50, generator=g)
    n = 40
    idx = torch.randint(0, 3, (n,), generator=g)
    x0 = torch.rand(n, 1, generator=g) * 60 - 10
    y0 = torch.rand(n, 1, generator=g) * 50 - 10
    side = torch.rand(n, 1, generator=g) * 20 + 6
    t = (torch.arange(12) + 0.5) / 12
    xs, ys = x0 + t[None] * side - 0.5, y0 + t[None] * side - 0.5
    assert torch.allclose(W._bilinear(img, idx, xs, ys), W._bilinear_gather(img, idx, xs, ys), atol=1e-4)


def test_train_net_layouts_and_bf16_all_learn():
    """channels_last (the default) and bf16 autocast are speed options: each learns an easy
    face/non-face split as NCHW float32 does, and the trained weights come back in the standard
    contiguous layout (safetensors stores only contiguous tensors)."""
    from faceswap_pipeline.train.cascade import train_net
    from faceswap_pipeline.train.cascade_config import CascadeTrainConfig
    from faceswap_pipeline.train.window_classifier import face_prob

    g = torch.Generator().manual_seed(0)
    pos = (torch.rand((200, 3, 24, 24), generator=g) * 90 + 150).to(torch.uint8)  # bright windows
    neg = (torch.rand((400, 3, 24, 24), generator=g) * 90 + 10).to(torch.uint8)  # dark windows
    probs = {}
    for layout, bf16 in (("nchw", False), ("cl", False), ("cl", True)):
        cfg = CascadeTrainConfig(channels_last=layout == "cl", bf16=bf16, grey_prob=0.0)
        cfg.steps["24net"], cfg.batch["24net"] = 40, 32
        torch.manual_seed(1)
        net = Net24(width=8, hidden=16)
        info = train_net("24net", net, {"pos": pos, "neg": neg}, cfg, seed=3)
        assert info["steps"] == 40
        assert all(t.is_contiguous() for t in net.state_dict().values())
        p_pos, p_neg = face_prob(net, pos[:100]), face_prob(net, neg[:100])
        acc = float(((p_pos > 0.5).float().mean() + (p_neg <= 0.5).float().mean()) / 2)
        assert acc > 0.95, (layout, bf16, acc)
        probs[(layout, bf16)] = p_pos
    assert not torch.equal(probs[("cl", True)], probs[("cl", False)])  # bf16 really ran in lower precision
