"""Seam with and without skin-tone harmonisation, on race and gender swaps (shipped generators).

Photos: scikit-image's portrait photos and composites of them (publishable). For each face the
default pipeline runs twice, ``harmonise="on"`` and ``"off"`` (Poisson and feather blends), and the
seam is measured along the boundary of what the paste changed (Lab CIEDE2000 between the bands just
inside and just outside it, :func:`faceswap_pipeline.ops.seam.seam_score`), beside the same figure
on the input photo.

    python benchmarks/bench_harmonise.py --json benchmarks/results/harmonise.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch


def photos() -> dict[str, np.ndarray]:
    from skimage import data
    from skimage.transform import rescale

    a = data.astronaut()
    big = (rescale(a, 1.6, channel_axis=2, anti_aliasing=True) * 255).round().astype(np.uint8)[:700, :700]
    small = (rescale(a, 0.7, channel_axis=2, anti_aliasing=True) * 255).round().astype(np.uint8)
    canvas = np.full((420, 700, 3), (92, 120, 140), np.uint8)
    canvas[40 : 40 + small.shape[0] - 20, 300 : 300 + small.shape[1] - 20] = small[:-20, :-20]
    return {"astronaut": a, "astronaut_x1.6": big, "astronaut_x0.7_on_blue": canvas}


def main(argv: list[str] | None = None) -> int:
    import faceswap_pipeline as fp
    from faceswap_pipeline.machine import cpu_name
    from faceswap_pipeline.ops.seam import seam_score
    from faceswap_pipeline.train.evaluate_folder import changed_alpha

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--directions", nargs="+", default=["white2asian", "male2female"])
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    res: dict = {"machine": f"{cpu_name()}, {os.cpu_count()} cores, 1 thread", "rows": []}
    for direction in a.directions:
        for blend in ("poisson", "feather"):
            for harm in ("off", "on"):
                pipe = fp.load_pipeline(direction, blend=blend, harmonise=harm, device="cpu")
                des, des0 = [], []
                for im in photos().values():
                    out, faces = pipe(im)
                    off_alpha = None
                    if harm == "on":  # measure both settings along the same boundary: the off run's paste
                        ref, _ = fp.load_pipeline(direction, blend=blend, harmonise="off", device="cpu")(im)
                        off_alpha = changed_alpha(im, ref)
                    alpha = off_alpha if off_alpha is not None else changed_alpha(im, out)
                    s = seam_score(im, out, alpha)
                    if s is not None:
                        des.append(s.delta_e)
                        des0.append(s.delta_e_original)
                res["rows"].append({"direction": direction, "blend": blend, "harmonise": harm, "faces": len(des),
                                    "delta_e": round(float(np.mean(des)), 3), "delta_e_original": round(float(np.mean(des0)), 3)})
                print(json.dumps(res["rows"][-1]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
