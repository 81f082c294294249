import subprocess
import sys

import numpy as np
import pytest
import torch

import faceswap_pipeline as fp
from faceswap_pipeline.pipeline import Pipeline
from faceswap_pipeline.stages.crop import CropLetterbox
from faceswap_pipeline.stages.detect_hog import HogDetector
from faceswap_pipeline.stages.translate import Translator
from faceswap_pipeline.types import Detection, FaceRecord, ImageRecord

ASTRONAUT_FACE = (175.0, 76.0, 266.0, 167.0)  # dlib HOG box (upsample 1), see conftest


def test_import_loads_no_model_no_dlib_no_torch():
    code = "import sys, faceswap_pipeline; bad = {'dlib', 'torch', 'kornia'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hog_finds_the_astronaut(astronaut):
    dets = fp.load_detector("hog")(astronaut)
    assert dets[0].box == ASTRONAUT_FACE and dets[0].score > 1.0
    assert all(d.score <= dets[0].score for d in dets)


def test_hog_finds_every_face_on_a_multi_face_canvas(multi_face_canvas):
    canvas, corners = multi_face_canvas
    dets = HogDetector().detect(canvas)
    assert len(dets) == 3
    found = np.array(sorted((d.box[0], d.box[1]) for d in dets))
    # the face sits at about (+30, +30) inside each pasted patch, as in the astronaut photo;
    # HOG's 8-px cells on the 2x image put boxes on a 4-px grid, so allow that much and a bit
    expected = np.array(sorted((x + 30, y + 30) for x, y in corners))
    np.testing.assert_allclose(found, expected, atol=8)


def test_hog_min_face_and_max_side(astronaut):
    assert HogDetector(min_face=200).detect(astronaut) == []
    big = np.repeat(np.repeat(astronaut, 2, 0), 2, 1)  # 1024 px, detected on a 512 px copy
    (d, *_) = HogDetector(max_side=512).detect(big)
    assert d.box == pytest.approx(tuple(2 * v for v in ASTRONAUT_FACE), abs=2)


def test_pipeline_swaps_only_face_regions(multi_face_canvas, tiny_weights):
    canvas, _ = multi_face_canvas
    pipe = fp.load_pipeline("male2female", device="cpu", weights_dir=tiny_weights)
    out, faces = pipe(canvas)
    assert out.shape == canvas.shape and out.dtype == np.uint8
    assert len(faces) == 3
    outside = np.ones(canvas.shape[:2], bool)
    for f in faces:
        assert f.actions == ["translate:male2female", "blend"]
        x0, y0, x1, y1 = f.transform.box
        outside[max(y0, 0) : y1, max(x0, 0) : x1] = False
        assert np.any(out[y0:y1, x0:x1] != canvas[y0:y1, x0:x1])
    np.testing.assert_array_equal(out[outside], canvas[outside])


def test_pipeline_face_at_the_border(face_patch, tiny_weights):
    canvas = np.full((300, 300, 3), 90, np.uint8)
    canvas[:140, 100:250] = face_patch[20:]  # top 20 rows cut off: the crop window reaches past the edge
    pipe = fp.load_pipeline("female2male", device="cpu", weights_dir=tiny_weights)
    out, faces = pipe(canvas)
    assert len(faces) == 1
    assert faces[0].transform.box[1] < 0  # padded, not shifted
    assert np.any(out[:120] != canvas[:120])


def test_faces_of_several_images_share_one_forward_pass(multi_face_canvas, astronaut, tiny_weights):
    from faceswap_pipeline.weights import load_model

    calls = []

    class Counting(torch.nn.Module):
        def __init__(self, g):
            super().__init__()
            self.g = g

        def forward(self, x):
            calls.append(x.shape[0])
            return self.g(x)

    gen = Counting(load_model("cyclegan.male2female", tiny_weights))
    pipe = Pipeline([HogDetector(), CropLetterbox(), Translator({"male2female": gen}, "male2female", batch_size=16)])
    recs = pipe.process([ImageRecord(image=multi_face_canvas[0]), ImageRecord(image=astronaut)])
    n_faces = sum(len(r.faces) for r in recs)
    assert n_faces >= 4 and calls == [n_faces]


