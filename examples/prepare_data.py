"""Write the UTKFace face packs the project's trainers read (reproduces data_cache/packs/).

Runs the inference detection + framing code (HOG, chip framing (1.1, 1.1, 1.1, 1.3), 128 px
letterbox) over a UTKFace folder and writes ``utk_train.npz``, ``utk_val.npz`` and ``utk.json``.
The process is deterministic (sorted files, fixed split by file-name hash).

Example:
    python examples/prepare_data.py --images ../shared/data/utkface/train --out data_cache/packs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _quality(text: str) -> int:
    v = int(text)
    if not 1 <= v <= 100:
        raise argparse.ArgumentTypeError(f"must be in [1, 100], got {v}")
    return v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="UTKFace folder ({age}_{gender}_{race}_*.jpg.chip.jpg)")
    p.add_argument("--out", default="data_cache/packs", help="output folder (default: %(default)s)")
    p.add_argument("--workers", type=_positive, default=2, help="worker processes (default: %(default)s)")
    p.add_argument("--quality", type=_quality, default=90, help="JPEG quality of the stored crops, 1-100 (default: %(default)s)")
    args = p.parse_args(argv)
    if not Path(args.images).is_dir():
        p.error(f"--images {args.images!r} is not a folder")  # exit 2 with the usage line, no traceback

    from faceswap_pipeline.train.prepare import main as prepare

    try:
        return prepare(["--images", args.images, "--out", args.out, "--workers", str(args.workers), "--quality", str(args.quality)])
    except (OSError, ValueError) as e:
        print(f"prepare_data.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
