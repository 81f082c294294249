"""`run` beside dlib HOG alone, 1 -> 2 workers, and the peak memory of `run` on a small vs a large folder.

The photos are synthetic: ``skimage.data.astronaut()``'s head and shoulders resized and pasted
onto scene-like backgrounds (other ``skimage.data`` photos: coffee, chelsea, rocket, a
brick wall... resized to fill the frame), one face per photo, JPEG quality 90. No dataset photo
is used. Two parts, each optional (``--parts``):

* ``speed``: a folder of ``--images`` 640x480 photos with ~150 px faces (the SR x2 stage runs).
  First dlib's HOG detector alone, in this process on one thread with upsample 1, over the same
  files (``hog_s``: detection only, on decoded images; ``decode_hog_s``: reading the JPEG too),
  and the pipeline's cascade detector with its verifier alone the same way (``cascade_alone``);
  then ``faceswap-pipeline run`` as a user starts it (a subprocess: the whole command's wall
  time, Python start, imports and model loads included, and the run alone from its report's
  ``elapsed_s``), with the default pipeline at ``--workers 1`` and ``--workers 2`` and with
  ``--detector cascade`` (default workers). ``ratio_*`` = run's time / HOG alone.
* ``memory``: ``run`` over folders of ``--rss-counts`` small photos (``--rss-size``, a face in
  every ``--rss-face-every``-th, the others a background only), ``--upscaler resize`` to keep a
  large folder affordable, default workers; the peak RSS of the whole process tree (the command
  and its worker processes, summed over ``/proc`` every 0.1 s) and the largest single process's
  peak (``ru_maxrss`` of the children).

Every ``run`` gets ``--threads 1`` (and ``OMP_NUM_THREADS=1``). Results: one JSON.

    python benchmarks/bench_runner.py --images 20 --rss-counts 100,2000 --json benchmarks/results/runner_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_json

from faceswap_pipeline.machine import cpu_name  # noqa: E402

BACKGROUNDS = ("coffee", "chelsea", "rocket", "brick", "grass", "gravel", "coins", "camera", "moon", "page")


def _backgrounds(width: int, height: int) -> list[np.ndarray]:
    """skimage's photos (colour, or grey made RGB) resized to fill ``width`` x ``height``."""
    from skimage import data
    from skimage.transform import resize

    out = []
    for name in BACKGROUNDS:
        im = np.asarray(getattr(data, name)())
        if im.ndim == 2:
            im = np.repeat(im[:, :, None], 3, axis=2)
        im = im[:, :, :3]
        out.append((resize(im, (height, width), anti_aliasing=True, preserve_range=True)).round().astype(np.uint8))
    return out


def _head(face_px: float) -> np.ndarray:
    """The astronaut's head and shoulders resized so that HOG's face box is ~``face_px`` wide."""
    from skimage import data
    from skimage.transform import rescale

    a = data.astronaut()[10:240, 120:370]  # head and shoulders; HOG box on the full photo ~92 px wide
    s = face_px / 92.0
    return (rescale(a, s, channel_axis=2, anti_aliasing=True) * 255).round().astype(np.uint8)


def make_photos(folder: Path, n: int, width: int, height: int, face_px: float, face_every: int = 1) -> None:
    """``n`` JPEGs: backgrounds in turn, the head pasted (every ``face_every``-th photo) at a varying place."""
    folder.mkdir(parents=True, exist_ok=True)
    bgs = _backgrounds(width, height)
    head = _head(face_px)
    hh, hw = min(head.shape[0], height), min(head.shape[1], width)
    for i in range(n):
        img = bgs[i % len(bgs)].copy()
        if i % face_every == 0:
            x = (i * 37) % max(1, width - hw + 1)
            y = (i * 11) % max(1, height - hh + 1)
            img[y : y + hh, x : x + hw] = head[:hh, :hw]
        iio.imwrite(folder / f"photo_{i:05d}.jpg", img, quality=90)


# ---------------------------------------------------------------------------------- measuring


def _tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of ``pid`` and all its descendants, from /proc."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
            for t in Path(f"/proc/{p}/task").iterdir():
                kids = (t / "children").read_text().split()
                todo.extend(int(k) for k in kids)
        except (OSError, ValueError):
            continue
    return total