def test_one_bad_image_does_not_fail_its_batch(astronaut, tiny_weights):
    pipe = fp.load_pipeline("male2female", device="cpu", weights_dir=tiny_weights)
    bad = ImageRecord(image=np.zeros((10, 10), np.uint8), key="bad")
    good = ImageRecord(image=astronaut, key="good")
    pipe.process([bad, good])
    assert bad.error and bad.error.startswith("detect: ValueError")
    assert good.error is None and good.result is not None and len(good.faces) >= 1
    assert set(good.timings) == {"detect", "verify", "detect_fallback", "crop", "landmarks", "translate", "upscale", "blend"}


def test_refuses_to_run_without_trained_weights(tmp_path, hide_untrained):
    with pytest.raises(fp.WeightsError, match="no trained weights for 'cyclegan.white2black'"):
        fp.load_pipeline("white2black", device="cpu", weights_dir=tmp_path)


def test_unknown_choices_are_clear_errors(tiny_weights):
    with pytest.raises(ValueError, match="unknown direction"):
        fp.load_pipeline("cat2dog", weights_dir=tiny_weights)
    with pytest.raises(ValueError, match="unknown detector"):
        fp.load_detector("haar")


def test_pipeline_with_srresnet_upscales_large_faces(astronaut, tiny_weights):
    folder = tiny_weights  # has the tiny generators; the SR model comes from the shipped weights
    from PIL import Image

    # x1.5: the face window (tiny weights' framing 1.1/1.5/1.1/1.3, ~165 x 245 px) is pasted at 129-256 px -> SR x2
    big = np.asarray(Image.fromarray(astronaut).resize((768, 768), Image.Resampling.BICUBIC))
    pipe = fp.load_pipeline("male2female", upscaler="srresnet", device="cpu", weights_dir=folder)
    assert [s.name for s in pipe.stages] == ["detect", "verify", "detect_fallback", "crop", "landmarks", "translate", "upscale", "blend"]
    recs = pipe.process([ImageRecord(image=big), ImageRecord(image=astronaut[::2, ::2].copy())])
    (f_big,) = [f for f in recs[0].faces if f.detection.score > 1]
    side = max(f_big.transform.box[2] - f_big.transform.box[0], f_big.transform.box[3] - f_big.transform.box[1])
    assert 128 < side <= 256, side
    assert f_big.actions == ["translate:male2female", "upscale:x2", "blend"]
    assert tuple(f_big.output.shape) == (3, 256, 256)
    small = recs[1].faces[0]  # ~45 px face: no SR work
    assert not any(a.startswith("upscale") for a in small.actions) and tuple(small.output.shape) == (3, 128, 128)


def test_cascade_is_a_drop_in_detector(multi_face_canvas, astronaut, tiny_weights):
    """Same API and stage protocol as HOG; boxes in HOG's framing so the same crop applies."""
    from faceswap_pipeline.ops.nms import box_iou as iou

    det = fp.load_detector("cascade", device="cpu")
    (best, *_) = det(astronaut)
    assert float(iou(torch.tensor([best.box]), torch.tensor([ASTRONAUT_FACE]))[0, 0]) > 0.6
    recs = det([ImageRecord(image=multi_face_canvas[0])])
    assert len(recs[0].faces) == 3
    pipe = fp.load_pipeline("male2female", detector="cascade", device="cpu", weights_dir=tiny_weights)
    out, faces = pipe(multi_face_canvas[0])
    assert len(faces) == 3 and all(f.actions[-1] == "blend" for f in faces)


