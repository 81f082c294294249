"""Images/s of a folder run: the local runner (``run --workers N``) beside the Ray engine (``--engine ray``).

Both engines process the same folder of synthetic 640x480 JPEGs (``skimage.data.astronaut()``
scaled x1.6 into a grey frame: one ~146 px face, so the SR stage runs), with the same pipeline
settings, in one process run, one after the other (``--engines`` sets the order). Each is measured
two ways:

* ``wall_s``: the whole job as a user sees it: local: loading the pipeline + ``FolderRun.run``;
  Ray: ``ray.init`` (a local instance on ``--ray-cpus`` CPUs) + ``run_folder_ray``.
* ``run_s``: the run alone (local: ``FolderRun.run``, which warms the models up; Ray:
  ``run_folder_ray`` on the started instance: the driver's checks, the workers' model loads and warm-up).

The outputs of the two engines are compared byte for byte.

    python benchmarks/bench_engine.py --images 24 --threads 1 --json benchmarks/results/engine_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stages import make_photo  # noqa: E402
from common import write_json

from faceswap_pipeline.machine import cpu_name  # noqa: E402


def make_folder(folder: Path, n: int, width: int, height: int, face_scale: float) -> None:
    """``n`` one-face JPEGs (quality 90), each with the face shifted a little."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        iio.imwrite(folder / f"photo_{i:04d}.jpg", make_photo(width, height, face_scale, shift=(7 * i) % 90), quality=90)


def run_local(in_dir: Path, out_dir: Path, a: argparse.Namespace) -> dict[str, Any]:
    import faceswap_pipeline as fp
    from faceswap_pipeline.folder import FolderRun

    t0 = time.perf_counter()
    pipe = fp.load_pipeline(a.direction, device="cpu", upscaler=a.upscaler)
    t1 = time.perf_counter()
    report = FolderRun.for_pipeline(pipe, in_dir, out_dir, progress=False, workers=a.workers).run()
    t2 = time.perf_counter()
    return {"engine": "local", "workers": a.workers, "ok": report.n_ok, "failed": report.n_failed,
            "wall_s": round(t2 - t0, 2), "run_s": round(t2 - t1, 2),
            "images_per_s": round(report.n_ok / (t2 - t0), 3), "run_images_per_s": round(report.n_ok / (t2 - t1), 3)}


def run_ray(in_dir: Path, out_dir: Path, a: argparse.Namespace) -> dict[str, Any]:
    import ray

    from faceswap_pipeline.folder.ray_engine import PipelineSpec, run_folder_ray

    t0 = time.perf_counter()
    ray.init(num_cpus=a.ray_cpus, include_dashboard=False, logging_level="WARNING")
    t1 = time.perf_counter()
    try:
        report = run_folder_ray(PipelineSpec(a.direction, {"upscaler": a.upscaler}), in_dir, out_dir, device="cpu",
                                actors=a.actors, threads=a.threads, progress=False)
    finally:
        t2 = time.perf_counter()
        ray.shutdown()
    return {"engine": "ray", "ray_cpus": a.ray_cpus, "actors": a.actors, "ok": report.n_ok, "failed": report.n_failed,
            "wall_s": round(t2 - t0, 2), "ray_init_s": round(t1 - t0, 2), "run_s": round(t2 - t1, 2),
            "images_per_s": round(report.n_ok / (t2 - t0), 3), "run_images_per_s": round(report.n_ok / (t2 - t1), 3)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--size", default="640x480")
    p.add_argument("--face-scale", type=float, default=1.6, help="astronaut scale (1.6: a ~146 px face, SR runs)")
    p.add_argument("--direction", default="male2female")
    p.add_argument("--upscaler", default="srresnet", choices=("srresnet", "resize"))
    p.add_argument("--engines", default="local,ray", help="comma-separated, in the order they run")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="local runner's --workers")
    p.add_argument("--ray-cpus", type=int, default=len(os.sched_getaffinity(0)), help="CPUs of the local Ray instance")
    p.add_argument("--actors", type=int, default=None, help="Ray network actors (default: the engine's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default: %(default)s)")
    p.add_argument("--note", default="", help="free text recorded with the results (e.g. what else ran)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    w, h = (int(v) for v in a.size.lower().split("x"))
    root = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    try:
        make_folder(root / "in", a.images, w, h, a.face_scale)
        runs = []
        for engine in a.engines.split(","):
            fn = {"local": run_local, "ray": run_ray}[engine]
            res = fn(root / "in", root / f"out_{engine}", a)
            print(json.dumps(res), flush=True)
            runs.append(res)
        outs = {}
        for engine in a.engines.split(","):
            d = root / f"out_{engine}"
            outs[engine] = {q.relative_to(d).as_posix(): q.read_bytes() for q in sorted(d.rglob("*.jpg"))}
        first = next(iter(outs.values()))
        same = all(o == first for o in outs.values()) and len(first) == a.images
        by = {r["engine"]: r for r in runs}
        ratio = None
        if "local" in by and "ray" in by:
            ratio = {k: round(by["ray"][k] / by["local"][k], 3) for k in ("images_per_s", "run_images_per_s")
                     if by["ray"].get(k) and by["local"].get(k)}
        res = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__, "gpu": None,
                           "load_avg_at_end": list(os.getloadavg()), "note": a.note},
               "args": {k: v for k, v in vars(a).items() if k != "json"},
               "photos": f"{a.images} JPEGs {w}x{h}, one face (astronaut x{a.face_scale})",
               "runs": runs, "ray_over_local": ratio, "outputs_byte_identical": same}
        print(write_json(res, a.json))
        return res
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
