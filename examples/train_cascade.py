"""Reproduce the shipped cascade face-detector weights (``weights/cascade_*.safetensors``).

Trains the 12/24/48 nets and their calibration nets in order with hard-negative mining (see
:mod:`faceswap_pipeline.train.cascade`), fits the HOG-framing box transform on UTKFace training
faces and exports fp16 weights + manifest entries. Fixed seed 0; the trainer's defaults are the
shipped recipe (all 18,846 train-split faces, 60 % rotated in +-40 degrees, rotation-stratified
12/24 thresholds, wider 24/48 nets), so the shipped weights came from::

    python examples/train_cascade.py --data ../shared/data --threads 1 --bf16 --export --weights-dir weights

which runs ``python -m faceswap_pipeline.train.cascade --utk DATA/utkface/train --nonface
DATA/nonface/images --out runs/cascade --threads 1 --max-minutes 33 --seed 0 --bf16 --export
--weights-dir weights`` (24 minutes on one thread of a 2-core CPU with native bf16, the other
core running a second training job; about 70 s of it is sample generation, cached in the run
folder). ``--help`` needs no data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="data root holding utkface/train and nonface/images")
    p.add_argument("--out", default="runs/cascade", help="run folder (samples cache, checkpoints, TensorBoard)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s, as the shipped run)")
    p.add_argument("--max-minutes", type=float, default=33.0, help="time cap of the six nets together (the shipped run needed 22 min)")
    p.add_argument("--seed", type=int, default=0, help="random seed of sampling, mining and initialisation (default: %(default)s)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for training (as the shipped run; fast on CPUs with native bf16)")
    p.add_argument("--export", action="store_true", help="write the weights into weights/ and the manifest")
    p.add_argument("--weights-dir", default=None, help="export here instead of the repository's weights/")
    p.add_argument("--rot-prob", type=float, default=None, help="fraction of faces rotated in +-rot-max (trainer default 0.6)")
    p.add_argument("--rot-max", type=float, default=None, help="largest in-plane rotation, degrees (trainer default 40)")
    p.add_argument("--threshold-strata", default=None, help="|rotation| stratum edges for the thresholds (trainer default 10,25; 'none': pooled)")
    p.add_argument("--threshold-strata-levels", default=None, help="levels with stratified thresholds (trainer default 12,24)")
    a = p.parse_args(argv)

    from faceswap_pipeline.train.cascade import main as train_main

    root = Path(a.data)
    args = ["--utk", str(root / "utkface" / "train"), "--nonface", str(root / "nonface" / "images"), "--out", a.out,
            "--threads", str(a.threads), "--max-minutes", str(a.max_minutes), "--seed", str(a.seed)]
    if a.bf16:
        args.append("--bf16")
    if a.export:
        args.append("--export")
    if a.weights_dir:
        args += ["--weights-dir", a.weights_dir]
    for flag, v in (("--rot-prob", a.rot_prob), ("--rot-max", a.rot_max), ("--threshold-strata", a.threshold_strata), ("--threshold-strata-levels", a.threshold_strata_levels)):
        if v is not None:
            args += [flag, str(v)]
    return train_main(args)


if __name__ == "__main__":
    sys.exit(main())
