"""Re-runs do what they say: no outputs read back as inputs, no silent mix of settings."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest
from PIL import Image

import faceswap_pipeline as fp
from faceswap_pipeline.cli import main
from faceswap_pipeline.folder import ItemResult, SettingsMismatchError, read_marker, run_folder
from faceswap_pipeline.io import OUTPUT_MARKER, iter_images


def invert(items):
    return [ItemResult(255 - it.rgb) for it in items]


def darken(items):
    return [ItemResult(it.rgb // 2) for it in items]


@pytest.fixture()
def src(tmp_path, astronaut):
    d = tmp_path / "in"
    d.mkdir()
    small = astronaut[::4, ::4]
    for i in range(3):
        Image.fromarray(np.roll(small, 10 * i, axis=1)).save(d / f"{i}.png")
    return d


# ------------------------------------------------------------------------- output inside the input folder


def test_outputs_inside_the_input_are_never_read_back_as_inputs(src, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="faceswap_pipeline"):
        r1 = run_folder(src, src / "swapped", invert, progress=False, settings={"op": "invert"})
    assert r1.n_ok == 3 and "inside the input folder" in caplog.text
    assert (src / "swapped" / OUTPUT_MARKER).is_file()
    # the next run over the same input, into another folder, or a detect-style run: still 3 inputs
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="faceswap_pipeline"):
        r2 = run_folder(src, tmp_path / "elsewhere", invert, progress=False)
    assert [it.input for it in r2.items] == ["0.png", "1.png", "2.png"]
    assert "holds the outputs of an earlier run" in caplog.text  # and it says so
    r3 = run_folder(src, None, lambda items: [ItemResult() for _ in items], write_outputs=False, progress=False)
    assert len(r3.items) == 3
    assert [p.name for p in iter_images(src)] == ["0.png", "1.png", "2.png"]
    # a folder of outputs can still be processed on its own (its own marker is not a reason to skip it)
    assert len(run_folder(src / "swapped", tmp_path / "again", invert, progress=False).items) == 3


# --------------------------------------------------------------------- another setting into the same folder


def test_other_settings_into_a_folder_with_outputs_are_refused(src, tmp_path):
    out = tmp_path / "out"
    assert run_folder(src, out, invert, progress=False, settings={"op": "invert"}).n_ok == 3
    assert read_marker(out)["settings"] == {"op": "invert"}
    with pytest.raises(SettingsMismatchError, match=r"op: 'invert' -> 'darken'.*--overwrite"):
        run_folder(src, out, darken, progress=False, settings={"op": "darken"})
    # the same settings resume (everything skipped), other settings with overwrite redo everything
    assert run_folder(src, out, invert, progress=False, settings={"op": "invert"}).n_skipped == 3
    redo = run_folder(src, out, darken, progress=False, settings={"op": "darken"}, overwrite=True)
    assert redo.n_ok == 3 and read_marker(out) == {**read_marker(out), "settings": {"op": "darken"}, "redo_before_ns": None}
    np.testing.assert_array_equal(np.asarray(Image.open(out / "0.png")), np.asarray(Image.open(src / "0.png")) // 2)
    assert run_folder(src, out, darken, progress=False, settings={"op": "darken"}).n_skipped == 3
    # an empty output folder (outputs deleted) takes any settings
    for p in out.glob("*.png"):
        p.unlink()
    assert run_folder(src, out, invert, progress=False, settings={"op": "invert"}).n_ok == 3


def test_an_interrupted_overwrite_run_resumes_without_keeping_stale_outputs(src, tmp_path):
    out = tmp_path / "out"
    run_folder(src, out, invert, progress=False, settings={"op": "invert"})
    calls = []

    def dies_after_one(items):
        calls.append(len(items))
        if len(calls) == 2:
            raise KeyboardInterrupt
        time.sleep(0.05)  # outputs are told from stale ones by the file system's clock: let it tick
        return darken(items)

    with pytest.raises(KeyboardInterrupt):
        run_folder(src, out, dies_after_one, batch_size=1, overwrite=True, progress=False, settings={"op": "darken"},
                   background_writes=False)
    assert read_marker(out)["redo_before_ns"] is not None
    resumed = run_folder(src, out, darken, progress=False, settings={"op": "darken"})
    assert [it.status for it in resumed.items] == ["skipped", "ok", "ok"]  # the two still inverted ones are redone
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{i}.png")), np.asarray(Image.open(src / f"{i}.png")) // 2)
    assert read_marker(out)["redo_before_ns"] is None


def test_pipeline_and_cli_refuse_a_rerun_with_another_direction(src, tmp_path, tiny_weights, capsys):
    out = tmp_path / "out"
    m2f = fp.load_pipeline("male2female", upscaler="resize", device="cpu", weights_dir=tiny_weights)
    f2m = fp.load_pipeline("female2male", upscaler="resize", device="cpu", weights_dir=tiny_weights)
    assert m2f.settings() != f2m.settings()
    assert m2f.settings() == fp.load_pipeline("male2female", upscaler="resize", device="cpu", weights_dir=tiny_weights).settings()
    m2f.run_folder(src, out, progress=False)
    with pytest.raises(SettingsMismatchError, match="translate.default_direction: 'male2female' -> 'female2male'"):
        f2m.run_folder(src, out, progress=False)
    base = [str(src), str(out), "--weights-dir", tiny_weights, "--device", "cpu", "--upscaler", "resize", "--no-progress"]
    assert main(["run", *base, "--direction", "male2female"]) == 0  # same settings: resumes
    assert main(["run", *base, "--direction", "female2male"]) == 2
    err = capsys.readouterr().err
    assert "holds results made with other settings" in err and "--overwrite" in err
    assert main(["run", *base, "--direction", "male2female", "--feather", "0.3"]) == 2
    assert "blend.feather: 0.12 -> 0.3" in capsys.readouterr().err
    assert main(["run", *base, "--direction", "female2male", "--overwrite"]) == 0


def test_detect_refuses_to_mix_detectors_in_one_boxes_file(src, tmp_path, capsys):
    boxes = tmp_path / "boxes.json"
    assert main(["detect", str(src), str(boxes), "--device", "cpu", "--no-progress"]) == 0
    assert json.loads(boxes.read_text())["settings"]["command"] == "detect"
    assert main(["detect", str(src), str(boxes), "--device", "cpu", "--no-progress", "--detector", "cascade"]) == 2
    assert "report" in (err := capsys.readouterr().err) and "other settings" in err
    assert main(["detect", str(src), str(boxes), "--device", "cpu", "--no-progress", "--detector", "cascade", "--overwrite"]) == 0


def test_outputs_without_a_settings_record_are_kept_and_said_so(src, tmp_path, caplog):
    out = tmp_path / "out"
    run_folder(src, out, invert, progress=False, settings={"op": "invert"})
    (out / OUTPUT_MARKER).unlink()  # outputs made by an older version: no record
    with caplog.at_level(logging.WARNING, logger="faceswap_pipeline"):
        r = run_folder(src, out, darken, progress=False, settings={"op": "darken"})
    assert r.n_skipped == 3 and "no record of the settings" in caplog.text
    assert read_marker(out)["settings"] is None and r.settings is None  # unknown, not claimed to be 'darken'
    redo = run_folder(src, out, darken, progress=False, settings={"op": "darken"}, overwrite=True)
    assert redo.n_ok == 3 and read_marker(out)["settings"] == {"op": "darken"}


def test_results_recorded_under_former_option_names_resume(src, tmp_path):
    """Options renamed since (HOG ``min_size`` -> ``min_face``, SR ``min_face`` -> ``sr_above``) mean the same settings."""
    out = tmp_path / "out"
    old = {"command": "run", "stages": [{"stage": "detect", "class": "HogDetector", "min_size": 0, "upsample": 1},
                                        {"stage": "upscale", "class": "SRUpscaler", "min_face": 128, "models": "resize"}]}
    new = {"command": "run", "stages": [{"stage": "detect", "class": "HogDetector", "min_face": 0, "upsample": 1},
                                        {"stage": "upscale", "class": "SRUpscaler", "sr_above": 128, "models": "resize"}]}
    assert run_folder(src, out, invert, progress=False, settings=old).n_ok == 3
    assert run_folder(src, out, invert, progress=False, settings=new).n_skipped == 3
    other = json.loads(json.dumps(new))
    other["stages"][1]["sr_above"] = 256
    with pytest.raises(SettingsMismatchError, match=r"upscale\.sr_above: 128 -> 256"):
        run_folder(src, out, invert, progress=False, settings=other)
