"""Attribute network: voting geometry, classifier + direction stages, trainer, swap measures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from faceswap_pipeline.ops.augment import AugmentConfig, augment_faces
from faceswap_pipeline.ops.voting import jitter_params, jittered_windows, vote
from faceswap_pipeline.stages.classify import AttributeClassifier, DirectionChooser, predict
from faceswap_pipeline.types import Detection, FaceRecord, ImageRecord


@pytest.fixture(scope="module")
def astronaut_crop() -> torch.Tensor:
    """Eileen Collins, framed exactly as the pipeline does with the chip framing: (3, 128, 128) in [0, 1]."""
    from skimage import data

    from faceswap_pipeline.stages.crop import frame_face
    from faceswap_pipeline.stages.detect_hog import HogDetector
    from faceswap_pipeline.train.prepare import CHIP_RESCALE

    im = data.astronaut()
    det = HogDetector().detect(im)[0]
    crop, _ = frame_face(im, det, CHIP_RESCALE, 128)
    return crop


class _Fixed(nn.Module):
    """Stub attribute net: always the given gender probabilities."""

    in_size = 16

    def __init__(self, p_female: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.logit = math.log(p_female / (1 - p_female))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b = x.shape[0]
        g = torch.zeros(b, 2)
        g[:, 1] = self.logit
        return {"gender": g + self.w, "race": torch.zeros(b, 5), "age": torch.full((b,), 30.0)}


# --- voting geometry ---------------------------------------------------------------------------


def test_jitter_params_45_windows_with_identity() -> None:
    p = jitter_params()
    assert p.shape == (45, 3)
    assert sorted(set(p[:, 0].tolist())) == pytest.approx([0.9, 0.95, 1.0, 1.05, 1.1])
    assert ((p[:, 0] == 1) & (p[:, 1] == 0) & (p[:, 2] == 0)).sum() == 1
    assert p[:, 1].abs().max() == pytest.approx(0.04)


def test_identity_window_is_exact_and_shift_moves_pixels() -> None:
    x = torch.rand(2, 3, 16, 16)
    w = jittered_windows(x, scales=(1.0,), shift=2 / 16)  # 9 windows; shift = 2 px
    assert w.shape == (18, 3, 16, 16)
    # order: dy-major then dx, in (-1, 0, 1): index 4 is (0, 0), index 5 is dx = +2 px
    torch.testing.assert_close(w[4], x[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(w[9 + 4], x[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(w[5][:, :, :-2], x[0][:, :, 2:], atol=1e-5, rtol=0)
    assert w[5][:, :, -2:].abs().max() == 0  # moved in from outside: black
    torch.testing.assert_close(w[7][:, :-2, :], x[0][:, 2:, :], atol=1e-5, rtol=0)  # dy = +2 px


def test_scale_window_zooms_about_centre() -> None:
    n = 32
    ramp = (torch.arange(n, dtype=torch.float32) + 0.5).view(1, 1, 1, n).expand(1, 1, n, n)
    w = jittered_windows(ramp, scales=(0.5,), shift=0.0)[4]
    expect = 0.5 * (ramp[0] - n / 2) + n / 2  # a linear image stays linear: exact up to float error
    torch.testing.assert_close(w, expect, atol=1e-4, rtol=0)


def test_vote_averages_probabilities() -> None:
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8]])
    torch.testing.assert_close(vote(probs, 2), torch.tensor([[0.5, 0.5], [0.35, 0.65]]))
    with pytest.raises(ValueError):
        vote(probs, 3)


def test_predict_shapes_and_voting_consistency() -> None:
    from faceswap_pipeline.archs.attributes import AttributeNet

    torch.manual_seed(0)
    net = AttributeNet(width=4, in_size=32).eval()
    x = torch.rand(3, 3, 128, 128)
    with torch.inference_mode():
        single = predict(net, x, voting=False)
        voted = predict(net, x, voting=True, batch_size=2)
    for p in (single, voted):
        assert p["gender"].shape == (3, 2) and p["race"].shape == (3, 5) and p["age"].shape == (3,)
        torch.testing.assert_close(p["gender"].sum(1), torch.ones(3))
        torch.testing.assert_close(p["race"].sum(1), torch.ones(3))
    assert predict(net, torch.zeros(0, 3, 128, 128))["gender"].shape == (0, 2)


# --- stages --------------------------------------------------------------------------------------


def _records(crops: list[torch.Tensor]) -> list[ImageRecord]:
    recs = []
    for c in crops:
        face = FaceRecord(detection=Detection(box=(0, 0, 10, 10), score=1.0), crop=c)
        recs.append(ImageRecord(image=np.zeros((10, 10, 3), np.uint8), faces=[face]))
    recs.append(ImageRecord(image=np.zeros((10, 10, 3), np.uint8), faces=[]))
    return recs


def test_classifier_stage_sets_attributes_with_stub() -> None:
    stage = AttributeClassifier(_Fixed(0.8), batch_size=2, voting=True)
    recs = stage(_records([torch.rand(3, 128, 128) for _ in range(3)]))
    for rec in recs[:3]:
        a = rec.faces[0].attributes
        assert set(a) == {"p_female", "p_white", "p_black", "p_asian", "p_indian", "p_other", "age"}
        assert a["p_female"] == pytest.approx(0.8, abs=1e-5) and a["age"] == pytest.approx(30.0)
        assert a["p_white"] == pytest.approx(0.2, abs=1e-6)


def test_direction_chooser_fixed_and_auto() -> None:
    recs = _records([torch.zeros(3, 8, 8)] * 2)
    recs[0].faces[0].attributes = {"p_female": 0.9}
    recs[1].faces[0].attributes = {"p_female": 0.1}
    DirectionChooser("male2female")(recs)
    assert [r.faces[0].direction for r in recs[:2]] == ["male2female", "male2female"]
    DirectionChooser("auto-gender")(recs)
    assert [r.faces[0].direction for r in recs[:2]] == ["female2male", "male2female"]
    assert DirectionChooser("auto-gender", threshold=0.95).choose({"p_female": 0.9}) == "male2female"
    with pytest.raises(ValueError, match="AttributeClassifier"):
        DirectionChooser("auto-gender")(_records([torch.zeros(3, 8, 8)]))
    with pytest.raises(ValueError):
        DirectionChooser("")


def test_shipped_weights_classify_astronaut(astronaut_crop) -> None:
    """The shipped network on a real face; Eileen Collins is female (see report for the value)."""
    stage = AttributeClassifier.from_pretrained("attributes.v1", device="cpu")
    recs = stage(_records([astronaut_crop]))
    a = recs[0].faces[0].attributes
    assert 0.0 <= a["p_female"] <= 1.0 and 5 < a["age"] < 90
    assert a["p_female"] > 0.5  # the shipped net gets this one right (voting)
    assert sum(a[f"p_{r}"] for r in ("white", "black", "asian", "indian", "other")) == pytest.approx(1.0, abs=1e-4)


def test_shipped_weights_manifest_entry() -> None:
    from faceswap_pipeline.weights import model_entry, verify

    verify("attributes.v1")
    e = model_entry("attributes.v1")
    assert e["arch"] == "attribute_cnn" and e["storage"] == "fp16"
    assert e["framing"]["rescale"] == [1.1, 1.1, 1.1, 1.3]
    m = e["metrics"]["val_single_pass"]
    assert set(m["gender_acc_by_race"]) == {"white", "black", "asian", "indian", "other"}


# --- augmentation + trainer ----------------------------------------------------------------------


def test_augment_deterministic_and_in_range() -> None:
    x = torch.rand(4, 3, 32, 32)
    a = augment_faces(x, AugmentConfig(), torch.Generator().manual_seed(3))
    b = augment_faces(x, AugmentConfig(), torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    ident = AugmentConfig(flip=0, degrees=0, translate=0, scale=(1, 1), brightness=0, contrast=0, saturation=0, grey=0)
    torch.testing.assert_close(augment_faces(x, ident, torch.Generator().manual_seed(0)), x, atol=1e-5, rtol=0)


def _synthetic_packs(tmp_path, n: int = 48) -> tuple[str, str]:
    from faceswap_pipeline.train.packs import encode_jpeg, write_pack

    rng = np.random.default_rng(0)
    paths = []
    for split, m in (("train", n), ("val", 16)):
        g = rng.integers(0, 2, m)
        imgs = np.zeros((m, 128, 128, 3), np.uint8)
        imgs[..., 0] = (g * 200 + 20)[:, None, None]  # gender is visible in the red channel
        imgs += rng.integers(0, 30, imgs.shape, dtype=np.uint8)
        labels = {"age": rng.integers(1, 90, m), "gender": g, "race": rng.integers(0, 5, m), "fallback": np.zeros(m, bool),
                  "pad": np.zeros(m, np.float32), "box": np.zeros((m, 4), np.float32), "name": np.array([f"{i}.jpg" for i in range(m)])}
        p = tmp_path / f"s_{split}.npz"
        write_pack(p, [encode_jpeg(i) for i in imgs], labels, {"size": 128, "framing": {"rescale": [1.1, 1.1, 1.1, 1.3], "size": 128, "detector": "hog"}})
        paths.append(str(p))
    return paths[0], paths[1]


@pytest.mark.slow
def test_trainer_smoke_resume_identical(tmp_path) -> None:
    from faceswap_pipeline.train.attributes import AttributesConfig, train

    tr, va = _synthetic_packs(tmp_path)

    def cfg(run: str, **kw) -> AttributesConfig:
        return AttributesConfig(train_pack=tr, val_pack=va, run_dir=str(tmp_path / run), weights_dir=str(tmp_path / f"w_{run}"),
                                width=4, in_size=32, batch_size=8, max_steps=4, threads=1, **kw)

    met = train(cfg("a"))
    assert 0 <= met["gender_acc"] <= 1 and math.isfinite(met["age_mae"])
    train(cfg("b", stop_at_step=2))
    first = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert first["step"] == 2
    train(cfg("b"))  # resumes at step 2 and finishes
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    hist = json.loads(a["history"])
    assert all(math.isfinite(h["age_mae"]) for h in hist)
    from faceswap_pipeline.weights import load_model, model_entry

    net = load_model("attributes.v1", weights_dir=tmp_path / "w_a")
    assert model_entry("attributes.v1", tmp_path / "w_a")["training"]["steps"] == 4
    assert net(torch.rand(1, 3, 128, 128))["gender"].shape == (1, 2)


def test_attribute_loss_finite() -> None:
    from faceswap_pipeline.train.attributes import AttributesConfig, attribute_loss

    out = {"gender": torch.randn(4, 2), "race": torch.randn(4, 5), "age": torch.randn(4)}
    loss, parts = attribute_loss(out, torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 2, 4]), torch.tensor([3.0, 30, 60, 90]), AttributesConfig())
    assert torch.isfinite(loss) and set(parts) == {"gender", "race", "age"}


# --- swap measures -------------------------------------------------------------------------------


def _u8(crop: torch.Tensor) -> np.ndarray:
    return (crop.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)[None]


@pytest.mark.slow
def test_identity_distance_sanity(astronaut_crop) -> None:
    from faceswap_pipeline.train.evaluate import SAME_PERSON, identity_distance
    from faceswap_pipeline.train.packs import decode_jpeg, encode_jpeg

    u = _u8(astronaut_crop)
    same = identity_distance(u, u)
    assert same.shape == (1,) and same[0] == pytest.approx(0.0, abs=1e-6)
    jpeg = decode_jpeg(encode_jpeg(u[0], 50))[None]
    d_jpeg = identity_distance(u, jpeg)[0]
    assert 0 < d_jpeg < SAME_PERSON / 2
    assert identity_distance(u, np.zeros_like(u))[0] > d_jpeg  # no face at all is far away


def test_framing_box_inverse() -> None:
    from faceswap_pipeline.train.evaluate import framing_box

    assert framing_box(100, (1, 1, 1, 1)) == pytest.approx((0, 0, 100, 100))
    x0, y0, x1, y1 = framing_box(128, (1.1, 1.1, 1.1, 1.3))
    assert x1 - x0 == pytest.approx(y1 - y0) == pytest.approx(128 / 1.2)
    assert y0 == pytest.approx(0.05 * 128 / 1.2)


def test_target_rate_with_stub() -> None:
    from faceswap_pipeline.train.evaluate import target_rate

    faces = np.zeros((5, 64, 64, 3), np.uint8)
    assert target_rate(_Fixed(0.9), faces, "female") == 1.0
    assert target_rate(_Fixed(0.9), faces, 0) == 0.0
    assert target_rate(_Fixed(0.2), torch.rand(3, 3, 64, 64), "male", voting=False) == 1.0
    assert math.isnan(target_rate(_Fixed(0.2), np.zeros((0, 64, 64, 3), np.uint8), "male"))


def test_contact_sheet(tmp_path) -> None:
    import imageio.v3 as iio

    from faceswap_pipeline.train.evaluate import contact_sheet

    a = np.full((10, 8, 8, 3), 10, np.uint8)
    b = np.full((10, 8, 8, 3), 200, np.uint8)
    sheet = contact_sheet(a, b, tmp_path / "s.png", cols=4, gap=2)
    assert sheet.shape == (3 * 2 * 10 + 2, 4 * 10 + 2, 3)
    assert (sheet[2:10, 2:10] == 10).all() and (sheet[12:20, 2:10] == 200).all()
    np.testing.assert_array_equal(iio.imread(tmp_path / "s.png"), sheet)


def test_split_direction() -> None:
    from faceswap_pipeline.train.evaluate import split_direction

    assert split_direction("male2female") == ("male", "female")
    assert split_direction("white2black") == ("white", "black")
    with pytest.raises(ValueError):
        split_direction("cat2dog")


def test_evaluate_main_end_to_end(tmp_path, astronaut_crop) -> None:
    """``evaluate`` CLI: tiny generator + tiny attribute net saved to a tmp weights folder, pack of 4 faces."""
    from faceswap_pipeline.archs.attributes import AttributeNet
    from faceswap_pipeline.archs.cyclegan import ResnetGenerator
    from faceswap_pipeline.train.evaluate import main
    from faceswap_pipeline.train.packs import encode_jpeg, write_pack
    from faceswap_pipeline.weights import register_weights, save_weights

    torch.manual_seed(0)
    w = tmp_path / "w"
    for name, net, arch, kw in (("cyclegan.male2female", ResnetGenerator(ngf=4, n_blocks=1), "cyclegan_resnet", {"ngf": 4, "n_blocks": 1}),
                                ("attributes.v1", AttributeNet(width=4, in_size=32), "attribute_cnn", {"width": 4, "in_size": 32})):
        sha = save_weights(net, w / f"{name}.safetensors", arch=arch, kwargs=kw, storage="fp32")
        register_weights(name, {"file": f"{name}.safetensors", "sha256": sha, "arch": arch, "kwargs": kw, "storage": "fp32",
                                "framing": {"rescale": [1.1, 1.1, 1.1, 1.3], "size": 128}}, w)
    u = _u8(astronaut_crop)[0]
    faces = [u, u[:, ::-1], u, u[:, ::-1]]
    labels = {"age": np.array([30, 40, 10, 50]), "gender": np.array([0, 0, 0, 1]), "race": np.zeros(4, int), "fallback": np.zeros(4, bool),
              "pad": np.zeros(4, np.float32), "box": np.zeros((4, 4), np.float32), "name": np.array(["a", "b", "c", "d"])}
    write_pack(tmp_path / "val.npz", [encode_jpeg(np.ascontiguousarray(f)) for f in faces], labels,
               {"size": 128, "framing": {"rescale": [1.1, 1.1, 1.1, 1.3], "size": 128}})
    out = tmp_path / "r.json"
    rc = main(["--generator", "cyclegan.male2female", "--weights-dir", str(w), "--pack", str(tmp_path / "val.npz"),
               "--sheet", str(tmp_path / "s.png"), "--json", str(out), "--no-voting", "--threads", "1"])
    res = json.loads(out.read_text())
    assert rc == 0 and res["n"] == 2  # adult males only: the child and the woman are not in the source domain
    assert 0 <= res["target_rate"] <= 1 and res["identity_distance_mean"] > 0
    assert (tmp_path / "s.png").is_file()
