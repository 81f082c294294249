"""Training throughput of the seed CycleGAN (image pairs/s of the full training step).

One step = both generators' forward/backward (adversarial + cycle + perceptual identity), the
image pools and both discriminators' forward/backward and Adam updates, exactly as
:class:`faceswap_pipeline.train.cyclegan.CycleGANTrainer` runs it. Data are synthetic uint8
faces held on the device; the identity feature net is a randomly initialised ``AttributeNet``
(the trained one has the same cost). Warm-up steps (compilation included) are not timed; then
``--repeats`` blocks of ``--steps`` steps are timed with a device sync at each block's end only.

Prints JSON: pairs/s median and IQR over blocks, plus the settings and the machine::

    python benchmarks/bench_cyclegan_train.py --device cuda --batch-size 32 --amp bf16 --compile 1 --channels-last 1
    python benchmarks/bench_cyclegan_train.py --device cpu --batch-size 1 --steps 3 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--amp", default="bf16", choices=["bf16", "none"])
    p.add_argument("--compile", type=int, default=0)
    p.add_argument("--channels-last", type=int, default=0)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation happens here)")
    p.add_argument("--steps", type=int, default=5, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default="", help="also write the result to this file")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    from faceswap_pipeline.archs.attributes import AttributeNet
    from faceswap_pipeline.train.cyclegan import CycleGANConfig, CycleGANTrainer

    if a.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    g = torch.Generator().manual_seed(0)
    n = max(64, 2 * a.batch_size)
    data_m = torch.randint(0, 256, (n, 3, a.size, a.size), dtype=torch.uint8, generator=g)
    data_f = torch.randint(0, 256, (n, 3, a.size, a.size), dtype=torch.uint8, generator=g)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = CycleGANConfig(
            image_size=a.size, batch_size=a.batch_size, amp=a.amp, compile=bool(a.compile), channels_last=bool(a.channels_last),
            device=a.device, n_steps=10**9, n_steps_decay=0, run_dir=tmp, tensorboard=False, jitter=0,
        )
        tr = CycleGANTrainer(cfg, data_m, data_f, AttributeNet())
        dev = tr.device
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        for _ in range(a.warmup):
            tr.train_step()
        tr.pop_losses()
        sync()
        warm_s = time.perf_counter() - t0
        rates = []
        for _ in range(a.repeats):
            sync()
            t = time.perf_counter()
            for _ in range(a.steps):
                tr.train_step()
            sync()
            rates.append(a.steps * a.batch_size / (time.perf_counter() - t))
        losses = tr.pop_losses()
    q1, med, q3 = np.percentile(rates, [25, 50, 75])
    from faceswap_pipeline.machine import describe_machine

    res = {
        "benchmark": "cyclegan_train_step",
        "unit": "image pairs/s",
        "median": round(float(med), 3),
        "iqr": round(float(q3 - q1), 3),
        "blocks": [round(r, 3) for r in rates],
        "device": str(dev),
        "machine": describe_machine(str(dev)),
        "batch_size": a.batch_size,
        "amp": a.amp,
        "compile": bool(a.compile),
        "channels_last": bool(a.channels_last),
        "size": a.size,
        "steps_per_block": a.steps,
        "warmup_s": round(warm_s, 2),
        "losses_finite": bool(all(np.isfinite(v) for v in losses.values())),
        "torch": torch.__version__,
        "peak_mem_gb": round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if dev.type == "cuda" else None,
    }
    print(json.dumps(res), flush=True)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
