"""The face verifier: the cascade's 48-net as a second opinion on HOG detections."""

import numpy as np
import pytest
import torch

import faceswap_pipeline as fp
from faceswap_pipeline.ops.framing import apply_framing, cascade_window
from faceswap_pipeline.stages.detect_hog import HogDetector
from faceswap_pipeline.stages.verify import FaceVerifier
from faceswap_pipeline.types import Detection, FaceRecord, ImageRecord


def test_cascade_window_inverts_the_framing_transform():
    framing = {"ax": 0.03, "ay": -0.05, "sw": 1.2, "sh": 1.2}
    window = torch.tensor([[10.0, 20.0, 70.0, 80.0], [-5.0, 3.0, 45.0, 53.0]])
    hog_boxes = apply_framing(window, framing)
    back = torch.tensor([cascade_window(tuple(b.tolist()), framing) for b in hog_boxes])
    torch.testing.assert_close(back, window)
    # a non-square box becomes the square of its longer side, same centre
    x0, y0, x1, y1 = cascade_window((0, 0, 40, 60), {"ax": 0, "ay": 0, "sw": 1, "sh": 1})
    assert (x1 - x0, y1 - y0, (x0 + x1) / 2, (y0 + y1) / 2) == (60, 60, 20, 30)


def test_keeps_the_astronaut_and_drops_the_mission_patch(astronaut):
    dets = HogDetector(threshold=-0.5).detect(astronaut)  # the face, the patch (0.12) and a weaker one
    assert len(dets) >= 2 and dets[0].score > 1
    ver = FaceVerifier.from_pretrained(device="cpu")
    probs = ver.face_probs(astronaut, [d.box for d in dets])
    assert probs.shape == (len(dets),) and probs.dtype == np.float32
    assert probs[0] > 0.9 and np.all(probs[1:] < ver.threshold)
    rec = ImageRecord(image=astronaut, faces=[FaceRecord(detection=d) for d in dets])
    (kept,) = ver([rec])[0].faces
    assert kept.detection == dets[0] and kept.attributes["face_prob"] == pytest.approx(float(probs[0]))


def test_threshold_zero_keeps_everything_and_bad_thresholds_fail(astronaut):
    ver = FaceVerifier.from_pretrained(threshold=0.0, device="cpu")
    dets = [Detection((0.0, 0.0, 50.0, 50.0), 0.1), Detection((175.0, 76.0, 266.0, 167.0), 1.2)]
    rec = ver([ImageRecord(image=astronaut, faces=[FaceRecord(detection=d) for d in dets])])[0]
    assert len(rec.faces) == 2 and all("face_prob" in f.attributes for f in rec.faces)
    assert ver.face_probs(astronaut, []).shape == (0,)
    with pytest.raises(ValueError, match="threshold"):
        FaceVerifier.from_pretrained(threshold=1.5)


def test_pipeline_verifies_the_detections_of_both_detectors(tiny_weights):
    hog = fp.load_pipeline("male2female", device="cpu", weights_dir=tiny_weights)
    assert [s.name for s in hog.stages][:3] == ["detect", "verify", "detect_fallback"]
    off = fp.load_pipeline("male2female", device="cpu", weights_dir=tiny_weights, verify_threshold=None)
    assert "verify" not in [s.name for s in off.stages]
    cascade = fp.load_pipeline("male2female", detector="cascade", device="cpu", weights_dir=tiny_weights)
    assert [s.name for s in cascade.stages][:3] == ["detect", "verify", "crop"]


def test_threshold_is_the_one_recorded_with_the_cascade_weights(tmp_path):
    import json

    from faceswap_pipeline.stages.verify import DEFAULT_THRESHOLD, stored_threshold
    from faceswap_pipeline.weights import model_entry, register_weights

    shipped = stored_threshold()
    assert shipped == model_entry("cascade.12net")["cascade"]["verify_threshold"]
    assert FaceVerifier.from_pretrained().threshold == shipped
    # a weights folder whose cascade records its own threshold is searched first
    entry = json.loads(json.dumps(model_entry("cascade.12net")))
    entry["cascade"]["verify_threshold"] = 0.3
    register_weights("cascade.12net", entry, tmp_path)
    assert stored_threshold(tmp_path) == 0.3
    assert FaceVerifier.from_pretrained(weights_dir=str(tmp_path)).threshold == 0.3
    assert FaceVerifier.from_pretrained(0.2, weights_dir=str(tmp_path)).threshold == 0.2
    # cascade weights that record none (a fresh trainer export) fall back to the module default
    del entry["cascade"]["verify_threshold"]
    register_weights("cascade.12net", entry, tmp_path)
    assert stored_threshold(tmp_path) == DEFAULT_THRESHOLD


