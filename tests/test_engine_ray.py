"""``run --engine ray``: Ray Data over a local 2-CPU Ray instance gives the local runner's outputs and report.

The engine's steps are also tested one by one without Ray (they are plain functions and a class):
the pipeline split, the idempotent write of a retried task, and the merge of shard reports.
"""

from __future__ import annotations

import json
import os
import pickle

import imageio.v3 as iio
import numpy as np
import pytest

from faceswap_pipeline.cli import main
from faceswap_pipeline.folder.ray_engine import (
    PipelineSpec,
    _Context,
    decode_detect,
    encode_write,
    merge_shard,
    number_batches,
    split_pipeline,
)
from faceswap_pipeline.folder.report import FileReport, FolderReport
from faceswap_pipeline.io import read_image
from faceswap_pipeline.types import ImageRecord


@pytest.fixture()
def photo_dir(tmp_path, astronaut):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    iio.imwrite(d / "astronaut.jpg", astronaut, quality=92)
    iio.imwrite(d / "sub" / "astronaut_small.png", astronaut[::2, ::2])
    iio.imwrite(d / "sub" / "noface.png", np.full((64, 64, 3), 50, np.uint8))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return d


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _strip(report: dict) -> dict:
    """The report without what differs between two runs of the same job: timings and the folders' times."""
    r = {k: v for k, v in report.items() if k not in ("started", "finished", "output_dir")}
    r["summary"] = {k: v for k, v in r["summary"].items() if k not in ("elapsed_s", "images_per_s")}
    items = []
    for it in r["items"]:
        it = {k: v for k, v in it.items() if k not in ("timings", "traceback")}
        info = dict(it.get("info") or {})
        info.pop("stage_s", None)
        it["info"] = info
        items.append(it)
    r["items"] = items
    return r


def _start_ray():
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI: Ray is not installed (the test extra has ray[data])", pytrace=False)
        pytest.skip('Ray is not installed: pip install -e ".[ray]" (the test extra has it)')
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    except Exception as exc:  # noqa: BLE001 - e.g. no shared memory, ports refused in a sandbox
        pytest.skip(f"a local Ray instance cannot start here: {type(exc).__name__}: {exc}")
    return ray


@pytest.mark.slow
def test_ray_engine_gives_the_local_outputs_and_report_and_resumes(photo_dir, tmp_path, tiny_weights):
    def run(out, *engine):
        rep = tmp_path / f"report_{out}.json"
        argv = ["run", str(photo_dir), str(tmp_path / out), "--direction", "male2female", "--weights-dir", tiny_weights,
                "--device", "cpu", "--threads", "1", "--report", str(rep), "--no-progress", *engine]
        assert main(argv) == 1  # the broken input
        return json.loads(rep.read_text())

    local = run("local", "--workers", "1")
    inputs_before = _files(photo_dir)
    ray = _start_ray()
    try:
        first = run("ray", "--engine", "ray", "--actors", "1")
        # one report, every input in walk order, merged from the shards of the write tasks
        assert first["complete"] and first["summary"]["total"] == 4
        assert first["summary"]["ok"] == 3 and first["summary"]["error"] == 1 and first["summary"]["pending"] == 0
        assert _strip(first) == _strip(local)  # statuses, errors, faces, image info, output formats, settings
        assert all(set(it["timings"]) == {"read_s", "process_s", "write_s"} for it in first["items"]
                   if it["status"] == "ok")
        out_local, out_ray = _files(tmp_path / "local"), _files(tmp_path / "ray")
        marks = [json.loads(o.pop(".faceswap-pipeline.json")) for o in (out_local, out_ray)]
        assert marks[0]["settings"] == marks[1]["settings"]
        assert out_ray == out_local  # byte-identical outputs, no temporary files left
        assert set(out_ray) == {"astronaut.jpg", "sub/astronaut_small.png", "sub/noface.png"}
        broken = next(it for it in first["items"] if it["input"] == "broken.jpg")
        assert broken["status"] == "error" and broken["error"].startswith("ImageReadError") and broken["output"] is None
        assert out_ray["sub/noface.png"] == inputs_before["sub/noface.png"]  # no face: the input's bytes copied

        # a re-run skips what exists (nothing rewritten), the broken file fails again
        mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("*.*g")}
        again = run("ray", "--engine", "ray", "--actors", "1")
        assert {i["input"]: i["status"] for i in again["items"]} == {
            "astronaut.jpg": "skipped", "sub/astronaut_small.png": "skipped", "sub/noface.png": "skipped",
            "broken.jpg": "error"}
        assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("*.*g")} == mtimes
        # the skipped entries keep the faces of the first run's report, as the local runner's do
        assert [it["info"].get("n_faces") for it in again["items"]] == [it["info"].get("n_faces") for it in first["items"]]
    finally:
        ray.shutdown()
    assert _files(photo_dir) == inputs_before  # inputs never modified


