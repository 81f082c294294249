"""What a person reads: short output, whole log lines above the bar, a bar that moves from the first
photo, per-image times that mean what they say."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

import faceswap_pipeline as fp
from faceswap_pipeline.api import default_batch_size
from faceswap_pipeline.folder import ItemResult, run_folder
from faceswap_pipeline.io import LoadedImage
from faceswap_pipeline.pipeline import Pipeline
from faceswap_pipeline.types import ImageRecord


def invert(items: list[LoadedImage]) -> list[ItemResult]:
    return [ItemResult(255 - it.rgb) for it in items]


@pytest.fixture()
def folder(tmp_path, astronaut):
    d = tmp_path / "in"
    d.mkdir()
    iio.imwrite(d / "1_astronaut.png", astronaut)  # HOG also fires on the mission patch: verified away (INFO)
    iio.imwrite(d / "2_plain.png", np.full((64, 64, 3), 90, np.uint8))
    (d / "3_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # a WARNING during the run
    return d


# ------------------------------------------------------------------------------------ log lines and the bar


def test_warnings_are_written_above_the_bar_not_into_it(folder, tmp_path, capsys):
    handler = logging.StreamHandler(sys.stderr)  # a console handler, as the CLI's basicConfig makes
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    pkg = logging.getLogger("faceswap_pipeline")  # an in-process CLI test (-q) may have raised its level
    old_level, old_root = pkg.level, root.level
    pkg.setLevel(logging.WARNING)
    root.setLevel(logging.WARNING)
    root.addHandler(handler)
    try:
        run_folder(folder, tmp_path / "out", invert, batch_size=1, progress=sys.stderr)
    finally:
        root.removeHandler(handler)
        pkg.setLevel(old_level)
        root.setLevel(old_root)
    err = capsys.readouterr().err
    assert "img/s" in err or "img]" in err  # the bar was drawn
    (line,) = [ln for ln in err.split("\n") if "3_broken.jpg" in ln]
    assert line.split("\r")[-1].startswith("WARNING faceswap_pipeline.folder: 3_broken.jpg")


def _cli(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "faceswap_pipeline.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


@pytest.mark.slow
def test_default_output_is_short_and_quiet_and_verbose_work(folder, tmp_path, tiny_weights):
    base = ["run", str(folder), str(tmp_path / "out"), "--direction", "female2male", "--weights-dir", tiny_weights,
            "--device", "cpu", "--upscaler", "resize"]
    r = _cli(base, tmp_path)
    assert r.returncode == 1  # the broken file
    assert json.loads(r.stdout) == {"command": "run", "ok": 2, "skipped": 0, "failed": 1}
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("WARNING") and "3_broken.jpg" in lines[0]  # no repr, no INFO
    r = _cli([*base, "--overwrite", "-q"], tmp_path)
    assert r.returncode == 1 and r.stderr == "" and json.loads(r.stdout)["ok"] == 2
    r = _cli([*base, "--overwrite", "-v"], tmp_path)
    assert "dropped detection" in r.stderr and "INFO" in r.stderr


# --------------------------------------------------------------------- models warm up before the bar starts


class Recorder:
    """A real stage that records when it is warmed up and how much of the bar was drawn by then."""

    name = "recorder"
    batched = False

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream
        self.seen: list[str] = []

    def warmup(self) -> None:
        self.seen.append(self.stream.getvalue())

    def settings(self) -> dict:
        return {"class": "Recorder"}  # its record of warm-ups is state, not a setting

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        return batch


def test_warm_up_happens_before_the_bar_and_the_bar_moves_per_image(folder, tmp_path):
    from faceswap_pipeline.stages.detect_hog import HogDetector

    stream = io.StringIO()
    rec = Recorder(stream)
    hog = HogDetector()
    pipe = Pipeline([rec, hog])
    report = pipe.run_folder(folder, tmp_path / "out", batch_size=default_batch_size("cpu"), progress=stream)
    assert rec.seen == [""]  # warmed up once, before anything of the bar was drawn
    assert hog._det is not None  # dlib's detector was built by the warm-up
    drawn = stream.getvalue()
    assert "0/3" in drawn and "3/3" in drawn
    # on a CPU each photo is its own batch: it finishes, moves the bar and is timed on its own
    assert all(it.batch is None for it in report.items)
    # nothing to do: no warm-up
    (folder / "3_broken.jpg").unlink()
    assert pipe.run_folder(folder, tmp_path / "out", progress=False).n_skipped == 2
    assert rec.seen == [""]


def test_default_batch_size_is_one_on_a_cpu():
    assert default_batch_size("cpu") == 1


# ----------------------------------------------------------------------------- per-image and batch times


def test_stage_times_are_per_image_and_batch_totals_apart(astronaut, tiny_weights):
    pipe = fp.load_pipeline("female2male", upscaler="srresnet", device="cpu", weights_dir=tiny_weights)
    big = np.repeat(np.repeat(astronaut, 2, 0), 2, 1)  # face pasted above 128 px: SR runs
    plain = np.full((200, 300, 3), 90, np.uint8)  # no face
    batch_s: dict[str, float] = {}
    face, noface = pipe.process([ImageRecord(image=big), ImageRecord(image=plain)], batch_timings=batch_s)
    assert len(face.faces) == 1 and noface.faces == []
    assert noface.timings["translate"] == 0.0 and noface.timings["upscale"] == 0.0  # used to be half the batch's
    assert face.timings["upscale"] > 0.0 and face.timings["translate"] > 0.0
    for stage in ("translate", "upscale"):  # a batched stage's time goes to the image that had the work
        assert face.timings[stage] == pytest.approx(batch_s[stage], rel=0.5, abs=0.01)
    for stage in ("detect", "verify", "crop", "blend"):  # per-image stages: timed image by image
        assert face.timings[stage] + noface.timings[stage] <= batch_s[stage] + 1e-6
    assert face.timings["detect"] > noface.timings["detect"]  # 1024x1024 vs 300x200 pixels


def test_folder_report_has_per_image_times_and_the_batch_apart(tmp_path, astronaut, tiny_weights):
    src = tmp_path / "in"
    src.mkdir()
    iio.imwrite(src / "a.png", astronaut)
    iio.imwrite(src / "b.png", np.full((200, 300, 3), 90, np.uint8))
    pipe = fp.load_pipeline("female2male", upscaler="resize", device="cpu", weights_dir=tiny_weights)
    report = pipe.run_folder(src, tmp_path / "out", batch_size=2, progress=False)
    a, b = report.items
    assert a.batch == b.batch and a.batch["images"] == 2 and a.batch["process_s"] > 0
    assert a.info["batch"]["faces"] == 1 and set(a.info["batch"]["stage_s"]) >= {"detect", "translate", "blend"}
    assert b.info["stage_s"]["translate"] == 0.0 and a.info["stage_s"]["translate"] > 0.0
    assert a.timings["process_s"] == pytest.approx(sum(a.info["stage_s"].values()), abs=1e-4)
    assert a.timings["process_s"] > b.timings["process_s"]
    assert a.to_dict()["batch"] == a.batch
