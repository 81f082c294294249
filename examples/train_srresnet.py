"""Reproduce the shipped ``srresnet.x4`` weights (fixed seed) from the data folder.

Example::

    PYTHONPATH=. python examples/train_srresnet.py --data ../shared/data --max-minutes 40 --threads 1

This is exactly the command recorded in ``weights/manifest.json`` (``srresnet.x4.training``):
16-block, 64-filter SRResNet, 64 px HR patches (75% UTKFace train-split faces, 25% training
scenes), L1 loss, Adam 3e-4 with cosine decay, batch 16, bf16 autocast, seed 0. Training on a
CPU is stopped by ``--max-minutes`` (the schedule spans ``--steps``); pass ``--resume`` to
continue an interrupted run. Extra flags are passed to ``faceswap_pipeline.train.srresnet``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data", help="folder holding utkface/train and sr_scenes/CSun_Hays80")
    p.add_argument("--faces", default=None, help="override: UTKFace train folder")
    p.add_argument("--scenes", default=None, help="override: scene folder")
    p.add_argument("--out", default="runs/srresnet_x4", help="run folder: checkpoints, logs, config (default: %(default)s)")
    p.add_argument("--steps", type=int, default=1400, help="planned steps: the length of the cosine schedule (default: %(default)s)")
    p.add_argument("--max-minutes", type=float, default=40.0, help="stop cleanly after this much wall time (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--export", default="weights/srresnet_x4.safetensors",
                   help="weights file written (and registered as srresnet.x4) at the end (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    args, extra = p.parse_known_args(argv)

    from faceswap_pipeline.train.srresnet import main as train_main

    data = Path(args.data)
    argv2 = [
        "--faces", args.faces or str(data / "utkface" / "train"),
        "--scenes", args.scenes or str(data / "sr_scenes" / "CSun_Hays80"),
        "--out", args.out, "--steps", str(args.steps), "--max-minutes", str(args.max_minutes),
        "--threads", str(args.threads), "--bf16", "--seed", "0", "--batch-size", "16", "--lr", "3e-4",
        "--scene-fraction", "0.25", "--val-faces", "16", "--val-every", "400", "--ckpt-every", "100",
        "--export", args.export, "--export-name", "srresnet.x4",
    ]
    if args.resume:
        argv2.append("--resume")
    return train_main(argv2 + extra)


if __name__ == "__main__":
    sys.exit(main())
