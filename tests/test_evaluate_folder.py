"""``evaluate IN_DIR OUT_DIR`` on a small synthetic run."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

import faceswap_pipeline as fp
from faceswap_pipeline.train.evaluate_folder import direction_of_run, evaluate_folder, labels_from_name


def test_labels_from_utk_names() -> None:
    assert labels_from_name("31_1_2_20170116174525125.jpg.chip.jpg") == {"age": 31, "gender": "female", "race": "asian"}
    assert labels_from_name("holiday.jpg") is None


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, astronaut, multi_face_canvas, tiny_weights):
    root = tmp_path_factory.mktemp("evalrun")
    src = root / "in"
    src.mkdir()
    iio.imwrite(src / "35_1_0_astronaut.png", astronaut)
    iio.imwrite(src / "canvas.png", multi_face_canvas[0])
    iio.imwrite(src / "40_0_1_blank.png", np.full((200, 200, 3), 120, np.uint8))  # no face: "missed"
    pipe = fp.load_pipeline("female2male", device="cpu", weights_dir=tiny_weights, upscaler="resize")
    pipe.run_folder(src, root / "out", progress=False)
    return src, root / "out"


def test_evaluate_a_run(finished_run, tmp_path) -> None:
    src, out = finished_run
    assert direction_of_run(out) == "female2male"
    res = evaluate_folder(src, out, sheet=tmp_path / "sheet.png")
    assert res["direction"] == "female2male" and res["photos"] == 3 and res["missed"] == 1
    assert res["faces"] == 4  # the astronaut and the canvas's three copies
    ov = res["overall"]
    assert 0.0 <= ov["judge_target_rate"] <= 1.0 and ov["identity_median"] > 0  # the tiny generator changed the faces
    assert ov["seam"]["faces"] == 4 and ov["seam"]["delta_e"] > 0
    assert res["groups"]["gender=female"]["faces"] == 1 and res["groups"]["gender=male"]["missed"] == 1
    assert "kept" not in res["groups"]["gender=female"] and 0 <= res["groups"]["race=white"]["kept"] <= 1
    assert len(res["per_face"]) == 4 and {"judge_target", "identity", "seam_delta_e"} <= set(res["per_face"][0])
    assert iio.imread(tmp_path / "sheet.png").ndim == 3
    json.dumps(res)


def test_an_unchanged_run_scores_as_its_inputs(tmp_path, astronaut) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    iio.imwrite(src / "a.png", astronaut)
    iio.imwrite(out / "a.png", astronaut)
    ov = evaluate_folder(src, out, direction="female2male")["overall"]
    assert ov["identity_median"] == 0.0
    assert ov["judge_target_rate"] == ov["judge_target_rate_of_inputs"]
    assert ov["seam"] == {"faces": 0}  # nothing was pasted
    with pytest.raises(ValueError, match="direction"):
        evaluate_folder(src, out)  # no settings record, no --direction


def test_cli_evaluate(finished_run, tmp_path, capsys) -> None:
    from faceswap_pipeline.cli import main

    src, out = finished_run
    assert main(["evaluate", str(src), str(out), "--json", str(tmp_path / "e.json")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["faces"] == 4 and "per_face" not in summary
    assert len(json.loads((tmp_path / "e.json").read_text())["per_face"]) == 4