def test_pipeline_verify_threshold_auto_explicit_and_bad(tiny_weights):
    from faceswap_pipeline.stages.verify import stored_threshold

    def verifier(pipe):
        return next(s for s in pipe.stages if s.name == "verify")

    assert verifier(fp.load_pipeline("male2female", device="cpu", weights_dir=tiny_weights)).threshold == stored_threshold()
    assert verifier(fp.load_pipeline("male2female", device="cpu", weights_dir=tiny_weights, verify_threshold=0.25)).threshold == 0.25
    with pytest.raises(ValueError, match="verify_threshold"):
        fp.load_pipeline("male2female", device="cpu", weights_dir=tiny_weights, verify_threshold="high")
    with pytest.raises(ValueError, match="verify_threshold"):
        fp.load_pipeline("male2female", device="cpu", weights_dir=tiny_weights, verify_threshold=1.5)


class _ConstCheck(torch.nn.Module):
    """A stand-in face-check net: the same face probability for every window."""

    in_size = 64

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def face_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), self.p)


def test_the_check_net_vetoes_what_the_48net_keeps(astronaut):
    from faceswap_pipeline.weights import load_model

    net = load_model("cascade.48net")
    face = Detection((175.0, 76.0, 266.0, 167.0), 1.2)
    for p, n_kept in ((0.9, 1), (0.1, 0)):
        ver = FaceVerifier(net, None, threshold=0.0, check=_ConstCheck(p), check_threshold=0.5)
        rec = ver([ImageRecord(image=astronaut, faces=[FaceRecord(detection=face)])])[0]
        assert len(rec.faces) == n_kept
        if n_kept:
            assert rec.faces[0].attributes["check_prob"] == pytest.approx(p)
    with pytest.raises(ValueError, match="check_threshold"):
        FaceVerifier(net, None, check=_ConstCheck(0.5), check_threshold=1.0)
    assert "check" not in FaceVerifier.from_pretrained(check=False).modules


def test_check_windows_are_centred_squares_with_context():
    from faceswap_pipeline.stages.facecheck import check_crops, check_windows

    w = check_windows([[10.0, 20.0, 50.0, 80.0]], context=1.5)
    side = 1.5 * np.sqrt(40 * 60)
    torch.testing.assert_close(w, torch.tensor([[30 - side / 2, 50 - side / 2, 30 + side / 2, 50 + side / 2]], dtype=torch.float32))
    img = np.full((100, 120, 3), 200, np.uint8)
    c = check_crops(img, [[40.0, 30.0, 80.0, 70.0], [-30.0, -30.0, 10.0, 10.0]], size=32)
    assert c.shape == (2, 3, 32, 32)
    assert float(c[0].min()) == pytest.approx(200 / 255, abs=1e-5)  # inside the photo
    assert float(c[1, :, 0, 0].abs().max()) == 0.0  # past the photo's corner: zeros


def test_shipped_check_drops_a_textured_non_face_the_48net_keeps_and_keeps_a_real_face(astronaut):
    """The second opinion (the face-check net): a colour tissue texture the cascade fires on (score ~0.98)
    passes the 48-net's verify threshold but not the face-check net; the astronaut's face passes both."""
    from skimage import data

    ver = FaceVerifier.from_pretrained(device="cpu")
    assert "check" in ver.modules and 0.0 < ver.check_threshold < 1.0
    tissue = np.ascontiguousarray(data.immunohistochemistry()[:, :, :3])
    non_face = Detection((341.0, 413.0, 368.0, 440.0), 0.98)
    face = Detection((175.0, 76.0, 266.0, 167.0), 1.2)
    assert ver.face_probs(tissue, [non_face.box])[0] >= ver.threshold  # the 48-net alone would keep it
    assert ver.check_probs(tissue, [non_face.box])[0] < ver.check_threshold
    assert ver([ImageRecord(image=tissue, faces=[FaceRecord(detection=non_face)])])[0].faces == []
    (kept,) = ver([ImageRecord(image=astronaut, faces=[FaceRecord(detection=face)])])[0].faces
    assert kept.attributes["check_prob"] >= ver.check_threshold and kept.attributes["face_prob"] >= ver.threshold