def test_auto_gender_picks_the_direction_per_face(astronaut, tiny_weights):
    pipe = fp.load_pipeline("auto-gender", device="cpu", weights_dir=tiny_weights)  # attribute net: shipped
    assert [s.name for s in pipe.stages] == ["detect", "verify", "detect_fallback", "crop", "landmarks", "classify", "direction", "translate", "upscale", "blend"]
    _, faces = pipe(astronaut)
    face = max(faces, key=lambda f: f.detection.score)
    assert face.attributes["p_female"] > 0.5  # Eileen Collins
    assert face.direction == "female2male" and face.actions == ["translate:female2male", "blend"]


@pytest.mark.parametrize("direction", ["male2female", "female2male", "white2asian", "asian2white", "white2black", "black2white"])
def test_shipped_generators_end_to_end(astronaut, direction):
    """The shipped weights: verified, loaded with their framing, run on a real photo."""
    from faceswap_pipeline.weights import model_entry

    entry = model_entry(f"cyclegan.{direction}")
    assert entry["storage"] == "int4" and entry["kwargs"] == {"ngf": 32, "n_blocks": 9}
    pipe = fp.load_pipeline(direction, device="cpu")  # defaults: HOG at 0 + the verifier drops the mission patch
    (crop_stage,) = [s for s in pipe.stages if s.name == "crop"]
    assert list(crop_stage.rescale) == entry["framing"]["rescale"]
    out, (face,) = pipe(astronaut)
    x0, y0, x1, y1 = face.transform.box
    outside = np.ones(astronaut.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(out[outside], astronaut[outside])
    diff = np.abs(out[y0:y1, x0:x1].astype(int) - astronaut[y0:y1, x0:x1]).mean()
    assert 1.0 < diff < 60.0  # the face was changed, and it is still a photo of a face, not noise
    assert face.crop.shape == (3, 128, 128) and 0 <= float(face.output.min()) and float(face.output.max()) <= 1


def test_second_pass_runs_only_where_the_first_detector_found_nothing(astronaut):
    from faceswap_pipeline.stages.detect_fallback import SecondPass

    calls: list[int] = []

    class Fixed:
        def __call__(self, recs):
            calls.append(len(recs))
            for r in recs:
                r.faces = [FaceRecord(Detection((1.0, 2.0, 30.0, 31.0), 0.9))]
            return recs

    blank = ImageRecord(image=np.full((64, 64, 3), 128, np.uint8))
    pipe = Pipeline([HogDetector(threshold=0.5), SecondPass(Fixed())])
    face, empty = pipe.process([ImageRecord(image=astronaut), blank])
    assert calls == [1]  # only the photo HOG found no face in
    assert len(face.faces) == 1 and face.faces[0].actions == []
    assert empty.faces[0].detection.box == (1.0, 2.0, 30.0, 31.0) and empty.faces[0].actions == ["second_pass"]


def test_default_pipeline_has_the_cascade_as_second_pass(tiny_weights):
    stages = [s.name for s in fp.load_pipeline("male2female", device="cpu", weights_dir=tiny_weights).stages]
    assert stages[:3] == ["detect", "verify", "detect_fallback"]
    stages = [s.name for s in fp.load_pipeline("male2female", detector="cascade", device="cpu", weights_dir=tiny_weights).stages]
    assert "detect_fallback" not in stages
    with pytest.raises(ValueError, match="fallback"):
        fp.load_pipeline("male2female", fallback="hog", device="cpu", weights_dir=tiny_weights)


def test_shipped_race_swap_runs_end_to_end_with_harmonisation(astronaut):
    out, faces = fp.load_pipeline("white2asian", upscaler="resize", device="cpu", blend="feather")(astronaut)
    (face,) = faces
    assert face.actions[:1] == ["translate:white2asian"] and "harmonise" in face.actions
    assert face.attributes["tone_shift_de"] >= 0
    x0, y0, x1, y1 = face.transform.box
    far = np.ones(astronaut.shape[:2], bool)
    far[max(y0, 0) : y1, max(x0, 0) : x1] = False
    np.testing.assert_array_equal(out[far], astronaut[far])
    assert np.abs(out[y0:y1, x0:x1].astype(int) - astronaut[y0:y1, x0:x1]).mean() > 2  # the face changed
