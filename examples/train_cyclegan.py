"""Reproduce the shipped male <-> female CycleGAN generators from the face packs.

Trains (or resumes) with a fixed seed, then exports both generators as int8 safetensors into
``--out-dir`` and registers ``cyclegan.male2female`` / ``cyclegan.female2male`` in its manifest
with validation metrics (attribute-net target rate, dlib identity distance, int8 vs fp32).

The shipped preview weights were made on a 2-core CPU with::

    python examples/train_cyclegan.py --packs data_cache/packs --attr-weights weights \\
        --run-dir runs/cyclegan_m2f --batch-size 1 --max-minutes 60 --threads 2

On a GPU, continue that run (or start a fresh, longer one) with e.g.::

    python examples/train_cyclegan.py --packs data_cache/packs --attr-weights weights \\
        --run-dir runs/cyclegan_gpu --device cuda --batch-size 32 --compile 1 --channels-last 1 \\
        --n-steps 40000 --n-steps-decay 20000 --max-minutes 8.5   # then --resume runs/cyclegan_gpu/last.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--packs", required=True, help="folder with the training/validation packs (train.npz, val.npz)")
    p.add_argument("--train-pack", default="train.npz", help="file name of the training pack inside --packs")
    p.add_argument("--val-pack", default="val.npz", help="file name of the validation pack inside --packs")
    p.add_argument("--attr-weights", required=True, help="weights folder holding attributes.v1")
    p.add_argument("--run-dir", default="runs/cyclegan_m2f")
    p.add_argument("--out-dir", default="weights", help="where the exported generators and manifest go")
    p.add_argument("--resume", action="store_true", help="continue <run-dir>/last.pt if it exists")
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--eval-n", type=int, default=0, help="validation faces per direction for the metrics (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--select-m", default="gender=0,age>=15,age<=70")
    p.add_argument("--select-f", default="gender=1,age>=15,age<=70")
    args, rest = p.parse_known_args(argv)

    from faceswap_pipeline.train import cyclegan

    packs = Path(args.packs)
    common = [
        "--pack-m", str(packs / args.train_pack), "--pack-f", str(packs / args.train_pack),
        "--val-pack-m", str(packs / args.val_pack), "--val-pack-f", str(packs / args.val_pack),
        "--select-m", args.select_m, "--select-f", args.select_f,
        "--attr-weights", args.attr_weights, "--run-dir", args.run_dir, "--seed", str(args.seed),
    ]
    ckpt = Path(args.run_dir) / "last.pt"
    train_argv = (["--resume", str(ckpt)] if args.resume and ckpt.is_file() else []) + common + rest
    rc = cyclegan.main(train_argv)
    if rc or args.no_export:
        return rc
    return cyclegan.main(["--export", str(ckpt), "--out-dir", args.out_dir, "--eval-n", str(args.eval_n)] + common)


if __name__ == "__main__":
    sys.exit(main())