def test_split_pipeline_runs_the_same_stages_in_two_steps(astronaut, tiny_weights):
    spec = PipelineSpec("male2female", {"weights_dir": tiny_weights, "upscaler": "resize"})
    pipe = spec.build("cpu")
    head, tail = split_pipeline(pipe)
    assert [s.name for s in head.stages][-1] == "crop" and "translate" in [s.name for s in tail.stages]
    assert head.stages + tail.stages == pipe.stages
    whole = pipe.process([ImageRecord(image=astronaut.copy())])[0]
    two = head.process([ImageRecord(image=astronaut.copy())])
    two = tail.process(pickle.loads(pickle.dumps(two)))[0]  # as the records travel between Ray workers
    assert whole.error is None and two.error is None and len(two.faces) == len(whole.faces) == 1
    assert np.array_equal(two.result, whole.result)
    assert split_pipeline(pipe, until="no such stage")[1].stages == []
    # what the Ray engine's CPU tasks load: the head's stages only, giving the same crops
    head_only = spec.build("cpu", head_only=True)
    assert [type(s) for s in head_only.stages] == [type(s) for s in head.stages]
    alone = head_only.process([ImageRecord(image=astronaut.copy())])[0]
    cut = head.process([ImageRecord(image=astronaut.copy())])[0]
    assert len(alone.faces) == len(cut.faces) == 1 and alone.faces[0].transform == cut.faces[0].transform
    assert np.array_equal(np.asarray(alone.faces[0].crop), np.asarray(cut.faces[0].crop))
    with pytest.raises(ValueError, match="device"):
        PipelineSpec("male2female", {"device": "cpu"})


def _ctx(in_dir, out_dir, stale_from=None):
    return _Context(in_root=str(in_dir), out_root=str(out_dir), output_suffix=None, stale_from=stale_from,
                    max_pixels=None, quality=None, threads=1)


def _unpickle(col):
    return [pickle.loads(bytes(b)) for b in col]


def test_a_retried_task_skips_outputs_that_exist_and_never_touches_them(tmp_path, photo_dir, tiny_weights):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    done = out / "sub" / "noface.png"
    done.write_bytes(b"finished earlier")  # as a first attempt of the task would have left it
    ctx = _ctx(photo_dir, out)
    spec = PipelineSpec("male2female", {"weights_dir": tiny_weights, "upscaler": "resize"})
    batch = {"index": np.array([0, 1, 2]), "input": np.array(["sub/noface.png", "broken.jpg", "sub/astronaut_small.png"])}
    states = _unpickle(decode_detect(batch, spec, ctx)["state"])
    assert [s[0] for s in states] == ["done", "done", "todo"]
    assert states[0][1].status == "skipped" and "read_s" not in states[0][1].timings  # not even decoded
    assert states[1][1].status == "error" and states[1][1].error.startswith("ImageReadError")

    # the write step of a retried task: the output that exists is kept, the other one written
    loaded = read_image(photo_dir / "sub" / "noface.png")
    entries = [FileReport(input="sub/noface.png", output="sub/noface.png"), FileReport(input="x.png", output="x.png")]
    write_states = [("write", entries[0], loaded, None), ("write", entries[1], loaded, 255 - loaded.rgb)]
    blobs = np.empty(2, dtype=object)
    blobs[:] = [pickle.dumps(s) for s in write_states]
    shard = encode_write({"index": np.array([0, 1]), "state": blobs}, ctx)
    got = _unpickle(shard["entry"])
    assert [e.status for e in got] == ["skipped", "ok"] and list(shard["index"]) == [0, 1]
    assert done.read_bytes() == b"finished earlier"
    assert np.array_equal(iio.imread(out / "x.png"), 255 - loaded.rgb)
    assert got[1].info["output_image"]["format"] == "PNG"

    # an --overwrite run: outputs older than its start are stale and rewritten, newer ones kept
    os.utime(done, ns=(1_000, 1_000))
    shard = encode_write({"index": np.array([0]), "state": blobs[:1]}, _ctx(photo_dir, out, stale_from=2_000))
    assert _unpickle(shard["entry"])[0].status == "ok" and done.read_bytes() == (photo_dir / "sub" / "noface.png").read_bytes()


