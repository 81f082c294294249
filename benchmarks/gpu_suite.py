"""Everything this project promises for GPUs, measured in one run and written to one JSON.

1. CycleGAN training throughput (image pairs/s of the full step) at batch 1 and larger batches
   (``bench_cyclegan_train.py``, bf16, channels-last; ``torch.compile`` on CUDA);
2. SR x4 and x2 throughput (faces/s of 128-px faces, shipped weights) at several batch sizes;
3. cascade detector throughput (images/s, 1024x768 photos with one face, shipped weights);
4. end-to-end ``run`` (images/s over a folder of 1024x768 JPEGs with faces of ~150-300 px,
   shipped weights, both detectors), decode, detection and encoding included.

It is meant for the first minutes on a lent GPU (``benchmarks/gpu_suite.sh``, <= 8 minutes on an
H100-class card) and runs end to end on a CPU with ``--device cpu --quick`` so nothing is debugged
on the GPU's time::

    python benchmarks/gpu_suite.py --device cuda --json benchmarks/results/gpu_suite.json
    python benchmarks/gpu_suite.py --device cpu --quick --json /tmp/gpu_suite_cpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def cyclegan_train(device: str, batches: list[int], quick: bool, threads: int = 0) -> list[dict[str, Any]]:
    """``bench_cyclegan_train.py`` per batch size, in a fresh process each (clean memory, own compile).

    Quick mode trains 64-px faces for one timed step (it checks the plumbing, not the speed).
    """
    out = []
    for b in batches:
        cmd = [sys.executable, str(HERE / "bench_cyclegan_train.py"), "--device", device, "--batch-size", str(b),
               "--steps", "1" if quick else "5", "--repeats", "1" if quick else "5", "--warmup", "1" if quick else "3",
               "--size", "64" if quick else "128", "--threads", str(threads),
               "--amp", "bf16" if device != "cpu" else "none"]
        if device != "cpu":
            cmd += ["--compile", "1", "--channels-last", "1"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            out.append({"batch_size": b, "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"})
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        out.append({"batch_size": b, "pairs_per_s": res["median"], "iqr": res["iqr"], "peak_mem_gb": res["peak_mem_gb"],
                    "compile": res["compile"], "amp": res["amp"], "wall_s": round(time.perf_counter() - t0, 1)})
    return out


def sr_throughput(device: str, batches: list[int], n: int) -> list[dict[str, Any]]:
    """Faces/s of the shipped SR x4 and x2 nets on ``n`` random 128-px faces per batch size."""
    from faceswap_pipeline.weights import load_model

    dev = torch.device(device)
    bf16 = dev.type == "cuda" or _native_bf16()
    out = []
    for name in ("srresnet.x4", "srresnet.x2"):
        try:
            net = load_model(name, device=dev).eval()
        except Exception as exc:  # noqa: BLE001 - a model not shipped is reported, not fatal
            out.append({"model": name, "error": str(exc)})
            continue
        x = torch.rand(n, 3, 128, 128, device=dev)
        for b in batches:
            with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                net(x[:b])  # warm-up
                _sync(dev)
                t0 = time.perf_counter()
                for i in range(0, n, b):
                    net(x[i : i + b])
                _sync(dev)
            dt = time.perf_counter() - t0
            out.append({"model": name, "batch_size": b, "faces_per_s": round(n / dt, 2), "bf16": bf16})
    return out


def _native_bf16() -> bool:
    from faceswap_pipeline.machine import native_bf16

    return native_bf16()


def _photo(width: int, height: int, face_px: int, shift: int = 0) -> np.ndarray:
    """A photo with the astronaut's face at about ``face_px`` px (HOG box) on a grey frame."""
    from skimage import data
    from skimage.transform import rescale

    a = data.astronaut()
    s = face_px / 91.0  # the astronaut's HOG box is 91 px
    a = (rescale(a, s, channel_axis=2, anti_aliasing=True) * 255).round().astype(np.uint8)
    img = np.full((height, width, 3), 110, np.uint8)
    x0 = 40 + shift
    h, w = min(a.shape[0], height - 20), min(a.shape[1], width - x0)
    img[10 : 10 + h, x0 : x0 + w] = a[:h, :w]
    return img


def cascade_throughput(device: str, n: int) -> dict[str, Any]:
    """Images/s of the shipped cascade (with its verifier) on ``n`` 1024x768 photos."""
    from faceswap_pipeline.api import load_detector

    det = load_detector("cascade", device)
    photos = [_photo(1024, 768, 150 + 10 * (i % 10), shift=7 * i % 60) for i in range(min(n, 10))]
    det(photos[0])
    t0 = time.perf_counter()
    found = 0
    for i in range(n):
        found += bool(det(photos[i % len(photos)]))
    dt = time.perf_counter() - t0
    return {"images": n, "images_per_s": round(n / dt, 2), "found_rate": round(found / n, 3), "size": "1024x768"}


def end_to_end(device: str, n: int, detectors: list[str]) -> list[dict[str, Any]]:
    """``run`` over a folder of ``n`` JPEGs (1024x768, faces 150-300 px) with each detector."""
    import imageio.v3 as iio

    import faceswap_pipeline as fp

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i in range(n):
            iio.imwrite(src / f"p{i:05d}.jpg", _photo(1024, 768, 150 + (i * 37) % 150, shift=(i * 13) % 50), quality=90)
        for d in detectors:
            pipe = fp.load_pipeline("male2female", detector=d, device=device, batch_size=64 if device != "cpu" else 16)
            pipe.warmup()
            t0 = time.perf_counter()
            rep = pipe.run_folder(src, Path(tmp) / f"out_{d}", batch_size=32 if device != "cpu" else 1, progress=False)
            dt = time.perf_counter() - t0
            summary = rep.summary()
            out.append({"detector": d, "images": n, "images_per_s": round(n / dt, 2), "wall_s": round(dt, 2),
                        "ok": summary.get("ok"), "failed": summary.get("error")})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that every part runs (CPU dry run)")
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from faceswap_pipeline.machine import describe_machine

    t0 = time.perf_counter()
    q = a.quick
    res: dict[str, Any] = {"suite": "gpu_suite", "device": a.device, "quick": q, "machine": describe_machine(a.device), "torch": torch.__version__}
    parts = [
        ("cyclegan_train", lambda: cyclegan_train(a.device, [1, 2] if q else [1, 8, 32, 64], q, a.threads)),
        ("sr", lambda: sr_throughput(a.device, [1, 2] if q else [1, 16, 64], 4 if q else 512)),
        ("cascade", lambda: cascade_throughput(a.device, 2 if q else 300)),
        ("end_to_end", lambda: end_to_end(a.device, 2 if q else 600, ["hog", "cascade"])),
    ]
    for name, fn in parts:
        t = time.perf_counter()
        try:
            res[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one failed part must not cost the others' numbers
            res[name] = {"error": f"{type(exc).__name__}: {exc}"}
        res.setdefault("part_s", {})[name] = round(time.perf_counter() - t, 1)
        print(json.dumps({name: res[name]}), flush=True)
        if a.json:  # written after every part: a timed-out suite still leaves what it measured
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    res["total_s"] = round(time.perf_counter() - t0, 1)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    errors = [k for k, _ in parts if isinstance(res.get(k), dict) and "error" in res[k]]
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
