"""CNN cascade speed paths: each optimisation gives the same numbers as the plain path.

channels_last fused nets, bfloat16 window nets, the single-image window-crop fast path, crop reuse
between a level's detection and calibration nets, and the shared octave pyramid.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from faceswap_pipeline.archs.cascade import Cal12, Cal24, Net12, Net24, Net48, fuse, native_bf16
from faceswap_pipeline.ops import windows as W
from faceswap_pipeline.ops.nms import batched_nms
from faceswap_pipeline.stages.detect_cascade import Candidates, CascadeDetector, _calibrate, refine


def _random_bn(net: torch.nn.Module) -> torch.nn.Module:
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def _nets(seed: int = 0) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    return {"12net": _random_bn(Net12()), "12cal": _random_bn(Cal12()), "24net": _random_bn(Net24()), "24cal": _random_bn(Cal24()),
            "48net": _random_bn(Net48()), "48cal": _random_bn(Net48(n_out=45))}


@pytest.mark.parametrize("cls", [Net12, Cal12, Net24, Net48])
def test_channels_last_fused_net_equals_net(cls):
    torch.manual_seed(0)
    net = _random_bn(cls())
    x = torch.rand(5, 3, net.size, net.size)
    with torch.inference_mode():
        ref = net(x)
        got = fuse(net, channels_last=True)(x)
        assert got.dtype == torch.float32 and got.shape == ref.shape
        assert torch.allclose(got, ref, atol=1e-4)
        if cls is Net12:  # fully convolutional map, channels_last too
            img = torch.rand(1, 3, 40, 52)
            assert torch.allclose(fuse(net, channels_last=True)(img), net(img), atol=1e-4)


def test_bf16_fused_net_close_to_fp32():
    torch.manual_seed(0)
    net = _random_bn(Net24())
    x = torch.rand(64, 3, 24, 24)
    with torch.inference_mode():
        ref = net.face_prob(x)
        half = copy.deepcopy(fuse(net, channels_last=True)).to(torch.bfloat16)
        got = half.face_prob(x)  # float32 input is cast inside
    assert got.dtype == torch.float32
    assert (got - ref).abs().max() < 0.05


@pytest.mark.parametrize(("flags", "expected"), [("fpu sse2 avx2 fma", False), ("fpu avx512f avx512_bf16", True),
                                                 ("fpu amx_bf16 amx_tile", True), (None, False)])
def test_native_bf16_reads_the_cpu_flags(monkeypatch, flags, expected):
    import builtins
    import io

    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path != "/proc/cpuinfo":
            return real_open(path, *args, **kwargs)
        if flags is None:
            raise OSError("no /proc on this system")
        return io.StringIO(f"processor\t: 0\nflags\t\t: {flags}\n")

    native_bf16.cache_clear()  # read once per process: forget this machine's answer, and the fake one after
    monkeypatch.setattr(builtins, "open", fake_open)
    try:
        assert native_bf16() is expected
    finally:
        native_bf16.cache_clear()


def test_single_image_crop_fast_path_equals_reference():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 3, 40, 50, generator=g)
    n = 30
    x0 = torch.rand(n, 1, generator=g) * 60 - 10
    y0 = torch.rand(n, 1, generator=g) * 50 - 10
    side = torch.rand(n, 1, generator=g) * 20 + 6
    t = (torch.arange(12) + 0.5) / 12
    xs, ys = x0 + t[None] * side - 0.5, y0 + t[None] * side - 0.5
    for idx in (torch.zeros(n, dtype=torch.long), torch.full((n,), 2)):  # all windows from one image of three
        assert torch.allclose(W._bilinear(img, idx, xs, ys), W._bilinear_gather(img, idx, xs, ys), atol=1e-4)
    one = img[1:2]
    idx = torch.zeros(n, dtype=torch.long)
    assert torch.allclose(W._bilinear(one, idx, xs, ys), W._bilinear_gather(one, idx, xs, ys), atol=1e-4)
    # crop_windows: several pyramid levels, one image == the batched path on a 2-image batch
    pyr1 = W.octave_pyramid(img[1:2])
    pyr2 = W.octave_pyramid(torch.cat([img[1:2], img[1:2]]))  # the same image twice: batched path
    boxes = torch.cat([x0, y0, x0 + side * 3, y0 + side * 3], 1)
    a = W.crop_windows(pyr1, torch.zeros(n, dtype=torch.long), boxes, 12)
    b = W.crop_windows(pyr2, torch.arange(n) % 2, boxes, 12)
    assert a.shape == (n, 3, 12, 12) and torch.allclose(a, b, atol=1e-6)
    assert W.crop_windows(pyr1, torch.zeros(0, dtype=torch.long), torch.zeros((0, 4)), 24).shape == (0, 3, 24, 24)


def test_octave_pyramid_min_side_prefix():
    # the detector computes the pyramid once (min_side 6) and takes the min_side 8 one as a prefix
    for h, w in [(350, 450), (30, 31), (33, 64), (29, 100), (16, 16), (15, 17)]:
        x = torch.rand(1, 3, h, w)
        a = W.octave_pyramid(x)
        b = W.octave_pyramid(x, min_side=6)
        c = [b[0]] + [lv for lv in b[1:] if min(lv.shape[-2:]) >= 8]
        assert len(a) == len(c) and all(torch.equal(u, v) for u, v in zip(a, c))


def test_refine_reuses_crops_like_recropping():
    nets = {k: fuse(v) for k, v in _nets(1).items()}
    g = torch.Generator().manual_seed(2)
    img = torch.rand(2, 3, 64, 80, generator=g)
    pyr = W.octave_pyramid(img)
    n = 60
    xy = torch.rand(n, 2, generator=g) * 50
    side = 16 + torch.rand(n, 1, generator=g) * 30
    cand = Candidates(torch.randint(0, 2, (n,), generator=g), torch.cat([xy, xy + side], 1), torch.rand(n, generator=g))
    with torch.inference_mode():
        for size, before in ((24, True), (48, False)):
            net, cal = nets[f"{size}net"], nets[f"{size}cal"]
            got = refine(net, cal, pyr, cand, size, 0.0, 0.5, 1 / 45, cal_before_nms=before)
            # the old path: crop again for the calibration net
            p = net.face_prob(W.crop_windows(pyr, cand.image, cand.boxes, size))
            c = Candidates(cand.image, cand.boxes, p)
            if before:
                c = _calibrate(cal, pyr, c, size, 1 / 45)
            c = c.take(batched_nms(c.boxes, c.scores, c.image, 0.5))
            if not before:
                c = _calibrate(cal, pyr, c, size, 1 / 45)
            assert len(got) == len(c) > 0
            assert torch.equal(got.image, c.image) and torch.allclose(got.boxes, c.boxes, atol=1e-5) and torch.allclose(got.scores, c.scores)


def test_detector_speed_options_agree():
    """fp32 channels_last vs plain fused NCHW: same detections; bf16: valid output; bad precision refused."""
    nets = _nets(3)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    img = (128 + 60 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 9.0)[..., None] + rng.normal(0, 10, (96, 128, 3))).clip(0, 255).astype(np.uint8)
    th = (0.3, 0.3, 0.3)
    base = CascadeDetector(min_face=20, thresholds=th, nets=copy.deepcopy(nets), channels_last=False, precision="fp32")
    fast = CascadeDetector(min_face=20, thresholds=th, nets=copy.deepcopy(nets), channels_last=True, precision="fp32")
    a, b = base.detect(img), fast.detect(img)
    assert len(a) == len(b) > 0
    assert np.allclose([d.box for d in a], [d.box for d in b], atol=1e-3)
    assert np.allclose([d.score for d in a], [d.score for d in b], atol=1e-5)
    half = CascadeDetector(min_face=20, thresholds=th, nets=copy.deepcopy(nets), precision="bf16")
    assert half.window_dtype == torch.bfloat16 and next(half.nets["24net"].parameters()).dtype == torch.bfloat16
    assert next(half.nets["12net"].parameters()).dtype == torch.float32
    assert all(0.0 <= d.score <= 1.0 for d in half.detect(img))
    with pytest.raises(ValueError):
        CascadeDetector(precision="fp8")


def test_threshold_strata_keeps_recall_in_every_stratum():
    from faceswap_pipeline.train.cascade_calibrate import threshold_for_recall, threshold_for_recall_strata

    g = torch.Generator().manual_seed(0)
    angle = torch.cat([torch.zeros(200), torch.full((200,), 18.0), torch.full((200,), -35.0)])
    # upright faces are sure (0.8-1.0), rotated ones less so (0.3-1.0 and 0.1-1.0)
    p = torch.cat([0.8 + 0.2 * torch.rand(200, generator=g), 0.3 + 0.7 * torch.rand(200, generator=g), 0.1 + 0.9 * torch.rand(200, generator=g)])
    t, per = threshold_for_recall_strata(p, angle, 0.95, (10.0, 25.0))
    assert set(per) == {"0-10", "10-25", "25-inf"}
    assert t == min(per.values()) == per["25-inf"]
    for lo, hi in ((0, 10), (10, 25), (25, 1e9)):
        m = (angle.abs() >= lo) & (angle.abs() < hi)
        assert int((p[m] > t).sum()) >= 0.95 * int(m.sum())
    assert t <= threshold_for_recall(p, 0.95)  # never stricter than the pooled threshold
    # strata too small are ignored; none left -> pooled
    t2, per2 = threshold_for_recall_strata(p[:30], angle[:30], 0.95, (10.0,), min_count=50)
    assert per2 == {} and t2 == threshold_for_recall(p[:30], 0.95)
