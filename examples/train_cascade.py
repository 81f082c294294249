"""Reproduce the shipped cascade face-detector weights (``weights/cascade_*.safetensors``).

Trains the 12/24/48 nets and their calibration nets in order with hard-negative mining (see
:mod:`faceswap_pipeline.train.cascade`), fits the HOG-framing box transform on UTKFace training
faces and exports fp16 weights + manifest entries. Fixed seed 0; the shipped weights came from::

    python examples/train_cascade.py --data ../shared/data --threads 1 --max-minutes 32 --export --weights-dir weights

which runs ``python -m faceswap_pipeline.train.cascade --utk DATA/utkface/train --nonface
DATA/nonface/images --out runs/cascade --threads 1 --max-minutes 32 --seed 0 --export
--weights-dir weights`` (about 36 minutes on one thread of a shared 2-core CPU plus ~5.5 minutes
of sample generation, cached in the run folder). ``--help`` needs no data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="data root holding utkface/train and nonface/images")
    p.add_argument("--out", default="runs/cascade", help="run folder (samples cache, checkpoints, TensorBoard)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-minutes", type=float, default=32.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export", action="store_true", help="write the weights into weights/ and the manifest")
    p.add_argument("--weights-dir", default=None, help="export here instead of the repository's weights/")
    p.add_argument("--rot-prob", type=float, default=None, help="fraction of faces rotated in +-rot-max (trainer default 0.5)")
    p.add_argument("--rot-max", type=float, default=None, help="largest in-plane rotation, degrees (trainer default 30)")
    p.add_argument("--threshold-strata", default=None, help="|rotation| stratum edges for the thresholds, e.g. 10,25 (default: pooled)")
    p.add_argument("--threshold-strata-levels", default=None, help="levels with stratified thresholds, e.g. 12,24")
    a = p.parse_args(argv)

    from faceswap_pipeline.train.cascade import main as train_main

    root = Path(a.data)
    args = ["--utk", str(root / "utkface" / "train"), "--nonface", str(root / "nonface" / "images"), "--out", a.out,
            "--threads", str(a.threads), "--max-minutes", str(a.max_minutes), "--seed", str(a.seed)]
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
