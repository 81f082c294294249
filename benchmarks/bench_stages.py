"""Per-stage and end-to-end time per image of the swap pipeline on 640x480 one-face photos.

Timing follows kornia's benchmark rules: warm-up runs first, then ``--repeats`` timed runs, report
median and inter-quartile range. The photos are built from ``skimage.data.astronaut()`` (a real
face, resized into a 640x480 frame), so the benchmark runs anywhere without data.

    python benchmarks/bench_stages.py --device cpu --threads 1 --json out.json
    python benchmarks/bench_stages.py --size 1280x960 --face-scale 1.6   # a face big enough for SR

If the shipped generator is missing, a seed-architecture generator with random weights is timed
instead (same FLOPs, same time) and the JSON says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch


def make_photo(width: int = 640, height: int = 480, face_scale: float = 0.8, shift: int = 0) -> np.ndarray:
    """A ``height`` x ``width`` RGB photo with one face: the astronaut scaled by ``face_scale``
    (0.8: a ~73 px HOG box; 1.6: ~146 px) pasted into a grey frame."""
    from skimage import data
    from skimage.transform import rescale

    a = (rescale(data.astronaut(), face_scale, channel_axis=2, anti_aliasing=True) * 255).round().astype(np.uint8)
    a = a[: height - 40, : width - 100 - shift]
    img = np.full((height, width, 3), 110, np.uint8)
    img[40 : 40 + a.shape[0], 100 + shift : 100 + shift + a.shape[1]] = a
    return img


def build_pipeline(device: str, upscaler: str, weights_dir: str | None):
    import faceswap_pipeline as fp
    from faceswap_pipeline.archs.cyclegan import ResnetGenerator
    from faceswap_pipeline.pipeline import Pipeline
    from faceswap_pipeline.stages.blend import FeatherBlend
    from faceswap_pipeline.stages.crop import CropLetterbox
    from faceswap_pipeline.stages.detect_hog import HogDetector
    from faceswap_pipeline.stages.translate import Translator

    try:
        return fp.load_pipeline("male2female", upscaler=upscaler, device=device, weights_dir=weights_dir), "shipped"
    except fp.WeightsError:
        torch.manual_seed(0)
        gen = ResnetGenerator()
        return Pipeline([HogDetector(), CropLetterbox(), Translator({"male2female": gen}, "male2female", device=device), FeatherBlend()]), "random-init (timing only)"


def quartiles(xs: list[float]) -> dict[str, float]:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return {"median_ms": round(q[1] * 1e3, 2), "iqr_ms": round((q[2] - q[0]) * 1e3, 2)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--batch-sizes", default="1,8", help="images per pipeline call")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--upscaler", default="srresnet", choices=("resize", "srresnet"))
    p.add_argument("--weights-dir", default=None)
    p.add_argument("--size", default="640x480", help="photo WxH (default: %(default)s)")
    p.add_argument("--face-scale", type=float, default=0.8, help="astronaut scale: 0.8 face pasted < 128 px, 1.6 > 128 px (SR runs)")
    p.add_argument("--json", default=None, help="write results here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from faceswap_pipeline.types import ImageRecord

    pipe, gen_kind = build_pipeline(a.device, a.upscaler, a.weights_dir)
    w, h = (int(v) for v in a.size.lower().split("x"))
    photos = [make_photo(w, h, a.face_scale, shift=8 * i) for i in range(8)]
    results = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "device": a.device,
                    "torch": torch.__version__, "gpu": torch.cuda.get_device_name() if a.device.startswith("cuda") else None},
        "generator": gen_kind, "upscaler": a.upscaler, "image": f"{w}x{h}, one face (astronaut x{a.face_scale})", "runs": [],
    }
    for bs in (int(b) for b in a.batch_sizes.split(",")):
        per_stage: dict[str, list[float]] = {}
        total: list[float] = []
        for r in range(a.warmup + a.repeats):
            recs = [ImageRecord(image=photos[i % len(photos)]) for i in range(bs)]
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            pipe.process(recs)
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            assert all(r.error is None and len(r.faces) == 1 for r in recs), [r.error for r in recs]
            if r >= a.warmup:
                total.append(dt / bs)
                for k, v in recs[0].timings.items():
                    per_stage.setdefault(k, []).append(v)
        run = {"batch_size": bs, "end_to_end_per_image": quartiles(total), "images_per_s": round(1 / statistics.median(total), 2),
               "stages_per_image": {k: quartiles(v) for k, v in per_stage.items()}}
        results["runs"].append(run)
        print(json.dumps(run))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
