"""Benchmark the SR stage: x4 PSNR-Y / SSIM-Y against bicubic, and speed in faces per second.

Quality (the SR papers' convention): Y channel of BT.601 studio-swing YCbCr (MATLAB ``rgb2ycbcr``),
``scale`` pixels cropped from every border, 8-bit quantised outputs. LR inputs are the HR images
(mod-cropped to a multiple of the scale) shrunk with antialiased bicubic and quantised to 8 bits.
Two baselines upscale the same LR: ``bicubic`` (Keys a = -0.5, like MATLAB ``imresize``, the
papers' baseline) and ``bicubic_torch`` (a = -0.75, torch / OpenCV, sharper and stronger here).

* faces: the first ``--n-faces`` (sorted by name) of the project's *validation* split of a
  UTKFace folder (never trained on), full 200x200 chips -> 50x50 LR.
* scenes: the held-out scenes of the scene folder (sorted index % 5 == 0: 16 of the Sun & Hays 80,
  never trained on), full images.

Speed: the pipeline's case, a batch of 128x128 faces upscaled x4 to 512x512 by
:class:`~faceswap_pipeline.stages.upscale.SRUpscaler`'s network; ``--runs`` timed runs after a
warm-up, reported as median and IQR of faces/s.

Example::

    PYTHONPATH=. python benchmarks/bench_sr.py --faces ../shared/data/utkface/train \\
        --scenes ../shared/data/sr_scenes/CSun_Hays80 --device cpu --json runs/bench_sr.json
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from typing import Any

import torch
from common import quality, write_json

log = logging.getLogger("bench_sr")


@torch.inference_mode()
def speed(model: torch.nn.Module, device: torch.device, batch: int, runs: int, size: int = 128) -> dict[str, Any]:
    """faces/s for ``batch`` faces of ``size`` px per forward pass (median and IQR over ``runs``)."""
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        model(x).float().clamp_(0, 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    once()  # warm-up
    fps = sorted(batch / once() for _ in range(runs))
    q = statistics.quantiles(fps, n=4) if len(fps) >= 2 else [fps[0]] * 3
    return {"batch": batch, "face_px": size, "out_px": size * getattr(model, "scale", 4), "runs": runs,
            "faces_per_s_median": round(statistics.median(fps), 3), "faces_per_s_iqr": [round(q[0], 3), round(q[2], 3)],
            "ms_per_face_median": round(1000 / statistics.median(fps), 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faces", default=None, help="UTKFace folder (its validation split is used)")
    p.add_argument("--scenes", default=None, help="scene folder (its held-out subset is used)")
    p.add_argument("--n-faces", type=int, default=300, help="validation faces to score (sorted by name)")
    p.add_argument("--scene-holdout-every", type=int, default=5)
    p.add_argument("--name", default="srresnet.x4", help="model in the weights manifest")
    p.add_argument("--weights-dir", default=None)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--batch", type=int, default=4, help="faces per forward pass in the speed test")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--bf16", action="store_true", help="also time bf16 autocast inference and score the faces with it")
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.threads:
        torch.set_num_threads(a.threads)

    from faceswap_pipeline.machine import describe_machine
    from faceswap_pipeline.train.srresnet import read_rgb, split_faces, split_scenes
    from faceswap_pipeline.weights import load_model, model_entry

    device = torch.device(a.device)
    model = load_model(a.name, weights_dir=a.weights_dir, device=device)
    scale = int(model.scale)
    res: dict[str, Any] = {
        "model": a.name, "kwargs": model_entry(a.name, a.weights_dir).get("kwargs"), "scale": scale,
        "device": str(device), "machine": describe_machine(str(device)), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "convention": f"PSNR/SSIM on Y (BT.601 studio swing), {scale}-px border crop, 8-bit outputs; "
                      "LR = antialiased bicubic /scale, 8-bit; "
                      "baselines: bicubic (a=-0.5, MATLAB imresize) and bicubic_torch (a=-0.75)",
    }
    if a.faces:
        _, val = split_faces(a.faces)
        files = val[: a.n_faces]
        t = time.perf_counter()
        res["faces"] = quality(model, [read_rgb(f) for f in files], scale, device)
        res["faces"]["set"] = f"UTKFace validation split, first {len(files)} by name, 200x200 HR / 50x50 LR"
        log.info("faces: %s (%.0f s)", res["faces"], time.perf_counter() - t)
    if a.scenes:
        _, held = split_scenes(a.scenes, a.scene_holdout_every)
        t = time.perf_counter()
        res["scenes"] = quality(model, [read_rgb(f) for f in held], scale, device, batch=1)
        res["scenes"]["set"] = f"held-out scenes (sorted index % {a.scene_holdout_every} == 0): " + ", ".join(f.name for f in held)
        log.info("scenes: %s (%.0f s)", {k: v for k, v in res["scenes"].items() if k != "set"}, time.perf_counter() - t)
    res["speed"] = speed(model, device, a.batch, a.runs)
    log.info("speed fp32: %s", res["speed"])
    if a.bf16:
        def bf16_model(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return model(x)

        bf16_model.scale = scale  # type: ignore[attr-defined]
        res["speed_bf16"] = speed(bf16_model, device, a.batch, a.runs)  # type: ignore[arg-type]
        log.info("speed bf16: %s", res["speed_bf16"])
        if a.faces:  # does bf16 inference cost quality? same faces, bf16 autocast
            res["faces_bf16"] = quality(bf16_model, [read_rgb(f) for f in files], scale, device)  # type: ignore[arg-type]
            log.info("faces bf16: %s", res["faces_bf16"])
    print(write_json(res, a.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
