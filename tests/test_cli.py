import json
import os

import imageio.v3 as iio
import numpy as np
import pytest

from faceswap_pipeline.cli import main


@pytest.fixture()
def photo_dir(tmp_path, astronaut, face_patch):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    iio.imwrite(d / "astronaut.jpg", astronaut, quality=92)
    canvas = np.full((240, 320, 3), 100, np.uint8)
    canvas[40:200, 80:230] = face_patch
    iio.imwrite(d / "sub" / "canvas.png", canvas)
    iio.imwrite(d / "sub" / "noface.png", np.full((64, 64, 3), 50, np.uint8))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (d / "empty.png").write_bytes(b"")
    (d / "notes.txt").write_text("not an image, ignored by the walk")
    return d


def _snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_processes_folder_reports_every_file_and_resumes(photo_dir, tmp_path, tiny_weights):
    before = _snapshot(photo_dir)
    out, rep = tmp_path / "out", tmp_path / "report.json"
    argv = ["run", str(photo_dir), str(out), "--direction", "male2female", "--weights-dir", tiny_weights,
            "--device", "cpu", "--report", str(rep), "--no-progress"]
    assert main(argv) == 1  # two broken inputs
    assert _snapshot(photo_dir) == before  # inputs untouched
    report = json.loads(rep.read_text())
    items = {os.path.basename(i["input"]): i for i in report["items"]}
    assert set(items) == {"astronaut.jpg", "canvas.png", "noface.png", "broken.jpg", "empty.png"}
    assert items["broken.jpg"]["status"] == "error" and items["empty.png"]["status"] == "error"
    assert items["astronaut.jpg"]["status"] == "ok" and items["astronaut.jpg"]["info"]["n_faces"] >= 1
    assert items["noface.png"]["info"]["n_faces"] == 0
    # nothing to swap: the output is a byte-identical copy, not a re-encode
    assert (out / "sub" / "noface.png").read_bytes() == (photo_dir / "sub" / "noface.png").read_bytes()
    assert (out / "astronaut.jpg").is_file() and (out / "sub" / "canvas.png").is_file()
    swapped = iio.imread(out / "sub" / "canvas.png")
    assert swapped.shape == (240, 320, 3)
    assert not list(out.rglob("*.tmp*"))

    mtime = (out / "astronaut.jpg").stat().st_mtime_ns
    assert main(argv) == 1  # resume: the done files are skipped, broken ones fail again
    report2 = json.loads(rep.read_text())
    statuses = {os.path.basename(i["input"]): i["status"] for i in report2["items"]}
    assert statuses["astronaut.jpg"] == "skipped" and statuses["canvas.png"] == "skipped"
    assert (out / "astronaut.jpg").stat().st_mtime_ns == mtime


def test_detect_writes_boxes_json(photo_dir, tmp_path):
    boxes = tmp_path / "boxes.json"
    assert main(["detect", str(photo_dir), str(boxes), "--no-progress"]) == 1
    items = {os.path.basename(i["input"]): i for i in json.loads(boxes.read_text())["items"]}
    (face,) = items["astronaut.jpg"]["info"]["faces"]  # HOG's weak hit on the mission patch is verified away
    assert face["box"] == [175.0, 76.0, 266.0, 167.0] and face["face_prob"] > 0.9
    unverified = tmp_path / "unverified.json"
    assert main(["detect", str(photo_dir), str(unverified), "--no-progress", "--verify-threshold", "0"]) == 1
    items = {os.path.basename(i["input"]): i for i in json.loads(unverified.read_text())["items"]}
    faces = items["astronaut.jpg"]["info"]["faces"]
    assert len(faces) == 2 and faces[0]["box"] == face["box"] and "face_prob" not in faces[0]


def test_weights_verify_and_missing_weights_message(tiny_weights, tmp_path, capsys, hide_untrained):
    assert main(["weights", "verify", "--weights-dir", tiny_weights]) == 0
    assert "cyclegan.male2female" in capsys.readouterr().out
    code = main(["run", str(tmp_path), str(tmp_path / "o"), "--direction", "white2black", "--weights-dir", str(tmp_path)])
    assert code == 2
    assert "no trained weights for 'cyclegan.white2black'" in capsys.readouterr().err


def test_demo_writes_before_after(tmp_path, tiny_weights):
    assert main(["demo", "--output-dir", str(tmp_path), "--weights-dir", tiny_weights, "--device", "cpu"]) == 0
    ba = iio.imread(tmp_path / "astronaut_before_after.png")
    assert ba.shape == (512, 1024, 3)
    assert np.any(ba[:, :512] != ba[:, 512:])


def test_upscale_command_x4(tmp_path, astronaut):
    src = tmp_path / "small"
    src.mkdir()
    iio.imwrite(src / "a.png", astronaut[100:164, 150:230])
    assert main(["upscale", str(src), str(tmp_path / "big"), "--scale", "4", "--device", "cpu", "--no-progress"]) == 0
    assert iio.imread(tmp_path / "big" / "a.png").shape == (256, 320, 3)
