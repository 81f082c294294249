"""What 4-bit storage costs the CycleGAN generators: int4 (group-wise) vs the shipped int8, same faces.

For every shipped generator pair, the same held-out validation adults (the ablation's fixed draw)
go through the generators as shipped and re-stored with ``--storage`` (default int4; requantised
from the shipped weights, i.e. as a re-export would store them), and the benchmark reports:

* output agreement: PSNR (dB, outputs in [0, 1]) and max abs difference of the two versions'
  8-bit outputs;
* the independent judge's and the attribute net's target rates, identity, face found, grid energy
  for both versions (``benchmarks/ablate_cyclegan.Scorer``);
* bytes on disk per generator.

    python benchmarks/bench_weight_storage.py --packs ~/faceswap-runs/packs --n 150 \\
        --json benchmarks/results/weight_storage.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ablate_cyclegan import Scorer, directions
from common import write_json

PAIRS = {("male", "female"): ("male2female", "female2male"), ("white", "asian"): ("white2asian", "asian2white"),
         ("white", "black"): ("white2black", "black2white")}


def _restored(name: str, storage: str, tmp: Path) -> tuple[torch.nn.Module, int]:
    """``name`` re-stored with ``storage`` (from the shipped weights) and loaded back; and its file size."""
    from faceswap_pipeline.train.export import restore_model
    from faceswap_pipeline.weights import load_model

    path, _ = restore_model(name, storage, out_dir=tmp)
    return load_model(name, tmp), path.stat().st_size


def _outputs(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    from faceswap_pipeline.train.cyclegan import translate

    y = translate(net.eval(), torch.from_numpy(x).permute(0, 3, 1, 2), batch=16)
    return (y.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packs", required=True, help="folder with utk_val.npz (faceswap-pipeline prepare)")
    ap.add_argument("--n", type=int, default=150, help="validation faces per direction")
    ap.add_argument("--storage", default="int4", choices=["int4", "int8", "fp16"])
    ap.add_argument("--cache", default="~/faceswap-runs/ablation/_cache", help="the ablation's judge descriptor cache")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from faceswap_pipeline.weights import has_model, load_model, locate

    cache = Path(args.cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    res: dict[str, object] = {"storage": args.storage, "faces_per_direction": args.n, "pairs": {}}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for pair, names in PAIRS.items():
            if not all(has_model(f"cyclegan.{d}") for d in names):
                continue
            t0 = time.perf_counter()
            scorer = Scorer(Path(args.packs).expanduser() / "utk_val.npz", args.n, cache, None, pair)
            shipped = {d: load_model(f"cyclegan.{d}") for d in names}
            stored = {}
            row: dict[str, object] = {}
            for d in names:
                stored[d], size = _restored(f"cyclegan.{d}", args.storage, tmp)
                d_dir, e = locate(f"cyclegan.{d}")
                row[d] = {"bytes_shipped": (d_dir / e["file"]).stat().st_size, "bytes_restored": size}
            for d, src, _ in directions(pair):
                a, b = _outputs(shipped[d], scorer.inputs[src]), _outputs(stored[d], scorer.inputs[src])
                mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) / 255.0**2
                row[d].update({"psnr_db": round(10 * np.log10(1.0 / max(mse, 1e-12)), 2),
                               "max_abs_diff": int(np.abs(a.astype(int) - b.astype(int)).max())})
            for label, gens in (("shipped", shipped), (args.storage, stored)):
                for d, r in scorer.score(gens).items():
                    keep = ("judge_target_rate", "attr_target_rate", "identity_median", "face_found_outputs", "grid_energy_ratio",
                            "sharpness_ratio", "realism_fd", "race_kept", "gender_kept")
                    row[d][label] = {k: r[k] for k in keep if k in r}
            row["seconds"] = round(time.perf_counter() - t0, 1)
            res["pairs"][f"{pair[0]}:{pair[1]}"] = row
            print(json.dumps(row, indent=1), flush=True)
    print(write_json(res, args.json or None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
