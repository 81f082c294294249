"""Mistakes a new user makes get one clear message, before any work starts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import faceswap_pipeline as fp
from faceswap_pipeline.cli import main
from faceswap_pipeline.folder import check_paths

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def photos(tmp_path, astronaut):
    d = tmp_path / "photos"
    d.mkdir()
    iio.imwrite(d / "a.png", astronaut[::2, ::2])
    return d


def _err(capsys) -> str:
    return capsys.readouterr().err


# ------------------------------------------------------------------- a weights folder that is not there


def test_a_weights_folder_that_does_not_exist_is_an_error(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "typo"
    with pytest.raises(fp.WeightsError, match="weights folder .*typo.* does not exist"):
        fp.load_pipeline("male2female", device="cpu", weights_dir=missing)
    with pytest.raises(fp.WeightsError, match="does not exist"):
        fp.load_detector("cascade", device="cpu", weights_dir=missing)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(fp.WeightsError, match="is not a folder"):
        fp.load_upscaler("srresnet", device="cpu", weights_dir=afile)
    monkeypatch.setenv("FACESWAP_WEIGHTS", str(missing))
    with pytest.raises(fp.WeightsError, match="FACESWAP_WEIGHTS folder .*typo.* does not exist"):
        fp.load_detector("hog", device="cpu")  # its verifier loads cascade.48net
    assert main(["weights", "list"]) == 2
    assert "FACESWAP_WEIGHTS folder" in _err(capsys)
    monkeypatch.delenv("FACESWAP_WEIGHTS")
    assert main(["weights", "verify", "--weights-dir", str(missing)]) == 2
    assert "does not exist" in _err(capsys)


# ------------------------------------------------------------------------- arguments checked at parse time


@pytest.mark.parametrize(("argv", "message"), [
    (["upscale", "IN", "OUT", "--scale", "0"], "argument --scale: must be >= 2, got 0"),
    (["upscale", "IN", "OUT", "--scale", "-1"], "argument --scale: must be >= 2, got -1"),
    (["upscale", "IN", "OUT", "--tile", "4"], "argument --tile: must be >= 16"),
    (["run", "IN", "OUT", "--direction", "male2female", "--batch-size", "0"], "argument --batch-size: must be >= 1"),
    (["run", "IN", "OUT", "--direction", "male2female", "--verify-threshold", "1.5"], "argument --verify-threshold: must be in [0, 1)"),
    (["run", "IN", "OUT", "--direction", "male2female", "--feather", "0.9"], "argument --feather: must be in [0, 0.5]"),
    (["run", "IN", "OUT", "--direction", "male2female", "--upsample", "9"], "argument --upsample: must be 0-3"),
    (["run", "IN", "OUT", "--direction", "male2female", "--threshold", "nan"], "argument --threshold: expected a finite number"),
    (["detect", "IN", "OUT.json", "--min-face", "-3"], "argument --min-face: must be >= 0"),
    (["detect", "IN", "OUT.json", "--device", "tpu"], "argument --device: unknown device 'tpu'"),
    (["demo", "--device", "cuda:x"], "argument --device: unknown device 'cuda:x'"),
    (["run", "IN", "OUT", "--direction", "male2female", "--threads", "0"], "argument --threads: must be >= 1"),
])
def test_bad_arguments_are_refused_when_parsed(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = _err(capsys)
    assert message in err and "Traceback" not in err


def test_argument_combinations_fail_before_any_image(photos, tmp_path, capsys):
    out = tmp_path / "big"
    assert main(["upscale", str(photos), str(out), "--scale", "3", "--device", "cpu"]) == 2
    assert "no SRResNet model for x3 (trained: x2, x4)" in _err(capsys)
    assert not out.exists()
    assert main(["detect", str(photos), str(tmp_path / "b.json"), "--detector", "cascade", "--min-face", "8"]) == 2
    assert "--min-face for the cascade must be >= 12" in _err(capsys)
    with pytest.raises(ValueError, match="scale must be an integer >= 2"):
        fp.load_upscaler("resize", scale=0)  # used to fall back to x4
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        fp.load_pipeline("male2female", device="tpu")


def test_cuda_without_a_gpu_is_a_parse_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit):
        main(["run", "IN", "OUT", "--direction", "male2female", "--device", "cuda"])
    assert "torch sees no CUDA GPU" in _err(capsys)


def test_every_option_of_every_command_explains_itself():
    import argparse

    from faceswap_pipeline.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        if name in ("prepare", "evaluate", "train"):
            continue  # their own parsers (faceswap_pipeline.train)
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    run_opts = {o for a in sub.choices["run"]._actions for o in a.option_strings}
    assert {"--threads", "--quiet", "--verbose"} <= run_opts


# ----------------------------------------------------------------- path problems show before models load


def test_path_problems_are_reported_before_any_model_loads(photos, tmp_path, tiny_weights, capsys, hide_untrained):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    # white2black has no trained generator here (hide_untrained): a model load would fail with a weights message instead
    base = ["--direction", "white2black", "--weights-dir", tiny_weights, "--device", "cpu"]
    t0 = time.perf_counter()
    assert main(["run", str(photos), str(afile), *base]) == 2
    assert "output folder" in (err := _err(capsys)) and "is an existing file" in err
    assert main(["run", str(photos), str(afile / "sub"), *base]) == 2
    assert "is a file, not a folder" in _err(capsys)
    assert main(["run", str(tmp_path / "nope"), str(tmp_path / "o"), *base]) == 2
    assert "does not exist" in _err(capsys)
    assert main(["run", str(photos), str(tmp_path / "o"), "--report", str(tmp_path), *base]) == 2
    assert "is a folder: give a file name" in _err(capsys)
    assert main(["detect", str(photos), str(tmp_path), "--device", "cpu"]) == 2
    assert "is a folder" in _err(capsys)
    assert time.perf_counter() - t0 < 5  # no model was loaded, no image read
    assert not (tmp_path / "o").exists()


def test_check_paths_api(photos, tmp_path):
    check_paths(photos, tmp_path / "new" / "out")  # fine: created later
    check_paths(photos, photos / "swapped")  # fine: left out of the walk
    with pytest.raises(ValueError, match="is the input folder"):
        check_paths(photos, photos)
    with pytest.raises(ValueError, match="inside the output folder"):
        check_paths(photos, tmp_path)
    with pytest.raises(ValueError, match="out_dir is required"):
        check_paths(photos, None)
    check_paths(photos, None, write_outputs=False, report_path=tmp_path / "boxes.json")
    with pytest.raises(ValueError, match="is an input image"):
        check_paths(photos, None, write_outputs=False, report_path=photos / "a.png")


# --------------------------------------------------------------------- prepare on a folder that is not there


def test_prepare_on_a_missing_folder_is_one_line_not_a_traceback(tmp_path, capsys):
    assert main(["prepare", "--images", str(tmp_path / "nonexistent"), "--out", str(tmp_path / "packs")]) == 2
    err = _err(capsys)
    assert "faceswap-pipeline prepare: error:" in err and "nonexistent" in err and "Traceback" not in err


def test_prepare_example_on_a_missing_folder(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "examples" / "prepare_data.py"), "--images", str(tmp_path / "nonexistent")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "is not a folder" in r.stderr and "Traceback" not in r.stderr


def test_one_line_errors_for_bad_images_do_not_hide_real_failures(photos, tmp_path, tiny_weights):
    """The guard turns user errors into messages, but a run with bad files still reports them per file."""
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    code = main(["run", str(photos), str(tmp_path / "o"), "--direction", "male2female", "--weights-dir", tiny_weights,
                 "--device", "cpu", "--upscaler", "resize", "--no-progress"])
    assert code == 1 and (tmp_path / "o" / "a.png").is_file()
    assert np.asarray(iio.imread(tmp_path / "o" / "a.png")).shape == (256, 256, 3)
