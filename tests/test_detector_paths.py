"""One verify stage behind every detection path: API, pipeline, `detect`, `run`, both detectors."""

from __future__ import annotations

import json

import imageio.v3 as iio
import pytest

import faceswap_pipeline as fp
from faceswap_pipeline.cli import main
from faceswap_pipeline.stages.verify import FaceVerifier, VerifiedDetector

ASTRONAUT_FACE = (175.0, 76.0, 266.0, 167.0)


def test_api_detector_drops_the_mission_patch_like_the_pipeline(astronaut, tiny_weights):
    det = fp.load_detector("hog")
    assert isinstance(det, VerifiedDetector) and isinstance(det.verifier, FaceVerifier)
    (face,) = det(astronaut)  # HOG alone also returns the patch (score ~0.12)
    assert face.box == ASTRONAUT_FACE
    (f,) = det.detect_faces(astronaut)
    assert f.attributes["face_prob"] > 0.9
    raw = fp.load_detector("hog", verify_threshold=0)  # verification off: the patch is back
    assert raw.verifier is None and len(raw(astronaut)) == 2
    _, faces = fp.load_pipeline("male2female", upscaler="resize", device="cpu", weights_dir=tiny_weights)(astronaut)
    assert [x.detection for x in faces] == det(astronaut)


@pytest.mark.parametrize("detector", ["hog", "cascade"])
def test_api_pipeline_and_cli_give_the_same_verified_faces(astronaut, tmp_path, tiny_weights, detector):
    src = tmp_path / "in"
    src.mkdir()
    iio.imwrite(src / "a.png", astronaut)
    det = fp.load_detector(detector, device="cpu")
    api = det.detect_faces(astronaut)
    assert api and all("face_prob" in f.attributes for f in api)  # every detection was verified
    boxes = tmp_path / "boxes.json"
    assert main(["detect", str(src), str(boxes), "--detector", detector, "--device", "cpu", "--no-progress"]) == 0
    (item,) = json.loads(boxes.read_text())["items"]
    assert [f["box"] for f in item["info"]["faces"]] == [f.detection.to_dict()["box"] for f in api]
    assert all("face_prob" in f for f in item["info"]["faces"])
    rep = tmp_path / "run.json"
    assert main(["run", str(src), str(tmp_path / "out"), "--direction", "female2male", "--detector", detector,
                 "--weights-dir", tiny_weights, "--device", "cpu", "--upscaler", "resize", "--report", str(rep),
                 "--no-progress"]) == 0
    (ran,) = json.loads(rep.read_text())["items"]
    assert [f["box"] for f in ran["info"]["faces"]] == [f["box"] for f in item["info"]["faces"]]
    assert "verify" in ran["info"]["stage_s"]


def test_the_verify_threshold_reaches_the_cascade_on_every_path(astronaut, tmp_path, tiny_weights):
    """A threshold between the cascade's face probabilities drops the weaker faces in the API,
    the pipeline and the CLI alike (before, the cascade had no verify stage at all)."""
    import numpy as np

    face = astronaut[46:206, 145:295]
    canvas = np.full((400, 900, 3), 128, np.uint8)
    canvas[30:190, 20:170] = face
    canvas[200:360, 330:480] = face // 4 + 100  # low contrast: lower face probabilities
    canvas[60:220, 650:800] = face // 6 + 110
    probs = sorted(f.attributes["face_prob"] for f in fp.load_detector("cascade", device="cpu").detect_faces(canvas))
    assert len(probs) >= 2 and probs[0] < probs[-1]
    cut = (probs[0] + probs[-1]) / 2
    kept = sum(p >= cut for p in probs)
    assert 0 < kept < len(probs)
    assert len(fp.load_detector("cascade", device="cpu", verify_threshold=cut)(canvas)) == kept
    pipe = fp.load_pipeline("male2female", detector="cascade", upscaler="resize", device="cpu",
                            weights_dir=tiny_weights, verify_threshold=cut)
    assert len(pipe(canvas)[1]) == kept
    src = tmp_path / "in"
    src.mkdir()
    iio.imwrite(src / "c.png", canvas)
    out = tmp_path / "b.json"
    assert main(["detect", str(src), str(out), "--detector", "cascade", "--verify-threshold", str(cut),
                 "--device", "cpu", "--no-progress"]) == 0
    assert json.loads(out.read_text())["items"][0]["info"]["n_faces"] == kept
