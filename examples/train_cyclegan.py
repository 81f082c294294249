"""Reproduce the shipped male <-> female CycleGAN generators from the face packs.

Trains (or resumes) with a fixed seed, then exports both generators as int8 safetensors into
``--out-dir`` and registers ``cyclegan.male2female`` / ``cyclegan.female2male`` in its manifest
with validation metrics (attribute-net target rate, dlib identity distance, int8 vs fp32).

Any other flag is passed to the trainer (``faceswap_pipeline.train.cyclegan``, flags generated
from ``CycleGANConfig``: ``--batch-size``, ``--lambda-identity``, ``--n-steps``, ``--max-steps``,
``--max-minutes``, ``--device``, ``--compile`` ...). The shipped CPU preview weights were made in
two phases (the attribute network was still training during the first); see
``weights/cyclegan.male2female.md`` for the exact commands, e.g.::

    python examples/train_cyclegan.py --packs data_cache/packs --attr-weights weights --no-export \\
        --lambda-identity 0 --max-steps 280 --val-every 0 --n-steps 100000 --n-steps-decay 50000
    python examples/train_cyclegan.py --packs data_cache/packs --attr-weights weights --resume \\
        --lambda-identity 5 --max-steps N2

On a GPU, start a fresh, longer run (one device command each; add ``--resume`` to continue)::

    python examples/train_cyclegan.py --packs data_cache/packs --attr-weights weights \\
        --run-dir runs/cyclegan_gpu --device cuda --batch-size 32 --compile 1 --channels-last 1 \\
        --n-steps 40000 --n-steps-decay 20000 --n-val 512 --val-every 1000 --grid-every 1000 \\
        --ckpt-every 1000 --log-every 200 --max-minutes 7.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--packs", required=True, help="folder with the training/validation packs (train.npz, val.npz)")
    p.add_argument("--train-pack", default="utk_train.npz", help="file name of the training pack inside --packs")
    p.add_argument("--val-pack", default="utk_val.npz", help="file name of the validation pack inside --packs")
    p.add_argument("--attr-weights", required=True, help="weights folder holding attributes.v1")
    p.add_argument("--run-dir", default="runs/cyclegan_m2f", help="run folder: checkpoint last.pt, config, logs (keep it outside the checkout for long runs)")
    p.add_argument("--out-dir", default="weights", help="where the exported generators and manifest go")
    p.add_argument("--resume", action="store_true", help="continue <run-dir>/last.pt if it exists")
    p.add_argument("--no-export", action="store_true", help="train only; do not write generators into --out-dir")
    p.add_argument("--eval-n", type=int, default=0, help="validation faces per direction for the metrics (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data order and augmentation")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU; 0 = torch's default)")
    p.add_argument("--select-m", default="gender=0,age>=18,age<=70,pad<=0.02", help="selection of domain m (source of G_m2f) over the pack's labels")
    p.add_argument("--select-f", default="gender=1,age>=18,age<=70,pad<=0.02", help="selection of domain f (source of G_f2m)")
    p.add_argument("--sheet", default="runs/cyclegan_m2f_contact_sheet.png", help="contact sheet written at export (made from training data: never commit it)")
    args, rest = p.parse_known_args(argv)

    from faceswap_pipeline.train import cyclegan

    packs = Path(args.packs)
    common = [
        "--pack-m", str(packs / args.train_pack), "--pack-f", str(packs / args.train_pack),
        "--val-pack-m", str(packs / args.val_pack), "--val-pack-f", str(packs / args.val_pack),
        "--select-m", args.select_m, "--select-f", args.select_f,
        "--attr-weights", args.attr_weights, "--run-dir", args.run_dir, "--seed", str(args.seed),
        "--threads", str(args.threads),
    ]
    ckpt = Path(args.run_dir) / "last.pt"
    train_argv = (["--resume", str(ckpt)] if args.resume and ckpt.is_file() else []) + common + rest
    rc = cyclegan.main(train_argv)
    if rc or args.no_export:
        return rc
    return cyclegan.main(["--export", str(ckpt), "--out-dir", args.out_dir, "--eval-n", str(args.eval_n), "--sheet", args.sheet]
                         + common)


if __name__ == "__main__":
    sys.exit(main())
