"""``run --workers N``: decode and encode in worker processes, results equal to the single-process path."""

import json
import pickle

import imageio.v3 as iio
import numpy as np
import pytest

from faceswap_pipeline.cli import main
from faceswap_pipeline.folder import FolderRun
from faceswap_pipeline.folder.workers import _portable, default_workers, read_job
from faceswap_pipeline.io.image import ImageReadError


@pytest.fixture()
def photo_dir(tmp_path, astronaut, face_patch):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    iio.imwrite(d / "astronaut.jpg", astronaut, quality=92)
    iio.imwrite(d / "sub" / "astronaut_small.png", astronaut[::2, ::2])
    canvas = np.full((240, 320, 3), 100, np.uint8)
    canvas[40:200, 80:230] = face_patch
    iio.imwrite(d / "sub" / "canvas.png", canvas)
    iio.imwrite(d / "sub" / "noface.png", np.full((64, 64, 3), 50, np.uint8))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (d / "empty.png").write_bytes(b"")
    return d


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


_VOLATILE = {"started", "finished", "output_dir"}


def _strip(report: dict) -> dict:
    """The report without what differs between two runs of the same job: timings and the output folder."""
    r = {k: v for k, v in report.items() if k not in _VOLATILE}
    r["summary"] = {k: v for k, v in r["summary"].items() if k not in ("elapsed_s", "images_per_s")}
    items = []
    for it in r["items"]:
        it = {k: v for k, v in it.items() if k not in ("timings", "traceback")}
        if "batch" in it:
            it["batch"] = {k: v for k, v in it["batch"].items() if k != "process_s"}
        info = dict(it.get("info") or {})
        info.pop("stage_s", None)
        if "batch" in info:
            info["batch"] = {k: v for k, v in info["batch"].items() if k != "stage_s"}
        it["info"] = info
        items.append(it)
    r["items"] = items
    return r


@pytest.mark.slow
def test_workers_give_the_single_process_outputs_and_report_and_resume(photo_dir, tmp_path, tiny_weights):
    def run(out, workers, *extra):
        rep = tmp_path / f"report_{out}.json"
        argv = ["run", str(photo_dir), str(tmp_path / out), "--direction", "male2female", "--weights-dir", tiny_weights,
                "--device", "cpu", "--report", str(rep), "--no-progress", "--batch-size", "2",
                "--workers", str(workers), *extra]
        assert main(argv) == 1  # the two broken inputs
        return json.loads(rep.read_text())

    one = run("one", 1)
    two = run("two", 2)
    assert two["complete"] and two["summary"]["ok"] == 4 and two["summary"]["error"] == 2
    assert _strip(two) == _strip(one)  # statuses, errors, faces, image info, output formats, batches
    out1, out2 = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert set(out2) >= {"astronaut.jpg", "sub/astronaut_small.png", "sub/canvas.png", "sub/noface.png"}
    marks = [json.loads(o.pop(".faceswap-pipeline.json")) for o in (out1, out2)]
    assert [{k: v for k, v in m.items() if k != "updated"} for m in marks][0] == {
        k: v for k, v in marks[1].items() if k != "updated"}  # the same settings record
    assert out2 == out1  # byte-identical outputs, no temporary files left
    assert not any(".tmp" in name for name in out2)
    errors = {i["input"]: i["error"] for i in two["items"] if i["status"] == "error"}
    assert set(errors) == {"broken.jpg", "empty.png"} and all(e.startswith("ImageReadError") for e in errors.values())

    # resume with workers: the done files are skipped (not rewritten), the broken ones fail again
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "two").rglob("*.*g")}
    again = run("two", 2)
    statuses = {i["input"]: i["status"] for i in again["items"]}
    assert statuses == {"astronaut.jpg": "skipped", "sub/astronaut_small.png": "skipped", "sub/canvas.png": "skipped",
                        "sub/noface.png": "skipped", "broken.jpg": "error", "empty.png": "error"}
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "two").rglob("*.*g")} == mtimes


def _invert(items):
    from faceswap_pipeline.folder import ItemResult

    return [ItemResult(image=255 - it.rgb, info={"mean": float(it.rgb.mean())}) for it in items]


def test_folder_run_workers_keep_input_order_and_bound_the_batches(tmp_path, astronaut):
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    for i in range(7):
        iio.imwrite(src / ("a" if i % 2 else ".") / f"img{i}.png", np.roll(astronaut[:96, :128], 9 * i, axis=1))
    seen: list[list[str]] = []

    def process(items):
        seen.append([it.path.name for it in items])
        return _invert(items)

    reports = {}
    for workers in (1, 2):
        seen.clear()
        rep = FolderRun(src, tmp_path / f"out{workers}", process, batch_size=3, workers=workers, progress=False,
                        report_path=tmp_path / f"r{workers}.json").run()
        reports[workers] = (list(seen), [(it.input, it.status, it.info) for it in rep.items])
        assert rep.n_ok == 7 and all(len(b) <= 3 for b in seen)
    assert reports[2] == reports[1]  # the same batches in the same order, the same report entries
    outs = [_files(tmp_path / f"out{w}") for w in (1, 2)]
    assert [{k: v for k, v in o.items() if not k.startswith(".faceswap")} for o in outs][0] == {
        k: v for k, v in outs[1].items() if not k.startswith(".faceswap")}
    assert len(outs[1]) >= 7
    back = iio.imread(tmp_path / "out2" / "a" / "img3.png")
    assert np.array_equal(back, 255 - np.roll(astronaut[:96, :128], 27, axis=1))


def test_workers_argument_is_checked(tmp_path):
    (tmp_path / "in").mkdir()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="workers"):
            FolderRun(tmp_path / "in", tmp_path / "out", _invert, workers=bad)
    assert default_workers() >= 1
    with pytest.raises(SystemExit):
        main(["run", str(tmp_path / "in"), str(tmp_path / "out"), "--direction", "male2female", "--workers", "0"])


class _Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def test_worker_errors_come_back_picklable(tmp_path):
    err = ImageReadError(tmp_path / "x.jpg", "truncated")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ImageReadError and str(back) == str(err) and back.path == err.path
    (tmp_path / "x.jpg").write_bytes(b"nope")
    res, seconds = read_job(tmp_path / "x.jpg", None)
    assert isinstance(res, ImageReadError) and seconds >= 0
    odd = _portable(_Unpicklable(1, 2))  # would break the pool if sent back as it is
    assert type(odd) is RuntimeError and str(odd) == "_Unpicklable: 1/2"
    assert pickle.loads(pickle.dumps(odd)).args == odd.args