def run_cli(in_dir: Path, out_dir: Path, extra: list[str], report: Path) -> dict[str, Any]:
    """``faceswap-pipeline run IN OUT --threads 1 ... --report R``: wall time, peak tree RSS, report summary."""
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "faceswap_pipeline.cli", "run", str(in_dir), str(out_dir), "--threads", "1",
           "--direction", "male2female", "--no-progress", "-q", "--report", str(report), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak = [0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            stop.wait(0.1)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    child_max = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB; the largest process so far
    rep = json.loads(report.read_text())
    s = rep["summary"]
    return {"args": extra, "rc": rc, "wall_s": round(wall, 2), "run_s": round(s["elapsed_s"], 2),
            "ok": s["ok"], "error": s["error"], "faces": sum((it.get("info") or {}).get("n_faces", 0) or 0
                                                            for it in rep["items"]),
            "images_per_s_wall": round(s["total"] / wall, 3), "images_per_s_run": round(s["total"] / s["elapsed_s"], 3),
            "peak_tree_rss_mb": round(peak[0] / 2**20, 1),
            "max_process_rss_mb": round(child_max / 1024, 1) if child_max > before else None}


def hog_alone(folder: Path) -> dict[str, Any]:
    """dlib HOG (upsample 1), this process, one thread, over the folder: detection and decode + detection."""
    import dlib

    from faceswap_pipeline.io import read_image

    det = dlib.get_frontal_face_detector()
    files = sorted(folder.glob("*.jpg"))
    det(read_image(files[0]).rgb, 1)  # warm-up
    t_dec = t_det = 0.0
    widths = []
    for f in files:
        t0 = time.perf_counter()
        rgb = read_image(f).rgb
        t1 = time.perf_counter()
        boxes = det(rgb, 1)
        t2 = time.perf_counter()
        t_dec += t1 - t0
        t_det += t2 - t1
        widths += [b.width() for b in boxes]
    return {"images": len(files), "hog_s": round(t_det, 2), "decode_hog_s": round(t_dec + t_det, 2),
            "hog_images_per_s": round(len(files) / t_det, 2), "faces": len(widths),
            "median_box_px": float(np.median(widths)) if widths else None}


def cascade_alone(folder: Path) -> dict[str, Any]:
    """The pipeline's cascade detector with its verifier (``load_detector("cascade")``, one thread,
    one image per call) over the folder's decoded photos: the detection half of ``--detector cascade``."""
    import faceswap_pipeline as fp
    from faceswap_pipeline.io import read_image

    det = fp.load_detector("cascade", "cpu")
    files = sorted(folder.glob("*.jpg"))
    det(read_image(files[0]).rgb)  # warm-up
    t, n = 0.0, 0
    for f in files:
        rgb = read_image(f).rgb
        t0 = time.perf_counter()
        n += len(det(rgb))
        t += time.perf_counter() - t0
    return {"images": len(files), "cascade_s": round(t, 2), "cascade_images_per_s": round(len(files) / t, 2), "faces": n}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="speed,memory")
    p.add_argument("--images", type=int, default=20, help="photos of the speed part")
    p.add_argument("--size", default="640x480")
    p.add_argument("--face-px", type=float, default=150.0, help="HOG face box width to aim for")
    p.add_argument("--speed-runs", default="default1,default2,cascade",
                   help="comma list of: default1 (--workers 1), default2 (--workers 2), cascade (--detector cascade); "
                        "empty: detectors alone only")
    p.add_argument("--rss-counts", default="100,2000")
    p.add_argument("--rss-size", default="160x120")
    p.add_argument("--rss-face-px", type=float, default=60.0)
    p.add_argument("--rss-face-every", type=int, default=4)
    p.add_argument("--note", default="")
    p.add_argument("--json", default=None)
    p.add_argument("--keep", default=None, help="make the folders here and keep them (default: a temporary folder)")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench_runner_"))
    res: dict[str, Any] = {"machine": {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "gpu": None,
                                       "python": platform.python_version(), "torch": torch.__version__},
                           "note": a.note, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                           "loadavg_start": os.getloadavg()}

    def save() -> None:
        res["loadavg_now"] = os.getloadavg()
        write_json(res, a.json)

    try:
        if "speed" in a.parts:
            w, h = (int(v) for v in a.size.lower().split("x"))
            folder = root / "speed_in"
            if not folder.exists():
                make_photos(folder, a.images, w, h, a.face_px)
            sp: dict[str, Any] = {"photos": {"n": a.images, "size": a.size, "face_px_target": a.face_px}}
            res["speed"] = sp
            sp["hog_alone"] = hog = hog_alone(folder)
            print(json.dumps(hog), flush=True)
            sp["cascade_alone"] = cas = cascade_alone(folder)
            cas["ratio_vs_hog"] = round(cas["cascade_s"] / hog["hog_s"], 2)
            print(json.dumps(cas), flush=True)
            save()
            runs = {"default1": ["--workers", "1"], "default2": ["--workers", "2"], "cascade": ["--detector", "cascade"]}
            for name in filter(None, a.speed_runs.split(",")):
                r = run_cli(folder, root / f"out_{name}", runs[name], root / f"report_{name}.json")
                r["ratio_wall_vs_hog"] = round(r["wall_s"] / hog["hog_s"], 2)
                r["ratio_run_vs_hog"] = round(r["run_s"] / hog["hog_s"], 2)
                r["ratio_run_vs_decode_hog"] = round(r["run_s"] / hog["decode_hog_s"], 2)
                sp[name] = r
                print(name, json.dumps(r), flush=True)
                save()
            if "default1" in sp and "default2" in sp:
                sp["scaling_1_to_2_workers_run"] = round(sp["default1"]["run_s"] / sp["default2"]["run_s"], 2)
                sp["scaling_1_to_2_workers_wall"] = round(sp["default1"]["wall_s"] / sp["default2"]["wall_s"], 2)
        if "memory" in a.parts:
            w, h = (int(v) for v in a.rss_size.lower().split("x"))
            mem: dict[str, Any] = {"photos": {"size": a.rss_size, "face_px_target": a.rss_face_px,
                                              "face_every": a.rss_face_every}, "runs": {}}
            res["memory"] = mem
            for n in (int(c) for c in a.rss_counts.split(",")):
                folder = root / f"rss_in_{n}"
                if not folder.exists():
                    make_photos(folder, n, w, h, a.rss_face_px, a.rss_face_every)
                r = run_cli(folder, root / f"rss_out_{n}", ["--upscaler", "resize"], root / f"rss_report_{n}.json")
                mem["runs"][str(n)] = r
                print(n, json.dumps(r), flush=True)
                save()
            counts = sorted(mem["runs"], key=int)
            if len(counts) >= 2:
                lo, hi = mem["runs"][counts[0]], mem["runs"][counts[-1]]
                mem["peak_tree_rss_ratio"] = round(hi["peak_tree_rss_mb"] / lo["peak_tree_rss_mb"], 3)
        res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        save()
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    return res


if __name__ == "__main__":
    main()
