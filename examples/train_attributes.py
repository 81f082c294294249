"""Reproduce the shipped attribute network ``weights/attributes_v1.safetensors`` (attributes.v1).

Needs the packs from ``examples/prepare_data.py``. Seed 0, one CPU thread, the default
:class:`~faceswap_pipeline.train.attributes.AttributesConfig`; the run folder keeps the config,
checkpoints (resumable: run the same command again) and TensorBoard logs. After every epoch the
weights are exported and registered in ``weights/manifest.json``. The shipped run was time-boxed
(``--max-minutes``), see ``weights/attributes.v1.md`` for the exact command.

Example:
    python examples/train_attributes.py --packs data_cache/packs
"""

from __future__ import annotations

import argparse


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--packs", default="data_cache/packs", help="folder with utk_train.npz / utk_val.npz")
    p.add_argument("--run-dir", default="runs/attributes", help="checkpoints, logs, config")
    p.add_argument("--weights-dir", default="weights", help="where to export the weights + manifest entry")
    p.add_argument("--max-steps", type=int, default=1200, help="planned steps of 64 faces (cosine schedule length; ~4 epochs)")
    p.add_argument("--max-minutes", type=float, default=30.0, help="stop cleanly after this much wall time")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="random seed of the initialisation and the data order (default: %(default)s)")
    args = p.parse_args()
    from faceswap_pipeline.train.attributes import main as train

    argv = ["--train-pack", f"{args.packs}/utk_train.npz", "--val-pack", f"{args.packs}/utk_val.npz", "--run-dir", args.run_dir,
            "--weights-dir", args.weights_dir, "--in-size", "48", "--width", "32", "--max-steps", str(args.max_steps),
            "--threads", str(args.threads), "--seed", str(args.seed), "--final-voting-eval", "--voting-eval-n", "400"]
    if args.max_minutes is not None:
        argv += ["--max-minutes", str(args.max_minutes)]
    return train(argv)


if __name__ == "__main__":
    raise SystemExit(main())
