"""Write the UTKFace face packs the project's trainers read (reproduces data_cache/packs/).

Runs the inference detection + framing code (HOG, chip framing (1.1, 1.1, 1.1, 1.3), 128 px
letterbox) over a UTKFace folder and writes ``utk_train.npz``, ``utk_val.npz`` and ``utk.json``.
The process is deterministic (sorted files, fixed split by file-name hash).

Example:
    python examples/prepare_data.py --images ../shared/data/utkface/train --out data_cache/packs
"""

from __future__ import annotations

import argparse


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="UTKFace folder ({age}_{gender}_{race}_*.jpg.chip.jpg)")
    p.add_argument("--out", default="data_cache/packs", help="output folder")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the stored crops")
    args = p.parse_args()
    from faceswap_pipeline.train.prepare import main as prepare

    return prepare(["--images", args.images, "--out", args.out, "--workers", str(args.workers), "--quality", str(args.quality)])


if __name__ == "__main__":
    raise SystemExit(main())
