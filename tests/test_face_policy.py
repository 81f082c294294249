"""The per-face policy (which faces get transformed) and the edit strength."""

from __future__ import annotations

import json

import numpy as np
import pytest

import faceswap_pipeline as fp
from faceswap_pipeline.stages.select import FaceSelector, parse_policy, select_faces
from faceswap_pipeline.types import Detection, FaceRecord, ImageRecord


def _faces(*sides: float) -> list[FaceRecord]:
    return [FaceRecord(Detection((10.0 * i, 0.0, 10.0 * i + s, s * 1.2), 1.0 - 0.1 * i)) for i, s in enumerate(sides)]


def test_parse_policy_forms_and_errors() -> None:
    assert parse_policy("all") == ("all", None)
    assert parse_policy("Largest") == ("largest", None)
    assert parse_policy("min-size 80") == ("min-size", 80.0) == parse_policy("min-size:80")
    assert parse_policy("0,2") == ("indices", frozenset({0, 2}))
    assert parse_policy([1]) == parse_policy(1) == ("indices", frozenset({1}))
    for bad in ("biggest", "min-size", "min-size -3", "0,x", [], [-1], [True]):
        with pytest.raises(ValueError):
            parse_policy(bad)


def test_select_faces() -> None:
    faces = _faces(50, 120, 80)
    assert select_faces(faces, "all") == [True, True, True]
    assert select_faces(faces, "largest") == [False, True, False]
    assert select_faces(faces, "min-size 80") == [False, True, True]
    assert select_faces(faces, "0,2") == [True, False, True]
    assert select_faces(faces, "5") == [False, False, False]  # an index past the faces selects nothing
    assert select_faces([], "largest") == []
    assert select_faces(_faces(90, 90), "largest") == [True, False]  # a tie: the first (higher score)


def test_selector_stage_marks_and_reports() -> None:
    rec = ImageRecord(image=np.zeros((4, 4, 3), np.uint8), faces=_faces(50, 120))
    FaceSelector("largest")([rec])
    assert [f.selected for f in rec.faces] == [False, True]
    assert rec.faces[0].actions == ["skip:policy"] and rec.faces[0].to_dict()["selected"] is False
    assert "selected" not in rec.faces[1].to_dict()
    with pytest.raises(ValueError):
        FaceSelector("most")


def test_policy_leaves_unselected_faces_bit_identical(multi_face_canvas, tiny_weights) -> None:
    canvas, _ = multi_face_canvas
    full, faces_all = fp.load_pipeline("male2female", device="cpu", weights_dir=tiny_weights)(canvas)
    out, faces = fp.load_pipeline("male2female", device="cpu", weights_dir=tiny_weights, faces="0")(canvas)
    assert [f.selected for f in faces] == [True, False, False]
    kept = np.zeros(canvas.shape[:2], bool)
    x0, y0, x1, y1 = faces[0].transform.box
    kept[max(y0, 0) : y1, max(x0, 0) : x1] = True
    np.testing.assert_array_equal(out[~kept], canvas[~kept])  # the other two faces untouched
    np.testing.assert_array_equal(out[kept], full[kept])  # the selected one swapped as with "all"
    assert faces[1].actions == ["skip:policy"] and faces[1].output is None


def test_strength_zero_is_bit_identical_one_is_full_and_half_between(astronaut, tiny_weights) -> None:
    def run(s: float):
        return fp.load_pipeline("female2male", device="cpu", weights_dir=tiny_weights, strength=s, upscaler="resize")(astronaut)

    out0, faces0 = run(0.0)
    np.testing.assert_array_equal(out0, astronaut)
    assert faces0[0].strength == 0.0 and "strength:0" in faces0[0].actions
    out1, faces1 = run(1.0)
    ref, _ = fp.load_pipeline("female2male", device="cpu", weights_dir=tiny_weights, upscaler="resize")(astronaut)
    np.testing.assert_array_equal(out1, ref)
    assert faces1[0].to_dict()["strength"] == 1.0
    out_h, faces_h = run(0.5)
    changed = np.any(ref != astronaut, axis=2)
    d_half = np.abs(out_h.astype(int) - astronaut)[changed].mean()
    d_full = np.abs(ref.astype(int) - astronaut)[changed].mean()
    assert 0.3 * d_full < d_half < 0.7 * d_full  # a blend: about half the change
    assert faces_h[0].to_dict()["strength"] == 0.5
    with pytest.raises(ValueError):
        run(1.5)


def test_cli_faces_and_strength(tmp_path, astronaut, tiny_weights, capsys) -> None:
    import imageio.v3 as iio

    src = tmp_path / "in"
    src.mkdir()
    iio.imwrite(src / "a.png", astronaut)
    from faceswap_pipeline.cli import main

    argv = ["run", str(src), str(tmp_path / "out"), "--direction", "male2female", "--weights-dir", tiny_weights,
            "--device", "cpu", "--strength", "0", "--faces", "largest", "--report", str(tmp_path / "r.json")]
    assert main(argv) == 0
    np.testing.assert_array_equal(iio.imread(tmp_path / "out" / "a.png"), astronaut)
    (face,) = json.loads((tmp_path / "r.json").read_text())["items"][0]["info"]["faces"]
    assert face["strength"] == 0.0 and "strength:0" in face["actions"]
    with pytest.raises(SystemExit) as e:
        main([*argv[:-2], "--faces", "biggest"])
    assert e.value.code == 2
    assert "face policy" in capsys.readouterr().err