def test_merge_shard_reports_by_index_and_keeps_the_better_outcome(tmp_path):
    report = FolderReport(input_dir=tmp_path, output_dir=tmp_path / "o",
                          items=[FileReport(input=n, size=i, mtime_ns=10 + i) for i, n in enumerate("abc")])
    ok = FileReport(input="b", output="b", status="ok", batch={"index": "actor1:1", "images": 2, "process_s": 1.0})
    assert merge_shard(report, [1], [ok]) == [1]
    assert report.items[1].status == "ok" and (report.items[1].size, report.items[1].mtime_ns) == (1, 11)
    # a duplicate shard (a task that ran twice) cannot turn the finished input into a failure
    assert merge_shard(report, [1], [FileReport(input="b", status="error", error="X")]) == []
    assert report.items[1].status == "ok"
    assert merge_shard(report, [2, 0], [FileReport(input="c", status="error", error="E"),
                                        FileReport(input="a", output="a", status="ok",
                                                   batch={"index": "actor1:1", "images": 2, "process_s": 1.0})]) == [2, 0]
    assert [it.status for it in report.items] == ["ok", "ok", "error"]
    with pytest.raises(ValueError, match="is for"):
        merge_shard(report, [0], [FileReport(input="zzz", status="ok")])
    report.items[2].batch = {"index": "actor2:7", "images": 1, "process_s": 1.0}
    number_batches(report)
    assert [it.batch["index"] for it in report.items] == [1, 1, 2]


def test_cli_ray_options_are_checked(photo_dir, tmp_path, capsys):
    base = ["run", str(photo_dir), str(tmp_path / "o"), "--direction", "male2female", "--no-progress"]
    assert main([*base, "--actors", "2"]) == 2
    assert "--engine ray" in capsys.readouterr().err
    assert main([*base, "--engine", "ray", "--workers", "2"]) == 2
    assert "--workers applies to --engine local" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


class _KillWorkerOn:
    """A pipeline stage that ends its worker process (as a decoder crash or the OOM killer would)
    on the photo whose file name is ``name``, and passes every other photo on untouched."""

    name = "kill_worker"
    batched = False

    def __init__(self, name):
        self.target = name

    def __call__(self, batch):
        for rec in batch:
            if os.path.basename(str(rec.key)) == self.target:
                os._exit(3)
        return batch


class _CrashingSpec(PipelineSpec):
    """The real pipeline with :class:`_KillWorkerOn` first (in the head, run by the CPU tasks)."""

    def build(self, device="cpu", head_only=False):
        from faceswap_pipeline.pipeline import Pipeline

        pipe = super().build(device, head_only=head_only)
        return Pipeline([_KillWorkerOn("crash.png"), *pipe.stages])


@pytest.mark.slow
def test_a_file_that_kills_its_worker_is_an_error_and_the_job_completes(tmp_path, astronaut, tiny_weights):
    import sys

    from faceswap_pipeline.folder.ray_engine import RayRun

    d = tmp_path / "in"
    d.mkdir()
    small = astronaut[::4, ::4]
    names = [f"p{i}.png" for i in range(8)] + ["crash.png"]
    for n in names:
        iio.imwrite(d / n, small)
    ray = _start_ray()
    try:
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
        spec = _CrashingSpec("male2female", {"weights_dir": tiny_weights, "upscaler": "resize"})
        report = RayRun(spec, d, tmp_path / "out", actors=1, threads=1, task_retries=1,
                        options={"progress": False}).run()
    finally:
        ray.shutdown()
    status = {it.input: it.status for it in report.items}
    assert report.complete and report.count("pending") == 0
    assert status == {**{n: "ok" for n in names[:-1]}, "crash.png": "error"}  # its block-mate ran again, alone
    crash = next(it for it in report.items if it.input == "crash.png")
    assert "failed 2 times with this input alone" in crash.error and crash.output is None
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == sorted(names[:-1])
    assert report.exit_code == 1
