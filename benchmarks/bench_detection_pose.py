"""Non-frontal faces: what the cascade finds, binned by dlib HOG's own pose filter, on held-out UTKFace.

No data set with pose labels is available here (CMU+MIT is the *frontal* test set), so pose is
approximated by which of dlib's five HOG filters fires on a face: 0 = frontal, 1/2 = turned left /
right (semi-profile), 3/4 = frontal rotated in plane; faces HOG misses form their own bin (they
include the most turned, occluded or blurred ones). Faces are UTKFace chips of the project's
**validation** split (never used to train or tune the cascade), each pasted unrotated, with its
face window scaled to ``--face-px`` pixels, on a held-out non-face photo (every 10th sorted file,
the ones the cascade's training holds out). A face counts as found when a detection's centre lies
inside the face window and its side is within 0.5-2.5x the window's (the CMU+MIT robustness
criterion), at each detector's default operating point.

Usage::

    python benchmarks/bench_detection_pose.py --utk ../shared/data/utkface/train \\
        --nonface ../shared/data/nonface/images --threads 1 --json out.json \\
        --cascade shipped= --cascade new=runs/cascade_v3/weights
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import found_count, load_cascades, validation_chips, write_json

log = logging.getLogger("bench_detection_pose")

BINS = {0: "frontal (HOG filter 0)", 1: "turned (HOG filters 1-2)", 2: "turned (HOG filters 1-2)", 3: "rotated (HOG filters 3-4)", 4: "rotated (HOG filters 3-4)"}
MISSED = "missed by HOG"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--utk", required=True, help="UTKFace chips folder (validation-split chips are used)")
    p.add_argument("--nonface", required=True, help="non-face photos (the held-out every-10th files are used as backgrounds)")
    p.add_argument("--cascade", action="append", default=[], help="NAME=WEIGHTS_DIR (empty dir: shipped weights); repeatable")
    p.add_argument("--n", type=int, default=1200, help="validation chips used (0: all)")
    p.add_argument("--face-px", type=int, default=72, help="face window side in the composite (pixels)")
    p.add_argument("--canvas", type=int, default=240)
    p.add_argument("--min-face", type=float, default=24, help="cascade min_face")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    import dlib

    from faceswap_pipeline.train.cascade_config import CascadeTrainConfig
    from faceswap_pipeline.train.cascade_data import composite, nonface_files, to_tensor
    from faceswap_pipeline.train.colour_data import read_rgb

    files = validation_chips(a.utk, a.n, a.seed)
    _, held = nonface_files(a.nonface)
    bgs = [to_tensor(read_rgb(f)) for f in held]
    cascades = load_cascades(a.cascade, a.min_face)
    hog = dlib.get_frontal_face_detector()
    window = CascadeTrainConfig().window
    rng = np.random.default_rng(a.seed)
    counts: dict[str, dict[str, int]] = {}
    t0 = time.time()
    for i, f in enumerate(files):
        chip = to_tensor(read_rgb(f))
        bg = bgs[int(rng.integers(len(bgs)))]
        canvas, fb = composite(chip, bg, tuple(window), a.face_px, a.canvas, 0.0, (0.0, 0.0), rng)  # type: ignore[arg-type]
        img = (canvas.permute(1, 2, 0) * 255).round().byte().numpy()
        gt = fb.numpy()[None].astype(np.float64)
        rects, _, idx = hog.run(img, 1, 0.0)
        hb = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], dtype=np.float64).reshape(-1, 4)
        b = MISSED
        for k in range(len(hb)):  # the HOG detection that finds this face gives the pose bin
            if found_count(hb[k : k + 1], gt)[0]:
                b = BINS[int(idx[k])]
                break
        row = counts.setdefault(b, {"faces": 0, "hog": 0, **{n: 0 for n in cascades}})
        row["faces"] += 1
        row["hog"] += int(b != MISSED)
        for n, det in cascades.items():
            d = det.detect(img)
            row[n] += found_count(np.array([x.box for x in d], dtype=np.float64).reshape(-1, 4), gt)[0]
        if i % 200 == 0:
            log.info("%d/%d (%.0f s) %s", i, len(files), time.time() - t0, counts)
    order = ["frontal (HOG filter 0)", "turned (HOG filters 1-2)", "rotated (HOG filters 3-4)", MISSED]
    res: dict[str, Any] = {"faces": len(files), "face_px": a.face_px, "min_face": a.min_face, "bins": {k: counts[k] for k in order if k in counts}}
    txt = write_json(res, a.json)
    if a.md:
        names = list(cascades)
        L = ["| HOG pose bin | faces | dlib HOG | " + " | ".join(f"cascade {n}" for n in names) + " |", "|---|---|---|" + "---|" * len(names)]
        for k, r in res["bins"].items():
            L.append(f"| {k} | {r['faces']} | {r['hog']} | " + " | ".join(f"{r[n]} ({r[n] / max(1, r['faces']):.0%})" for n in names) + " |")
        Path(a.md).write_text("\n".join(L) + "\n")
    print(txt)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
